using System.Globalization;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.Data.Sqlite;

namespace Bureau.Storage.Sqlite;

/// <summary>
/// The embedded store: one SQLite file in WAL mode. All writes of the process go through one writer
/// that groups whatever is pending into one transaction, so one fsync serves every run that appended
/// meanwhile (group commit). Reads use their own pooled connections and never wait for the writer.
/// </summary>
public sealed class SqliteRunStore : IRunStore, IAuditLog
{
    private readonly SqliteStoreOptions _options;
    private readonly string _connectionString;
    private readonly Channel<WriteOp> _queue = Channel.CreateUnbounded<WriteOp>(new UnboundedChannelOptions { SingleReader = true });
    private SqliteConnection? _writer;
    private Task? _writerLoop;
    private WriterCommands? _commands;
    private readonly bool _exclusive;
    private SqliteDatabaseLock? _lock;
    private CleanCloseMarker? _marker;
    private bool _crashedWalAtOpen;
    private volatile StorageHealth _health = StorageHealth.Ok;

    /// <summary>The size a WAL is cut back to when SQLite resets it (<c>PRAGMA journal_size_limit</c>).</summary>
    private const long WalSizeLimitBytes = 16L * 1024 * 1024;
    private StorageUnavailableException? _latched;
    private int _disposed;
    private readonly ReaderSessions _readers;

    /// <summary>
    /// Creates the store; call <see cref="InitializeAsync"/> before use. A store made here reads and
    /// writes without taking the database's engine lock (for tools and tests that inspect a database);
    /// the store an engine runs on comes from <c>UseSqliteStorage</c>, which takes it.
    /// </summary>
    public SqliteRunStore(SqliteStoreOptions options) : this(options, exclusive: false)
    {
    }

