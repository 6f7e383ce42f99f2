using Bureau.Engine;
using Bureau.Storage.Sqlite;
using Bureau.Tests.Support;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace Bureau.Tests.Engine;

/// <summary>
/// What the scheduler does when an execution throws instead of ending the run or leaving it waiting:
/// a store that cannot write holds the run until it can (no give-up, no restart); any other error is
/// retried with backoff a bounded number of times, then fails the run with the error.
/// </summary>
public sealed class ExecutorFaultTests : IAsyncDisposable
{
    private readonly EngineFixture _f = new();

    public ValueTask DisposeAsync() => _f.DisposeAsync();

    [Fact]
    public async Task StoreCannotWrite_RunHoldsPastEveryRetryCap_AndFinishesByItselfOnceTheStoreWrites()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        _f.Time = time;
        _f.AddAgent();
        var faulty = new FaultyStore(new SqliteRunStore(new SqliteStoreOptions { Path = _f.DbPath }));
        var asked = 0;
        _f.UseModel((_, _) =>
        {
            if (Interlocked.Increment(ref asked) == 1) faulty.Full = true; // the disk fills while the model answers: the answer cannot be journaled
            return FakeModel.Text("done");
        });
        _f.Configure = b => b.Services.AddSingleton<IRunStore>(faulty);
        var engine = await _f.StartAsync();
        var id = (await engine.SubmitAsync(new RunRequest("a", "x"))).Run.Id;

        await EngineFixture.UntilAsync(() => faulty.FailedAppends > 0);
        Assert.False(engine.StorageHealth.CanWrite);
        Assert.Equal(StorageFault.DiskFull, engine.StorageHealth.Fault);

        // Far past MaxExecutorErrors tries and the longest backoff: still unfinished, never failed.
        for (var i = 0; i < 40; i++)
        {
            time.Advance(TimeSpan.FromSeconds(10));
            await Task.Delay(10, TestContext.Current.CancellationToken);
        }
        Assert.True(faulty.FailedAppends > RunScheduler.MaxExecutorErrors, $"{faulty.FailedAppends} appends tried");
        Assert.Equal(RunStatus.Running, (await engine.GetRunAsync(id))!.Status);
        Assert.Equal(1, engine.RetryingRuns);

