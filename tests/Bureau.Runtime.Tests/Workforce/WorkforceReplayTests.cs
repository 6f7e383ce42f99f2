using Bureau.Replay;
using Bureau.Tests.Support;
using Xunit;

namespace Bureau.Tests.Workforce;

/// <summary>
/// A replay runs on the host's deployed definitions (POST /v1/runs/{id}/replay, the Dashboard's replay): those of a
/// workforce that delegates already hold the built-in <c>delegate</c> tool, which deploying them again must accept.
/// </summary>
public sealed class WorkforceReplayTests : IAsyncDisposable
{
    private readonly WorkforceHarness _h = new();

    public ValueTask DisposeAsync() => _h.DisposeAsync();

    [Fact]
    public async Task Replay_OnTheDeployedDefinitionsOfAWorkforceThatDelegates_ReproducesTheRun()
    {
        _h.Fixture.UseModel((messages, turn) => (messages[0].Text, turn) switch
        {
            ("triage", 1) => FakeModel.Call("delegate", """{"skill":"billing","task":"refund order 7 for alice"}""", "c1"),
            ("triage", _) => FakeModel.Text("passed on: " + FakeModel.LastToolResult(messages)),
            _ => FakeModel.Text("refunded order 7"),
        });
        _h.AddMember("triage", 1, delegates: true, "triage");
        _h.AddMember("billing", 1, delegates: false, "billing");
        var (engine, workforce, store) = await _h.StartAsync(dispatch: true);
        await workforce.SubmitAsync(new WorkforceTaskRequest("triage", "alice wants her money back for order 7", "t1", "api", "alice"));
        var task = await WorkforceHarness.UntilAsync(async () => (await store.GetAsync("t1"))!, t => t.IsFinished, "task t1 finished");
        Assert.Equal(WorkforceTaskStatus.Succeeded, task.Status);
        var journal = await engine.ReadJournalAsync(task.RunId!);
        Assert.Contains(journal, r => r.Entry is ToolIntent { Tool: "delegate" });

        var result = await new RunReplayer(engine.Definitions).ReplayAsync(task.RunId!, journal, TestContext.Current.CancellationToken);

        Assert.True(result.Reproduced, result.Divergence?.ToString());
        Assert.Equal(journal.Count, result.StepsReproduced);
    }

    [Fact]
    public async Task ATool_TheManifestNamesDelegate_IsStillRefused_WhenAMemberDelegates()
    {
        _h.Fixture.UseModel((_, _) => FakeModel.Text("ok"));
        _h.AddMember("triage", 1, delegates: true, "triage");
        _h.Fixture.Definitions.Add(new FunctionToolDefinition
        {
            Name = "delegate",
            Effect = ToolEffect.Read,
            Function = Microsoft.Extensions.AI.AIFunctionFactory.Create(() => "mine", "delegate"),
        });

        var ex = await Assert.ThrowsAnyAsync<InvalidOperationException>(() => _h.StartAsync(dispatch: false));
        Assert.Contains("a tool named 'delegate' is defined", ex.Message);
    }
}
