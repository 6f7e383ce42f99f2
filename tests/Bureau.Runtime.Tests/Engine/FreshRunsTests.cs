using Bureau.Engine;
using Bureau.Tests.Support;
using Microsoft.Extensions.AI;
using Xunit;

namespace Bureau.Tests.Engine;

/// <summary>
/// A run's first execution takes its row from the submission instead of reading it back, within a memory budget: runs
/// submitted beyond it are read from the store, and every run executes with its own input either way.
/// </summary>
public sealed class FreshRunsTests : IAsyncDisposable
{
    private readonly EngineFixture _f = new();

    public ValueTask DisposeAsync() => _f.DisposeAsync();

    [Fact]
    public async Task RunsBeyondTheMemoryBudget_AreReadFromTheStore_EveryRunGetsItsOwnInput()
    {
        var (entered, release) = _f.AddHoldingTool();
        _f.AddAgent("holder", tools: "hold");
        _f.AddAgent("echo");
        _f.UseModel((msgs, turn) =>
        {
            var input = msgs.First(m => m.Role == ChatRole.User).Text;
            if (input == "first") return turn == 1 ? FakeModel.Call("hold", """{"key":"k"}""", "c1") : FakeModel.Text("done");
            return FakeModel.Text($"{input.Length}:{input[..8]}");
        });
        _f.MaxConcurrentRuns = 1;
        var engine = await _f.StartAsync();

        var first = (await engine.SubmitAsync(new RunRequest("holder", "first"))).Run.Id;
        await entered.Task.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);
        // 1,000,000 characters (2 MB as UTF-16) each: the budget (16 MiB) keeps about 8 of the 12 queued behind the first.
        var inputs = Enumerable.Range(0, 12).Select(i => $"{i:D8}" + new string('x', 1_000_000 - 8)).ToArray();
        var ids = new List<string>();
        foreach (var input in inputs) ids.Add((await engine.SubmitAsync(new RunRequest("echo", input))).Run.Id);
        Assert.InRange(engine.Writer.FreshKept, 1, inputs.Length - 1);
        release.TrySetResult();

        Assert.Equal(RunStatus.Succeeded, (await EngineFixture.WaitAsync(engine, first)).Status);
        for (var i = 0; i < ids.Count; i++)
        {
            var run = await EngineFixture.WaitAsync(engine, ids[i]);
            Assert.Equal((RunStatus.Succeeded, $"1000000:{i:D8}"), (run.Status, run.Output));
        }
        Assert.Equal(0, engine.Writer.FreshKept);
    }
}
