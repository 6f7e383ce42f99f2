using System.Collections.Concurrent;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using NpgsqlTypes;

namespace Bureau.Storage.PostgreSql;

/// <summary>
/// The run event bus of nodes that share one PostgreSQL database (docs/decisions/0038). What this node's journal writer
/// publishes reaches this node's subscribers at once, in process. What other nodes commit reaches them through the
/// database: each writer transaction NOTIFYs its run ids and step ranges (<see cref="PostgreSqlStoreOptions.Notify"/>),
/// one connection per node LISTENs, and the records of runs someone here watches are read back from the journal and
/// delivered in step order, each once. A lost LISTEN connection is reopened, and every watched run is then read again
/// from the last step delivered, so a watcher of a run misses nothing. Watchers of every run get, from other nodes,
/// the appends that hold a lifecycle record (started, waiting, resumed, finished, canceled), not every step. Activities (a model or tool
/// call starting) stay on the node that runs them. The same connection carries cancels between nodes
/// (<see cref="IRunCommandRelay"/>).
/// </summary>
public sealed partial class PostgreSqlRunEventBus : IRunEventBus, IRunCommandRelay, IAsyncDisposable
{
    private readonly PostgreSqlDatabase _db;
    private readonly ILogger _logger;
    private readonly InProcessRunEventBus _local = new();
    // Runs someone here subscribed to: what was delivered so far, to deliver the next steps in order and once.
    private readonly ConcurrentDictionary<string, Cursor> _cursors = new(StringComparer.Ordinal);
    private readonly Lock _subscribeGate = new();
    private int _allSubscribers;
    private readonly Channel<Work> _work = Channel.CreateUnbounded<Work>(new UnboundedChannelOptions { SingleReader = true });
    private readonly CancellationTokenSource _stopping = new();
    private readonly Lock _startGate = new();
    private Task? _listener;
    private Task? _reader;
    private volatile TaskCompletionSource _listening = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private volatile Func<string, string?, string?, bool>[] _cancelHandlers = [];
    private readonly ConcurrentDictionary<string, TaskCompletionSource<bool>> _pendingCancels = new(StringComparer.Ordinal);
    private long _reconnects;
    private int _disposed;

