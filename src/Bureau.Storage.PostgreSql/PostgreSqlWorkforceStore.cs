using Npgsql;
using NpgsqlTypes;

namespace Bureau.Storage.PostgreSql;

/// <summary>
/// The workforce's durable inbox in Bureau's PostgreSQL schema (table <c>workforce_tasks</c>, migration step 4), with the
/// SQLite store's semantics (decision 0039). Every state change is one conditional <c>UPDATE</c> whose row lock orders
/// racing changes of a task: the later one re-checks its condition on the committed row, so exactly one applies.
/// An assignment also needs the member below its concurrency limit, which READ COMMITTED alone does not give (see
/// <see cref="AssignAsync"/>): it takes the member's advisory lock first.
/// </summary>
public sealed class PostgreSqlWorkforceStore : PostgreSqlSideStore, IWorkforceStore
{
    private const string Columns = "id, skill, input, status, agent, run_id, source, actor, created_at, updated_at, version, output, error";

    /// <summary>The first key of the members' advisory locks ('bwfm'); the second is the hash of the member's name.</summary>
    private const int MemberLockClass = 0x6277666d;

    /// <summary>The first key of the inbox's advisory lock ('bwfi'), taken by every add that checks the limits.</summary>
    private const int InboxLockClass = 0x62776669;

    /// <summary>Creates the store on its own pool.</summary>
    public PostgreSqlWorkforceStore(PostgreSqlStoreOptions options) : base(new PostgreSqlDatabase(options), ownsDatabase: true, "the workforce store") { }

    /// <summary>Creates the store on a pool shared with the other stores of the database.</summary>
    public PostgreSqlWorkforceStore(PostgreSqlDatabase database) : base(database, ownsDatabase: false, "the workforce store") { }

    /// <inheritdoc />
    public async Task<WorkforceEnqueueResult> EnqueueAsync(string id, string skill, string input, string source, string? actor, DateTimeOffset at, CancellationToken cancellationToken = default)
    {
        WorkforceStoreSupport.CheckNewTask(id, skill, source, input);
        var inserted = await WriteAsync("""
            INSERT INTO workforce_tasks(id, skill, input, status, source, actor, created_at, updated_at, version)
            VALUES($1, $2, $3, 'queued', $4, $5, $6, $6, 1)
            ON CONFLICT(id) DO NOTHING
            """, [id, skill, input, source, actor, at.ToUnixTimeMilliseconds()], cancellationToken);
        return new WorkforceEnqueueResult((await GetAsync(id, cancellationToken))!, inserted == 1);
    }

