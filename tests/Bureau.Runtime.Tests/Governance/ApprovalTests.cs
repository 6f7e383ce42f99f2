using Bureau.Governance;
using Bureau.Tests.Support;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace Bureau.Tests.Governance;

/// <summary>
/// Policies in the agent loop: a denied call is told to the model and never runs; a call that needs
/// approval waits durably (approve, edit, reject, first answer wins, four-eyes, who may answer), and
/// escalates level by level on its deadlines (fake clock) to the policy's onTimeout.
/// </summary>
public sealed class ApprovalTests : IAsyncDisposable
{
    private readonly EngineFixture _f = new();

    public ValueTask DisposeAsync() => _f.DisposeAsync();

    private static ArgumentCondition Arg(string text) => ArgumentCondition.Parse(text, out var error) ?? throw new InvalidOperationException(error);

    private void Setup(ApprovalSpec? approval = null, PolicyAction action = PolicyAction.RequireApproval)
    {
        _f.AddTool("refund", ToolEffect.Write);
        _f.AddAgent(tools: "refund");
        _f.UseModel((msgs, turn) => turn == 1 ? FakeModel.Call("refund", """{"key":"big"}""", "c1") : FakeModel.Text("after: " + FakeModel.LastToolResult(msgs)));
        _f.Definitions.Policies = new PolicySet
        {
            Rules =
            [
                new PolicyRule
                {
                    Name = "big-refunds", Action = action, Reason = "big refunds need a lead",
                    When = new PolicyConditions { Tools = ["refund"], Arguments = [Arg("$.key == 'big'")] },
                    Approval = approval ?? new ApprovalSpec { Levels = [new(["leads"], null)], EditableArguments = true },
                },
            ],
        };
    }

    private async Task<(BureauEngine Engine, string Id, ApprovalWait Wait)> WaitingAsync()
    {
        var engine = await _f.StartAsync();
        var id = (await engine.SubmitAsync(new RunRequest("a", "refund please"))).Run.Id;
        var run = await EngineFixture.WaitAsync(engine, id);
        Assert.Equal(RunStatus.Waiting, run.Status);
        return (engine, id, Assert.IsType<ApprovalWait>(run.WaitingFor));
    }

    [Fact]
    public async Task Deny_TheModelIsToldWhy_TheToolNeverRuns()
    {
        Setup(action: PolicyAction.Deny);
        var engine = await _f.StartAsync();
        var run = await EngineFixture.WaitAsync(engine, (await engine.SubmitAsync(new RunRequest("a", "x"))).Run.Id);

        Assert.Equal(RunStatus.Succeeded, run.Status);
        Assert.Equal("after: denied by policy 'big-refunds': big refunds need a lead; the call did not run", run.Output);
        Assert.Empty(_f.Keys);
        var applied = Assert.Single((await engine.ReadJournalAsync(run.Id)).Select(r => r.Entry).OfType<PolicyApplied>());
        Assert.Equal((PolicyAction.Deny, "big-refunds"), (applied.Action, applied.Rule));
    }

    [Fact]
    public async Task RequireApproval_WaitsWithTheProposedCall_ApprovedItRunsOnce()
    {
        Setup();
        var (engine, id, wait) = await WaitingAsync();
        Assert.Equal(("refund", """{"key":"big"}""", "big-refunds"), (wait.Tool, wait.Arguments, wait.Rule));
        Assert.Equal(["leads"], wait.Approvers);
        Assert.Contains("big refunds need a lead", wait.Question);
        Assert.Empty(_f.Keys); // nothing ran while waiting
        var listed = Assert.Single(await engine.ListApprovalsAsync());
        Assert.Equal($"{id}:{wait.Step}", listed.Id);

        await engine.DecideApprovalAsync(id, wait.Step, new ApprovalDecision(true, "ok"), "lea", ["leads"]);
        var run = await EngineFixture.WaitAsync(engine, id);

        Assert.Equal((RunStatus.Succeeded, "after: refund:big"), (run.Status, run.Output));
        Assert.Single(_f.Keys);
        Assert.Empty(await engine.ListApprovalsAsync());
    }

