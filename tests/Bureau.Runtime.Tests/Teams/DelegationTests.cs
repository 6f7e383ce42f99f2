using System.Collections.Concurrent;
using Bureau.Tests.Support;
using Microsoft.Extensions.AI;
using Xunit;

namespace Bureau.Tests.Teams;

/// <summary>
/// An agent calling another agent as a tool: the callee runs as a child run, its answer is the call's
/// result, and it may use only the tools both it and its caller may use.
/// </summary>
public sealed class DelegationTests : IAsyncDisposable
{
    private readonly EngineFixture _f = new();
    private readonly ConcurrentDictionary<string, Func<IReadOnlyList<ChatMessage>, int, ChatResponse>> _answers = new();

    public DelegationTests() => _f.UseModel(Answer);

    /// <summary>Each agent's answers (its instructions name it); 10 input and 5 output tokens a call.</summary>
    private ChatResponse Answer(IReadOnlyList<ChatMessage> msgs, int turn) =>
        _answers[msgs.First(m => m.Role == ChatRole.System).Text["agent:".Length..]](msgs, turn);

    public ValueTask DisposeAsync() => _f.DisposeAsync();

    private void Agent(string name, Func<IReadOnlyList<ChatMessage>, int, ChatResponse> answer, string[]? tools = null, string[]? delegates = null)
    {
        _answers[name] = answer;
        _f.Definitions.Add(new AgentDefinition { Name = name, Model = "m", Instructions = "agent:" + name, Tools = tools ?? [], Delegates = delegates ?? [] });
    }

    private static async Task<RunRecord> FinishedAsync(BureauEngine engine, string id)
    {
        for (var i = 0; i < 400; i++)
        {
            var run = await EngineFixture.WaitAsync(engine, id);
            if (run.Status.IsTerminal()) return run;
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }
        throw new TimeoutException(id);
    }

    [Fact]
    public async Task Delegate_RunsAsAChildRun_ItsAnswerIsTheCallsResult()
    {
        Agent("researcher", (msgs, _) => FakeModel.Text("found: " + msgs.Last(m => m.Role == ChatRole.User).Text));
        Agent("lead", (msgs, turn) => turn == 1 ? FakeModel.Call("researcher", """{"task":"the refund policy"}""", "c1") : FakeModel.Text("lead says " + FakeModel.LastToolResult(msgs)), delegates: ["researcher"]);
        var engine = await _f.StartAsync();
        var id = (await engine.SubmitAsync(new RunRequest("lead", "question"))).Run.Id;

        var run = await FinishedAsync(engine, id);
        Assert.Equal((RunStatus.Succeeded, "lead says found: the refund policy"), (run.Status, run.Output));
        var journal = (await engine.ReadJournalAsync(id)).Select(r => r.Entry).ToList();
        var started = Assert.Single(journal.OfType<ChildRunStarted>());
        Assert.Equal(("researcher", "delegate:c1"), (started.Target, started.Label));
        var child = (await engine.GetRunAsync(started.ChildRunId))!;
        Assert.Equal((id, "agent:lead"), (child.ParentRunId, child.Actor));
        Assert.Single(journal.OfType<ChildRunFinished>());
    }

    /// <summary>
    /// A lead that hands one task to a researcher, looks something up, then answers (3 calls of its own, 45 tokens);
    /// the researcher looks up <paramref name="researcherLookups"/> times, then answers (15 tokens a call).
    /// </summary>
    private void LeadAndResearcher(AgentBudgets? leadBudgets = null, int researcherLookups = 0)
    {
        _f.AddTool("t", ToolEffect.Read);
        Agent("researcher", (_, turn) => turn <= researcherLookups ? FakeModel.Call("t", """{"key":"k"}""", $"r{turn}") : FakeModel.Text("found"), tools: ["t"]);
        _answers["lead"] = (_, turn) => turn switch
        {
            1 => FakeModel.Call("researcher", """{"task":"look it up"}""", "c1"),
            2 => FakeModel.Call("t", """{"key":"k"}""", "c2"),
            _ => FakeModel.Text("done"),
        };
        _f.Definitions.Add(new AgentDefinition
        {
            Name = "lead", Model = "m", Instructions = "agent:lead", Tools = ["t"], Delegates = ["researcher"], Budgets = leadBudgets ?? new AgentBudgets(),
        });
    }

    private static async Task<BudgetExceeded> ExceededAsync(BureauEngine engine, RunRecord run)
    {
        Assert.Equal((RunStatus.Failed, "budget"), (run.Status, run.Outcome));
        return (await engine.ReadJournalAsync(run.Id)).Select(r => r.Entry).OfType<BudgetExceeded>().Single();
    }