    internal SqliteRunStore(SqliteStoreOptions options, bool exclusive)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        _exclusive = exclusive;
        _connectionString = options.ConnectionString();
        _readers = new ReaderSessions(_connectionString);
    }

    /// <summary>The database file.</summary>
    public string Path => _options.Path;

    /// <summary>Counters of the writer, for benchmarks and diagnostics.</summary>
    public StoreWriterStats Stats { get; } = new();

    /// <inheritdoc />
    /// <exception cref="StorageUnavailableException">The database cannot be written (read-only file or folder, disk full, damaged file).</exception>
    /// <exception cref="InvalidOperationException">Another engine holds the database, or (for the engine's store) its write-ahead log went missing after a crash.</exception>
    public Task InitializeAsync(CancellationToken cancellationToken = default)
    {
        if (_writer is not null) return Task.CompletedTask;
        var dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(_options.Path));
        if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);

        var writer = new SqliteConnection(_connectionString);
        try
        {
            if (_exclusive)
            {
                _lock = SqliteDatabaseLock.Acquire(_options.Path);
                CleanCloseMarker.CheckWal(_options.Path);
            }
            else
            {
                _crashedWalAtOpen = CleanCloseMarker.CrashedWalPresent(_options.Path);
            }
            writer.Open();
            Migrations.RefuseForeign(writer, _options.Path);
            Exec(writer, "PRAGMA journal_mode=WAL");
            Exec(writer, _options.Durability == StoreDurability.Full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
            Exec(writer, "PRAGMA foreign_keys=OFF");
            // A WAL grown large (a burst while readers held old snapshots, a catch-up after a full disk) is cut back to
            // this size when SQLite next resets it, instead of keeping its high-water mark on the disk for ever.
            Exec(writer, $"PRAGMA journal_size_limit={WalSizeLimitBytes}");
            Migrations.Apply(writer);
            if (_exclusive)
            {
                // A database that opens but cannot be written (a read-only file reached by its owner's
                // group, a full disk) is found now, not at the first request.
                using (var tx = writer.BeginTransaction(deferred: false))
                {
                    ProbeOp.Write(writer, tx, DateTimeOffset.UtcNow);
                    tx.Commit();
                }
                _marker = CleanCloseMarker.Create(_options.Path);
            }
        }
        catch (Exception ex)
        {
            writer.Dispose();
            _lock?.Dispose();
            _lock = null;
            if (SqliteFaults.Classify(ex, _options.Path) is { } fault && fault != ex) throw fault;
            throw;
        }
        _writer = writer;
        _commands = new WriterCommands(writer);
        _writerLoop = Task.Run(WriterLoopAsync, CancellationToken.None);
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task<SubmitResult> SubmitAsync(NewRun run, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(run);
        var op = new SubmitOp(run);
        Enqueue(op);
        return op.Completion.Task.WaitAsync(cancellationToken);
    }

    /// <inheritdoc />
    public ValueTask AppendAsync(AppendRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        var op = new AppendOp(request);
        Enqueue(op);
        return new ValueTask(cancellationToken.CanBeCanceled ? op.Completion.Task.WaitAsync(cancellationToken) : op.Completion.Task);
    }

    /// <inheritdoc />
    public ValueTask MarkRunningAsync(string runId, DateTimeOffset at, CancellationToken cancellationToken = default)
    {
        var op = new MarkRunningOp(runId, at);
        Enqueue(op);
        return new ValueTask(op.Completion.Task.WaitAsync(cancellationToken));
    }

    /// <inheritdoc />
    public Task<RunRecord?> GetRunAsync(string runId, CancellationToken cancellationToken = default) =>
        ReadAsync(runId, static (session, id) =>
        {
            var cmd = session.Run;
            cmd.Parameters[0].Value = id;
            using var r = cmd.ExecuteReader();
            return r.Read() ? ReadRun(r) : null;
        }, cancellationToken);

    /// <inheritdoc />
    public async Task<IReadOnlyList<JournalRecord>> ReadJournalAsync(string runId, long afterStep = 0, CancellationToken cancellationToken = default) =>
        await ReadAsync((runId, afterStep, cancellationToken), static (session, a) => ReadJournal(session, a.runId, a.afterStep, a.cancellationToken), cancellationToken);

    private static List<JournalRecord> ReadJournal(ReaderSession session, string runId, long afterStep, CancellationToken cancellationToken)
    {
        var cmd = session.Journal;
        cmd.Parameters[0].Value = runId;
        cmd.Parameters[1].Value = afterStep;
        using var r = cmd.ExecuteReader();
        var list = new List<JournalRecord>();
        while (r.Read())
        {
            cancellationToken.ThrowIfCancellationRequested();
            var n = r.GetInt64(0);
            JournalEntry entry;
            try
            {
                entry = BureauJson.DeserializeEntry((byte[])r.GetValue(2));
            }
            catch (JsonException ex)
            {
                throw new InvalidDataException($"run {runId}, step {n}: the journal entry cannot be read: {ex.Message}", ex);
            }
            list.Add(new JournalRecord(n, FromUnixMs(r.GetInt64(1)), entry));
        }
        return list;
    }

    /// <inheritdoc />
    public async Task<RunPage> ListRunsAsync(RunQuery query, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(query);
        var limit = Math.Clamp(query.Limit, 1, 1000);
        long? before = null;
        if (query.Cursor is not null)
        {
            if (!long.TryParse(query.Cursor, NumberStyles.None, CultureInfo.InvariantCulture, out var b) || b <= 0)
                throw new ArgumentException($"cursor '{query.Cursor}' is not one this store returned", nameof(query));
            before = b;
        }
        await using var c = await OpenReaderAsync(cancellationToken);
        await using var cmd = c.CreateCommand();
        var where = new List<string>();
        if (before is not null) { where.Add("seq < $before"); cmd.Parameters.AddWithValue("$before", before.Value); }
        if (query.Status is not null) { where.Add("status = $status"); cmd.Parameters.AddWithValue("$status", query.Status.Value.ToWireName()); }
        if (query.Agent is not null) { where.Add("agent = $agent"); cmd.Parameters.AddWithValue("$agent", query.Agent); }
        if (query.ParentRunId is not null) { where.Add("parent_run_id = $parent"); cmd.Parameters.AddWithValue("$parent", query.ParentRunId); }
        if (query.IdempotencyKeyPrefix is { Length: > 0 } prefix)
        {
            // A range on the unique index (keys from the prefix up to the first string past it), and the prefix itself.
            where.Add("idempotency_key >= $keyFrom AND substr(idempotency_key, 1, length($keyFrom)) = $keyFrom");
            cmd.Parameters.AddWithValue("$keyFrom", prefix);
            if (KeyPrefixes.End(prefix) is { } end)
            {
                where.Add("idempotency_key < $keyTo");
                cmd.Parameters.AddWithValue("$keyTo", end);
            }
        }
        if (query.IdempotencyKey is not null) { where.Add("idempotency_key = $key"); cmd.Parameters.AddWithValue("$key", query.IdempotencyKey); }
        if (query.RootRunId is not null) { where.Add("root_run_id = $root AND id <> $root"); cmd.Parameters.AddWithValue("$root", query.RootRunId); }
        cmd.CommandText = $"SELECT {RunColumns}, seq FROM runs {(where.Count > 0 ? "WHERE " + string.Join(" AND ", where) : "")} ORDER BY seq DESC LIMIT $limit";
        cmd.Parameters.AddWithValue("$limit", limit + 1);
        var items = new List<RunRecord>();
        long lastSeq = 0;
        var more = false;
        await using (var r = await cmd.ExecuteReaderAsync(cancellationToken))
        {
            while (await r.ReadAsync(cancellationToken))
            {
                if (items.Count == limit) { more = true; break; }
                items.Add(ReadRun(r));
                lastSeq = r.GetInt64(RunColumnCount);
            }
        }
        return new RunPage(items, more ? lastSeq.ToString(CultureInfo.InvariantCulture) : null);
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<string>> ClaimAsync(RunClaim claim, DateTimeOffset now, int limit, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(claim);
        ArgumentOutOfRangeException.ThrowIfLessThan(limit, 1);
        var op = new StatementOp<IReadOnlyList<string>>((c, tx) =>
        {
            using var cmd = c.CreateCommand();
            cmd.Transaction = tx;
            cmd.CommandText = """
                UPDATE runs SET claim_owner = $owner, claim_until = $until
                WHERE seq IN (SELECT seq FROM runs WHERE status IN ('queued','running')
                              AND (claim_owner IS NULL OR claim_until < $now) ORDER BY seq LIMIT $limit)
                RETURNING id
                """;
            cmd.Parameters.AddWithValue("$owner", claim.Owner);
            cmd.Parameters.AddWithValue("$until", ToUnixMs(claim.Until));
            cmd.Parameters.AddWithValue("$now", ToUnixMs(now));
            cmd.Parameters.AddWithValue("$limit", limit);
            using var r = cmd.ExecuteReader();
            var ids = new List<string>();
            while (r.Read()) ids.Add(r.GetString(0));
            return ids;
        });
        Enqueue(op);
        return op.Completion.Task.WaitAsync(cancellationToken);
    }

    /// <inheritdoc />
    public Task<int> RenewClaimsAsync(RunClaim claim, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(claim);
        return ExecuteAsync("UPDATE runs SET claim_until = $until WHERE claim_owner = $owner AND status IN ('queued','running')",
            ("$until", ToUnixMs(claim.Until)), ("$owner", claim.Owner), cancellationToken);
    }

    /// <inheritdoc />
    public Task ReleaseClaimsAsync(string owner, CancellationToken cancellationToken = default) =>
        ExecuteAsync("UPDATE runs SET claim_owner = NULL, claim_until = NULL WHERE claim_owner = $owner", ("$owner", owner), (null, null), cancellationToken);

    private Task<int> ExecuteAsync(string sql, (string? Name, object? Value) p1, (string? Name, object? Value) p2, CancellationToken cancellationToken)
    {
        var op = new StatementOp<int>((c, tx) =>
        {
            using var cmd = c.CreateCommand();
            cmd.Transaction = tx;
            cmd.CommandText = sql;
            if (p1.Name is not null) cmd.Parameters.AddWithValue(p1.Name, p1.Value);
            if (p2.Name is not null) cmd.Parameters.AddWithValue(p2.Name, p2.Value);
            return cmd.ExecuteNonQuery();
        });
        Enqueue(op);
        return op.Completion.Task.WaitAsync(cancellationToken);
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<string>> DeleteRunsAsync(RunDeletion deletion, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(deletion);
        if (deletion.RunIds.Count == 0) return Task.FromResult<IReadOnlyList<string>>([]);
        var op = new DeleteRunsOp(deletion);
        Enqueue(op);
        return op.Completion.Task.WaitAsync(cancellationToken);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<RunRecord>> ListDueWaitsAsync(DateTimeOffset now, int limit, CancellationToken cancellationToken = default)
    {
        await using var c = await OpenReaderAsync(cancellationToken);
        await using var cmd = c.CreateCommand();
        cmd.CommandText = $"SELECT {RunColumns} FROM runs WHERE wait_deadline <= $now AND status = 'waiting' ORDER BY wait_deadline LIMIT $limit";
        cmd.Parameters.AddWithValue("$now", ToUnixMs(now));
        cmd.Parameters.AddWithValue("$limit", limit);
        await using var r = await cmd.ExecuteReaderAsync(cancellationToken);
        var list = new List<RunRecord>();
        while (await r.ReadAsync(cancellationToken)) list.Add(ReadRun(r));
        return list;
    }

    /// <inheritdoc />
    public async Task<DateTimeOffset?> NextWaitDeadlineAsync(CancellationToken cancellationToken = default)
    {
        await using var c = await OpenReaderAsync(cancellationToken);
        await using var cmd = c.CreateCommand();
        cmd.CommandText = "SELECT min(wait_deadline) FROM runs WHERE wait_deadline IS NOT NULL AND status = 'waiting'";
        var value = await cmd.ExecuteScalarAsync(cancellationToken);
        return value is null or DBNull ? null : FromUnixMs(Convert.ToInt64(value, CultureInfo.InvariantCulture));
    }

    /// <inheritdoc />
    /// <remarks>One grouped query; a time range is a range on the <c>runs_by_created</c> index.</remarks>
    public async Task<IReadOnlyList<CostRow>> ReadCostsAsync(CostQuery query, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(query);
        await using var c = await OpenReaderAsync(cancellationToken);
        await using var cmd = c.CreateCommand();
        var where = new List<string> { "kind <> 'team'" };
        if (query.Since is { } since) { where.Add("created_at >= $since"); cmd.Parameters.AddWithValue("$since", ToUnixMs(since)); }
        if (query.Until is { } until) { where.Add("created_at < $until"); cmd.Parameters.AddWithValue("$until", ToUnixMs(until)); }
        var key = query.By == CostGrouping.Day ? $"created_at / {MsPerDay}" : "agent";
        cmd.CommandText = $"""
            SELECT {key} AS k, count(*), sum(input_tokens), sum(output_tokens), sum(cost) FROM runs
            WHERE {string.Join(" AND ", where)} GROUP BY k ORDER BY k
            """;
        var rows = new List<CostRow>();
        await using var r = await cmd.ExecuteReaderAsync(cancellationToken);
        while (await r.ReadAsync(cancellationToken))
        {
            var name = query.By == CostGrouping.Day ? CostReport.DayOf(FromUnixMs(r.GetInt64(0) * MsPerDay)) : r.GetString(0);
            rows.Add(new CostRow(name, r.GetInt64(1), r.GetInt64(2), r.GetInt64(3), Math.Round(r.GetDouble(4), 9)));
        }
        return rows;
    }

    private const long MsPerDay = 86_400_000;

    /// <summary>
    /// Runs, journal entries and journal bytes (the stored entries' lengths, an approximation of the space they take:
    /// SQLite's dbstat is not always compiled in) per agent, newest data included, plus audit entries and the size on disk.
    /// </summary>
    internal async Task<StoreStats> ReadStatsAsync(CancellationToken cancellationToken = default)
    {
        await using var c = await OpenReaderAsync(cancellationToken);
        var agents = new SortedDictionary<string, AgentStoreStats>(StringComparer.Ordinal);
        await using (var cmd = c.CreateCommand())
        {
            cmd.CommandText = "SELECT agent, count(*) FROM runs GROUP BY agent";
            await using var r = await cmd.ExecuteReaderAsync(cancellationToken);
            while (await r.ReadAsync(cancellationToken)) agents[r.GetString(0)] = new AgentStoreStats(r.GetString(0), r.GetInt64(1), 0, 0);
        }
        await using (var cmd = c.CreateCommand())
        {
            cmd.CommandText = "SELECT r.agent, count(*), coalesce(sum(length(j.data)), 0) FROM journal j JOIN runs r ON r.id = j.run_id GROUP BY r.agent";
            await using var r = await cmd.ExecuteReaderAsync(cancellationToken);
            while (await r.ReadAsync(cancellationToken))
            {
                var name = r.GetString(0);
                var runs = agents.TryGetValue(name, out var a) ? a.Runs : 0;
                agents[name] = new AgentStoreStats(name, runs, r.GetInt64(1), r.GetInt64(2));
            }
        }
        long audit;
        await using (var cmd = c.CreateCommand())
        {
            cmd.CommandText = "SELECT count(*) FROM audit";
            audit = Convert.ToInt64(await cmd.ExecuteScalarAsync(cancellationToken), CultureInfo.InvariantCulture);
        }
        return new StoreStats([.. agents.Values], audit, SizeOnDisk());
    }

    /// <summary>Size on disk of the database and its WAL, in bytes.</summary>
    public long SizeOnDisk()
    {
        long size = 0;
        foreach (var suffix in new[] { "", "-wal", "-shm" })
        {
            var f = new FileInfo(_options.Path + suffix);
            if (f.Exists && suffix != "-shm") size += f.Length;
        }
        return size;
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<AuditRecord>> ReadAuditAsync(long afterSeq = 0, int limit = 1000, CancellationToken cancellationToken = default)
    {
        await using var c = await OpenReaderAsync(cancellationToken);
        return await AuditChain.ReadAsync(c, afterSeq, Math.Clamp(limit, 1, 100_000), cancellationToken);
    }

    /// <inheritdoc />
    public async Task<AuditRecord?> LastAuditAsync(string action, CancellationToken cancellationToken = default)
    {
        await using var c = await OpenReaderAsync(cancellationToken);
        await using var cmd = c.CreateCommand();
        cmd.CommandText = "SELECT seq FROM audit WHERE action = $action ORDER BY seq DESC LIMIT 1";
        cmd.Parameters.AddWithValue("$action", action);
        if (await cmd.ExecuteScalarAsync(cancellationToken) is not long seq) return null;
        return (await AuditChain.ReadAsync(c, seq - 1, 1, cancellationToken)).FirstOrDefault();
    }

    /// <inheritdoc />
    public async Task AppendAuditAsync(DateTimeOffset at, string? actor, string action, string? runId, long? step, string? detail, CancellationToken cancellationToken = default)
    {
        var op = new AuditOp(at, actor, action, runId, step, detail);
        Enqueue(op);
        await op.Completion.Task.WaitAsync(cancellationToken);
    }

    /// <inheritdoc />
    public async Task<AuditVerification> VerifyAuditAsync(CancellationToken cancellationToken = default)
    {
        await using var c = await OpenReaderAsync(cancellationToken);
        return await AuditChain.VerifyAsync(c, cancellationToken);
    }

    /// <inheritdoc />
    public StorageHealth Health => _health;

    /// <inheritdoc />
    public async ValueTask<StorageHealth> ProbeWriteAsync(CancellationToken cancellationToken = default)
    {
        var op = new ProbeOp(DateTimeOffset.UtcNow);
        Enqueue(op);
        try
        {
            await op.Completion.Task.WaitAsync(cancellationToken);
        }
        catch (StorageUnavailableException)
        {
            // Health says why.
        }
        return _health;
    }

    /// <summary>Stops the writer after the pending operations and closes the database.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1) return;
        _queue.Writer.TryComplete();
        if (_writerLoop is not null) await _writerLoop;
        _commands?.Dispose();
        // Nothing writes any more: a crash from here on leaves a WAL SQLite recovers, or none with nothing in it.
        _marker?.Delete();
        _readers.Dispose();
        if (_writer is not null) await _writer.DisposeAsync();
        SqliteConnection.ClearPool(new SqliteConnection(_connectionString));
        CleanCloseMarker.AfterReaderClosed(_options.Path, _crashedWalAtOpen);
        _lock?.Dispose();
    }

    private void Enqueue(WriteOp op)
    {
        if (_writer is null) throw new InvalidOperationException("the store is not initialized: call InitializeAsync first");
        if (!_queue.Writer.TryWrite(op)) throw new ObjectDisposedException(nameof(SqliteRunStore), "the store is shut down; nothing was written");
    }

    private async Task WriterLoopAsync()
    {
        var batch = new List<WriteOp>(_options.MaxBatchSize);
        var reader = _queue.Reader;
        while (await reader.WaitToReadAsync())
        {
            batch.Clear();
            while (batch.Count < _options.MaxBatchSize && reader.TryRead(out var op)) batch.Add(op);
            if (batch.Count == 0) continue;
            if (_latched is { } latched)
            {
                foreach (var op in batch) op.Fail(latched);
                continue;
            }
            try
            {
                ExecuteBatch(batch);
                Stats.Record(batch.Count);
                Wrote();
                foreach (var op in batch) op.Complete();
            }
            catch (Exception batchError)
            {
                if (SqliteFaults.Classify(batchError, _options.Path) is { } fault)
                {
                    // The storage cannot write: every op of the batch would fail the same way.
                    Failed(fault);
                    foreach (var op in batch) op.Fail(_latched ?? fault);
                    continue;
                }
                // Isolate the failing operation: run each on its own so one bad op cannot fail its neighbours.
                foreach (var op in batch)
                {
                    try
                    {
                        ExecuteBatch([op]);
                        Wrote();
                        op.Complete();
                    }
                    catch (Exception ex)
                    {
                        if (SqliteFaults.Classify(ex, _options.Path) is { } opFault)
                        {
                            Failed(opFault);
                            op.Fail(_latched ?? opFault);
                        }
                        else
                        {
                            op.Fail(ex);
                        }
                    }
                }
            }
        }
    }

    private void Wrote()
    {
        if (_health.Fault is not null && _latched is null)
        {
            _health = StorageHealth.Ok;
            GiveWalSpaceBack();
        }
    }

    /// <summary>
    /// After a write fault clears (a disk that was full has room again), checkpoints and truncates the WAL so the space
    /// it grew into is returned to the file system at once: on a nearly full disk that space is what the next writes need.
    /// Best effort: a reader holding an old snapshot makes the checkpoint partial, and the size limit trims it later.
    /// </summary>
    private void GiveWalSpaceBack()
    {
        try
        {
            Exec(_writer!, "PRAGMA wal_checkpoint(TRUNCATE)");
        }
        catch (SqliteException)
        {
            // Busy or still short of space: journal_size_limit trims the WAL at its next reset.
        }
    }

    private void Failed(StorageUnavailableException fault)
    {
        var latch = SqliteFaults.Latches(fault);
        if (latch)
        {
            _latched = new StorageUnavailableException(fault.Fault, fault.Store,
                fault.Message + "; the store refuses writes until Bureau restarts (PostgreSQL's rule after a failed fsync: the page cache may no longer match the disk)",
                fault.InnerException);
        }
        var since = _health.Fault is null ? DateTimeOffset.UtcNow : _health.Since;
        _health = new StorageHealth(fault.Fault, (_latched ?? fault).Message, since, latch);
    }

    private void ExecuteBatch(List<WriteOp> batch)
    {
        var c = _writer!;
        var cmds = _commands!;
        using var tx = c.BeginTransaction(deferred: false);
        cmds.Enlist(tx);
        try
        {
            foreach (var op in batch) op.Execute(cmds);
            tx.Commit();
        }
        catch
        {
            foreach (var op in batch) op.Reset();
            throw;
        }
    }

    /// <summary>A read on a kept connection with its statements prepared (<see cref="ReaderSessions"/>).</summary>
    private async Task<T> ReadAsync<TState, T>(TState state, Func<ReaderSession, TState, T> read, CancellationToken ct)
    {
        if (_writer is null) throw new InvalidOperationException("the store is not initialized: call InitializeAsync first");
        return await _readers.ReadAsync(state, read, ct);
    }

    private async Task<SqliteConnection> OpenReaderAsync(CancellationToken ct)
    {
        if (_writer is null) throw new InvalidOperationException("the store is not initialized: call InitializeAsync first");
        var c = new SqliteConnection(_connectionString);
        await c.OpenAsync(ct);
        return c;
    }

    private static void Exec(SqliteConnection c, string sql)
    {
        using var cmd = c.CreateCommand();
        cmd.CommandText = sql;
        cmd.ExecuteNonQuery();
    }

    internal const string RunColumns = "id, agent, status, input, output, error, outcome, input_tokens, output_tokens, created_at, updated_at, version, waiting_for, idempotency_key, actor, kind, parent_run_id, root_run_id, cost";
    private const int RunColumnCount = 19;

    internal static RunRecord ReadRun(SqliteDataReader r)
    {
        RunStatusExtensions.TryParseWireName(r.GetString(2), out var status);
        return new RunRecord
        {
            Id = r.GetString(0),
            Agent = r.GetString(1),
            Status = status,
            Input = r.GetString(3),
            Output = r.IsDBNull(4) ? null : r.GetString(4),
            Error = r.IsDBNull(5) ? null : r.GetString(5),
            Outcome = r.IsDBNull(6) ? null : r.GetString(6),
            Usage = new UsageRecord(r.GetInt64(7), r.GetInt64(8)),
            CreatedAt = FromUnixMs(r.GetInt64(9)),
            UpdatedAt = FromUnixMs(r.GetInt64(10)),
            Version = r.GetInt64(11),
            WaitingFor = r.IsDBNull(12) ? null : JsonSerializer.Deserialize(r.GetString(12), BureauJsonContext.Default.WaitingFor),
            IdempotencyKey = r.IsDBNull(13) ? null : r.GetString(13),
            Actor = r.IsDBNull(14) ? null : r.GetString(14),
            Kind = r.GetString(15),
            ParentRunId = r.IsDBNull(16) ? null : r.GetString(16),
            RootRunId = r.IsDBNull(17) ? null : r.GetString(17),
            Cost = r.GetDouble(18),
        };
    }

    internal static DateTimeOffset FromUnixMs(long ms) => DateTimeOffset.FromUnixTimeMilliseconds(ms);
    internal static long ToUnixMs(DateTimeOffset t) => t.ToUnixTimeMilliseconds();
}

/// <summary>What a store holds per agent (<see cref="SqliteRunStore.ReadStatsAsync"/>, <c>bureau stats</c>).</summary>
/// <param name="Agents">Per agent (or team), by name.</param>
/// <param name="AuditEntries">Entries of the audit log (never deleted by retention).</param>
/// <param name="FileBytes">The database file and its write-ahead log, in bytes.</param>
internal sealed record StoreStats(IReadOnlyList<AgentStoreStats> Agents, long AuditEntries, long FileBytes);

/// <summary>One agent's share of a store.</summary>
/// <param name="Agent">The agent (or team).</param>
/// <param name="Runs">Its runs, every status.</param>
/// <param name="JournalEntries">Their journal entries.</param>
/// <param name="JournalBytes">The entries' stored length in bytes (an approximation of their space on disk).</param>
internal sealed record AgentStoreStats(string Agent, long Runs, long JournalEntries, long JournalBytes);

/// <summary>Counters of the store's writer.</summary>
public sealed class StoreWriterStats
{
    private long _transactions;
    private long _operations;

    /// <summary>Transactions committed (each one fsync at full durability).</summary>
    public long Transactions => Interlocked.Read(ref _transactions);

    /// <summary>Operations (submissions and appends) committed.</summary>
    public long Operations => Interlocked.Read(ref _operations);

    internal void Record(int ops)
    {
        Interlocked.Increment(ref _transactions);
        Interlocked.Add(ref _operations, ops);
    }
}