    [Fact]
    public async Task Reject_TheReasonGoesBackToTheModel_TheToolNeverRuns()
    {
        Setup();
        var (engine, id, wait) = await WaitingAsync();
        await engine.DecideApprovalAsync(id, wait.Step, new ApprovalDecision(false, "customer already refunded"), "lea", ["leads"]);
        var run = await EngineFixture.WaitAsync(engine, id);
        Assert.Equal("after: rejected by lea: customer already refunded; the call did not run", run.Output);
        Assert.Empty(_f.Keys);
    }

    [Fact]
    public async Task ApproveWithEditedArguments_TheToolRunsWithTheEdit_AnInvalidEditDoesNot()
    {
        Setup();
        var (engine, id, wait) = await WaitingAsync();
        await engine.DecideApprovalAsync(id, wait.Step, new ApprovalDecision(true, null, """{"key":"smaller"}"""), "lea", ["leads"]);
        var run = await EngineFixture.WaitAsync(engine, id);
        Assert.Equal("after: refund:smaller", run.Output);
        var intent = Assert.Single((await engine.ReadJournalAsync(id)).Select(r => r.Entry).OfType<ToolIntent>());
        Assert.Equal("""{"key":"smaller"}""", intent.Arguments); // the journal says what ran
    }

    [Theory]
    [InlineData("""{"amount":150}""", "required")] // the schema's required key is missing (an edit replaces the arguments, it does not patch them)
    [InlineData("""{"key":"x","extra":1}""", "extra")] // a property the schema does not allow
    public async Task EditedArguments_TheToolsSchemaRefuses_AreRefusedAtTheDecision_NothingIsWritten_ACorrectEditThenRuns(string edit, string named)
    {
        Setup();
        var (engine, id, wait) = await WaitingAsync();
        var before = (await engine.ReadJournalAsync(id)).Count;

        var ex = await Assert.ThrowsAsync<ArgumentException>(() =>
            engine.DecideApprovalAsync(id, wait.Step, new ApprovalDecision(true, null, edit), "lea", ["leads"]));
        Assert.Equal("decision", ex.ParamName);
        Assert.Contains($"approval {id}:{wait.Step}: the edited arguments were refused, nothing was decided: invalid arguments for tool 'refund'", ex.Message);
        Assert.Contains(named, ex.Message);
        Assert.Equal(RunStatus.Waiting, (await engine.GetRunAsync(id))!.Status);
        Assert.Equal(before, (await engine.ReadJournalAsync(id)).Count); // no answer journaled: the approval is still open
        Assert.Empty(_f.Keys);

        await engine.DecideApprovalAsync(id, wait.Step, new ApprovalDecision(true, null, """{"key":"smaller"}"""), "lea", ["leads"]);
        Assert.Equal("after: refund:smaller", (await EngineFixture.WaitAsync(engine, id)).Output);
    }

    [Fact]
    public async Task EditedArguments_WhenThePolicyDoesNotAllowEdits_AreRefused_NothingIsWritten_ThePlainApprovalRunsTheOriginal()
    {
        Setup(new ApprovalSpec { Levels = [new(["leads"], null)], EditableArguments = false });
        var (engine, id, wait) = await WaitingAsync();
        var before = (await engine.ReadJournalAsync(id)).Count;

        var ex = await Assert.ThrowsAsync<ArgumentException>(() =>
            engine.DecideApprovalAsync(id, wait.Step, new ApprovalDecision(true, null, """{"key":"smaller"}"""), "lea", ["leads"]));
        Assert.Contains($"approval {id}:{wait.Step}: the policy 'big-refunds' does not let the approver edit the arguments", ex.Message);
        Assert.Equal("decision", ex.ParamName);
        var still = (await engine.GetRunAsync(id))!;
        Assert.Equal(RunStatus.Waiting, still.Status);
        Assert.Equal(before, (await engine.ReadJournalAsync(id)).Count); // no answer journaled
        Assert.Empty(_f.Keys);

        await engine.DecideApprovalAsync(id, wait.Step, new ApprovalDecision(true), "lea", ["leads"]);
        var run = await EngineFixture.WaitAsync(engine, id);
        Assert.Equal("after: refund:big", run.Output); // the call as the model proposed it
    }

