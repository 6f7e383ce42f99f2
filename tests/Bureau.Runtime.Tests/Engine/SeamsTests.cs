using System.Collections.Concurrent;
using Bureau.Storage.Sqlite;
using Bureau.Tools;
using Bureau.Tests.Support;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace Bureau.Tests.Engine;

/// <summary>The runtime's seams: composition, run kinds, typed waits with deadlines, the storage lock.</summary>
public sealed class SeamsTests : IAsyncDisposable
{
    private readonly EngineFixture _f = new();

    public ValueTask DisposeAsync() => _f.DisposeAsync();

    [Fact]
    public async Task Compose_UseStorageSwapsTheStore_EveryAppendGoesThroughIt()
    {
        _f.AddAgent();
        _f.UseModel((_, _) => FakeModel.Text("done"));
        var counting = new CountingStore(new SqliteRunStore(new SqliteStoreOptions { Path = _f.DbPath }));
        _f.Configure = b => b.UseCountingStorage(counting);
        var engine = await _f.StartAsync();

        var run = await engine.SubmitAsync(new RunRequest("a", "x"));
        var done = await EngineFixture.WaitAsync(engine, run.Run.Id);

        Assert.Equal(RunStatus.Succeeded, done.Status);
        Assert.Same(counting, engine.Store);
        Assert.Equal(1, counting.Submits);
        Assert.True(counting.Appends >= 1, "the run's entries were appended through the store picked by Use*Storage");
    }

    [Fact]
    public async Task InDoubtWait_DeadlinePassesWithNoDecision_FiresOnceAndTheCallCountsAsFailed()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        _f.Time = time;
        _f.AddTool("ledger", ToolEffect.Write, inDoubtTimeout: TimeSpan.FromMinutes(10));
        _f.AddAgent(tools: "ledger");
        _f.UseModel((msgs, _) => FakeModel.Text("after: " + FakeModel.LastToolResult(msgs)));
        var store = await _f.OpenStoreAsync();
        await store.SubmitAsync(new NewRun { Id = "run1", Agent = "a", Input = "in", Started = new RunStarted("a", "in"), CreatedAt = time.GetUtcNow() });
        await store.AppendAsync(new AppendRequest
        {
            RunId = "run1", ExpectedVersion = 1, At = time.GetUtcNow(),
            Entries =
            [
                new ModelResponded(1, "fake", "custom", null, [new ToolCallRecord("c1", "ledger", """{"key":"k"}""")], new UsageRecord(1, 1), null, 2, 1),
                new ToolIntent("c1", "ledger", """{"key":"k"}""", ToolEffect.Write, "run1:3"),
            ],
            Update = new RunUpdate { Status = RunStatus.Running },
        });
        var engine = await _f.StartAsync(store);

        var waiting = await EngineFixture.WaitAsync(engine, "run1");
        Assert.Equal(RunStatus.Waiting, waiting.Status);
        Assert.Equal(time.GetUtcNow() + TimeSpan.FromMinutes(10), waiting.WaitingFor!.Deadline);

        time.Advance(TimeSpan.FromMinutes(9));
        Assert.Equal(RunStatus.Waiting, (await engine.GetRunAsync("run1"))!.Status);

        var finished = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var sub = engine.Events.Subscribe("run1", e => { if (e.Record?.Entry is RunFinished) finished.TrySetResult(); });
        time.Advance(TimeSpan.FromMinutes(1));
        await finished.Task.WaitAsync(TimeSpan.FromSeconds(20), TestContext.Current.CancellationToken);
        time.Advance(TimeSpan.FromHours(1)); // nothing left to fire

