using Bureau.Resilience;
using Bureau.Tests.Support;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Polly.CircuitBreaker;
using Polly.RateLimiting;
using Polly.Retry;
using Polly.Testing;
using Polly.Timeout;
using Xunit;

namespace Bureau.Tests.Resilience;

/// <summary>Where each link sits, one cause class per failed run, and failures grouped for <c>bureau runs failures</c>.</summary>
public sealed class FailureTaxonomyTests : IAsyncDisposable
{
    private readonly EngineFixture _f = new();

    public ValueTask DisposeAsync() => _f.DisposeAsync();

    private static RunFailure FailureOf(IReadOnlyList<JournalRecord> journal) => journal.Select(r => r.Entry).OfType<RunFinished>().Single().Failure!;

    [Fact]
    public async Task ModelLinks_StepTimeoutOutsideRetryOutsideBreakerOutsideBulkhead()
    {
        _f.UseModel((_, _) => FakeModel.Text("ok"));
        _f.Definitions.Add(new ChatClientModelDefinition
        {
            Name = "m", Client = new FakeModel((_, _) => FakeModel.Text("ok")), StepTimeout = TimeSpan.FromMinutes(1), MaxConcurrency = 4,
        });
        _f.AddAgent();
        await _f.StartAsync();

        var link = _f.Services.GetRequiredService<ModelGateway>().Get(_f.Definitions.Models["m"]).Chain[0];
        var strategies = link.Pipeline.GetPipelineDescriptor().Strategies.Select(s => s.Options?.GetType()).ToList();

        Assert.Equal([typeof(TimeoutStrategyOptions), typeof(RetryStrategyOptions<ChatResponse>), typeof(CircuitBreakerStrategyOptions<ChatResponse>), typeof(RateLimiterStrategyOptions)], strategies);
    }

    [Fact]
    public async Task Start_InvalidBreakerGivenInCSharp_FailsNamingTheTool()
    {
        _f.AddAgent();
        _f.Definitions.Add(new FunctionToolDefinition
        {
            Name = "bad",
            Function = AIFunctionFactory.Create(() => "x", "bad"),
            CircuitBreaker = new CircuitBreakerSettings { MinimumThroughput = 1 },
        });

        var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => _f.StartAsync());

