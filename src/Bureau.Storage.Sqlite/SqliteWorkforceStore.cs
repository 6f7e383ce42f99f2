using Microsoft.Data.Sqlite;

namespace Bureau.Storage.Sqlite;

/// <summary>
/// The workforce's durable inbox in the runs' SQLite file (table <c>workforce_tasks</c>, migration step 12). Every state
/// change is one conditional <c>UPDATE</c>: an assignment needs the task queued and the member below its concurrency limit
/// (counted in the same statement), so racing dispatchers never assign a task twice nor overload a member. Each call
/// opens its own pooled connection.
/// </summary>
public sealed class SqliteWorkforceStore(SqliteStoreOptions options) : SqliteSideStore(options, "the workforce store"), IWorkforceStore
{
    private const string Columns = "id, skill, input, status, agent, run_id, source, actor, created_at, updated_at, version, output, error";

    /// <inheritdoc />
    public async Task<WorkforceEnqueueResult> EnqueueAsync(string id, string skill, string input, string source, string? actor, DateTimeOffset at, CancellationToken cancellationToken = default)
    {
        WorkforceStoreSupport.CheckNewTask(id, skill, source, input);
        await using var c = await OpenAsync(cancellationToken);
        var inserted = await ExecAsync(c, $"""
            INSERT INTO workforce_tasks(id, skill, input, status, source, actor, created_at, updated_at, version)
            VALUES($id, $skill, $input, 'queued', $source, $actor, $at, $at, 1)
            ON CONFLICT(id) DO NOTHING
            """, p => BindNewTask(p, id, skill, input, source, actor, at), cancellationToken);
        return new WorkforceEnqueueResult((await ReadAsync(c, id, cancellationToken))!, inserted == 1);
    }

    /// <summary>The parameters of the <c>INSERT</c> of a new queued task.</summary>
    private static void BindNewTask(SqliteParameterCollection p, string id, string skill, string input, string source, string? actor, DateTimeOffset at)
    {
        p.AddWithValue("$id", id);
        p.AddWithValue("$skill", skill);
        p.AddWithValue("$input", input);
        p.AddWithValue("$source", source);
        p.AddWithValue("$actor", (object?)actor ?? DBNull.Value);
        p.AddWithValue("$at", at.ToUnixTimeMilliseconds());
    }

    /// <inheritdoc />
    /// <remarks>
    /// One <c>BEGIN IMMEDIATE</c> transaction (SQLite's write lock, held by one writer of the file at a time): the task's id
    /// is looked up, the queued tasks counted (each count stops at its limit, so it reads at most that many index entries)
    /// and the task inserted, so no concurrent add (from this process or another on the file) sees the same count.
    /// The same checks are read first without the write lock: a known id, or an inbox already full then, is answered
    /// without it (a refusal is right for any moment the inbox was full), so a flood of refused tasks does not hold up
    /// the runs' writes to the file.
    /// </remarks>
    public async Task<WorkforceEnqueueResult> EnqueueAsync(string id, string skill, string input, string source, string? actor, DateTimeOffset at, WorkforceInboxLimits limits, CancellationToken cancellationToken = default)
    {
        WorkforceStoreSupport.CheckNewTask(id, skill, source, input);
        ArgumentNullException.ThrowIfNull(limits);
        await using var c = await OpenAsync(cancellationToken);
        if (await CheckAsync(c, id, skill, limits, cancellationToken) is { } seen) return seen; // no lock: a known id, or full then
        await using var tx = (SqliteTransaction)await Guard(async () => await c.BeginTransactionAsync(cancellationToken)); // BEGIN IMMEDIATE
        if (await CheckAsync(c, id, skill, limits, cancellationToken) is { } existing) return existing;
        await ExecAsync(c, """
            INSERT INTO workforce_tasks(id, skill, input, status, source, actor, created_at, updated_at, version)
            VALUES($id, $skill, $input, 'queued', $source, $actor, $at, $at, 1)
            """, p => BindNewTask(p, id, skill, input, source, actor, at), cancellationToken);
        await Guard(async () => { await tx.CommitAsync(cancellationToken); return 0; });
        var stored = DateTimeOffset.FromUnixTimeMilliseconds(at.ToUnixTimeMilliseconds()); // as read back: milliseconds, UTC
        return new WorkforceEnqueueResult(new WorkforceTask(id, skill, input, WorkforceTaskStatus.Queued, null, null, source, actor, stored, stored, 1), true);
    }