        var run = (await engine.GetRunAsync("run1"))!;
        var journal = await engine.ReadJournalAsync("run1");
        Assert.Equal(RunStatus.Succeeded, run.Status);
        var expired = Assert.Single(journal.Select(r => r.Entry).OfType<WaitExpired>());
        Assert.Equal((3L, "in-doubt"), (expired.Step, expired.Reason));
        Assert.Contains("deadline", Assert.Single(journal.Select(r => r.Entry).OfType<ToolCompleted>()).Content);
        Assert.StartsWith("after: ", run.Output);
        Assert.Empty(_f.Keys); // the write never ran again
    }

    [Fact]
    public async Task RunKind_SecondExecutorRegistered_RunsItsRunsWithATimerWait()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        _f.Time = time;
        _f.AddAgent();
        _f.Configure = b => b.AddRunExecutor<SleepKind>();
        var engine = await _f.StartAsync();

        var submitted = await engine.SubmitAsync(new RunRequest("nap", "5", Kind: SleepKind.Name));
        var waiting = await EngineFixture.WaitAsync(engine, submitted.Run.Id);
        Assert.Equal((RunStatus.Waiting, SleepKind.Name), (waiting.Status, waiting.Kind));
        Assert.IsType<TimerWait>(waiting.WaitingFor);

        var finished = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var sub = engine.Events.Subscribe(submitted.Run.Id, e => { if (e.Record?.Entry is RunFinished) finished.TrySetResult(); });
        time.Advance(TimeSpan.FromSeconds(5));
        await finished.Task.WaitAsync(TimeSpan.FromSeconds(20), TestContext.Current.CancellationToken);

        var run = (await engine.GetRunAsync(submitted.Run.Id))!;
        Assert.Equal((RunStatus.Succeeded, "slept 5s"), (run.Status, run.Output));
        await Assert.ThrowsAsync<UnknownAgentException>(() => engine.SubmitAsync(new RunRequest("other", "1", Kind: SleepKind.Name)));
        await Assert.ThrowsAsync<ArgumentException>(() => engine.SubmitAsync(new RunRequest("nap", "1", Kind: "nope")));
    }

    [Fact]
    public async Task Submit_EmptyInput_IsRefusedUnlessTheAgentAllowsIt()
    {
        _f.AddAgent();
        _f.Definitions.Add(new AgentDefinition { Name = "open", Model = "m", AllowEmptyInput = true });
        _f.UseModel((_, _) => FakeModel.Text("ok"));
        var engine = await _f.StartAsync();

        var ex = await Assert.ThrowsAsync<EmptyInputException>(() => engine.SubmitAsync(new RunRequest("a", "  ")));
        Assert.Contains("allowEmptyInput", ex.Message);
        Assert.Empty((await engine.ListRunsAsync(new RunQuery())).Items);
        Assert.True((await engine.SubmitAsync(new RunRequest("open", ""))).Created);
    }

    [Fact]
    public async Task Lock_SameDatabaseThroughASymlinkOrAHardLink_IsRefused()
    {
        var db = _f.DbPath;
        var dir = Path.GetDirectoryName(db)!;
        var symlink = Path.Combine(dir, "via-symlink.db");
        var hardlink = Path.Combine(dir, "via-hardlink.db");
        using (SqliteDatabaseLock.Acquire(db))
        {
            File.CreateSymbolicLink(symlink, db);
            Assert.Equal(0, Link(db, hardlink));
            Assert.Contains("in use by another Bureau engine", Assert.Throws<InvalidOperationException>(() => SqliteDatabaseLock.Acquire(symlink)).Message);
            Assert.Contains("in use by another Bureau engine", Assert.Throws<InvalidOperationException>(() => SqliteDatabaseLock.Acquire(hardlink)).Message);
            Assert.Throws<InvalidOperationException>(() => SqliteDatabaseLock.Acquire(Path.Combine(dir, ".", "bureau.db")));
            _ = File.ReadAllBytes(db); // other readers are not blocked by the lock
        }
        using var again = SqliteDatabaseLock.Acquire(hardlink); // released with the holder
    }

    [Fact]
    public async Task QueueTime_PastMaxQueueTime_ExpiresUnrunAndDoesNotCountAgainstWallTime()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        _f.Time = time;
        _f.Definitions.Add(new AgentDefinition { Name = "a", Model = "m", Budgets = new AgentBudgets { MaxQueueTime = TimeSpan.FromMinutes(1) } });
        _f.Definitions.Add(new AgentDefinition { Name = "b", Model = "m", Budgets = new AgentBudgets { MaxWallTime = TimeSpan.FromSeconds(5) } });
        var model = _f.UseModel((_, _) => FakeModel.Text("done"));
        var engine = await _f.StartAsync(start: false);
        var stale = (await engine.SubmitAsync(new RunRequest("a", "stale"))).Run.Id;
        var patient = (await engine.SubmitAsync(new RunRequest("b", "patient"))).Run.Id;

        time.Advance(TimeSpan.FromMinutes(2)); // both wait in the queue longer than b's wall-time budget
        await engine.StartAsync();

        var expired = await EngineFixture.WaitAsync(engine, stale);
        Assert.Equal((RunStatus.Failed, "expired"), (expired.Status, expired.Outcome));
        Assert.Contains("maxQueueTime", expired.Error);
        Assert.DoesNotContain((await engine.ReadJournalAsync(stale)).Select(r => r.Entry), e => e is ModelResponded);
        var ran = await EngineFixture.WaitAsync(engine, patient);
        Assert.Equal((RunStatus.Succeeded, "done"), (ran.Status, ran.Output)); // queue time is not wall time
        Assert.Equal(1, model.Calls);
    }

    [Fact]
    public async Task ToolPipeline_FiltersRunInStageOrder_AndADenyWithANoteIsJournaled()
    {
        var order = new ConcurrentQueue<string>();
        _f.AddTool("danger", ToolEffect.Read);
        _f.AddAgent(tools: "danger");
        _f.UseModel((msgs, turn) => turn == 1 ? FakeModel.Call("danger", """{"key":"k"}""") : FakeModel.Text("told: " + FakeModel.LastToolResult(msgs)));
        _f.Configure = b =>
        {
            b.Services.AddSingleton(order);
            b.AddToolFilter<RecordingTelemetryFilter>().AddToolFilter<DenyingPolicyFilter>();
        };
        var engine = await _f.StartAsync();

        var id = (await engine.SubmitAsync(new RunRequest("a", "x"))).Run.Id;
        var run = await EngineFixture.WaitAsync(engine, id);

        Assert.Equal(["policy"], order); // the policy answered first; later stages and the tool never ran
        Assert.Empty(_f.Keys);
        var result = Assert.Single((await engine.ReadJournalAsync(id)).Select(r => r.Entry).OfType<ToolCompleted>());
        Assert.True(result.IsError);
        Assert.Equal("denied by test policy", result.Content);
        Assert.Equal("policy rule 7", result.Note);
        Assert.Equal("told: denied by test policy", run.Output);
    }

    [Fact]
    public async Task ChatPipeline_ConfigureChatClients_WrapsEveryModelCall()
    {
        _f.AddAgent();
        _f.UseModel((_, _) => FakeModel.Text("done"));
        var counted = 0;
        _f.Configure = b => b.ConfigureChatClients((model, pipeline) =>
            pipeline.Use((messages, options, next, ct) => { Interlocked.Increment(ref counted); return next(messages, options, ct); }));
        var engine = await _f.StartAsync();

        var run = await EngineFixture.WaitAsync(engine, (await engine.SubmitAsync(new RunRequest("a", "x"))).Run.Id);

        Assert.Equal(RunStatus.Succeeded, run.Status);
        Assert.Equal(1, counted);
    }

    [Fact]
    public async Task Claims_RunWhoseLeaseLapsed_IsPickedUp_OneUnderALiveLeaseIsNot()
    {
        _f.AddAgent();
        _f.UseModel((_, _) => FakeModel.Text("done"));
        var store = await _f.OpenStoreAsync();
        var now = DateTimeOffset.UtcNow;
        await store.SubmitAsync(new NewRun { Id = "orphan", Agent = "a", Input = "o", Started = new RunStarted("a", "o"), CreatedAt = now, Claim = new RunClaim("dead-node", now.AddSeconds(-1)) });
        await store.SubmitAsync(new NewRun { Id = "held", Agent = "a", Input = "h", Started = new RunStarted("a", "h"), CreatedAt = now, Claim = new RunClaim("live-node", now.AddHours(1)) });

        var engine = await _f.StartAsync(store);
        var orphan = await EngineFixture.WaitAsync(engine, "orphan");
        await engine.StopAsync();

        Assert.Equal(RunStatus.Succeeded, orphan.Status);
        Assert.Equal(RunStatus.Queued, (await engine.GetRunAsync("held"))!.Status); // another node's live lease is respected
    }

    [Fact]
    public async Task Claims_NothingLeftUnclaimed_FinishingRunsDoNotQueryForMore_ALapsedLeaseIsStillPickedUpOnTime()
    {
        _f.AddAgent();
        _f.UseModel((_, _) => FakeModel.Text("done"));
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);
        _f.Time = time;
        var counting = new CountingStore(new SqliteRunStore(new SqliteStoreOptions { Path = _f.DbPath }));
        _f.Configure = b => b.UseCountingStorage(counting);
        var engine = await _f.StartAsync();
        var atStart = counting.Claims;

        // Twenty runs end one after another with the backlog low: each used to wake the claimer, a query in the writer.
        for (var i = 0; i < 20; i++)
            Assert.Equal(RunStatus.Succeeded, (await EngineFixture.WaitAsync(engine, (await engine.SubmitAsync(new RunRequest("a", $"r{i}"))).Run.Id)).Status);
        Assert.Equal(atStart, counting.Claims);

        // A run whose owner's lease lapsed (another node died) is claimed by the periodic claim, a third of the lease later.
        var now = time.GetUtcNow();
        await counting.SubmitAsync(new NewRun { Id = "orphan", Agent = "a", Input = "o", Started = new RunStarted("a", "o"), CreatedAt = now, Claim = new RunClaim("dead-node", now.AddSeconds(-1)) });
        time.Advance(TimeSpan.FromSeconds(11));
        Assert.Equal(RunStatus.Succeeded, (await EngineFixture.WaitAsync(engine, "orphan")).Status);
        Assert.True(counting.Claims > atStart);
    }

    private sealed class DenyingPolicyFilter(ConcurrentQueue<string> order) : IToolCallFilter
    {
        public ToolFilterStage Stage => ToolFilterStage.Policy;
        public ValueTask<ToolOutcome> InvokeAsync(ToolCall call, ToolCallHandler next)
        {
            order.Enqueue("policy");
            return ValueTask.FromResult(ToolOutcome.Error("denied by test policy") with { Note = "policy rule 7" });
        }
    }

    private sealed class RecordingTelemetryFilter(ConcurrentQueue<string> order) : IToolCallFilter
    {
        public ToolFilterStage Stage => ToolFilterStage.Telemetry;
        public ValueTask<ToolOutcome> InvokeAsync(ToolCall call, ToolCallHandler next)
        {
            order.Enqueue("telemetry");
            return next(call);
        }
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "link", SetLastError = true)]
    private static extern int Link(string oldPath, string newPath);

    /// <summary>A run kind that sleeps its input's seconds on a durable timer, then succeeds.</summary>
    private sealed class SleepKind : IRunExecutor
    {
        public const string Name = "sleep";
        public string Kind => Name;
        public IReadOnlyCollection<string> Targets { get; } = ["nap"];

        public async Task<RunStatus> ExecuteAsync(RunContext run)
        {
            if (run.Journal.Any(r => r.Entry is WaitExpired))
            {
                var output = $"slept {run.Run.Input}s";
                await run.AppendAsync([new RunFinished(RunStatus.Succeeded, output, null, null)], new RunUpdate { Status = RunStatus.Succeeded, Output = output });
                return RunStatus.Succeeded;
            }
            var wait = new TimerWait { Step = run.Version + 1, Deadline = run.Time.GetUtcNow().AddSeconds(int.Parse(run.Run.Input, System.Globalization.CultureInfo.InvariantCulture)) };
            await run.AppendAsync([new RunWaiting(wait)], new RunUpdate { Status = RunStatus.Waiting, WaitingFor = wait });
            return RunStatus.Waiting;
        }
    }
}