    [Fact]
    public async Task Delegate_ATeamsTokensAndCostIncludeWhatItsMembersDelegatesUsed()
    {
        _f.UseModel(Answer, price: new ModelPrice(1000, 2000)); // 15 tokens and 0.02 a call
        LeadAndResearcher();
        _f.Definitions.Add(new TeamDefinition { Name = "desk", Pattern = TeamPattern.Sequential, Members = ["lead"] });
        var engine = await _f.StartAsync();
        var team = await FinishedAsync(engine, (await engine.SubmitAsync(new RunRequest("desk", "q"))).Run.Id);

        Assert.Equal(RunStatus.Succeeded, team.Status);
        var lead = (await engine.ListRunsAsync(new RunQuery { ParentRunId = team.Id })).Items.Single();
        var researcher = (await engine.ListRunsAsync(new RunQuery { ParentRunId = lead.Id })).Items.Single();
        Assert.Equal((45L, 0.06), (lead.Usage.TotalTokens, lead.Cost)); // an agent's row: its own calls
        Assert.Equal((15L, 0.02), (researcher.Usage.TotalTokens, researcher.Cost));
        Assert.Equal((60L, 0.08), (team.Usage.TotalTokens, team.Cost)); // the team's: its member's and the member's delegate's
        var reported = (await engine.ReadJournalAsync(team.Id)).Select(r => r.Entry).OfType<ChildRunFinished>().Single();
        Assert.Equal((60L, 0.08), (reported.Usage!.TotalTokens, reported.Cost));
    }

    [Fact]
    public async Task Delegate_AnAgentsTokenBudgetCountsItsDelegates_ItStopsWhenTogetherTheyPassIt()
    {
        LeadAndResearcher(new AgentBudgets { MaxTokens = 40 });
        var engine = await _f.StartAsync();
        var lead = await FinishedAsync(engine, (await engine.SubmitAsync(new RunRequest("lead", "q"))).Run.Id);

        // 15 (the lead's first call) + 15 (the researcher) + 15 (the lead's look-up) = 45 > 40; its own 30 alone are not.
        var exceeded = await ExceededAsync(engine, lead);
        Assert.Equal(("tokens", 40.0, 45.0), (exceeded.Budget, exceeded.Limit, exceeded.Used));
        Assert.Equal(30, lead.Usage.TotalTokens); // its row still shows its own calls
    }

    [Fact]
    public async Task Delegate_ADelegateStartsWithWhatItsCallerHasLeft_AndIsStoppedByIt()
    {
        LeadAndResearcher(new AgentBudgets { MaxTokens = 40 }, researcherLookups: 2); // the researcher alone would use 45
        var engine = await _f.StartAsync();
        var lead = await FinishedAsync(engine, (await engine.SubmitAsync(new RunRequest("lead", "q"))).Run.Id);

        var researcher = (await engine.ListRunsAsync(new RunQuery { ParentRunId = lead.Id })).Items.Single();
        var exceeded = await ExceededAsync(engine, researcher); // started with 40 - 15 = 25 left
        Assert.Equal(("tokens", 25.0, 30.0), (exceeded.Budget, exceeded.Limit, exceeded.Used));
    }

    [Fact]
    public async Task Delegate_ATeamsTokenBudgetCountsItsMembersDelegates_TheNextMemberGetsOnlyWhatIsLeft()
    {
        LeadAndResearcher();
        Agent("writer", (_, turn) => turn == 1 ? FakeModel.Call("t", """{"key":"k"}""", "w1") : FakeModel.Text("written"), tools: ["t"]);
        _f.Definitions.Add(new TeamDefinition
        {
            Name = "desk", Pattern = TeamPattern.Sequential, Members = ["lead", "writer"], Budgets = new AgentBudgets { MaxTokens = 70 },
        });
        var engine = await _f.StartAsync();
        var team = await FinishedAsync(engine, (await engine.SubmitAsync(new RunRequest("desk", "q"))).Run.Id);

        // The lead's tree used 60 of 70: the writer starts with 10, not the 25 the lead's own calls alone would leave.
        Assert.Equal((RunStatus.Failed, "budget"), (team.Status, team.Outcome));
        var members = (await engine.ListRunsAsync(new RunQuery { ParentRunId = team.Id })).Items.OrderBy(r => r.CreatedAt).ToList();
        Assert.Equal(["lead", "writer"], members.Select(m => m.Agent));
        Assert.Equal(RunStatus.Succeeded, members[0].Status);
        var exceeded = await ExceededAsync(engine, members[1]);
        Assert.Equal(("tokens", 10.0, 15.0), (exceeded.Budget, exceeded.Limit, exceeded.Used));
    }