    /// <summary>The task when the id is known; throws when the inbox (or the skill's part) is at its limit; null: room for it.</summary>
    private async Task<WorkforceEnqueueResult?> CheckAsync(SqliteConnection c, string id, string skill, WorkforceInboxLimits limits, CancellationToken ct)
    {
        if (await ReadAsync(c, id, ct) is { } existing) return new WorkforceEnqueueResult(existing, false);
        if (limits.MaxQueued is { } max && await CountQueuedAsync(c, null, max, ct) is var all && all >= max)
            throw new WorkforceInboxFullException(skill, all, max, global: true, limits.RetryAfter);
        if (limits.MaxQueuedForSkill is { } own && await CountQueuedAsync(c, skill, own, ct) is var mine && mine >= own)
            throw new WorkforceInboxFullException(skill, mine, own, global: false, limits.RetryAfter);
        return null;
    }

    /// <summary>Queued tasks (of <paramref name="skill"/>, or all), counted up to <paramref name="upTo"/>.</summary>
    private async Task<int> CountQueuedAsync(SqliteConnection c, string? skill, int upTo, CancellationToken ct)
    {
        await using var cmd = c.CreateCommand();
        cmd.CommandText = skill is null
            ? "SELECT count(*) FROM (SELECT 1 FROM workforce_tasks WHERE status = 'queued' LIMIT $upTo)"
            : "SELECT count(*) FROM (SELECT 1 FROM workforce_tasks WHERE status = 'queued' AND skill = $skill LIMIT $upTo)";
        cmd.Parameters.AddWithValue("$upTo", upTo);
        if (skill is not null) cmd.Parameters.AddWithValue("$skill", skill);
        return (int)(long)(await Guard(() => cmd.ExecuteScalarAsync(ct)))!;
    }

    /// <inheritdoc />
    public async Task<WorkforceTask?> AssignAsync(string id, string agent, int concurrency, DateTimeOffset at, CancellationToken cancellationToken = default)
    {
        WorkforceStoreSupport.Check(agent, "agent", 200);
        ArgumentOutOfRangeException.ThrowIfLessThan(concurrency, 1);
        return await ChangeAsync(id, "status = 'assigned', agent = $agent",
            "status = 'queued' AND (SELECT count(*) FROM workforce_tasks w WHERE w.agent = $agent AND w.status IN ('assigned', 'running')) < $limit",
            p =>
            {
                p.AddWithValue("$agent", agent);
                p.AddWithValue("$limit", concurrency);
            }, at, cancellationToken);
    }

    /// <inheritdoc />
    public Task<WorkforceTask?> StartedAsync(string id, string runId, DateTimeOffset at, CancellationToken cancellationToken = default)
    {
        WorkforceStoreSupport.Check(runId, "runId", 200);
        return ChangeAsync(id, "status = 'running', run_id = $run", "status = 'assigned'", p => p.AddWithValue("$run", runId), at, cancellationToken);
    }

    /// <inheritdoc />
    public Task<WorkforceTask?> FinishAsync(string id, WorkforceTaskStatus status, string? output, string? error, DateTimeOffset at, CancellationToken cancellationToken = default)
    {
        if (status is not (WorkforceTaskStatus.Succeeded or WorkforceTaskStatus.Failed or WorkforceTaskStatus.Canceled))
            throw new ArgumentOutOfRangeException(nameof(status), status, "a task finishes succeeded, failed or canceled");
        return ChangeAsync(id, "status = $status, output = $output, error = $error", "status = 'running'", p =>
        {
            p.AddWithValue("$status", WorkforceStoreSupport.Name(status));
            p.AddWithValue("$output", (object?)output ?? DBNull.Value);
            p.AddWithValue("$error", (object?)error ?? DBNull.Value);
        }, at, cancellationToken);
    }

