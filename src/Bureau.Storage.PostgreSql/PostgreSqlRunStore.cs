using System.Globalization;
using System.Text.Json;
using System.Threading.Channels;
using Npgsql;

namespace Bureau.Storage.PostgreSql;

/// <summary>
/// Runs, journals and the audit log on PostgreSQL. All writes of the process go through one writer that groups whatever
/// is pending into one transaction (group commit: one commit, one WAL flush on the server, for every run that appended
/// meanwhile), in two round trips whatever the batch size. Correctness between processes (nodes of a cluster on one
/// database) rests on the database: an append's version check is an <c>UPDATE ... WHERE version = expected</c> (the run's
/// row lock orders racing writers; the journal's primary key (run_id, n) is the last guard), claims lock rows with
/// <c>FOR UPDATE SKIP LOCKED</c>, and the audit chain's head is taken under an advisory lock. Reads use pooled connections
/// and never wait for the writer.
/// </summary>
public sealed class PostgreSqlRunStore : IRunStore, IAuditLog
{
    private readonly PostgreSqlDatabase _db;
    private readonly bool _ownsDatabase;
    private readonly Channel<PgWriteOp> _queue = Channel.CreateUnbounded<PgWriteOp>(new UnboundedChannelOptions { SingleReader = true });
    private volatile Task? _writerLoop;
    private volatile StorageHealth _health = StorageHealth.Ok;
    private readonly EntryWriter _entries = new(); // the writer loop's only
    private int _disposed;

    /// <summary>Creates the store on its own connection pool; call <see cref="InitializeAsync"/> before use.</summary>
    public PostgreSqlRunStore(PostgreSqlStoreOptions options) : this(new PostgreSqlDatabase(options), ownsDatabase: true)
    {
    }

    /// <summary>Creates the store on a pool shared with the other stores of the database; call <see cref="InitializeAsync"/> before use.</summary>
    public PostgreSqlRunStore(PostgreSqlDatabase database) : this(database, ownsDatabase: false)
    {
    }

    private PostgreSqlRunStore(PostgreSqlDatabase database, bool ownsDatabase)
    {
        ArgumentNullException.ThrowIfNull(database);
        _db = database;
        _ownsDatabase = ownsDatabase;
    }

    /// <summary>The database's name in messages (server, database, schema).</summary>
    public string Name => _db.Name;

    /// <summary>Counters of the writer, for benchmarks and diagnostics.</summary>
    public PostgreSqlWriterStats Stats { get; } = new();

    /// <inheritdoc />
    /// <exception cref="StorageUnavailableException">The server cannot be reached or refuses writes.</exception>
    /// <exception cref="InvalidOperationException">The schema is newer than this Bureau understands.</exception>
    public async Task InitializeAsync(CancellationToken cancellationToken = default)
    {
        if (_writerLoop is not null) return;
        await _db.MigrateAsync(cancellationToken);
        lock (_queue)
        {
            _writerLoop ??= Task.Run(WriterLoopAsync, CancellationToken.None); // one writer, however many callers initialize
        }
    }

    /// <inheritdoc />
    public Task<SubmitResult> SubmitAsync(NewRun run, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(run);
        var op = new PgSubmitOp(run);
        Enqueue(op);
        return op.Completion.Task.WaitAsync(cancellationToken);
    }

    /// <inheritdoc />
    public ValueTask AppendAsync(AppendRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        var op = new PgAppendOp(request);
        Enqueue(op);
        return new ValueTask(cancellationToken.CanBeCanceled ? op.Completion.Task.WaitAsync(cancellationToken) : op.Completion.Task);
    }

    /// <inheritdoc />
    public ValueTask MarkRunningAsync(string runId, DateTimeOffset at, CancellationToken cancellationToken = default)
    {
        var op = new PgMarkRunningOp(runId, at);
        Enqueue(op);
        return new ValueTask(op.Completion.Task.WaitAsync(cancellationToken));
    }