/// <summary>A store decorator that counts what goes through it.</summary>
internal sealed class CountingStore(IRunStore inner) : IRunStore
{
    private int _submits;
    private int _appends;
    public int Submits => _submits;
    public int Appends => _appends;
    public Task InitializeAsync(CancellationToken cancellationToken = default) => inner.InitializeAsync(cancellationToken);
    public Task<SubmitResult> SubmitAsync(NewRun run, CancellationToken cancellationToken = default) { Interlocked.Increment(ref _submits); return inner.SubmitAsync(run, cancellationToken); }
    /// <summary>Runs after each append the inner store committed (a test's hook into a race).</summary>
    public Func<AppendRequest, Task>? AfterAppend { get; set; }

    /// <summary>Runs before each point read of a run (a test's hook into a race).</summary>
    public Func<string, Task>? BeforeGetRun { get; set; }

    public async ValueTask AppendAsync(AppendRequest request, CancellationToken cancellationToken = default)
    {
        Interlocked.Increment(ref _appends);
        await inner.AppendAsync(request, cancellationToken);
        if (AfterAppend is { } after) await after(request);
    }
    public ValueTask MarkRunningAsync(string runId, DateTimeOffset at, CancellationToken cancellationToken = default) => inner.MarkRunningAsync(runId, at, cancellationToken);
    public async Task<RunRecord?> GetRunAsync(string runId, CancellationToken cancellationToken = default)
    {
        if (BeforeGetRun is { } before) await before(runId);
        return await inner.GetRunAsync(runId, cancellationToken);
    }
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, int> _entriesRead = new(StringComparer.Ordinal);