    /// <inheritdoc />
    public async Task<WorkforceTask?> GetAsync(string id, CancellationToken cancellationToken = default)
    {
        WorkforceStoreSupport.Check(id, "id", 200);
        await using var c = await OpenAsync(cancellationToken);
        return await ReadAsync(c, id, cancellationToken);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<WorkforceTask>> ListAsync(WorkforceTaskStatus status, int limit, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(limit, 1);
        await using var c = await OpenAsync(cancellationToken);
        await using var cmd = c.CreateCommand();
        cmd.CommandText = $"SELECT {Columns} FROM workforce_tasks WHERE status = $status ORDER BY seq LIMIT $limit";
        cmd.Parameters.AddWithValue("$status", WorkforceStoreSupport.Name(status));
        cmd.Parameters.AddWithValue("$limit", limit);
        var list = new List<WorkforceTask>();
        await using var r = await Guard(() => cmd.ExecuteReaderAsync(cancellationToken));
        while (await r.ReadAsync(cancellationToken)) list.Add(Read(r));
        return list;
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<WorkforceLoad>> LoadsAsync(CancellationToken cancellationToken = default)
    {
        await using var c = await OpenAsync(cancellationToken);
        await using var cmd = c.CreateCommand();
        cmd.CommandText = """
            SELECT agent, sum(status IN ('assigned', 'running')), sum(status IN ('succeeded', 'failed', 'canceled'))
            FROM workforce_tasks WHERE agent IS NOT NULL GROUP BY agent ORDER BY agent
            """;
        var list = new List<WorkforceLoad>();
        await using var r = await Guard(() => cmd.ExecuteReaderAsync(cancellationToken));
        while (await r.ReadAsync(cancellationToken)) list.Add(new WorkforceLoad(r.GetString(0), r.GetInt32(1), r.GetInt64(2)));
        return list;
    }

    /// <inheritdoc />
    public async Task<IReadOnlyDictionary<string, int>> QueuedBySkillAsync(CancellationToken cancellationToken = default)
    {
        await using var c = await OpenAsync(cancellationToken);
        await using var cmd = c.CreateCommand();
        cmd.CommandText = "SELECT skill, count(*) FROM workforce_tasks WHERE status = 'queued' GROUP BY skill";
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        await using var r = await Guard(() => cmd.ExecuteReaderAsync(cancellationToken));
        while (await r.ReadAsync(cancellationToken)) counts[r.GetString(0)] = r.GetInt32(1);
        return counts;
    }

    private async Task<WorkforceTask?> ChangeAsync(string id, string set, string condition, Action<SqliteParameterCollection> bind, DateTimeOffset at, CancellationToken ct)
    {
        WorkforceStoreSupport.Check(id, "id", 200);
        await using var c = await OpenAsync(ct);
        var changed = await ExecAsync(c, $"UPDATE workforce_tasks SET {set}, version = version + 1, updated_at = $at WHERE id = $id AND {condition}", p =>
        {
            p.AddWithValue("$id", id);
            p.AddWithValue("$at", at.ToUnixTimeMilliseconds());
            bind(p);
        }, ct);
        return changed == 1 ? await ReadAsync(c, id, ct) : null;
    }

    private async Task<WorkforceTask?> ReadAsync(SqliteConnection c, string id, CancellationToken ct)
    {
        await using var cmd = c.CreateCommand();
        cmd.CommandText = $"SELECT {Columns} FROM workforce_tasks WHERE id = $id";
        cmd.Parameters.AddWithValue("$id", id);
        await using var r = await Guard(() => cmd.ExecuteReaderAsync(ct));
        return await r.ReadAsync(ct) ? Read(r) : null;
    }

    private static WorkforceTask Read(SqliteDataReader r) => new(
        r.GetString(0), r.GetString(1), r.GetString(2), WorkforceStoreSupport.Parse(r.GetString(3)), r.IsDBNull(4) ? null : r.GetString(4), r.IsDBNull(5) ? null : r.GetString(5),
        r.GetString(6), r.IsDBNull(7) ? null : r.GetString(7), DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(8)), DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(9)),
        r.GetInt64(10), r.IsDBNull(11) ? null : r.GetString(11), r.IsDBNull(12) ? null : r.GetString(12));

    private async Task<int> ExecAsync(SqliteConnection c, string sql, Action<SqliteParameterCollection> bind, CancellationToken ct)
    {
        await using var cmd = c.CreateCommand();
        cmd.CommandText = sql;
        bind(cmd.Parameters);
        return await Guard(() => cmd.ExecuteNonQueryAsync(ct));
    }

    private async Task<T> Guard<T>(Func<Task<T>> action)
    {
        try
        {
            return await action();
        }
        catch (SqliteException ex) when (SqliteFaults.Classify(ex, Options.Path) is { } fault)
        {
            throw fault;
        }
    }
}