        // Space is back: the watch's probe sees it and the run goes on at once, from its journal.
        faulty.Full = false;
        var done = await AdvanceUntilAsync(time, engine, id);
        Assert.Equal((RunStatus.Succeeded, "done"), (done.Status, done.Output));
        Assert.True(engine.StorageHealth.CanWrite);
        Assert.Equal(0, engine.RetryingRuns);
        Assert.Single((await engine.ReadJournalAsync(id)).Select(r => r.Entry).OfType<RunFinished>());
    }

    [Fact]
    public async Task ExecutorKeepsThrowing_TriedWithBackoff_ThenTheRunFailsWithTheError()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        _f.Time = time;
        _f.AddAgent();
        _f.Configure = b => b.AddRunExecutor<BrokenKind>();
        var engine = await _f.StartAsync();
        BrokenKind.Calls = 0;
        var id = (await engine.SubmitAsync(new RunRequest("broken", "x", Kind: BrokenKind.Name))).Run.Id;

        await EngineFixture.UntilAsync(() => BrokenKind.Calls == 1);
        // The first retry waits about FirstRetryDelay (±20%), not less: nothing happens in 300 ms.
        time.Advance(TimeSpan.FromMilliseconds(300));
        await Task.Delay(100, TestContext.Current.CancellationToken);
        Assert.Equal(1, BrokenKind.Calls);

        var failed = await AdvanceUntilAsync(time, engine, id);
        Assert.Equal(RunScheduler.MaxExecutorErrors, BrokenKind.Calls);
        Assert.Equal((RunStatus.Failed, "error"), (failed.Status, failed.Outcome));
        Assert.Contains($"failed {RunScheduler.MaxExecutorErrors} times", failed.Error);
        Assert.Contains("the kind is broken", failed.Error);
        Assert.Contains(id, failed.Error);
        Assert.Equal(0, engine.RetryingRuns);
    }

    [Fact]
    public async Task ExecutorThrewOnce_WithABacklog_TheRetryGoesBeforeRunsNotStarted()
    {
        // Decision 0057: a run retried after an executor error continues work already started.
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        _f.Time = time;
        var order = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var (entered, release) = _f.AddHoldingTool();
        _f.Definitions.Add(new AgentDefinition { Name = "holder", Model = "m", Instructions = "agent:holder", Tools = ["hold"] });
        _f.Definitions.Add(new AgentDefinition { Name = "echo", Model = "m", Instructions = "agent:echo" });
        _f.UseModel((msgs, turn) =>
        {
            var agent = msgs.First(m => m.Role == Microsoft.Extensions.AI.ChatRole.System).Text["agent:".Length..];
            order.Enqueue(agent);
            return agent == "holder" && turn == 1 ? FakeModel.Call("hold", """{"key":"k"}""", "h1") : FakeModel.Text(agent + " done");
        });
        var flaky = new FlakyKind(order);
        _f.Configure = b => b.Services.AddSingleton<IRunExecutor>(flaky);
        _f.MaxConcurrentRuns = 1;
        var engine = await _f.StartAsync();

        var id = (await engine.SubmitAsync(new RunRequest("flaky", "x", Kind: FlakyKind.Name))).Run.Id;
        await EngineFixture.UntilAsync(() => flaky.Calls == 1); // threw; its retry waits out a backoff on the fake clock
        await engine.SubmitAsync(new RunRequest("holder", "hold the slot"));
        await entered.Task.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);
        var backlog = new List<string>();
        for (var i = 0; i < 3; i++) backlog.Add((await engine.SubmitAsync(new RunRequest("echo", $"e{i}"))).Run.Id);
        // Past the first backoff (0.4-0.6 s), a second at a time (the retry may start its wait late on a busy machine),
        // and well within the holding tool's 30 s timeout: the retry is ready while the slot is held.
        for (var i = 0; i < 10 && engine.ReadyRuns < backlog.Count + 1; i++)
        {
            time.Advance(TimeSpan.FromSeconds(1));
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }
        await EngineFixture.UntilAsync(() => engine.ReadyRuns == backlog.Count + 1);
        release.TrySetResult();

        foreach (var b in backlog) Assert.Equal(RunStatus.Succeeded, (await EngineFixture.WaitAsync(engine, b)).Status);
        Assert.Equal(RunStatus.Succeeded, (await EngineFixture.WaitAsync(engine, id)).Status);
        // The flaky run threw, the holder ran its two turns, the retry went next, then the backlog.
        Assert.Equal(["flaky", "holder", "holder", "flaky", "echo", "echo", "echo"], order.ToArray());
    }

    [Theory]
    [InlineData(1, 0.0, 400)]
    [InlineData(1, 1.0, 600)]
    [InlineData(2, 0.5, 1000)]
    [InlineData(7, 0.5, 30000)]
    [InlineData(40, 1.0, 36000)]
    public void RetryDelay_DoublesFromHalfASecond_CappedAt30s_WithJitter(int attempt, double random, double expectedMs)
    {
        Assert.Equal(expectedMs, RunScheduler.RetryDelay(attempt, random).TotalMilliseconds, 3);
    }

    private static async Task<RunRecord> AdvanceUntilAsync(FakeTimeProvider time, BureauEngine engine, string id)
    {
        for (var i = 0; i < 500; i++)
        {
            var run = (await engine.GetRunAsync(id))!;
            if (run.Status.IsTerminal()) return run;
            time.Advance(TimeSpan.FromSeconds(1));
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }
        throw new TimeoutException($"run {id} did not finish");
    }

    /// <summary>A run kind whose executor throws on its first call, then succeeds; each call is written to <c>order</c>.</summary>
    private sealed class FlakyKind(System.Collections.Concurrent.ConcurrentQueue<string> order) : IRunExecutor
    {
        public const string Name = "flaky";
        private int _calls;
        public int Calls => Volatile.Read(ref _calls);
        public string Kind => Name;
        public IReadOnlyCollection<string> Targets { get; } = ["flaky"];

        public async Task<RunStatus> ExecuteAsync(RunContext run)
        {
            order.Enqueue(Name);
            if (Interlocked.Increment(ref _calls) == 1) throw new InvalidOperationException("a passing fault");
            await run.AppendAsync([new RunFinished(RunStatus.Succeeded, "ok", null, null)], new RunUpdate { Status = RunStatus.Succeeded, Output = "ok" });
            return RunStatus.Succeeded;
        }
    }

    /// <summary>A run kind whose executor always throws (a bug in it).</summary>
    private sealed class BrokenKind : IRunExecutor
    {
        public const string Name = "broken";
        public static int Calls;
        public string Kind => Name;
        public IReadOnlyCollection<string> Targets { get; } = ["broken"];

        public Task<RunStatus> ExecuteAsync(RunContext run)
        {
            Interlocked.Increment(ref Calls);
            throw new InvalidOperationException("the kind is broken");
        }
    }
}