    /// <summary>How many journal entries of <paramref name="runId"/> reads have returned.</summary>
    public int EntriesRead(string runId) => _entriesRead.GetValueOrDefault(runId);

    /// <summary>Runs after each journal read, before its (by then possibly stale) records are returned (a test's hook into a race).</summary>
    public Func<string, Task>? AfterReadJournal { get; set; }

    public async Task<IReadOnlyList<JournalRecord>> ReadJournalAsync(string runId, long afterStep = 0, CancellationToken cancellationToken = default)
    {
        var records = await inner.ReadJournalAsync(runId, afterStep, cancellationToken);
        _entriesRead.AddOrUpdate(runId, records.Count, (_, n) => n + records.Count);
        if (AfterReadJournal is { } after) await after(runId);
        return records;
    }

    public Task<RunPage> ListRunsAsync(RunQuery query, CancellationToken cancellationToken = default) => inner.ListRunsAsync(query, cancellationToken);
    private int _claims;
    public int Claims => _claims;
    public Task<IReadOnlyList<string>> ClaimAsync(RunClaim claim, DateTimeOffset now, int limit, CancellationToken cancellationToken = default) { Interlocked.Increment(ref _claims); return inner.ClaimAsync(claim, now, limit, cancellationToken); }
    public Task<int> RenewClaimsAsync(RunClaim claim, CancellationToken cancellationToken = default) => inner.RenewClaimsAsync(claim, cancellationToken);
    public Task ReleaseClaimsAsync(string owner, CancellationToken cancellationToken = default) => inner.ReleaseClaimsAsync(owner, cancellationToken);
    public Task<IReadOnlyList<RunRecord>> ListDueWaitsAsync(DateTimeOffset now, int limit, CancellationToken cancellationToken = default) => inner.ListDueWaitsAsync(now, limit, cancellationToken);
    public Task<DateTimeOffset?> NextWaitDeadlineAsync(CancellationToken cancellationToken = default) => inner.NextWaitDeadlineAsync(cancellationToken);
    public ValueTask DisposeAsync() => inner.DisposeAsync();
}

/// <summary>A storage provider's registration, as a third-party package would write it.</summary>
internal static class CountingStorageExtensions
{
    public static TBuilder UseCountingStorage<TBuilder>(this TBuilder builder, CountingStore store) where TBuilder : IBureauBuilder
    {
        builder.Services.AddSingleton<IRunStore>(store);
        return builder;
    }
}
