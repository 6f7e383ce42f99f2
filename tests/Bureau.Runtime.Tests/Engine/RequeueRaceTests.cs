using Bureau.Tests.Support;
using Xunit;

namespace Bureau.Tests.Engine;

/// <summary>
/// A run answered at the very moment its executor is returning after it started waiting (what a child
/// run ending, or a quick approver, does) must run again: the requeue races the end of the execution,
/// hundreds of times, and no run may be left queued with nobody executing it.
/// </summary>
public sealed class RequeueRaceTests : IAsyncDisposable
{
    private readonly EngineFixture _f = new();

    public ValueTask DisposeAsync() => _f.DisposeAsync();

    [Fact]
    public async Task AnsweredWhileItsExecutorReturns_EveryRunGoesOn()
    {
        const int runs = 200, rounds = 3;
        _f.AddAgent();
        _f.Configure = b => b.AddRunExecutor<RelayKind>();
        var engine = await _f.StartAsync();
        using var sub = engine.Events.SubscribeAll(e =>
        {
            // Answer as soon as the wait is journaled: the executor has not returned yet.
            if (e.Record?.Entry is RunWaiting { WaitingFor: ExternalEventWait w })
                _ = Task.Run(() => engine.AnswerWaitAsync(e.RunId, w.Step, "go", "test"));
        });
        var ids = new List<string>();
        for (var i = 0; i < runs; i++) ids.Add((await engine.SubmitAsync(new RunRequest("relay", $"{i}", Kind: RelayKind.Name))).Run.Id);

        var deadline = DateTime.UtcNow.AddSeconds(60);
        foreach (var id in ids)
        {
            RunRecord run;
            while (!(run = (await engine.GetRunAsync(id))!).Status.IsTerminal())
            {
                Assert.True(DateTime.UtcNow < deadline, $"run {id} is stranded: {run.Status} at step {run.Version}");
                await Task.Delay(10, TestContext.Current.CancellationToken);
            }
            Assert.Equal(RunStatus.Succeeded, run.Status);
            Assert.Equal($"relayed {rounds} times", run.Output);
        }
    }

    /// <summary>Waits for an outside answer three times, then succeeds.</summary>
    private sealed class RelayKind : IRunExecutor
    {
        public const string Name = "relay";
        public string Kind => Name;
        public IReadOnlyCollection<string> Targets { get; } = ["relay"];

        public async Task<RunStatus> ExecuteAsync(RunContext run)
        {
            var answered = run.Journal.Count(r => r.Entry is WaitAnswered);
            if (answered >= 3)
            {
                var output = $"relayed {answered} times";
                await run.AppendAsync([new RunFinished(RunStatus.Succeeded, output, null, null)], new RunUpdate { Status = RunStatus.Succeeded, Output = output });
                return RunStatus.Succeeded;
            }
            var wait = new ExternalEventWait { Step = run.Version + 1, EventName = "go" };
            await run.AppendAsync([new RunWaiting(wait)], new RunUpdate { Status = RunStatus.Waiting, WaitingFor = wait });
            return RunStatus.Waiting;
        }
    }
}