    /// <summary>
    /// With one run slot and a backlog of runs not started, an approved run resumes at the next free slot, ahead of the
    /// backlog (decision 0057): before, it went to the back of the queue.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task WaitEnded_WithABacklog_TheRunResumesBeforeRunsNotStarted(bool expired)
    {
        // Decision 0057: an answered approval, and one whose deadline passed, continue work already started.
        var time = expired ? new FakeTimeProvider(DateTimeOffset.UtcNow) : null;
        _f.Time = time;
        var calls = new System.Collections.Concurrent.ConcurrentQueue<string>();
        _f.AddTool("refund", ToolEffect.Write);
        var (entered, release) = _f.AddHoldingTool();
        foreach (var (name, tools) in new[] { ("a", new[] { "refund" }), ("holder", new[] { "hold" }), ("echo", Array.Empty<string>()) })
            _f.Definitions.Add(new AgentDefinition { Name = name, Model = "m", Instructions = "agent:" + name, Tools = tools });
        _f.UseModel((msgs, turn) =>
        {
            var agent = msgs.First(m => m.Role == Microsoft.Extensions.AI.ChatRole.System).Text["agent:".Length..];
            calls.Enqueue(agent);
            return (agent, turn) switch
            {
                ("a", 1) => FakeModel.Call("refund", """{"key":"big"}""", "c1"),
                ("holder", 1) => FakeModel.Call("hold", """{"key":"k"}""", "h1"),
                _ => FakeModel.Text(agent + " done"),
            };
        });
        _f.Definitions.Policies = new PolicySet
        {
            Rules = [new PolicyRule { Name = "big-refunds", Action = PolicyAction.RequireApproval, When = new PolicyConditions { Tools = ["refund"] },
                Approval = new ApprovalSpec { Levels = [new(["leads"], expired ? TimeSpan.FromSeconds(10) : null)] } }],
        };
        _f.MaxConcurrentRuns = 1;
        var engine = await _f.StartAsync();

        var id = (await engine.SubmitAsync(new RunRequest("a", "refund please"))).Run.Id;
        var wait = Assert.IsType<ApprovalWait>((await EngineFixture.WaitAsync(engine, id)).WaitingFor);
        await engine.SubmitAsync(new RunRequest("holder", "hold the slot"));
        await entered.Task.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);
        var backlog = new List<string>();
        for (var i = 0; i < 3; i++) backlog.Add((await engine.SubmitAsync(new RunRequest("echo", $"e{i}"))).Run.Id);
        if (time is null) await engine.DecideApprovalAsync(id, wait.Step, new ApprovalDecision(true), "lea", ["leads"]);
        else time.Advance(TimeSpan.FromSeconds(11)); // past the deadline (onTimeout: reject), within the holding tool's 30 s timeout
        await EngineFixture.UntilAsync(() => engine.ReadyRuns == backlog.Count + 1); // requeued (the timer's, after the expiry's append)
        release.TrySetResult();

