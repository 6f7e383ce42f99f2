using Npgsql;

namespace Bureau.Storage.PostgreSql;

/// <summary>
/// The slots of agents with a concurrency limit, counted in the <c>agent_slots</c> table that every node on the schema shares
/// (decision 0056): one row per execution holding a slot, with its node and lease, and one per run refused a slot and
/// still trying (waiting, in the order of its first refusal, on a short lease its tries renew). Taking a slot locks the
/// agent (a transaction-scoped advisory lock keyed by schema and agent), counts the slots held by other runs and the runs
/// waiting ahead, and takes one only below the limit: two nodes never both take the last slot, and a node that frees a
/// slot does not take it again ahead of runs waiting on other nodes. Lapsed rows (a node that died) are deleted by the next taker.
/// </summary>
internal sealed class PostgreSqlAgentSlots(PostgreSqlDatabase db) : IAgentSlots
{
    private readonly PostgreSqlDatabase _db = db ?? throw new ArgumentNullException(nameof(db));

    /// <inheritdoc />
    /// <remarks>
    /// One round trip: the lock, the clean-up of lapsed rows and the conditional insert in one batch, which Npgsql sends with
    /// one Sync, so PostgreSQL runs it as one implicit transaction: the lock is held from the first statement to the commit
    /// at the batch's end, and never while the client is away.
    /// </remarks>
    public Task<bool> TryAcquireAsync(string agent, string runId, int limit, string owner, DateTimeOffset now, DateTimeOffset until, DateTimeOffset waitUntil, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(limit, 1);
        return WriteAsync(async (c, ct) =>
        {
            await using var batch = new NpgsqlBatch(c);
            var lockCmd = new NpgsqlBatchCommand("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))");
            lockCmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = $"bureau.agent_slots:{_db.Options.Schema}:{agent}" });
            batch.BatchCommands.Add(lockCmd);
            var clean = new NpgsqlBatchCommand("DELETE FROM agent_slots WHERE agent = $1 AND until < $2");
            clean.Parameters.Add(new NpgsqlParameter<string> { TypedValue = agent });
            clean.Parameters.Add(new NpgsqlParameter<long> { TypedValue = now.ToUnixTimeMilliseconds() });
            batch.BatchCommands.Add(clean);
            // Under the lock, and a statement after it (a snapshot that sees every slot committed before the lock was ours).
            // A slot is free to this run when the slots held by other runs and the runs waiting ahead of it (refused earlier)
            // are fewer than the limit; else the run waits, in the order of its first refusal.
            var take = new NpgsqlBatchCommand("""
                WITH me AS (SELECT coalesce((SELECT since FROM agent_slots WHERE agent = $1 AND run_id = $2 AND NOT held), $6) AS since),
                     free AS (SELECT (SELECT count(*) FROM agent_slots s, me WHERE s.agent = $1 AND s.run_id <> $2
                                      AND (s.held OR (s.since, s.run_id) < (me.since, $2))) < $5 AS ok)
                INSERT INTO agent_slots(agent, run_id, owner, held, since, until)
                SELECT $1, $2, $3, free.ok, me.since, CASE WHEN free.ok THEN $4 ELSE $7 END FROM free, me
                ON CONFLICT (agent, run_id) DO UPDATE SET owner = excluded.owner, held = excluded.held, since = excluded.since, until = excluded.until
                RETURNING held AS taken
                """);
            take.Parameters.Add(new NpgsqlParameter<string> { TypedValue = agent });
            take.Parameters.Add(new NpgsqlParameter<string> { TypedValue = runId });
            take.Parameters.Add(new NpgsqlParameter<string> { TypedValue = owner });
            take.Parameters.Add(new NpgsqlParameter<long> { TypedValue = until.ToUnixTimeMilliseconds() });
            take.Parameters.Add(new NpgsqlParameter<long> { TypedValue = limit });
            take.Parameters.Add(new NpgsqlParameter<long> { TypedValue = now.ToUnixTimeMilliseconds() });
            take.Parameters.Add(new NpgsqlParameter<long> { TypedValue = waitUntil.ToUnixTimeMilliseconds() });
            batch.BatchCommands.Add(take);
            var taken = false;
            await using (var r = await batch.ExecuteReaderAsync(ct))
            {
                do
                {
                    if (r.FieldCount == 1 && r.GetName(0) == "taken" && await r.ReadAsync(ct)) taken = r.GetBoolean(0);
                }
                while (await r.NextResultAsync(ct));
            }
            return taken;
        }, cancellationToken);
    }

    /// <inheritdoc />
    public Task ReleaseAsync(string agent, string runId, string owner, CancellationToken cancellationToken) =>
        WriteAsync(async (c, ct) =>
        {
            await using var cmd = new NpgsqlCommand("DELETE FROM agent_slots WHERE agent = $1 AND run_id = $2 AND owner = $3", c);
            cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = agent });
            cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = runId });
            cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = owner });
            return await cmd.ExecuteNonQueryAsync(ct);
        }, cancellationToken);

    /// <inheritdoc />
    public Task RenewAsync(string owner, IReadOnlyCollection<string> runIds, DateTimeOffset until, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(runIds);
        if (runIds.Count == 0) return Task.CompletedTask;
        return WriteAsync(async (c, ct) =>
        {
            await using var cmd = new NpgsqlCommand("UPDATE agent_slots SET until = $1 WHERE owner = $2 AND run_id = ANY($3) AND held", c);
            cmd.Parameters.Add(new NpgsqlParameter<long> { TypedValue = until.ToUnixTimeMilliseconds() });
            cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = owner });
            cmd.Parameters.Add(new NpgsqlParameter<string[]> { TypedValue = [.. runIds] });
            return await cmd.ExecuteNonQueryAsync(ct);
        }, cancellationToken);
    }

    /// <inheritdoc />
    public Task ReleaseAllAsync(string owner, CancellationToken cancellationToken) =>
        WriteAsync(async (c, ct) =>
        {
            await using var cmd = new NpgsqlCommand("DELETE FROM agent_slots WHERE owner = $1", c);
            cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = owner });
            return await cmd.ExecuteNonQueryAsync(ct);
        }, cancellationToken);

    /// <summary>The live rows of an agent (tests and diagnostics): run, owner, lease, and whether it holds a slot or waits for one.</summary>
    internal async Task<IReadOnlyList<(string RunId, string Owner, DateTimeOffset Until, bool Held)>> ListAsync(string agent, DateTimeOffset now, CancellationToken cancellationToken)
    {
        await _db.MigrateAsync(cancellationToken);
        await using var c = await _db.OpenAsync(cancellationToken);
        await using var cmd = new NpgsqlCommand("SELECT run_id, owner, until, held FROM agent_slots WHERE agent = $1 AND until >= $2 ORDER BY run_id", c);
        cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = agent });
        cmd.Parameters.Add(new NpgsqlParameter<long> { TypedValue = now.ToUnixTimeMilliseconds() });
        var slots = new List<(string, string, DateTimeOffset, bool)>();
        await using var r = await cmd.ExecuteReaderAsync(cancellationToken);
        while (await r.ReadAsync(cancellationToken)) slots.Add((r.GetString(0), r.GetString(1), DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(2)), r.GetBoolean(3)));
        return slots;
    }

    /// <summary>One write on a pooled connection (after the schema's migrations); a storage fault is a <see cref="StorageUnavailableException"/>.</summary>
    private async Task<T> WriteAsync<T>(Func<NpgsqlConnection, CancellationToken, Task<T>> write, CancellationToken ct)
    {
        try
        {
            await _db.MigrateAsync(ct);
            await using var c = await _db.DataSource.OpenConnectionAsync(ct);
            return await write(c, ct);
        }
        catch (Exception ex) when (ex is not OperationCanceledException && PostgreSqlFaults.Classify(ex, _db.Name) is { } fault)
        {
            throw fault;
        }
    }
}
