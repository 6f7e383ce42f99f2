using Bureau.Storage.PostgreSql;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Xunit;

namespace Bureau.Storage.PostgreSql.Tests;

/// <summary>
/// A model that counts the calls in flight at once across every node that uses it, and holds each call until the test lets
/// one go (<see cref="Release"/>): the executions of its agent's runs, wherever they execute.
/// </summary>
internal sealed class HeldModel : IChatClient
{
    private readonly SemaphoreSlim _go = new(0);
    private int _inFlight;
    private int _most;
    private int _calls;
    private readonly System.Collections.Concurrent.ConcurrentQueue<string> _started = new();

    /// <summary>The input of each call, in the order the calls started.</summary>
    public IReadOnlyList<string> Started => [.. _started];

    /// <summary>Calls in flight now.</summary>
    public int InFlight => Volatile.Read(ref _inFlight);

    /// <summary>The most calls that were in flight at the same time.</summary>
    public int MostAtOnce => Volatile.Read(ref _most);

    /// <summary>Calls that started.</summary>
    public int Calls => Volatile.Read(ref _calls);

    /// <summary>Lets one held call answer.</summary>
    public void Release() => _go.Release();

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        Interlocked.Increment(ref _calls);
        _started.Enqueue(messages.Last(m => m.Role == ChatRole.User).Text);
        var now = Interlocked.Increment(ref _inFlight);
        int seen;
        while (now > (seen = Volatile.Read(ref _most)) && Interlocked.CompareExchange(ref _most, now, seen) != seen) { }
        try
        {
            await _go.WaitAsync(cancellationToken);
            return new ChatResponse(new ChatMessage(ChatRole.Assistant, "done"));
        }
        finally
        {
            Interlocked.Decrement(ref _inFlight);
        }
    }

    public IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
        throw new NotSupportedException();

    public object? GetService(Type serviceType, object? serviceKey = null) => null;

    public void Dispose() { }
}

/// <summary>The warnings the engine logged (event id and message), to wait for one.</summary>
internal sealed class WarningLog : ILoggerProvider, ILogger
{
    private readonly System.Collections.Concurrent.ConcurrentQueue<(int Id, string Message)> _entries = new();

    public IReadOnlyCollection<(int Id, string Message)> Entries => _entries;

    public ILogger CreateLogger(string categoryName) => this;

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Warning;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (IsEnabled(logLevel)) _entries.Enqueue((eventId.Id, formatter(state, exception)));
    }

    public void Dispose() { }
}

/// <summary>
/// Per-agent concurrency limits on PostgreSQL hold across the nodes that share the schema (decision 0056): the agent's
/// slots are counted in the store, leased to the node executing, and free again once a dead node's lease lapses.
/// </summary>
public sealed class AgentSlotsOnPostgreSqlTests : IAsyncDisposable
{
    private readonly PostgreSqlTestDatabase _db = new();
    private readonly List<ServiceProvider> _providers = [];
    private readonly HeldModel _model = new();
    private readonly WarningLog _log = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask DisposeAsync()
    {
        for (var i = 0; i < 1000 && _model.InFlight > 0; i++) _model.Release(); // let held calls end before the engines stop
        foreach (var p in _providers) await p.DisposeAsync();
        await _db.DisposeAsync();
    }

    /// <summary>A node: an engine on the shared schema, with the agent "limited" (at most 2 executions at once) on the held model.</summary>
    private async Task<BureauEngine> StartNodeAsync(string node, int limit = 2)
    {
        var services = new ServiceCollection();
        services.AddLogging(l => l.AddProvider(_log));
        services.AddBureau(o =>
        {
            o.NodeId = node;
            o.MaxConcurrentRuns = 8; // the node's global limit is not what holds the agent back
        })
            .AddChatClient("held", _model)
            .AddAgent(new AgentDefinition { Name = "limited", Model = "held", MaxConcurrentRuns = limit })
            .UsePostgreSqlStorage(o =>
            {
                o.ConnectionString = _db.ConnectionString;
                o.Schema = _db.Schema;
            });
        var provider = services.BuildServiceProvider();
        _providers.Insert(0, provider);
        await provider.GetRequiredService<IRunStore>().InitializeAsync(Ct);
        var engine = provider.GetRequiredService<BureauEngine>();
        await engine.StartAsync(Ct);
        return engine;
    }