        Assert.Equal(RunStatus.Succeeded, (await EngineFixture.WaitAsync(engine, id)).Status);
        if (time is not null) Assert.Single((await engine.ReadJournalAsync(id)).Select(r => r.Entry).OfType<WaitExpired>());
        foreach (var b in backlog) Assert.Equal(RunStatus.Succeeded, (await EngineFixture.WaitAsync(engine, b)).Status);
        // a's first call, the holder's two, a resumed, then the backlog.
        Assert.Equal(["a", "holder", "holder", "a", "echo", "echo", "echo"], calls.ToArray());
    }

    [Fact]
    public async Task SecondAnswer_IsRefusedNamingWhoAnsweredFirst()
    {
        Setup();
        var (engine, id, wait) = await WaitingAsync();
        await engine.DecideApprovalAsync(id, wait.Step, new ApprovalDecision(false, "no"), "lea", ["leads"]);
        var ex = await Assert.ThrowsAsync<RunStateConflictException>(() => engine.DecideApprovalAsync(id, wait.Step, new ApprovalDecision(true), "max", ["leads"]));
        Assert.Contains("already answered by lea (rejected)", ex.Message);
    }

    [Fact]
    public async Task NotAnApprover_IsForbidden_NothingIsWritten()
    {
        Setup();
        var (engine, id, wait) = await WaitingAsync();
        var before = (await engine.GetRunAsync(id))!.Version;
        var ex = await Assert.ThrowsAsync<ApprovalForbiddenException>(() => engine.DecideApprovalAsync(id, wait.Step, new ApprovalDecision(true), "intern", ["viewer"]));
        Assert.Contains("its approvers are leads", ex.Message);
        Assert.Equal(before, (await engine.GetRunAsync(id))!.Version);
    }

    [Fact]
    public async Task FourEyes_TwoDistinctApproversNeeded_TheSamePersonTwiceIsRefused()
    {
        Setup(new ApprovalSpec { Levels = [new(["leads"], null)], Required = 2 });
        var (engine, id, wait) = await WaitingAsync();
        await engine.DecideApprovalAsync(id, wait.Step, new ApprovalDecision(true), "lea", ["leads"]);
        Assert.Equal(RunStatus.Waiting, (await engine.GetRunAsync(id))!.Status);
        Assert.Empty(_f.Keys);
        await Assert.ThrowsAsync<RunStateConflictException>(() => engine.DecideApprovalAsync(id, wait.Step, new ApprovalDecision(true), "lea", ["leads"]));
        Assert.Equal(["lea"], (await engine.ListApprovalsAsync()).Single().Votes);

        await engine.DecideApprovalAsync(id, wait.Step, new ApprovalDecision(true), "max", ["leads"]);
        var run = await EngineFixture.WaitAsync(engine, id);
        Assert.Equal("after: refund:big", run.Output);
    }

    [Theory]
    [InlineData(ApprovalTimeoutAction.Reject, RunStatus.Succeeded, "after: nobody approved the call before its last deadline; it did not run (policy 'big-refunds')", 0)]
    [InlineData(ApprovalTimeoutAction.Approve, RunStatus.Succeeded, "after: refund:big", 1)]
    [InlineData(ApprovalTimeoutAction.Fail, RunStatus.Failed, null, 0)]
    public async Task Escalation_EachLevelsDeadlineMovesItOn_ThenOnTimeoutApplies(ApprovalTimeoutAction onTimeout, RunStatus status, string? output, int ran)
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        _f.Time = time;
        Setup(new ApprovalSpec
        {
            Levels = [new(["oncall"], TimeSpan.FromMinutes(30)), new(["leads"], TimeSpan.FromMinutes(90))],
            OnTimeout = onTimeout,
        });
        var (engine, id, wait) = await WaitingAsync();
        Assert.Equal(0, wait.Level);
        Assert.Equal(["oncall"], wait.Approvers);
        Assert.Equal(time.GetUtcNow().AddMinutes(30), wait.Deadline);

        time.Advance(TimeSpan.FromMinutes(29));
        Assert.Equal(0, ((ApprovalWait)(await engine.GetRunAsync(id))!.WaitingFor!).Level);
        var escalated = await AdvanceUntilAsync(engine, id, time, r => r.WaitingFor is ApprovalWait { Level: 1 });
        var level1 = (ApprovalWait)escalated.WaitingFor!;
        Assert.Equal(["leads"], level1.Approvers);
        Assert.Equal(wait.Step, level1.Step);
        await Assert.ThrowsAsync<ApprovalForbiddenException>(() => engine.DecideApprovalAsync(id, wait.Step, new ApprovalDecision(true), "ann", ["oncall"]));

        var done = await AdvanceUntilAsync(engine, id, time, r => r.Status.IsTerminal());
        Assert.Equal(status, done.Status);
        if (output is not null) Assert.Equal(output, done.Output);
        else Assert.Equal("approval-timeout", done.Outcome);
        Assert.Equal(ran, _f.Keys.Count);
        Assert.Equal(2, (await engine.ReadJournalAsync(id)).Select(r => r.Entry).OfType<WaitExpired>().Count()); // once per level

        // The audit log tells the same story: asked of oncall, escalated to leads, each level timed out by the timer.
        var audit = (await ((IAuditLog)engine.Store).ReadAuditAsync()).Where(a => a.RunId == id && a.Action.StartsWith("approval.", StringComparison.Ordinal)).ToList();
        Assert.Equal(["approval.asked", "approval.timed-out", "approval.escalated", "approval.timed-out"], audit.Select(a => a.Action));
        var escalatedEntry = System.Text.Json.Nodes.JsonNode.Parse(audit[2].Detail!)!;
        Assert.Equal((wait.Step, 1, "leads"), ((long)escalatedEntry["approval"]!, (int)escalatedEntry["level"]!, (string?)escalatedEntry["approvers"]![0]));
        Assert.All(audit.Where(a => a.Action == "approval.timed-out"), a =>
        {
            Assert.Equal("bureau:timer", a.Actor);
            Assert.Equal(wait.Step, (long)System.Text.Json.Nodes.JsonNode.Parse(a.Detail!)!["approval"]!);
        });
        Assert.Equal(wait.Deadline, System.Text.Json.Nodes.JsonNode.Parse(audit[1].Detail!)!["deadline"]!.GetValue<DateTimeOffset>()); // level 1's own deadline
    }

    [Fact]
    public async Task PendingApproval_SurvivesARestartOfTheEngine()
    {
        Setup();
        var (engine, id, wait) = await WaitingAsync();
        await engine.StopAsync();
        await _f.DisposeEnginesAsync();

        var again = await _f.StartAsync();
        Assert.Equal(id, Assert.Single(await again.ListApprovalsAsync()).Run.Id);
        await again.DecideApprovalAsync(id, wait.Step, new ApprovalDecision(true), "lea", ["leads"]);
        Assert.Equal("after: refund:big", (await EngineFixture.WaitAsync(again, id)).Output);
    }

    [Theory]
    [InlineData(0.4, true)]
    [InlineData(0.9, false)]
    public async Task StatedConfidence_BelowTheThreshold_GoesToAPerson_AboveItRuns_TheToolNeverSeesIt(double confidence, bool waits)
    {
        _f.AddTool("refund", ToolEffect.Write); // its schema allows only "key": a confidence left in would be rejected
        _f.Definitions.Add(new AgentDefinition { Name = "a", Model = "m", Tools = ["refund"], StateConfidence = true });
        _f.UseModel((msgs, turn) => turn == 1
            ? FakeModel.Call("refund", $$"""{"key":"k","confidence":{{confidence.ToString(System.Globalization.CultureInfo.InvariantCulture)}}}""", "c1")
            : FakeModel.Text("after: " + FakeModel.LastToolResult(msgs)));
        _f.Definitions.Policies = new PolicySet
        {
            Rules = [new PolicyRule { Name = "unsure", When = new PolicyConditions { Confidence = new NumberCondition("<", 0.7) }, Action = PolicyAction.RequireApproval, Reason = "the model is unsure" }],
        };
        var engine = await _f.StartAsync();
        var run = await EngineFixture.WaitAsync(engine, (await engine.SubmitAsync(new RunRequest("a", "x"))).Run.Id);

        if (waits)
        {
            var wait = Assert.IsType<ApprovalWait>(run.WaitingFor);
            Assert.Equal(("unsure", """{"key":"k"}"""), (wait.Rule, wait.Arguments));
            Assert.Empty(_f.Keys);
        }
        else
        {
            Assert.Equal((RunStatus.Succeeded, "after: refund:k"), (run.Status, run.Output));
            var intent = Assert.Single((await engine.ReadJournalAsync(run.Id)).Select(r => r.Entry).OfType<ToolIntent>());
            Assert.Equal("""{"key":"k"}""", intent.Arguments);
        }
    }

    [Fact]
    public void StatedConfidence_TheDeclarationAsksForIt()
    {
        var tool = new Bureau.Tools.ToolFactory().Create(new FunctionToolDefinition
        {
            Name = "refund", Effect = ToolEffect.Write,
            Parameters = System.Text.Json.JsonDocument.Parse("""{"type":"object","properties":{"key":{"type":"string"}},"required":["key"],"additionalProperties":false}""").RootElement.Clone(),
            Function = Microsoft.Extensions.AI.AIFunctionFactory.Create((string key) => key, "refund"),
        });
        var declared = (Microsoft.Extensions.AI.AIFunctionDeclaration)Confidence.Declaration(tool);
        var schema = declared.JsonSchema;
        Assert.Equal("number", schema.GetProperty("properties").GetProperty("confidence").GetProperty("type").GetString());
        Assert.Equal(["key", "confidence"], schema.GetProperty("required").EnumerateArray().Select(e => e.GetString()));
    }

    [Fact]
    public async Task DocsSnippet_PoliciesInCSharp_AskForTheApproval()
    {
        var builder = new { Services = new Microsoft.Extensions.DependencyInjection.ServiceCollection() };

        // docs/governance.md begin (the page shows these lines: DocsCSharpSnippetTests)
        builder.Services.AddBureau()
            .AddPolicy(new PolicyRule
            {
                Name = "big-refunds",
                When = new PolicyConditions { Tools = ["refund"], Arguments = [ArgumentCondition.Parse("$.amount > 100", out _)!] },
                Action = PolicyAction.RequireApproval,
                Reason = "refunds over 100 need a lead",
                Approval = new ApprovalSpec { Levels = [new(["support-leads"], TimeSpan.FromMinutes(30))], EditableArguments = true },
            })
            .AddPolicyDefault(ToolEffect.Write, PolicyAction.RequireApproval);
        // docs/governance.md end

        await using var provider = Microsoft.Extensions.DependencyInjection.ServiceCollectionContainerBuilderExtensions.BuildServiceProvider(builder.Services);
        var policies = Microsoft.Extensions.DependencyInjection.ServiceProviderServiceExtensions.GetRequiredService<BureauDeployment>(provider).Definitions.Policies;
        var big = PolicyEvaluator.Evaluate(policies, new PolicyContext("a", "refund", ToolEffect.Write, """{"amount":250}"""));
        var other = PolicyEvaluator.Evaluate(policies, new PolicyContext("a", "email", ToolEffect.Write, "{}"));
        Assert.Equal((PolicyAction.RequireApproval, "big-refunds"), (big.Action, big.Rule));
        Assert.Equal((PolicyAction.RequireApproval, "default:write"), (other.Action, other.Rule));
    }

    private static async Task<RunRecord> AdvanceUntilAsync(BureauEngine engine, string id, FakeTimeProvider time, Func<RunRecord, bool> done)
    {
        for (var i = 0; i < 400; i++)
        {
            var run = (await engine.GetRunAsync(id))!;
            if (done(run)) return run;
            time.Advance(TimeSpan.FromMinutes(1));
            await Task.Delay(10, TestContext.Current.CancellationToken);
        }
        throw new TimeoutException($"run {id} never reached the state");
    }
}