    /// <inheritdoc />
    public async Task<RunRecord?> GetRunAsync(string runId, CancellationToken cancellationToken = default)
    {
        await using var c = await OpenReaderAsync(cancellationToken);
        await using var cmd = new NpgsqlCommand($"SELECT {RunColumns} FROM runs WHERE id = $1", c);
        cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = runId });
        await using var r = await cmd.ExecuteReaderAsync(cancellationToken);
        return await r.ReadAsync(cancellationToken) ? ReadRun(r) : null;
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<JournalRecord>> ReadJournalAsync(string runId, long afterStep = 0, CancellationToken cancellationToken = default)
    {
        await using var c = await OpenReaderAsync(cancellationToken);
        await using var cmd = new NpgsqlCommand("SELECT n, at, data FROM journal WHERE run_id = $1 AND n > $2 ORDER BY n", c);
        cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = runId });
        cmd.Parameters.Add(new NpgsqlParameter<long> { TypedValue = afterStep });
        await using var r = await cmd.ExecuteReaderAsync(cancellationToken);
        var list = new List<JournalRecord>();
        while (await r.ReadAsync(cancellationToken))
        {
            var n = r.GetInt64(0);
            JournalEntry entry;
            try
            {
                entry = BureauJson.DeserializeEntry(r.GetFieldValue<byte[]>(2));
            }
            catch (JsonException ex)
            {
                throw new InvalidDataException($"run {runId}, step {n}: the journal entry cannot be read: {ex.Message}", ex);
            }
            list.Add(new JournalRecord(n, DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(1)), entry));
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
        await using var cmd = new NpgsqlCommand { Connection = c };
        var where = new List<string>();
        string Param<T>(T value)
        {
            cmd.Parameters.Add(new NpgsqlParameter<T> { TypedValue = value });
            return "$" + cmd.Parameters.Count.ToString(CultureInfo.InvariantCulture);
        }
        if (before is not null) where.Add($"seq < {Param(before.Value)}");
        if (query.Status is not null) where.Add($"status = {Param(query.Status.Value.ToWireName())}");
        if (query.Agent is not null) where.Add($"agent = {Param(query.Agent)}");
        if (query.ParentRunId is not null) where.Add($"parent_run_id = {Param(query.ParentRunId)}");
        if (query.IdempotencyKeyPrefix is { Length: > 0 } prefix)
        {
            // A range on the unique index (collation "C": ordinal): keys from the prefix up to the first string past it, and the prefix itself.
            var from = Param(prefix);
            where.Add($"idempotency_key >= {from} AND left(idempotency_key, char_length({from})) = {from}");
            if (KeyPrefixes.End(prefix) is { } end) where.Add($"idempotency_key < {Param(end)}");
        }
        if (query.IdempotencyKey is not null) where.Add($"idempotency_key = {Param(query.IdempotencyKey)}");
        if (query.RootRunId is not null)
        {
            var root = Param(query.RootRunId);
            where.Add($"root_run_id = {root} AND id <> {root}");
        }
        cmd.CommandText = $"SELECT {RunColumns}, seq FROM runs {(where.Count > 0 ? "WHERE " + string.Join(" AND ", where) : "")} ORDER BY seq DESC LIMIT {Param(limit + 1)}";
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
    /// <remarks>
    /// One statement: the oldest claimable rows are locked with <c>FOR UPDATE SKIP LOCKED</c> (rows another scheduler is
    /// claiming at this moment are skipped, not waited for; the lease condition is checked again on the locked row), then
    /// given this owner's lease.
    /// </remarks>
    public async Task<IReadOnlyList<string>> ClaimAsync(RunClaim claim, DateTimeOffset now, int limit, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(claim);
        ArgumentOutOfRangeException.ThrowIfLessThan(limit, 1);
        return await WriteDirectAsync(async (c, ct) =>
        {
            await using var cmd = new NpgsqlCommand("""
                WITH claimed AS (
                    UPDATE runs SET claim_owner = $1, claim_until = $2
                    WHERE seq IN (SELECT seq FROM runs WHERE status IN ('queued','running')
                                  AND (claim_owner IS NULL OR claim_until < $3) ORDER BY seq LIMIT $4 FOR UPDATE SKIP LOCKED)
                    RETURNING id, seq)
                SELECT id FROM claimed ORDER BY seq
                """, c);
            cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = claim.Owner });
            cmd.Parameters.Add(new NpgsqlParameter<long> { TypedValue = claim.Until.ToUnixTimeMilliseconds() });
            cmd.Parameters.Add(new NpgsqlParameter<long> { TypedValue = now.ToUnixTimeMilliseconds() });
            cmd.Parameters.Add(new NpgsqlParameter<int> { TypedValue = limit });
            await using var r = await cmd.ExecuteReaderAsync(ct);
            var ids = new List<string>();
            while (await r.ReadAsync(ct)) ids.Add(r.GetString(0));
            return (IReadOnlyList<string>)ids;
        }, cancellationToken);
    }

    /// <inheritdoc />
    public Task<int> RenewClaimsAsync(RunClaim claim, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(claim);
        return WriteDirectAsync(async (c, ct) =>
        {
            await using var cmd = new NpgsqlCommand("UPDATE runs SET claim_until = $1 WHERE claim_owner = $2 AND status IN ('queued','running')", c);
            cmd.Parameters.Add(new NpgsqlParameter<long> { TypedValue = claim.Until.ToUnixTimeMilliseconds() });
            cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = claim.Owner });
            return await cmd.ExecuteNonQueryAsync(ct);
        }, cancellationToken);
    }

    /// <inheritdoc />
    public Task ReleaseClaimsAsync(string owner, CancellationToken cancellationToken = default) =>
        WriteDirectAsync(async (c, ct) =>
        {
            await using var cmd = new NpgsqlCommand("UPDATE runs SET claim_owner = NULL, claim_until = NULL WHERE claim_owner = $1", c);
            cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = owner });
            return await cmd.ExecuteNonQueryAsync(ct);
        }, cancellationToken);

    /// <inheritdoc />
    public Task<IReadOnlyList<string>> DeleteRunsAsync(RunDeletion deletion, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(deletion);
        if (deletion.RunIds.Count == 0) return Task.FromResult<IReadOnlyList<string>>([]);
        var op = new PgDeleteRunsOp(deletion);
        Enqueue(op);
        return op.Completion.Task.WaitAsync(cancellationToken);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<RunRecord>> ListDueWaitsAsync(DateTimeOffset now, int limit, CancellationToken cancellationToken = default)
    {
        await using var c = await OpenReaderAsync(cancellationToken);
        await using var cmd = new NpgsqlCommand($"SELECT {RunColumns} FROM runs WHERE wait_deadline <= $1 AND status = 'waiting' ORDER BY wait_deadline LIMIT $2", c);
        cmd.Parameters.Add(new NpgsqlParameter<long> { TypedValue = now.ToUnixTimeMilliseconds() });
        cmd.Parameters.Add(new NpgsqlParameter<int> { TypedValue = limit });
        await using var r = await cmd.ExecuteReaderAsync(cancellationToken);
        var list = new List<RunRecord>();
        while (await r.ReadAsync(cancellationToken)) list.Add(ReadRun(r));
        return list;
    }

    /// <inheritdoc />
    public async Task<DateTimeOffset?> NextWaitDeadlineAsync(CancellationToken cancellationToken = default)
    {
        await using var c = await OpenReaderAsync(cancellationToken);
        await using var cmd = new NpgsqlCommand("SELECT min(wait_deadline) FROM runs WHERE wait_deadline IS NOT NULL AND status = 'waiting'", c);
        return await cmd.ExecuteScalarAsync(cancellationToken) is long ms ? DateTimeOffset.FromUnixTimeMilliseconds(ms) : null;
    }

    /// <inheritdoc />
    /// <remarks>One grouped query; a time range is a range on the <c>runs_by_created</c> index.</remarks>
    public async Task<IReadOnlyList<CostRow>> ReadCostsAsync(CostQuery query, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(query);
        await using var c = await OpenReaderAsync(cancellationToken);
        await using var cmd = new NpgsqlCommand { Connection = c };
        var where = new List<string> { "kind <> 'team'" };
        if (query.Since is { } since) { cmd.Parameters.Add(new NpgsqlParameter<long> { TypedValue = since.ToUnixTimeMilliseconds() }); where.Add($"created_at >= ${cmd.Parameters.Count}"); }
        if (query.Until is { } until) { cmd.Parameters.Add(new NpgsqlParameter<long> { TypedValue = until.ToUnixTimeMilliseconds() }); where.Add($"created_at < ${cmd.Parameters.Count}"); }
        var byDay = query.By == CostGrouping.Day;
        var key = byDay ? $"created_at / {MsPerDay}" : "agent";
        cmd.CommandText = $"""
            SELECT {key} AS k, count(*), sum(input_tokens)::bigint, sum(output_tokens)::bigint, sum(cost) FROM runs
            WHERE {string.Join(" AND ", where)} GROUP BY 1 ORDER BY 1
            """;
        var rows = new List<CostRow>();
        await using var r = await cmd.ExecuteReaderAsync(cancellationToken);
        while (await r.ReadAsync(cancellationToken))
        {
            var name = byDay ? CostReport.DayOf(DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(0) * MsPerDay)) : r.GetString(0);
            rows.Add(new CostRow(name, r.GetInt64(1), r.GetInt64(2), r.GetInt64(3), Math.Round(r.GetDouble(4), 9)));
        }
        return rows;
    }

    private const long MsPerDay = 86_400_000;

    /// <inheritdoc />
    public async Task<IReadOnlyList<AuditRecord>> ReadAuditAsync(long afterSeq = 0, int limit = 1000, CancellationToken cancellationToken = default)
    {
        await using var c = await OpenReaderAsync(cancellationToken);
        return await PostgreSqlAudit.ReadAsync(c, afterSeq, Math.Clamp(limit, 1, 100_000), cancellationToken);
    }

    /// <inheritdoc />
    public async Task<AuditRecord?> LastAuditAsync(string action, CancellationToken cancellationToken = default)
    {
        await using var c = await OpenReaderAsync(cancellationToken);
        await using var cmd = new NpgsqlCommand("SELECT seq FROM audit WHERE action = $1 ORDER BY seq DESC LIMIT 1", c);
        cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = action });
        if (await cmd.ExecuteScalarAsync(cancellationToken) is not long seq) return null;
        return (await PostgreSqlAudit.ReadAsync(c, seq - 1, 1, cancellationToken)).FirstOrDefault();
    }

    /// <inheritdoc />
    public async Task AppendAuditAsync(DateTimeOffset at, string? actor, string action, string? runId, long? step, string? detail, CancellationToken cancellationToken = default)
    {
        var op = new PgAuditOp(at, actor, action, runId, step, detail);
        Enqueue(op);
        await op.Completion.Task.WaitAsync(cancellationToken);
    }

    /// <inheritdoc />
    public async Task<AuditVerification> VerifyAuditAsync(CancellationToken cancellationToken = default)
    {
        await using var c = await OpenReaderAsync(cancellationToken);
        return await AuditFormat.VerifyAsync(after => PostgreSqlAudit.ReadAsync(c, after, 5000, cancellationToken));
    }

    /// <inheritdoc />
    public StorageHealth Health => _health;

    /// <inheritdoc />
    public async ValueTask<StorageHealth> ProbeWriteAsync(CancellationToken cancellationToken = default)
    {
        var op = new PgProbeOp(DateTimeOffset.UtcNow);
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

    /// <summary>Stops the writer after the pending operations (and closes the pool when the store made it).</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1) return;
        _queue.Writer.TryComplete();
        if (_writerLoop is not null) await _writerLoop;
        if (_ownsDatabase) await _db.DisposeAsync();
    }

    private void Enqueue(PgWriteOp op)
    {
        if (_writerLoop is null) throw new InvalidOperationException("the store is not initialized: call InitializeAsync first");
        if (!_queue.Writer.TryWrite(op)) throw new ObjectDisposedException(nameof(PostgreSqlRunStore), "the store is shut down; nothing was written");
    }

    private async Task WriterLoopAsync()
    {
        var max = _db.Options.MaxBatchSize;
        var batch = new List<PgWriteOp>(Math.Min(max, 1024));
        var reader = _queue.Reader;
        while (await reader.WaitToReadAsync())
        {
            batch.Clear();
            while (batch.Count < max && reader.TryRead(out var op)) batch.Add(op);
            if (batch.Count == 0) continue;
            try
            {
                await ExecuteBatchAsync(batch);
                Stats.Record(batch.Count);
                Wrote();
                foreach (var op in batch) op.Complete();
            }
            catch (Exception batchError)
            {
                if (PostgreSqlFaults.Classify(batchError, _db.Name) is { } fault)
                {
                    // The server cannot take writes: every op of the batch would fail the same way.
                    Failed(fault);
                    foreach (var op in batch) op.Fail(fault);
                    continue;
                }
                // Isolate the failing operation (or a deadlock with another node's writer): each op on its own.
                foreach (var op in batch)
                {
                    for (var attempt = 1; ; attempt++)
                    {
                        try
                        {
                            await ExecuteBatchAsync([op]);
                            Stats.Record(1);
                            Wrote();
                            op.Complete();
                        }
                        catch (Exception ex) when (PostgreSqlFaults.IsRetriable(ex) && attempt < 5)
                        {
                            continue;
                        }
                        catch (Exception ex)
                        {
                            if (PostgreSqlFaults.Classify(ex, _db.Name) is { } opFault)
                            {
                                Failed(opFault);
                                op.Fail(opFault);
                            }
                            else
                            {
                                op.Fail(ex);
                            }
                        }
                        break;
                    }
                }
            }
        }
    }

    private async Task ExecuteBatchAsync(List<PgWriteOp> batch)
    {
        var ct = CancellationToken.None;
        await using var c = await _db.DataSource.OpenConnectionAsync(ct);
        await using var tx = await c.BeginTransactionAsync(ct);
        try
        {
            // Round trip 1: the audit lock and head (when an op may audit: the lock comes before any row lock, so two
            // nodes' writers never wait on each other in opposite orders), then every op's row statement.
            var audits = batch.Exists(op => op.Audits);
            var owners = new List<PgWriteOp>(batch.Count);
            (long Seq, string Hash)? head = null;
            var results = new List<List<object>>(batch.Count);
            await using (var rows = new NpgsqlBatch(c, tx))
            {
                if (audits)
                {
                    rows.BatchCommands.Add(new NpgsqlBatchCommand(PostgreSqlAudit.LockSql));
                    rows.BatchCommands.Add(new NpgsqlBatchCommand(PostgreSqlAudit.HeadSql));
                }
                foreach (var op in batch)
                {
                    if (op.RowCommand() is { } cmd)
                    {
                        rows.BatchCommands.Add(cmd);
                        owners.Add(op);
                    }
                }
                if (rows.BatchCommands.Count > 0)
                {
                    await using var r = await rows.ExecuteReaderAsync(ct);
                    if (audits)
                    {
                        while (await r.ReadAsync(ct)) { }
                        await r.NextResultAsync(ct);
                        head = await r.ReadAsync(ct) ? (r.GetInt64(0), r.GetString(1)) : (0, AuditFormat.Genesis);
                        while (await r.ReadAsync(ct)) { }
                        await r.NextResultAsync(ct);
                    }
                    for (var i = 0; i < owners.Count; i++)
                    {
                        var returned = new List<object>(1);
                        while (await r.ReadAsync(ct)) returned.Add(r.GetValue(0));
                        results.Add(returned);
                        if (i < owners.Count - 1) await r.NextResultAsync(ct);
                    }
                }
            }
            var ctx = new PgBatchContext(head, _entries, _db.Options.Notify ? (_db.EventChannel, _db.Origin) : null);
            var next = 0;
            foreach (var op in batch)
            {
                var own = next < owners.Count && ReferenceEquals(owners[next], op) ? results[next++] : [];
                await op.AfterRow(own, ctx, c, tx, ct);
            }
            // Round trip 2: journal rows, deleted journals and audit entries, then the commit.
            await using (var entries = new NpgsqlBatch(c, tx))
            {
                foreach (var cmd in ctx.Commands()) entries.BatchCommands.Add(cmd);
                if (entries.BatchCommands.Count > 0) await entries.ExecuteNonQueryAsync(ct);
            }
            await tx.CommitAsync(ct);
        }
        catch
        {
            foreach (var op in batch) op.Reset();
            throw;
        }
    }

    /// <summary>A write outside the writer (claims): its own statement on a pooled connection, storage faults classified.</summary>
    private async Task<T> WriteDirectAsync<T>(Func<NpgsqlConnection, CancellationToken, Task<T>> write, CancellationToken ct)
    {
        if (_writerLoop is null) throw new InvalidOperationException("the store is not initialized: call InitializeAsync first");
        try
        {
            await using var c = await _db.DataSource.OpenConnectionAsync(ct);
            var result = await write(c, ct);
            Wrote();
            return result;
        }
        catch (Exception ex) when (ex is not OperationCanceledException && PostgreSqlFaults.Classify(ex, _db.Name) is { } fault)
        {
            Failed(fault);
            throw fault;
        }
    }

    private void Wrote()
    {
        if (_health.Fault is not null) _health = StorageHealth.Ok;
    }

    private void Failed(StorageUnavailableException fault)
    {
        // No latch: after a failed fsync the PostgreSQL server itself stops (PANIC) and recovers from its WAL; what the
        // client sees is a broken connection, and writes work again once the server is back.
        var since = _health.Fault is null ? DateTimeOffset.UtcNow : _health.Since;
        _health = new StorageHealth(fault.Fault, fault.Message, since);
    }

    private async Task<NpgsqlConnection> OpenReaderAsync(CancellationToken ct)
    {
        if (_writerLoop is null) throw new InvalidOperationException("the store is not initialized: call InitializeAsync first");
        return await _db.OpenAsync(ct);
    }

    internal const string RunColumns = "id, agent, status, input, output, error, outcome, input_tokens, output_tokens, created_at, updated_at, version, waiting_for, idempotency_key, actor, kind, parent_run_id, root_run_id, cost";
    private const int RunColumnCount = 19;

    internal static RunRecord ReadRun(NpgsqlDataReader r)
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
            CreatedAt = DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(9)),
            UpdatedAt = DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(10)),
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
}

/// <summary>Counters of the PostgreSQL store's writer.</summary>
public sealed class PostgreSqlWriterStats
{
    private long _transactions;
    private long _operations;

    /// <summary>Transactions committed.</summary>
    public long Transactions => Interlocked.Read(ref _transactions);

    /// <summary>Operations (submissions, appends, row changes) committed.</summary>
    public long Operations => Interlocked.Read(ref _operations);

    internal void Record(int ops)
    {
        Interlocked.Increment(ref _transactions);
        Interlocked.Add(ref _operations, ops);
    }
}