    /// <summary>Creates the bus on the database's pool (the listener opens its own connection when first needed).</summary>
    public PostgreSqlRunEventBus(PostgreSqlDatabase database, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(database);
        _db = database;
        _logger = (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger("Bureau.PostgreSql.Events");
    }

    /// <summary>How many times the LISTEN connection was opened again after it was lost (diagnostics, tests).</summary>
    public long Reconnects => Interlocked.Read(ref _reconnects);

    /// <summary>The application name of the LISTEN connection (in <c>pg_stat_activity</c>).</summary>
    internal string ListenerName => "bureau-listen-" + _db.Origin;

    /// <summary>Awaited before the listener reconnects (tests hold a connection away with it).</summary>
    internal Func<Task>? BeforeReconnect { get; set; }

    /// <summary>Completes once the listener is listening (after a start or a reconnect).</summary>
    internal Task Listening
    {
        get
        {
            EnsureStarted();
            return _listening.Task;
        }
    }

    /// <inheritdoc />
    public void Publish(string runId, IReadOnlyList<JournalRecord> records)
    {
        if (records.Count == 0) return;
        if (_cursors.TryGetValue(runId, out var cursor))
        {
            lock (cursor)
            {
                if (records[^1].N <= cursor.Last) return; // read from the store already (another node's notice came first)
                if (cursor.Last < 0 || records[0].N <= cursor.Last + 1)
                {
                    IReadOnlyList<JournalRecord> fresh = cursor.Last < 0 || records[0].N > cursor.Last ? records : [.. records.Where(r => r.N > cursor.Last)];
                    cursor.Last = records[^1].N;
                    _local.Publish(runId, fresh);
                    return;
                }
            }
            // Steps another node appended come before these and were not delivered yet: read them (and these) in order.
            _work.Writer.TryWrite(new Work.CatchUp(runId));
            return;
        }
        _local.Publish(runId, records);
    }

    /// <inheritdoc />
    public void PublishActivity(string runId, string activity, string detail) => _local.PublishActivity(runId, activity, detail);

    /// <inheritdoc />
    public RunEvent? CurrentActivity(string runId) => _local.CurrentActivity(runId);

    /// <inheritdoc />
    public IDisposable Subscribe(string runId, Action<RunEvent> handler)
    {
        ArgumentNullException.ThrowIfNull(runId);
        ArgumentNullException.ThrowIfNull(handler);
        var inner = _local.Subscribe(runId, handler);
        Cursor cursor;
        bool created;
        lock (_subscribeGate)
        {
            created = !_cursors.TryGetValue(runId, out cursor!);
            if (created) cursor = _cursors[runId] = new Cursor();
            cursor.Subscribers++;
        }
        EnsureStarted();
        if (created) _work.Writer.TryWrite(new Work.Prime(runId, cursor));
        return new Unsubscriber(() =>
        {
            inner.Dispose();
            lock (_subscribeGate)
            {
                if (--cursor.Subscribers == 0) _cursors.TryRemove(new KeyValuePair<string, Cursor>(runId, cursor));
            }
        });
    }

    /// <inheritdoc />
    public IDisposable SubscribeAll(Action<RunEvent> handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        var inner = _local.SubscribeAll(handler);
        Interlocked.Increment(ref _allSubscribers);
        EnsureStarted();
        return new Unsubscriber(() =>
        {
            inner.Dispose();
            Interlocked.Decrement(ref _allSubscribers);
        });
    }

    /// <inheritdoc />
    public async Task<bool> RequestCancelAsync(string runId, string? actor, string? reason, TimeSpan wait, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(runId);
        var request = Guid.NewGuid().ToString("n");
        var payload = JsonSerializer.Serialize(new CommandMessage { Origin = _db.Origin, Kind = "cancel", Request = request, RunId = runId, Actor = actor, Reason = reason },
            PgBusJson.Default.CommandMessage);
        if (System.Text.Encoding.UTF8.GetByteCount(payload) > PgEventNotices.MaxPayloadBytes) return false; // too long to relay: journal it here
        var answered = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pendingCancels[request] = answered;
        try
        {
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            deadline.CancelAfter(wait);
            try
            {
                await Listening.WaitAsync(deadline.Token); // the answer comes on the LISTEN connection
                await NotifyAsync(_db.CommandChannel, payload, deadline.Token);
                return await answered.Task.WaitAsync(deadline.Token);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                return false;
            }
            catch (Exception ex) when (ex is NpgsqlException or StorageUnavailableException)
            {
                Log.CommandFailed(_logger, runId, ex);
                return false;
            }
        }
        finally
        {
            _pendingCancels.TryRemove(request, out _);
        }
    }

    /// <inheritdoc />
    public IDisposable OnCancelRequested(Func<string, string?, string?, bool> handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        lock (_subscribeGate) _cancelHandlers = [.. _cancelHandlers, handler];
        EnsureStarted();
        return new Unsubscriber(() => { lock (_subscribeGate) _cancelHandlers = Array.FindAll(_cancelHandlers, h => h != handler); });
    }

    /// <summary>Stops listening.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1) return; // registered under several services: disposed once
        await _stopping.CancelAsync();
        _work.Writer.TryComplete();
        foreach (var task in new[] { _listener, _reader })
        {
            if (task is null) continue;
            try
            {
                await task;
            }
            catch (OperationCanceledException)
            {
            }
        }
        _stopping.Dispose();
    }

    private void EnsureStarted()
    {
        if (_listener is not null) return;
        lock (_startGate)
        {
            if (_listener is not null || _stopping.IsCancellationRequested) return;
            _reader = Task.Run(ReadLoopAsync, CancellationToken.None);
            _listener = Task.Run(ListenLoopAsync, CancellationToken.None);
        }
    }