/// <summary>A store whose appends fail as on a full disk while <see cref="Full"/> is set; its probe works once it is cleared.</summary>
internal sealed class FaultyStore(IRunStore inner) : IRunStore
{
    private int _failedAppends;
    private volatile StorageHealth _health = StorageHealth.Ok;
    public volatile bool Full;
    public int FailedAppends => Volatile.Read(ref _failedAppends);
    public StorageHealth Health => _health;

    private StorageUnavailableException Fail()
    {
        var ex = new StorageUnavailableException(StorageFault.DiskFull, "faulty", "the store cannot write to faulty: the disk is full");
        _health = new StorageHealth(StorageFault.DiskFull, ex.Message, DateTimeOffset.UtcNow);
        return ex;
    }

    public ValueTask<StorageHealth> ProbeWriteAsync(CancellationToken cancellationToken = default)
    {
        if (Full) Fail();
        else _health = StorageHealth.Ok;
        return ValueTask.FromResult(_health);
    }

    public async ValueTask AppendAsync(AppendRequest request, CancellationToken cancellationToken = default)
    {
        if (Full)
        {
            Interlocked.Increment(ref _failedAppends);
            throw Fail();
        }
        await inner.AppendAsync(request, cancellationToken);
        _health = StorageHealth.Ok;
    }

    public Task InitializeAsync(CancellationToken cancellationToken = default) => inner.InitializeAsync(cancellationToken);
    public Task<SubmitResult> SubmitAsync(NewRun run, CancellationToken cancellationToken = default) => Full ? Task.FromException<SubmitResult>(Fail()) : inner.SubmitAsync(run, cancellationToken);
    public ValueTask MarkRunningAsync(string runId, DateTimeOffset at, CancellationToken cancellationToken = default) => inner.MarkRunningAsync(runId, at, cancellationToken);
    public Task<RunRecord?> GetRunAsync(string runId, CancellationToken cancellationToken = default) => inner.GetRunAsync(runId, cancellationToken);
    public Task<IReadOnlyList<JournalRecord>> ReadJournalAsync(string runId, long afterStep = 0, CancellationToken cancellationToken = default) => inner.ReadJournalAsync(runId, afterStep, cancellationToken);
    public Task<RunPage> ListRunsAsync(RunQuery query, CancellationToken cancellationToken = default) => inner.ListRunsAsync(query, cancellationToken);
    public Task<IReadOnlyList<string>> ClaimAsync(RunClaim claim, DateTimeOffset now, int limit, CancellationToken cancellationToken = default) => inner.ClaimAsync(claim, now, limit, cancellationToken);
    public Task<int> RenewClaimsAsync(RunClaim claim, CancellationToken cancellationToken = default) => inner.RenewClaimsAsync(claim, cancellationToken);
    public Task ReleaseClaimsAsync(string owner, CancellationToken cancellationToken = default) => inner.ReleaseClaimsAsync(owner, cancellationToken);
    public Task<IReadOnlyList<RunRecord>> ListDueWaitsAsync(DateTimeOffset now, int limit, CancellationToken cancellationToken = default) => inner.ListDueWaitsAsync(now, limit, cancellationToken);
    public Task<DateTimeOffset?> NextWaitDeadlineAsync(CancellationToken cancellationToken = default) => inner.NextWaitDeadlineAsync(cancellationToken);
    public ValueTask DisposeAsync() => inner.DisposeAsync();
}
