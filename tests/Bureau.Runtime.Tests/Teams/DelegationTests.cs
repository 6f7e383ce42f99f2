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

    public DelegationTests()
    {
        _f.UseModel((msgs, turn) =>
        {
            var agent = msgs.First(m => m.Role == ChatRole.System).Text["agent:".Length..];
            return _answers[agent](msgs, turn);
        });
    }

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
}