    /// <inheritdoc />
    /// <remarks>
    /// The checks are read first without the lock: a task already there is returned, and an inbox already full then is
    /// refused (right for any moment it was full), so resubmits and a flood of refused tasks wait for no lock. Otherwise one transaction takes the inbox's advisory transaction
    /// lock (<c>pg_advisory_xact_lock(class, 0)</c>, held until commit), then looks the id up again, counts the queued
    /// tasks (each count stops at its limit) and inserts, each a statement of its own: under READ COMMITTED each statement's
    /// snapshot is taken after the lock was granted, hence after the previous holder committed, so every count sees every
    /// task added before it, from any node. Adds are serialized (one per database at a time); only adds raise the count
    /// (an assignment lowers it, so it needs no lock), so the queued tasks never exceed a limit they were added under.
    /// </remarks>
    public async Task<WorkforceEnqueueResult> EnqueueAsync(string id, string skill, string input, string source, string? actor, DateTimeOffset at, WorkforceInboxLimits limits, CancellationToken cancellationToken = default)
    {
        WorkforceStoreSupport.CheckNewTask(id, skill, source, input);
        ArgumentNullException.ThrowIfNull(limits);
        await using (var c = await OpenAsync(cancellationToken))
        {
            if (await CheckAsync(c, null, id, skill, limits, cancellationToken) is { } seen) return seen; // no lock: a known id, or full then
        }
        return await InTransactionAsync(async (c, tx, ct) =>
        {
            await using (var lockCmd = new NpgsqlCommand($"SELECT pg_advisory_xact_lock({InboxLockClass}, 0)", c, tx))
                await lockCmd.ExecuteNonQueryAsync(ct);
            if (await CheckAsync(c, tx, id, skill, limits, ct) is { } existing) return existing;
            await using var insert = new NpgsqlCommand($"""
                INSERT INTO workforce_tasks(id, skill, input, status, source, actor, created_at, updated_at, version)
                VALUES($1, $2, $3, 'queued', $4, $5, $6, $6, 1)
                ON CONFLICT(id) DO NOTHING
                RETURNING {Columns}
                """, c, tx);
            insert.Parameters.Add(new NpgsqlParameter<string> { TypedValue = id });
            insert.Parameters.Add(new NpgsqlParameter<string> { TypedValue = skill });
            insert.Parameters.Add(new NpgsqlParameter<string> { TypedValue = input });
            insert.Parameters.Add(new NpgsqlParameter<string> { TypedValue = source });
            insert.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Text, Value = (object?)actor ?? DBNull.Value });
            insert.Parameters.Add(new NpgsqlParameter<long> { TypedValue = at.ToUnixTimeMilliseconds() });
            await using (var inserted = await insert.ExecuteReaderAsync(ct))
            {
                if (await inserted.ReadAsync(ct)) return new WorkforceEnqueueResult(Read(inserted), true);
            }
            // Added meanwhile by an add that checks no limit (the overload without limits takes no lock): that task stands.
            await using var again = new NpgsqlCommand($"SELECT {Columns} FROM workforce_tasks WHERE id = $1", c, tx);
            again.Parameters.Add(new NpgsqlParameter<string> { TypedValue = id });
            await using var r2 = await again.ExecuteReaderAsync(ct);
            await r2.ReadAsync(ct);
            return new WorkforceEnqueueResult(Read(r2), false);
        }, cancellationToken);
    }

    /// <summary>The task when the id is known; throws when the inbox (or the skill's part) is at its limit; null: room for it.</summary>
    private static async Task<WorkforceEnqueueResult?> CheckAsync(NpgsqlConnection c, NpgsqlTransaction? tx, string id, string skill, WorkforceInboxLimits limits, CancellationToken ct)
    {
        await using (var get = new NpgsqlCommand($"SELECT {Columns} FROM workforce_tasks WHERE id = $1", c, tx))
        {
            get.Parameters.Add(new NpgsqlParameter<string> { TypedValue = id });
            await using var r = await get.ExecuteReaderAsync(ct);
            if (await r.ReadAsync(ct)) return new WorkforceEnqueueResult(Read(r), false);
        }
        if (limits.MaxQueued is { } max && await CountQueuedAsync(c, tx, null, max, ct) is var all && all >= max)
            throw new WorkforceInboxFullException(skill, all, max, global: true, limits.RetryAfter);
        if (limits.MaxQueuedForSkill is { } own && await CountQueuedAsync(c, tx, skill, own, ct) is var mine && mine >= own)
            throw new WorkforceInboxFullException(skill, mine, own, global: false, limits.RetryAfter);
        return null;
    }

    /// <summary>Queued tasks (of <paramref name="skill"/>, or all), counted up to <paramref name="upTo"/>.</summary>
    private static async Task<int> CountQueuedAsync(NpgsqlConnection c, NpgsqlTransaction? tx, string? skill, int upTo, CancellationToken ct)
    {
        await using var cmd = new NpgsqlCommand(skill is null
            ? "SELECT count(*) FROM (SELECT 1 FROM workforce_tasks WHERE status = 'queued' LIMIT $1) q"
            : "SELECT count(*) FROM (SELECT 1 FROM workforce_tasks WHERE status = 'queued' AND skill = $2 LIMIT $1) q", c, tx);
        cmd.Parameters.Add(new NpgsqlParameter<long> { TypedValue = upTo });
        if (skill is not null) cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = skill });
        return (int)(long)(await cmd.ExecuteScalarAsync(ct))!;
    }

    /// <inheritdoc />
    /// <remarks>
    /// Under READ COMMITTED, "still queued and the member below its limit, counted in the same statement" is not enough:
    /// two transactions assigning two different tasks to one member lock different rows, each counts the member's tasks
    /// in its own snapshot (neither sees the other's uncommitted assignment), both find it below its limit, and both
    /// assign. So the assignment is a transaction that first takes the member's advisory transaction lock
    /// (<c>pg_advisory_xact_lock(class, hashtext(agent))</c>, held until commit), then runs the conditional <c>UPDATE</c>
    /// as a statement of its own: its snapshot is taken after the lock was granted, hence after the previous holder
    /// committed, so its count sees every earlier assignment to the member. Assignments to one member (from any node)
    /// are serialized; those to different members are not (a hash collision only serializes two members, harmlessly).
    /// A task's own race (two dispatchers assigning it to two members) is settled by the row lock as in every change.
    /// No deadlock: a transaction holds one advisory lock and waits at most for one task's row, whose holder waits for nothing.
    /// </remarks>
    public async Task<WorkforceTask?> AssignAsync(string id, string agent, int concurrency, DateTimeOffset at, CancellationToken cancellationToken = default)
    {
        WorkforceStoreSupport.Check(id, "id", 200);
        WorkforceStoreSupport.Check(agent, "agent", 200);
        ArgumentOutOfRangeException.ThrowIfLessThan(concurrency, 1);
        return await InTransactionAsync(async (c, tx, ct) =>
        {
            await using (var lockCmd = new NpgsqlCommand($"SELECT pg_advisory_xact_lock({MemberLockClass}, hashtext($1))", c, tx))
            {
                lockCmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = agent });
                await lockCmd.ExecuteNonQueryAsync(ct);
            }
            await using var cmd = new NpgsqlCommand($"""
                UPDATE workforce_tasks SET status = 'assigned', agent = $2, version = version + 1, updated_at = $3
                WHERE id = $1 AND status = 'queued'
                  AND (SELECT count(*) FROM workforce_tasks w WHERE w.agent = $2 AND w.status IN ('assigned', 'running')) < $4
                RETURNING {Columns}
                """, c, tx);
            cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = id });
            cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = agent });
            cmd.Parameters.Add(new NpgsqlParameter<long> { TypedValue = at.ToUnixTimeMilliseconds() });
            cmd.Parameters.Add(new NpgsqlParameter<long> { TypedValue = concurrency });
            await using var r = await cmd.ExecuteReaderAsync(ct);
            return await r.ReadAsync(ct) ? Read(r) : null;
        }, cancellationToken);
    }

    /// <inheritdoc />
    public Task<WorkforceTask?> StartedAsync(string id, string runId, DateTimeOffset at, CancellationToken cancellationToken = default)
    {
        WorkforceStoreSupport.Check(runId, "runId", 200);
        return ChangeAsync(id, "status = 'running', run_id = $3", "status = 'assigned'", [runId], at, cancellationToken);
    }

    /// <inheritdoc />
    public Task<WorkforceTask?> FinishAsync(string id, WorkforceTaskStatus status, string? output, string? error, DateTimeOffset at, CancellationToken cancellationToken = default)
    {
        if (status is not (WorkforceTaskStatus.Succeeded or WorkforceTaskStatus.Failed or WorkforceTaskStatus.Canceled))
            throw new ArgumentOutOfRangeException(nameof(status), status, "a task finishes succeeded, failed or canceled");
        return ChangeAsync(id, "status = $3, output = $4, error = $5", "status = 'running'", [WorkforceStoreSupport.Name(status), output, error], at, cancellationToken);
    }

    /// <inheritdoc />
    public async Task<WorkforceTask?> GetAsync(string id, CancellationToken cancellationToken = default)
    {
        WorkforceStoreSupport.Check(id, "id", 200);
        await using var c = await OpenAsync(cancellationToken);
        await using var cmd = new NpgsqlCommand($"SELECT {Columns} FROM workforce_tasks WHERE id = $1", c);
        cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = id });
        await using var r = await cmd.ExecuteReaderAsync(cancellationToken);
        return await r.ReadAsync(cancellationToken) ? Read(r) : null;
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<WorkforceTask>> ListAsync(WorkforceTaskStatus status, int limit, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(limit, 1);
        await using var c = await OpenAsync(cancellationToken);
        await using var cmd = new NpgsqlCommand($"SELECT {Columns} FROM workforce_tasks WHERE status = $1 ORDER BY seq LIMIT $2", c);
        cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = WorkforceStoreSupport.Name(status) });
        cmd.Parameters.Add(new NpgsqlParameter<long> { TypedValue = limit });
        var list = new List<WorkforceTask>();
        await using var r = await cmd.ExecuteReaderAsync(cancellationToken);
        while (await r.ReadAsync(cancellationToken)) list.Add(Read(r));
        return list;
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<WorkforceLoad>> LoadsAsync(CancellationToken cancellationToken = default)
    {
        await using var c = await OpenAsync(cancellationToken);
        await using var cmd = new NpgsqlCommand("""
            SELECT agent, count(*) FILTER (WHERE status IN ('assigned', 'running')), count(*) FILTER (WHERE status IN ('succeeded', 'failed', 'canceled'))
            FROM workforce_tasks WHERE agent IS NOT NULL GROUP BY agent ORDER BY agent
            """, c);
        var list = new List<WorkforceLoad>();
        await using var r = await cmd.ExecuteReaderAsync(cancellationToken);
        while (await r.ReadAsync(cancellationToken)) list.Add(new WorkforceLoad(r.GetString(0), checked((int)r.GetInt64(1)), r.GetInt64(2)));
        return list;
    }

    /// <inheritdoc />
    public async Task<IReadOnlyDictionary<string, int>> QueuedBySkillAsync(CancellationToken cancellationToken = default)
    {
        await using var c = await OpenAsync(cancellationToken);
        await using var cmd = new NpgsqlCommand("SELECT skill, count(*) FROM workforce_tasks WHERE status = 'queued' GROUP BY skill", c);
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        await using var r = await cmd.ExecuteReaderAsync(cancellationToken);
        while (await r.ReadAsync(cancellationToken)) counts[r.GetString(0)] = checked((int)r.GetInt64(1));
        return counts;
    }

    /// <summary>One conditional <c>UPDATE</c> of the task (<c>$1</c> its id, <c>$2</c> the time, then <paramref name="values"/>); the task as changed, or null.</summary>
    private async Task<WorkforceTask?> ChangeAsync(string id, string set, string condition, object?[] values, DateTimeOffset at, CancellationToken ct)
    {
        WorkforceStoreSupport.Check(id, "id", 200);
        return await InTransactionAsync(async (c, tx, ct) =>
        {
            await using var cmd = new NpgsqlCommand($"UPDATE workforce_tasks SET {set}, version = version + 1, updated_at = $2 WHERE id = $1 AND {condition} RETURNING {Columns}", c, tx);
            cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = id });
            cmd.Parameters.Add(new NpgsqlParameter<long> { TypedValue = at.ToUnixTimeMilliseconds() });
            foreach (var v in values) cmd.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Text, Value = (object?)v ?? DBNull.Value });
            await using var r = await cmd.ExecuteReaderAsync(ct);
            return await r.ReadAsync(ct) ? Read(r) : null;
        }, ct);
    }

    private static WorkforceTask Read(NpgsqlDataReader r) => new(
        r.GetString(0), r.GetString(1), r.GetString(2), WorkforceStoreSupport.Parse(r.GetString(3)), r.IsDBNull(4) ? null : r.GetString(4), r.IsDBNull(5) ? null : r.GetString(5),
        r.GetString(6), r.IsDBNull(7) ? null : r.GetString(7), DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(8)), DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(9)),
        r.GetInt64(10), r.IsDBNull(11) ? null : r.GetString(11), r.IsDBNull(12) ? null : r.GetString(12));
}