    [Fact]
    public async Task Delegate_MayUseOnlyTheToolsItsCallerMayUse()
    {
        _f.AddTool("lookup", ToolEffect.Read);
        _f.AddTool("refund", ToolEffect.Write);
        Agent("helper", (msgs, turn) => turn switch
        {
            1 => FakeModel.Call("refund", """{"key":"r"}""", "h1"),   // the caller may not refund: refused
            2 => FakeModel.Call("lookup", """{"key":"l"}""", "h2"),   // both may look up
            _ => FakeModel.Text("helper done: " + FakeModel.LastToolResult(msgs)),
        }, tools: ["lookup", "refund"]);
        Agent("lead", (msgs, turn) => turn == 1 ? FakeModel.Call("helper", """{"task":"go"}""", "c1") : FakeModel.Text("ok"), tools: ["lookup"], delegates: ["helper"]);
        var engine = await _f.StartAsync();
        var id = (await engine.SubmitAsync(new RunRequest("lead", "x"))).Run.Id;
        await FinishedAsync(engine, id);

        var childId = (await engine.ListRunsAsync(new RunQuery { ParentRunId = id })).Items.Single().Id;
        var child = (await engine.ReadJournalAsync(childId)).Select(r => r.Entry).ToList();
        var refused = Assert.Single(child.OfType<ToolCallRejected>());
        Assert.Equal("refund", refused.Tool);
        Assert.DoesNotContain(_f.Keys, k => k.StartsWith("refund|", StringComparison.Ordinal)); // never ran
        Assert.Contains(_f.Keys, k => k.StartsWith("lookup|", StringComparison.Ordinal));

        // Run on its own (not as a delegate), the helper may refund.
        var alone = (await engine.SubmitAsync(new RunRequest("helper", "y"))).Run.Id;
        await FinishedAsync(engine, alone);
        Assert.Contains(_f.Keys, k => k.StartsWith("refund|", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Delegate_WithoutATask_IsRejectedBackToTheModel()
    {
        Agent("researcher", (_, _) => FakeModel.Text("never"));
        Agent("lead", (msgs, turn) => turn == 1 ? FakeModel.Call("researcher", """{"topic":"x"}""", "c1") : FakeModel.Text("after: " + FakeModel.LastToolResult(msgs)), delegates: ["researcher"]);
        var engine = await _f.StartAsync();
        var run = await FinishedAsync(engine, (await engine.SubmitAsync(new RunRequest("lead", "x"))).Run.Id);
        Assert.Contains("invalid arguments for agent 'researcher'", run.Output);
        Assert.Empty((await engine.ListRunsAsync(new RunQuery { ParentRunId = run.Id })).Items);
    }

    /// <summary>Waits (generously) until the run ends; a delegation chain of many levels takes a while on a loaded machine.</summary>
    private static async Task<RunRecord> EndedAsync(BureauEngine engine, string id)
    {
        var deadline = DateTime.UtcNow.AddSeconds(120);
        while (true)
        {
            var run = (await engine.GetRunAsync(id))!;
            if (run.Status.IsTerminal()) return run;
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"run {id} is still {run.Status}");
            await Task.Delay(50, TestContext.Current.CancellationToken);
        }
    }

    /// <summary>Calls <paramref name="callee"/> first; once answered, says what it got back.</summary>
    private static Func<IReadOnlyList<ChatMessage>, int, ChatResponse> CallsThenReports(string self, string callee) => (msgs, turn) =>
        turn == 1 ? FakeModel.Call(callee, """{"task":"go deeper"}""", self + "-call") : FakeModel.Text(self + " got: " + FakeModel.LastToolResult(msgs));

    [Fact]
    public async Task Delegate_ADelegationIsALevelOfTheTree_ACallDeeperThanTheTeamAllowsIsRefusedToTheModel()
    {
        Agent("deep", (_, _) => FakeModel.Text("never"));
        Agent("helper", CallsThenReports("helper", "deep"), delegates: ["deep"]);
        Agent("lead", CallsThenReports("lead", "helper"), delegates: ["helper"]);
        _f.Definitions.Add(new TeamDefinition { Name = "desk", Pattern = TeamPattern.Sequential, Members = ["lead"], Limits = new TeamLimits { MaxDepth = 2 } });
        var engine = await _f.StartAsync();
        var team = await EndedAsync(engine, (await engine.SubmitAsync(new RunRequest("desk", "x"))).Run.Id);

        // desk -> lead (level 1) -> helper (level 2) -> deep (level 3): refused, and helper's model was told why.
        Assert.Equal(RunStatus.Succeeded, team.Status);
        var tree = (await engine.ListRunsAsync(new RunQuery { RootRunId = team.Id })).Items;
        Assert.Equal(["helper", "lead"], tree.Select(r => r.Agent).Order());
        var helper = tree.Single(r => r.Agent == "helper");
        var refused = (await engine.ReadJournalAsync(helper.Id)).Select(r => r.Entry).OfType<ToolCallRejected>().Single();
        Assert.Equal("deep", refused.Tool);
        Assert.Contains($"agent 'deep' was not called: agent 'helper' (run {helper.Id}) would start a run 3 levels below team 'desk' (run {team.Id}); its limits.maxDepth is 2", refused.Error);
        Assert.Contains("helper got: agent 'deep' was not called", team.Output);
    }

    [Fact]
    public async Task Delegate_AgentsThatCallEachOther_StopAtTheTreesDepthBound()
    {
        // A manifest refuses this loop; in C# the tree's own bound (16 levels) ends it.
        Agent("ping", CallsThenReports("ping", "pong"), delegates: ["pong"]);
        Agent("pong", CallsThenReports("pong", "ping"), delegates: ["ping"]);
        var engine = await _f.StartAsync();
        var root = await EndedAsync(engine, (await engine.SubmitAsync(new RunRequest("ping", "x"))).Run.Id);

        Assert.Equal(RunStatus.Succeeded, root.Status);
        var tree = (await engine.ListRunsAsync(new RunQuery { RootRunId = root.Id, Limit = 100 })).Items;
        Assert.Equal(16, tree.Count);
        Assert.All(tree, r => Assert.Equal(RunStatus.Succeeded, r.Status));
        Assert.Contains("may be at most 16 levels deep", root.Output);
    }

    /// <summary>
    /// With one run slot and a backlog, a delegating run's child and then the delegating run itself (woken by the child)
    /// execute before the backlog's runs that had not started (decision 0057): before, both went to the back of the queue.
    /// </summary>
    [Fact]
    public async Task WithABacklog_TheDelegateAndItsWokenCaller_GoBeforeRunsNotStarted()
    {
        var calls = new ConcurrentQueue<string>();
        var (entered, release) = _f.AddHoldingTool();
        Agent("holder", (_, turn) => turn == 1 ? FakeModel.Call("hold", """{"key":"k"}""", "h1") : FakeModel.Text("held"), tools: ["hold"]);
        Agent("researcher", (msgs, _) =>
        {
            calls.Enqueue("researcher");
            return FakeModel.Text("found");
        });
        Agent("lead", (msgs, turn) =>
        {
            calls.Enqueue("lead");
            return turn == 1 ? FakeModel.Call("researcher", """{"task":"look it up"}""", "c1") : FakeModel.Text("lead done");
        }, delegates: ["researcher"]);
        Agent("echo", (msgs, _) =>
        {
            calls.Enqueue("echo");
            return FakeModel.Text("echoed");
        });
        _f.MaxConcurrentRuns = 1;
        var engine = await _f.StartAsync();

        var holder = (await engine.SubmitAsync(new RunRequest("holder", "hold the slot"))).Run.Id;
        await entered.Task.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);
        var lead = (await engine.SubmitAsync(new RunRequest("lead", "question"))).Run.Id;
        var backlog = new List<string>();
        for (var i = 0; i < 5; i++) backlog.Add((await engine.SubmitAsync(new RunRequest("echo", $"e{i}"))).Run.Id);
        release.TrySetResult();

        Assert.Equal(RunStatus.Succeeded, (await FinishedAsync(engine, holder)).Status);
        Assert.Equal((RunStatus.Succeeded, "lead done"), ((await FinishedAsync(engine, lead)).Status, (await FinishedAsync(engine, lead)).Output));
        foreach (var id in backlog) Assert.Equal(RunStatus.Succeeded, (await FinishedAsync(engine, id)).Status);
        // The lead's first call, its delegate, the lead woken: all before the first run of the backlog.
        Assert.Equal(["lead", "researcher", "lead", "echo", "echo", "echo", "echo", "echo"], calls.ToArray());
    }
}