        Assert.Contains("tool 'bad': invalid resilience settings", ex.Message);
        Assert.Contains("MinimumThroughput", ex.Message);
    }

    [Fact]
    public async Task Loop_ToolKeptFailing_TheCauseIsTheTool()
    {
        _f.ResilienceTime = new InstantTimeProvider();
        _f.UseModel((_, turn) => FakeModel.Call("flaky", $$"""{"key":"k{{turn}}"}"""));
        _f.AddTool("flaky", ToolEffect.Read, (_, _) => throw new TimeoutException("upstream timed out"));
        _f.AddAgent(loop: new LoopDetectionSettings { MaxTurnsWithoutProgress = 2 }, tools: "flaky");
        var engine = await _f.StartAsync();

        var id = (await engine.SubmitAsync(new RunRequest("a", "x"))).Run.Id;
        var run = await EngineFixture.WaitAsync(engine, id);
        var failure = FailureOf(await engine.ReadJournalAsync(id));

        Assert.Equal((RunStatus.Failed, "loop"), (run.Status, run.Outcome));
        Assert.Equal(("tool", "crash", "tool:flaky", 3), (failure.Cause, failure.Kind, failure.Dependency, failure.Attempts));
        Assert.Contains("tool 'flaky' kept failing", failure.Hint);
    }

    [Fact]
    public async Task Loop_RepeatedInvalidCalls_TheCauseIsValidation()
    {
        _f.UseModel((_, _) => FakeModel.Call("lookup", """{"wrong":1}"""));
        _f.AddTool("lookup", ToolEffect.Read);
        _f.AddAgent(tools: "lookup");
        var engine = await _f.StartAsync();

        var id = (await engine.SubmitAsync(new RunRequest("a", "x"))).Run.Id;
        await EngineFixture.WaitAsync(engine, id);

        Assert.Equal("validation", FailureOf(await engine.ReadJournalAsync(id)).Cause);
    }

    [Fact]
    public async Task Cancel_WhileAWriteIsInDoubt_TheCauseIsInDoubtNamingTheTool()
    {
        _f.AddTool("ledger", ToolEffect.Write);
        _f.AddAgent(tools: "ledger");
        var store = await _f.OpenStoreAsync();
        await store.SubmitAsync(new NewRun { Id = "run1", Agent = "a", Input = "in", Started = new RunStarted("a", "in"), CreatedAt = DateTimeOffset.UtcNow });
        await store.AppendAsync(new AppendRequest
        {
            RunId = "run1", ExpectedVersion = 1, At = DateTimeOffset.UtcNow,
            Entries =
            [
                new ModelResponded(1, "fake", "custom", null, [new ToolCallRecord("c1", "ledger", """{"key":"k"}""")], new UsageRecord(1, 1), null, 2, 1),
                new ToolIntent("c1", "ledger", """{"key":"k"}""", ToolEffect.Write, "run1:3"),
            ],
            Update = new RunUpdate { Status = RunStatus.Running },
        });
        var engine = await _f.StartAsync(store);
        Assert.Equal(RunStatus.Waiting, (await EngineFixture.WaitAsync(engine, "run1")).Status);

        await engine.CancelAsync("run1", actor: "ops");

        var failure = FailureOf(await engine.ReadJournalAsync("run1"));
        Assert.Equal(("in-doubt", 3L, "tool:ledger"), (failure.Cause, failure.Step, failure.Dependency));
        Assert.Contains("key run1:3", failure.Hint);
    }

    [Fact]
    public async Task Policy_ARejectionThatFailsTheRun_TheCauseIsPolicyRejectedNamingTheTool()
    {
        _f.UseModel((_, turn) => turn == 1 ? FakeModel.Call("refund", """{"key":"big"}""", "c1") : FakeModel.Text("done"));
        _f.AddTool("refund", ToolEffect.Write);
        _f.AddAgent(tools: "refund");
        _f.Definitions.Policies = new PolicySet
        {
            Rules = [new PolicyRule { Name = "ask", Action = PolicyAction.RequireApproval, When = new PolicyConditions { Tools = ["refund"] }, Approval = new ApprovalSpec { FailRunOnReject = true } }],
        };
        var engine = await _f.StartAsync();
        var id = (await engine.SubmitAsync(new RunRequest("a", "x"))).Run.Id;
        var waiting = await EngineFixture.WaitAsync(engine, id);
        Assert.Equal(RunStatus.Waiting, waiting.Status);

        await engine.DecideApprovalAsync(id, waiting.WaitingFor!.Step, new Bureau.Governance.ApprovalDecision(false, "too much"), "lea");
        var run = await EngineFixture.WaitAsync(engine, id);

        Assert.Equal((RunStatus.Failed, "rejected"), (run.Status, run.Outcome));
        var failure = FailureOf(await engine.ReadJournalAsync(id));
        Assert.Equal(("policy", "rejected", "tool:refund", waiting.WaitingFor.Step), (failure.Cause, failure.Kind, failure.Dependency, failure.Step!.Value));
        Assert.Empty(_f.Keys);   // the rejected call never ran
    }

    [Fact]
    public async Task Policy_NobodyAnswersAnApprovalThatFailsOnTimeout_TheCauseIsPolicyApprovalTimeout()
    {
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);
        _f.Time = time;
        _f.UseModel((_, turn) => turn == 1 ? FakeModel.Call("refund", """{"key":"big"}""", "c1") : FakeModel.Text("done"));
        _f.AddTool("refund", ToolEffect.Write);
        _f.AddAgent(tools: "refund");
        _f.Definitions.Policies = new PolicySet
        {
            Rules =
            [
                new PolicyRule
                {
                    Name = "ask", Action = PolicyAction.RequireApproval, When = new PolicyConditions { Tools = ["refund"] },
                    Approval = new ApprovalSpec { Levels = [new(["ops"], TimeSpan.FromMinutes(30))], OnTimeout = ApprovalTimeoutAction.Fail },
                },
            ],
        };
        var engine = await _f.StartAsync();
        var id = (await engine.SubmitAsync(new RunRequest("a", "x"))).Run.Id;
        var waiting = await EngineFixture.WaitAsync(engine, id);
        Assert.Equal(RunStatus.Waiting, waiting.Status);

        // The engine's clock moves a minute at a time until the deadline's timer has fired and the run ended.
        var deadline = DateTime.UtcNow.AddSeconds(60);
        RunRecord run;
        while (!(run = (await engine.GetRunAsync(id))!).Status.IsTerminal())
        {
            Assert.True(DateTime.UtcNow < deadline, $"run {id} did not end after its approval's deadline: {run.Status}");
            time.Advance(TimeSpan.FromMinutes(1));
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }

        Assert.Equal((RunStatus.Failed, "approval-timeout"), (run.Status, run.Outcome));
        var failure = FailureOf(await engine.ReadJournalAsync(id));
        Assert.Equal(("policy", "approval-timeout", "tool:refund", waiting.WaitingFor!.Step), (failure.Cause, failure.Kind, failure.Dependency, failure.Step!.Value));
        Assert.Empty(_f.Keys);
    }

    [Fact]
    public async Task Policy_ADeny_TellsTheModelAndDoesNotFailTheRun()
    {
        _f.UseModel((msgs, turn) => turn == 1 ? FakeModel.Call("refund", """{"key":"big"}""", "c1") : FakeModel.Text("told: " + FakeModel.LastToolResult(msgs)));
        _f.AddTool("refund", ToolEffect.Write);
        _f.AddAgent(tools: "refund");
        _f.Definitions.Policies = new PolicySet { Rules = [new PolicyRule { Name = "no-refunds", Action = PolicyAction.Deny, When = new PolicyConditions { Tools = ["refund"] } }] };
        var engine = await _f.StartAsync();

        var run = await EngineFixture.WaitAsync(engine, (await engine.SubmitAsync(new RunRequest("a", "x"))).Run.Id);

        Assert.Equal(RunStatus.Succeeded, run.Status);
        Assert.Contains("denied by policy 'no-refunds'", run.Output);
        Assert.Empty(_f.Keys);
    }

    [Fact]
    public async Task Cancel_WhileTheModelIsCalled_TheCauseIsCanceled()
    {
        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var model = _f.UseModel((_, _) => FakeModel.Text("never"));
        model.BeforeAnswer = async (_, _, ct) =>
        {
            entered.TrySetResult();
            await Task.Delay(Timeout.Infinite, ct);
        };
        _f.AddAgent();
        var engine = await _f.StartAsync();
        var id = (await engine.SubmitAsync(new RunRequest("a", "x"))).Run.Id;
        await entered.Task.WaitAsync(TimeSpan.FromSeconds(20), TestContext.Current.CancellationToken);

        await engine.CancelAsync(id, actor: "ops", reason: "not needed");
        var run = await EngineFixture.WaitAsync(engine, id);

        Assert.Equal((RunStatus.Canceled, "canceled"), (run.Status, run.Outcome));
        var failure = FailureOf(await engine.ReadJournalAsync(id));
        Assert.Equal(("canceled", (string?)null, (string?)null), (failure.Cause, failure.Kind, failure.Dependency));
        Assert.Contains("canceled by ops: not needed", failure.Hint);
    }

    [Fact]
    public async Task Internal_TheRunsAgentIsNotDeployedHere_TheCauseIsInternal()
    {
        _f.AddAgent();
        var store = await _f.OpenStoreAsync();
        await store.SubmitAsync(new NewRun { Id = "run1", Agent = "gone", Input = "in", Started = new RunStarted("gone", "in"), CreatedAt = DateTimeOffset.UtcNow });
        var engine = await _f.StartAsync(store);

        var run = await EngineFixture.WaitAsync(engine, "run1");

        Assert.Equal(RunStatus.Failed, run.Status);
        Assert.Contains("'gone'", run.Error);
        var failure = FailureOf(await engine.ReadJournalAsync("run1"));
        Assert.Equal(("internal", 2L), (failure.Cause, failure.Step!.Value));
        Assert.Contains("deploy", failure.Hint);
    }

    [Fact]
    public async Task Loop_TheModelRepeatsASucceedingCall_TheCauseIsLoopNamingTheTool()
    {
        _f.UseModel((_, _) => FakeModel.Call("lookup", """{"key":"same"}"""));
        _f.AddTool("lookup", ToolEffect.Read);
        _f.AddAgent(loop: new LoopDetectionSettings { MaxRepeatedCalls = 3 }, tools: "lookup");
        var engine = await _f.StartAsync();

        var id = (await engine.SubmitAsync(new RunRequest("a", "x"))).Run.Id;
        var run = await EngineFixture.WaitAsync(engine, id);

        Assert.Equal((RunStatus.Failed, "loop"), (run.Status, run.Outcome));
        var failure = FailureOf(await engine.ReadJournalAsync(id));
        Assert.Equal(("loop", (string?)null, "tool:lookup"), (failure.Cause, failure.Kind, failure.Dependency));
        Assert.Contains("repeated itself", failure.Hint);
    }

    [Fact]
    public async Task FailureReport_GroupsByCauseAndDependency_CountingFirstAndLastSeen()
    {
        _f.UseModel((_, _) => throw new HttpRequestException("down", null, System.Net.HttpStatusCode.BadGateway), retry: new RetrySettings { MaxAttempts = 1 },
            breaker: new CircuitBreakerSettings { Enabled = false });
        _f.AddAgent();
        var engine = await _f.StartAsync();
        var ids = new List<string>();
        for (var i = 0; i < 3; i++)
        {
            var id = (await engine.SubmitAsync(new RunRequest("a", "x" + i))).Run.Id;
            await EngineFixture.WaitAsync(engine, id);
            ids.Add(id);
        }

        var groups = await FailureReport.ReadAsync(engine.Store, since: null, maxRuns: 100);

        var g = Assert.Single(groups);
        Assert.Equal(("model", "unavailable", "model:m", 3), (g.Cause, g.Kind, g.Dependency, g.Count));
        Assert.Equal(ids[^1], g.ExampleRun);
        Assert.True(g.FirstSeen <= g.LastSeen);
        Assert.Equal(2, g.ExampleStep); // the model call after run.started
        Assert.DoesNotContain(ids[^1], g.Signature); // the run id is taken out: the three runs' errors are one signature
        Assert.Equal(3, Assert.Single(g.ByDay!).Value);
        Assert.Empty(await FailureReport.ReadAsync(engine.Store, since: DateTimeOffset.UtcNow.AddMinutes(1), maxRuns: 100));
    }

    [Theory]
    [InlineData("model 'm' failed at turn 1 (run 01m96cebsmazh0dtyv, step 2): down", "model '…' failed at turn N (run <id>, step N): down")]
    [InlineData("tool 'x' timed out after 30.5 s (key 01m96cebsmazh0dtyv:7)", "tool '…' timed out after N s (key <id>:N)")]
    [InlineData("request 3f2504e0-4f89-11d3-9a0c-0305e82c3301 refused: \"quota\"", "request # refused: '…'")]
    [InlineData("", null)]
    public void Signature_TakesOutWhatVariesBetweenRuns(string error, string? expected) => Assert.Equal(expected, FailureReport.Signature(error));

    [Fact]
    public void Group_DifferentErrorsOfOneCause_AreDifferentGroups_ByDayCounted()
    {
        var day1 = new DateTimeOffset(2026, 12, 5, 10, 0, 0, TimeSpan.Zero);
        var day2 = day1.AddDays(1);
        (RunRecord, RunFailure) Failed(string id, DateTimeOffset at, string error) =>
            (new RunRecord { Id = id, Agent = "a", Status = RunStatus.Failed, Input = "", CreatedAt = at, UpdatedAt = at, Version = 3, Error = error },
             new RunFailure("tool", "error", 3, "tool:t", 1, "h"));
        var groups = FailureReport.Group([
            Failed("r1", day1, "tool 't' failed (run r1aaaaaaaaaaa1): disk full"),
            Failed("r2", day2, "tool 't' failed (run r2aaaaaaaaaaa2): disk full"),
            Failed("r3", day2, "tool 't' failed (run r3aaaaaaaaaaa3): permission denied"),
        ]);
        Assert.Equal(2, groups.Count);
        var full = groups.Single(g => g.Signature!.EndsWith("disk full", StringComparison.Ordinal));
        Assert.Equal((2, "r2"), (full.Count, full.ExampleRun));
        Assert.Equal([KeyValuePair.Create("2026-12-05", 1), KeyValuePair.Create("2026-12-06", 1)], full.ByDay!);
    }
}