    private static async Task WaitForAsync(Func<bool> condition, string what, Func<Task>? refresh = null)
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (true)
        {
            if (refresh is not null) await refresh();
            if (condition()) return;
            Assert.True(DateTime.UtcNow < deadline, $"not within 60 s: {what}");
            await Task.Delay(20, Ct);
        }
    }

    [Fact]
    public async Task MaxConcurrentRuns_TwoNodes_AtMostTheLimitExecuteAtOnceAcrossBoth_AndEveryRunFinishes()
    {
        var a = await StartNodeAsync("node-a");
        var b = await StartNodeAsync("node-b");
        // Each node accepts (and so executes) half of the runs: alone, each would let 2 execute at once.
        var runs = new List<(BureauEngine Node, string Id)>();
        for (var i = 0; i < 8; i++)
        {
            var node = i % 2 == 0 ? a : b;
            runs.Add((node, (await node.SubmitAsync(new RunRequest("limited", "r" + i), Ct)).Run.Id));
        }

        // Each round: the agent's 2 slots are taken (by either node), then one execution is let go, and a waiting run takes its slot.
        for (var released = 0; released < runs.Count; released++)
        {
            var expected = Math.Min(2, runs.Count - released);
            await WaitForAsync(() => _model.InFlight >= expected, $"{expected} executions in flight after {released} let go");
            Assert.True(_model.MostAtOnce <= 2, $"{_model.MostAtOnce} executions of the agent were in flight at once across the two nodes; its limit is 2");
            _model.Release();
        }

        foreach (var (node, id) in runs)
        {
            var run = await node.WaitAsync(id).WaitAsync(TimeSpan.FromSeconds(60), Ct);
            Assert.Equal((RunStatus.Succeeded, "done"), (run.Status, run.Output));
        }
        Assert.Equal(2, _model.MostAtOnce);
        Assert.Equal(runs.Count, _model.Calls);
        // Every slot was given back: the store holds none of the agent's.
        await using var db = new PostgreSqlDatabase(_db.Options);
        Assert.Empty(await new PostgreSqlAgentSlots(db).ListAsync("limited", DateTimeOffset.UtcNow, Ct));
    }

    /// <summary>Takes a slot at <paramref name="at"/>: held for 15 s, or waiting for 5 s when refused.</summary>
    private static Task<bool> TakeAsync(PostgreSqlAgentSlots slots, string agent, string runId, int limit, string owner, DateTimeOffset at) =>
        slots.TryAcquireAsync(agent, runId, limit, owner, at, at.AddSeconds(15), at.AddSeconds(5), Ct);

    [Fact]
    public async Task MaxConcurrentRuns_ANodeWithABacklog_DoesNotKeepTheSlotFromARunWaitingOnAnotherNode()
    {
        var a = await StartNodeAsync("node-a", limit: 1);
        var b = await StartNodeAsync("node-b", limit: 1);
        var runs = new List<(BureauEngine Node, string Id)>();
        for (var i = 1; i <= 4; i++) runs.Add((a, (await a.SubmitAsync(new RunRequest("limited", "a" + i), Ct)).Run.Id));
        await WaitForAsync(() => _model.InFlight == 1, "node a executing its first run");

        // Node b's run asks for the slot while node a holds it, and waits for it in the store.
        runs.Add((b, (await b.SubmitAsync(new RunRequest("limited", "b1"), Ct)).Run.Id));
        await using var db = new PostgreSqlDatabase(_db.Options);
        var slots = new PostgreSqlAgentSlots(db);
        var bWaits = false;
        await WaitForAsync(() => bWaits, "node b's run waiting for the agent's slot", async () =>
            bWaits = (await slots.ListAsync("limited", DateTimeOffset.UtcNow, Ct)).Any(s => s.RunId == runs[^1].Id && !s.Held));

        // Node a's execution ends; its next runs are right there, but b1 asked first: b1 executes next.
        for (var released = 0; released < runs.Count; released++)
        {
            await WaitForAsync(() => _model.InFlight == 1, $"the next execution after {released} let go");
            _model.Release();
        }
        foreach (var (node, id) in runs) Assert.Equal(RunStatus.Succeeded, (await node.WaitAsync(id).WaitAsync(TimeSpan.FromSeconds(60), Ct)).Status);
        Assert.Equal("b1", _model.Started[1]);
        Assert.Equal(1, _model.MostAtOnce);
    }

    [Fact]
    public async Task Slots_OfANodeThatDied_AreFreeOnceTheirLeaseLapses_AndRenewedOnesAreNot()
    {
        await using var db = new PostgreSqlDatabase(_db.Options);
        var slots = new PostgreSqlAgentSlots(db);
        var t0 = new DateTimeOffset(2026, 12, 7, 9, 0, 0, TimeSpan.Zero);
        var lease = TimeSpan.FromSeconds(15);

        Assert.True(await TakeAsync(slots, "limited", "r1", 2, "node-dead", t0));
        Assert.True(await TakeAsync(slots, "limited", "r2", 2, "node-alive", t0));
        Assert.False(await TakeAsync(slots, "limited", "r3", 2, "node-alive", t0.AddSeconds(1))); // both taken
        Assert.True(await TakeAsync(slots, "other", "r3", 1, "node-alive", t0.AddSeconds(1))); // per agent

        // The living node renews its slot; the dead one does not. Once the dead one's lease lapses, its slot is free.
        await slots.RenewAsync("node-alive", ["r2"], t0.AddSeconds(10) + lease, Ct);
        Assert.False(await TakeAsync(slots, "limited", "r3", 2, "node-alive", t0.AddSeconds(14)));
        Assert.True(await TakeAsync(slots, "limited", "r3", 2, "node-alive", t0.AddSeconds(16)));
        Assert.Equal(
            [("r2", "node-alive"), ("r3", "node-alive")],
            (await slots.ListAsync("limited", t0.AddSeconds(16), Ct)).Where(s => s.Held).Select(s => (s.RunId, s.Owner)));

        // A slot given back is free at once; a run already holding one takes it again (a retried execution).
        await slots.ReleaseAsync("limited", "r2", "node-alive", Ct);
        Assert.True(await TakeAsync(slots, "limited", "r3", 2, "node-alive", t0.AddSeconds(17)));
        Assert.True(await TakeAsync(slots, "limited", "r4", 2, "node-alive", t0.AddSeconds(17)));
        Assert.False(await TakeAsync(slots, "limited", "r5", 2, "node-alive", t0.AddSeconds(17)));

        // A node starting again under its id holds nothing.
        await slots.ReleaseAllAsync("node-alive", Ct);
        Assert.Empty(await slots.ListAsync("limited", t0.AddSeconds(17), Ct));
    }

    [Fact]
    public async Task Slots_AFreedSlotGoesToTheRunWaitingLongest_NotToALaterAskerOfTheNodeThatFreedIt()
    {
        await using var db = new PostgreSqlDatabase(_db.Options);
        var slots = new PostgreSqlAgentSlots(db);
        var t0 = new DateTimeOffset(2026, 12, 7, 9, 0, 0, TimeSpan.Zero);
        Assert.True(await TakeAsync(slots, "limited", "a1", 1, "node-a", t0));
        Assert.False(await TakeAsync(slots, "limited", "b1", 1, "node-b", t0.AddSeconds(1))); // b1 waits from t0+1

        // Node a frees its slot and asks again at once for its next run: b1, waiting longer, is ahead of it.
        await slots.ReleaseAsync("limited", "a1", "node-a", Ct);
        Assert.False(await TakeAsync(slots, "limited", "a2", 1, "node-a", t0.AddSeconds(2)));
        Assert.True(await TakeAsync(slots, "limited", "b1", 1, "node-b", t0.AddSeconds(3))); // b1's next try (a poll) takes it
        Assert.Equal([("a2", false), ("b1", true)], (await slots.ListAsync("limited", t0.AddSeconds(3), Ct)).Select(s => (s.RunId, s.Held)));

        // a2 keeps its place while it tries again; it goes next.
        await slots.ReleaseAsync("limited", "b1", "node-b", Ct);
        Assert.False(await TakeAsync(slots, "limited", "b2", 1, "node-b", t0.AddSeconds(4)));
        Assert.True(await TakeAsync(slots, "limited", "a2", 1, "node-a", t0.AddSeconds(5)));

        // A waiting run that stops trying (its node died, or it is no longer asked for) holds nobody back once its wait lapses.
        await slots.ReleaseAsync("limited", "a2", "node-a", Ct);
        Assert.False(await TakeAsync(slots, "limited", "a3", 1, "node-a", t0.AddSeconds(6))); // b2 (t0+4) is ahead until t0+9
        Assert.True(await TakeAsync(slots, "limited", "a3", 1, "node-a", t0.AddSeconds(10)));
    }

    [Fact]
    public async Task Slots_TakenAtOnceByManyNodes_NeverExceedTheLimit()
    {
        await using var db = new PostgreSqlDatabase(_db.Options);
        var slots = new PostgreSqlAgentSlots(db);
        var now = DateTimeOffset.UtcNow;
        // 12 takers on their own connections race for 3 slots.
        var taken = await Task.WhenAll(Enumerable.Range(0, 12).Select(i =>
            Task.Run(() => TakeAsync(slots, "limited", "r" + i, 3, "node-" + (i % 4), now), Ct)));
        Assert.Equal(3, taken.Count(t => t));
        Assert.Equal(3, (await slots.ListAsync("limited", now, Ct)).Count(s => s.Held));
    }

    [Fact]
    public async Task MaxConcurrentRuns_SlotsHeldByANodeThatDied_BlockTheAgentUntilTheirLeaseLapses()
    {
        // A node took both slots of the agent and died: nothing renews them. Their lease lapses a few seconds from now.
        var lapses = DateTimeOffset.UtcNow.AddSeconds(4);
        await using (var db = new PostgreSqlDatabase(_db.Options))
        {
            var slots = new PostgreSqlAgentSlots(db);
            Assert.True(await slots.TryAcquireAsync("limited", "gone-1", 2, "node-dead", DateTimeOffset.UtcNow, lapses, lapses, Ct));
            Assert.True(await slots.TryAcquireAsync("limited", "gone-2", 2, "node-dead", DateTimeOffset.UtcNow, lapses, lapses, Ct));
        }

        var b = await StartNodeAsync("node-b");
        var id = (await b.SubmitAsync(new RunRequest("limited", "after"), Ct)).Run.Id;
        await WaitForAsync(() => _model.InFlight == 1, "the run executing once the dead node's slots lapsed");
        _model.Release();
        var run = await b.WaitAsync(id).WaitAsync(TimeSpan.FromSeconds(60), Ct);
        Assert.Equal(RunStatus.Succeeded, run.Status);
        // It did not execute while the dead node's slots were live: its first step is after they lapsed.
        var firstStep = (await b.ReadJournalAsync(id, cancellationToken: Ct)).Skip(1).First();
        Assert.True(firstStep.At >= lapses, $"the run's first step at {firstStep.At:o} came before the dead node's slots lapsed at {lapses:o}");
    }

    [Fact]
    public async Task MaxConcurrentRuns_StoreFailsToGiveASlot_TheRunStaysQueuedAndExecutesOnceItCan()
    {
        var node = await StartNodeAsync("node-a");
        // The slots' table is gone (as good as a store that fails every statement on it): no slot can be taken.
        await _db.ExecuteSqlAsync("DROP TABLE agent_slots");
        var id = (await node.SubmitAsync(new RunRequest("limited", "x"), Ct)).Run.Id;
        await WaitForAsync(() => _log.Entries.Any(e => e.Id == 35 && e.Message.Contains(id, StringComparison.Ordinal)),
            $"a warning naming run {id} whose slot could not be taken");
        Assert.Equal(RunStatus.Queued, (await node.GetRunAsync(id, Ct))!.Status);
        Assert.Equal(0, _model.Calls); // it did not execute without a slot

        // The store works again: the run, still queued and claimed here, is tried again and executes.
        await _db.ExecuteSqlAsync(Array.Find(PostgreSqlMigrations.Steps, s => s.Contains("CREATE TABLE IF NOT EXISTS agent_slots", StringComparison.Ordinal))!);
        await WaitForAsync(() => _model.InFlight == 1, "the run executing once a slot could be taken");
        _model.Release();
        var run = await node.WaitAsync(id).WaitAsync(TimeSpan.FromSeconds(60), Ct);
        Assert.Equal((RunStatus.Succeeded, 1), (run.Status, _model.Calls));
    }
}
