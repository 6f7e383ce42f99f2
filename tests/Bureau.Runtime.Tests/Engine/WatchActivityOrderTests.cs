using Bureau.Storage.Sqlite;
using Bureau.Tests.Support;
using Xunit;

namespace Bureau.Tests.Engine;

/// <summary>
/// A watcher that subscribes while a run moves on (docs/api.md, "Watch a run": the stream first replays the journal,
/// then follows live): the activity in flight when it caught up comes after the journal entries before it, never
/// ahead of them, and no activity older than it comes after it.
/// </summary>
public sealed class WatchActivityOrderTests : IAsyncDisposable
{
    private readonly EngineFixture _f = new();

    public ValueTask DisposeAsync() => _f.DisposeAsync();

    [Fact]
    public async Task RunMovingOnWhileTheWatcherReadsTheJournal_TheCurrentActivityComesAfterTheEntriesBeforeIt()
    {
        var modelMayAnswer = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var toolMayAnswer = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var model = _f.UseModel((_, turn) => turn == 1 ? FakeModel.Call("look", """{"key":"k"}""", "c1") : FakeModel.Text("done"));
        model.BeforeAnswer = (_, turn, ct) => turn == 1 ? modelMayAnswer.Task.WaitAsync(ct) : Task.CompletedTask;
        _f.AddTool("look", ToolEffect.Read, async (key, ct) => { await toolMayAnswer.Task.WaitAsync(ct); return "found " + key; });
        _f.AddAgent("a", tools: ["look"]);
        var store = new CountingStore(new SqliteRunStore(new SqliteStoreOptions { Path = _f.DbPath }));
        var engine = await _f.StartAsync(store);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        deadline.CancelAfter(TimeSpan.FromSeconds(30));

        var run = (await engine.SubmitAsync(new RunRequest("a", "go"), deadline.Token)).Run;
        await UntilAsync(() => engine.Events.CurrentActivity(run.Id)?.Activity == "model.started", deadline.Token);

        // The watcher's first read sees step 1 only; before it goes on, the model answers (step 2) and the tool starts.
        var armed = 1;
        store.AfterReadJournal = async id =>
        {
            if (id != run.Id || Interlocked.Exchange(ref armed, 0) == 0) return;
            modelMayAnswer.SetResult();
            await UntilAsync(() => engine.Events.CurrentActivity(run.Id)?.Activity == "tool.started", deadline.Token);
        };

        var seen = new List<string>();
        await foreach (var e in engine.WatchAsync(run.Id, includeActivity: true, cancellationToken: deadline.Token))
        {
            seen.Add(e.Record is { } r ? $"{r.N} {r.Entry.Kind}" : e.Activity!);
            if (e.Activity == "tool.started") toolMayAnswer.TrySetResult();
        }

        Assert.Equal(["1 run.started", "2 model.response", "tool.started"], seen.Take(3).ToArray());
        var steps = seen.Where(s => char.IsDigit(s[0])).Select(s => int.Parse(s.Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture)).ToList();
        Assert.Equal(Enumerable.Range(1, steps.Count), steps);   // every entry once, in order
        Assert.Equal("run.finished", seen.Last(s => char.IsDigit(s[0])).Split(' ')[1]);
    }

    private static async Task UntilAsync(Func<bool> condition, CancellationToken ct)
    {
        while (!condition()) await Task.Delay(10, ct);
    }
}