    /// <summary>Keeps one connection LISTENing; after each (re)connect, reads every watched run again from its last delivered step.</summary>
    private async Task ListenLoopAsync()
    {
        var ct = _stopping.Token;
        var backoff = TimeSpan.FromMilliseconds(250);
        var connectedBefore = false;
        var cs = new NpgsqlConnectionStringBuilder(_db.DataSource.ConnectionString) { Pooling = false, KeepAlive = 10, Enlist = false, ApplicationName = ListenerName };
        while (!ct.IsCancellationRequested)
        {
            try
            {
                if (connectedBefore && BeforeReconnect is { } hold) await hold().WaitAsync(ct);
                await using var c = new NpgsqlConnection(cs.ConnectionString);
                c.Notification += OnNotification;
                await c.OpenAsync(ct);
                await using (var listen = new NpgsqlCommand($"LISTEN \"{_db.EventChannel}\"; LISTEN \"{_db.CommandChannel}\"", c))
                    await listen.ExecuteNonQueryAsync(ct);
                if (connectedBefore)
                {
                    Interlocked.Increment(ref _reconnects);
                    Log.Reconnected(_logger, _db.Name);
                }
                connectedBefore = true;
                backoff = TimeSpan.FromMilliseconds(250);
                // Whatever committed before LISTEN took effect came with no notice here: read it.
                _work.Writer.TryWrite(Work.CatchUpAll.Instance);
                _listening.TrySetResult();
                while (true)
                {
                    if (!await c.WaitAsync(TimeSpan.FromSeconds(15), ct))
                    {
                        await using var ping = new NpgsqlCommand("SELECT 1", c); // a dead connection shows here, not in WaitAsync
                        await ping.ExecuteScalarAsync(ct);
                    }
                }
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                if (_listening.Task.IsCompleted) _listening = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                Log.ListenFailed(_logger, _db.Name, backoff, ex);
                try
                {
                    await Task.Delay(backoff, ct);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, TimeSpan.FromSeconds(5).Ticks));
            }
        }
    }

    /// <summary>Called on the listener's connection: must not touch the database; queues the work.</summary>
    private void OnNotification(object sender, NpgsqlNotificationEventArgs e)
    {
        try
        {
            if (e.Channel == _db.EventChannel)
            {
                var payload = e.Payload;
                if (PgEventNotices.Origin(payload).SequenceEqual(_db.Origin)) return; // published here already
                if (_cursors.IsEmpty && Volatile.Read(ref _allSubscribers) == 0) return; // nobody here watches
                _work.Writer.TryWrite(new Work.Notice(PgEventNotices.Parse(payload)));
            }
            else if (e.Channel == _db.CommandChannel)
            {
                OnCommand(e.Payload);
            }
        }
        catch (Exception ex)
        {
            Log.NoticeFailed(_logger, ex);
        }
    }

    private void OnCommand(string payload)
    {
        var message = JsonSerializer.Deserialize(payload, PgBusJson.Default.CommandMessage);
        if (message is null || message.Origin == _db.Origin) return;
        switch (message.Kind)
        {
            case "cancel" when message.RunId is { } runId:
                var mine = false;
                foreach (var handler in _cancelHandlers) mine |= handler(runId, message.Actor, message.Reason);
                if (mine)
                {
                    var answer = JsonSerializer.Serialize(new CommandMessage { Origin = _db.Origin, Kind = "canceling", Request = message.Request, RunId = runId, To = message.Origin },
                        PgBusJson.Default.CommandMessage);
                    _ = Task.Run(async () =>
                    {
                        try
                        {
                            await NotifyAsync(_db.CommandChannel, answer, _stopping.Token);
                        }
                        catch (Exception ex) when (ex is not OperationCanceledException)
                        {
                            Log.CommandFailed(_logger, runId, ex); // the asking node journals the cancel itself after its wait
                        }
                    });
                }
                break;
            case "canceling" when message.To == _db.Origin && message.Request is { } request:
                if (_pendingCancels.TryGetValue(request, out var pending)) pending.TrySetResult(true);
                break;
        }
    }

    private async Task NotifyAsync(string channel, string payload, CancellationToken ct)
    {
        await using var c = await _db.OpenAsync(ct);
        await using var cmd = new NpgsqlCommand("SELECT pg_notify($1, $2)", c);
        cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = channel });
        cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = payload });
        await cmd.ExecuteNonQueryAsync(ct);
    }

    /// <summary>Reads what notices announce and catch-ups need, in the order they came, and delivers it.</summary>
    private async Task ReadLoopAsync()
    {
        var ct = _stopping.Token;
        var batch = new List<Work>();
        try
        {
            while (await _work.Reader.WaitToReadAsync(ct))
            {
                batch.Clear();
                while (batch.Count < 256 && _work.Reader.TryRead(out var w)) batch.Add(w);
                for (var attempt = 0; ; attempt++)
                {
                    try
                    {
                        await ProcessAsync(batch, ct);
                        break;
                    }
                    catch (InvalidDataException ex) when (attempt >= 3)
                    {
                        // A journal entry this code cannot read: retrying will not help, and the other runs' events must go on.
                        Log.ReadFailed(_logger, _db.Name, ex);
                        break;
                    }
                    catch (Exception ex) when (ex is not OperationCanceledException || !ct.IsCancellationRequested)
                    {
                        // The database is away: try again (a cursor re-reads from its last delivered step, so nothing is lost or repeated).
                        Log.ReadFailed(_logger, _db.Name, ex);
                        await Task.Delay(TimeSpan.FromMilliseconds(Math.Min(5000, 250 * (1 << Math.Min(attempt, 5)))), ct);
                    }
                }
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
    }

    private async Task ProcessAsync(List<Work> batch, CancellationToken ct)
    {
        // What to read: (run, after step, up to step), in the order the notices came (commit order).
        var reads = new List<(string RunId, long After, long UpTo)>();
        var toCursor = new HashSet<string>(StringComparer.Ordinal);
        foreach (var work in batch)
        {
            switch (work)
            {
                case Work.Prime prime:
                    await PrimeAsync(prime, ct);
                    break;
                case Work.Notice notice:
                    foreach (var r in notice.Ranges)
                    {
                        if (_cursors.TryGetValue(r.RunId, out var cursor))
                        {
                            long last;
                            lock (cursor) last = cursor.Last;
                            if (r.To <= last) continue;
                            // Nothing delivered yet: from what the notice announces (every commit since LISTEN has one).
                            if (toCursor.Add(r.RunId)) reads.Add((r.RunId, last >= 0 ? last : Math.Max(0, r.From - 1), long.MaxValue));
                        }
                        else if (r.Lifecycle && Volatile.Read(ref _allSubscribers) > 0)
                        {
                            reads.Add((r.RunId, r.From - 1, r.To));
                        }
                    }
                    break;
                case Work.CatchUp one:
                    if (_cursors.TryGetValue(one.RunId, out var c1) && toCursor.Add(one.RunId))
                    {
                        long last;
                        lock (c1) last = c1.Last;
                        reads.Add((one.RunId, last >= 0 ? last : Math.Max(0, c1.Floor), long.MaxValue));
                    }
                    break;
                case Work.CatchUpAll:
                    foreach (var (runId, c) in _cursors)
                    {
                        long last;
                        lock (c) last = c.Last;
                        if (last < 0 && c.Floor < 0) continue; // subscribed a moment ago: its prime reads the version
                        if (toCursor.Add(runId)) reads.Add((runId, last >= 0 ? last : c.Floor, long.MaxValue));
                    }
                    break;
            }
        }
        if (reads.Count == 0) return;
        var records = await ReadAsync(reads, ct);
        foreach (var (runId, list) in records)
        {
            if (list.Count == 0) continue;
            if (_cursors.TryGetValue(runId, out var cursor))
            {
                lock (cursor)
                {
                    var fresh = cursor.Last < 0 ? list : list.FindAll(r => r.N > cursor.Last);
                    if (fresh.Count == 0) continue;
                    if (cursor.Last >= 0 && fresh[0].N != cursor.Last + 1) continue; // a gap yet: a later notice or catch-up fills it
                    cursor.Last = fresh[^1].N;
                    _local.Publish(runId, fresh);
                }
            }
            else
            {
                _local.Publish(runId, list);
            }
        }
    }

    /// <summary>Notes the run's version when it was subscribed to: a catch-up before anything was delivered reads from there.</summary>
    private async Task PrimeAsync(Work.Prime prime, CancellationToken ct)
    {
        await using var c = await _db.OpenAsync(ct);
        await using var cmd = new NpgsqlCommand("SELECT version FROM runs WHERE id = $1", c);
        cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = prime.RunId });
        var version = await cmd.ExecuteScalarAsync(ct) is long v ? v : 0;
        lock (prime.Cursor)
        {
            if (prime.Cursor.Floor < 0) prime.Cursor.Floor = version;
        }
    }

    /// <summary>The journal records of several runs' ranges in one query, grouped by run in the order asked.</summary>
    private async Task<List<(string RunId, List<JournalRecord> Records)>> ReadAsync(List<(string RunId, long After, long UpTo)> reads, CancellationToken ct)
    {
        await using var c = await _db.OpenAsync(ct);
        await using var cmd = new NpgsqlCommand("""
            SELECT q.ord, j.n, j.at, j.data
            FROM unnest($1::text[], $2::bigint[], $3::bigint[]) WITH ORDINALITY AS q(run_id, after, upto, ord)
            JOIN journal j ON j.run_id = q.run_id COLLATE "C" AND j.n > q.after AND j.n <= q.upto
            ORDER BY q.ord, j.n
            """, c);
        cmd.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text, Value = reads.Select(r => r.RunId).ToArray() });
        cmd.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Bigint, Value = reads.Select(r => r.After).ToArray() });
        cmd.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Bigint, Value = reads.Select(r => r.UpTo).ToArray() });
        var result = reads.Select(r => (r.RunId, new List<JournalRecord>())).ToList();
        await using var reader = await cmd.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            var index = (int)reader.GetInt64(0) - 1;
            var n = reader.GetInt64(1);
            JournalEntry entry;
            try
            {
                entry = BureauJson.DeserializeEntry(reader.GetFieldValue<byte[]>(3));
            }
            catch (JsonException ex)
            {
                throw new InvalidDataException($"run {reads[index].RunId}, step {n}: the journal entry cannot be read: {ex.Message}", ex);
            }
            result[index].Item2.Add(new JournalRecord(n, DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(2)), entry));
        }
        return result;
    }

    private sealed class Cursor
    {
        public int Subscribers;
        /// <summary>The last step delivered to this run's subscribers; -1 until the first.</summary>
        public long Last = -1;
        /// <summary>The run's version when it was subscribed to; -1 until read.</summary>
        public long Floor = -1;
    }

    private abstract record Work
    {
        public sealed record Notice(List<PgEventNotices.Range> Ranges) : Work;
        public sealed record CatchUp(string RunId) : Work;
        public sealed record Prime(string RunId, Cursor Cursor) : Work;
        public sealed record CatchUpAll : Work
        {
            public static readonly CatchUpAll Instance = new();
        }
    }

    private sealed class Unsubscriber(Action dispose) : IDisposable
    {
        private Action? _dispose = dispose;
        public void Dispose() => Interlocked.Exchange(ref _dispose, null)?.Invoke();
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Warning, "Listening for other nodes' commits on {Database} failed; trying again in {Backoff}")]
        public static partial void ListenFailed(ILogger logger, string database, TimeSpan backoff, Exception ex);

        [LoggerMessage(2, LogLevel.Information, "Listening for other nodes' commits on {Database} again; watched runs are read from their last delivered step")]
        public static partial void Reconnected(ILogger logger, string database);

        [LoggerMessage(3, LogLevel.Warning, "Reading other nodes' commits from {Database} failed; trying again")]
        public static partial void ReadFailed(ILogger logger, string database, Exception ex);

        [LoggerMessage(4, LogLevel.Warning, "A notice from another node could not be handled")]
        public static partial void NoticeFailed(ILogger logger, Exception ex);

        [LoggerMessage(5, LogLevel.Warning, "Relaying a cancel of run {RunId} to the other nodes failed")]
        public static partial void CommandFailed(ILogger logger, string runId, Exception ex);
    }
}

/// <summary>A command between nodes on the command channel.</summary>
internal sealed class CommandMessage
{
    [System.Text.Json.Serialization.JsonPropertyName("o")] public string Origin { get; set; } = "";
    [System.Text.Json.Serialization.JsonPropertyName("k")] public string Kind { get; set; } = "";
    [System.Text.Json.Serialization.JsonPropertyName("q")] public string? Request { get; set; }
    [System.Text.Json.Serialization.JsonPropertyName("run")] public string? RunId { get; set; }
    [System.Text.Json.Serialization.JsonPropertyName("actor")] public string? Actor { get; set; }
    [System.Text.Json.Serialization.JsonPropertyName("reason")] public string? Reason { get; set; }
    [System.Text.Json.Serialization.JsonPropertyName("to")] public string? To { get; set; }
}

[System.Text.Json.Serialization.JsonSerializable(typeof(CommandMessage))]
[System.Text.Json.Serialization.JsonSourceGenerationOptions(DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
internal sealed partial class PgBusJson : System.Text.Json.Serialization.JsonSerializerContext;
