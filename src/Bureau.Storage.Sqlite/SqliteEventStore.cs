using Microsoft.Data.Sqlite;

namespace Bureau.Storage.Sqlite;

/// <summary>
/// Dead letters and poll cursors in the same SQLite file as the runs (tables <c>dead_letters</c> and
/// <c>poll_cursors</c>, migration step 8), and A2A push configs (<c>a2a_push_configs</c>). Each call opens its own pooled connection (synchronous FULL, SQLite's
/// default), so it is safe beside a host on the same database (<c>bureau events dead</c> while <c>bureau serve</c> runs).
/// </summary>
public sealed class SqliteEventStore(SqliteStoreOptions options) : SqliteSideStore(options, "the event store"), IEventStore, IA2APushConfigStore
{
    /// <inheritdoc />
    public async Task<bool> AddDeadLetterAsync(DeadLetter letter, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(letter);
        return await WriteAsync(cmd =>
        {
            cmd.CommandText = """
                INSERT INTO dead_letters(id, key, trigger, event_id, reason, agent, input, event, data, error, run_id, at)
                VALUES($id, $key, $trigger, $event_id, $reason, $agent, $input, $event, $data, $error, $run_id, $at)
                ON CONFLICT DO NOTHING
                """;
            cmd.Parameters.AddWithValue("$id", letter.Id);
            cmd.Parameters.AddWithValue("$key", letter.Key);
            cmd.Parameters.AddWithValue("$trigger", letter.Trigger);
            cmd.Parameters.AddWithValue("$event_id", (object?)letter.EventId ?? DBNull.Value);
            cmd.Parameters.AddWithValue("$reason", letter.Reason);
            cmd.Parameters.AddWithValue("$agent", letter.Agent);
            cmd.Parameters.AddWithValue("$input", letter.Input);
            cmd.Parameters.AddWithValue("$event", (object?)letter.Event ?? DBNull.Value);
            cmd.Parameters.AddWithValue("$data", (object?)letter.Data ?? DBNull.Value);
            cmd.Parameters.AddWithValue("$error", letter.Error);
            cmd.Parameters.AddWithValue("$run_id", (object?)letter.RunId ?? DBNull.Value);
            cmd.Parameters.AddWithValue("$at", letter.At.ToUnixTimeMilliseconds());
        }, cancellationToken) == 1;
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<DeadLetter>> ListDeadLettersAsync(bool includeRetried = false, int limit = 100, CancellationToken cancellationToken = default)
    {
        await using var c = await OpenAsync(cancellationToken);
        await using var cmd = c.CreateCommand();
        cmd.CommandText = $"SELECT {Columns} FROM dead_letters {(includeRetried ? "" : "WHERE retried_at IS NULL")} ORDER BY seq DESC LIMIT $limit";
        cmd.Parameters.AddWithValue("$limit", Math.Max(1, limit));
        await using var r = await cmd.ExecuteReaderAsync(cancellationToken);
        var list = new List<DeadLetter>();
        while (await r.ReadAsync(cancellationToken)) list.Add(Read(r));
        return list;
    }

    /// <inheritdoc />
    public async Task<DeadLetter?> GetDeadLetterAsync(string id, CancellationToken cancellationToken = default)
    {
        await using var c = await OpenAsync(cancellationToken);
        await using var cmd = c.CreateCommand();
        cmd.CommandText = $"SELECT {Columns} FROM dead_letters WHERE id = $id";
        cmd.Parameters.AddWithValue("$id", id);
        await using var r = await cmd.ExecuteReaderAsync(cancellationToken);
        return await r.ReadAsync(cancellationToken) ? Read(r) : null;
    }

    /// <inheritdoc />
    public Task MarkRetriedAsync(string id, int retries, string runId, DateTimeOffset at, CancellationToken cancellationToken = default) =>
        WriteAsync(cmd =>
        {
            cmd.CommandText = "UPDATE dead_letters SET retries = $retries, retried_at = $at, retry_run_id = $run WHERE id = $id AND retries < $retries";
            cmd.Parameters.AddWithValue("$id", id);
            cmd.Parameters.AddWithValue("$retries", retries);
            cmd.Parameters.AddWithValue("$run", runId);
            cmd.Parameters.AddWithValue("$at", at.ToUnixTimeMilliseconds());
        }, cancellationToken);

    /// <inheritdoc />
    public async Task<string?> GetCursorAsync(string trigger, CancellationToken cancellationToken = default)
    {
        await using var c = await OpenAsync(cancellationToken);
        await using var cmd = c.CreateCommand();
        cmd.CommandText = "SELECT value FROM poll_cursors WHERE trigger = $trigger";
        cmd.Parameters.AddWithValue("$trigger", trigger);
        return await cmd.ExecuteScalarAsync(cancellationToken) as string;
    }

    /// <inheritdoc />
    public Task SetCursorAsync(string trigger, string value, DateTimeOffset at, CancellationToken cancellationToken = default) =>
        WriteAsync(cmd =>
        {
            cmd.CommandText = "INSERT INTO poll_cursors(trigger, value, at) VALUES($trigger, $value, $at) ON CONFLICT(trigger) DO UPDATE SET value = excluded.value, at = excluded.at";
            cmd.Parameters.AddWithValue("$trigger", trigger);
            cmd.Parameters.AddWithValue("$value", value);
            cmd.Parameters.AddWithValue("$at", at.ToUnixTimeMilliseconds());
        }, cancellationToken);

    /// <inheritdoc />
    public async Task<IReadOnlyList<string>> ListPushConfigsAsync(string taskId, CancellationToken cancellationToken = default)
    {
        await using var c = await OpenAsync(cancellationToken);
        await using var cmd = c.CreateCommand();
        cmd.CommandText = "SELECT config FROM a2a_push_configs WHERE task_id = $task ORDER BY seq";
        cmd.Parameters.AddWithValue("$task", taskId);
        return await ReadStringsAsync(cmd, cancellationToken);
    }

    /// <inheritdoc />
    public async Task<bool> PutPushConfigAsync(string taskId, string configId, string config, int max, DateTimeOffset at, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(config);
        await using var c = await OpenAsync(cancellationToken);
        try
        {
            await using var tx = (SqliteTransaction)await c.BeginTransactionAsync(cancellationToken); // BEGIN IMMEDIATE: the count and the insert are one decision
            await using (var count = c.CreateCommand())
            {
                count.Transaction = tx;
                count.CommandText = "SELECT count(*) FROM a2a_push_configs WHERE task_id = $task AND config_id <> $id";
                count.Parameters.AddWithValue("$task", taskId);
                count.Parameters.AddWithValue("$id", configId);
                if ((long)(await count.ExecuteScalarAsync(cancellationToken))! >= max) return false;
            }
            await using (var put = c.CreateCommand())
            {
                put.Transaction = tx;
                put.CommandText = """
                    DELETE FROM a2a_push_configs WHERE task_id = $task AND config_id = $id;
                    INSERT INTO a2a_push_configs(task_id, config_id, config, watched, at) VALUES($task, $id, $config, 1, $at);
                    UPDATE a2a_push_configs SET watched = 1 WHERE task_id = $task;
                    """;
                put.Parameters.AddWithValue("$task", taskId);
                put.Parameters.AddWithValue("$id", configId);
                put.Parameters.AddWithValue("$config", config);
                put.Parameters.AddWithValue("$at", at.ToUnixTimeMilliseconds());
                await put.ExecuteNonQueryAsync(cancellationToken);
            }
            await tx.CommitAsync(cancellationToken);
            return true;
        }
        catch (SqliteException ex) when (SqliteFaults.Classify(ex, Options.Path) is { } fault)
        {
            throw fault;
        }
    }

    /// <inheritdoc />
    public async Task<bool> DeletePushConfigAsync(string taskId, string configId, CancellationToken cancellationToken = default) =>
        await WriteAsync(cmd =>
        {
            cmd.CommandText = "DELETE FROM a2a_push_configs WHERE task_id = $task AND config_id = $id";
            cmd.Parameters.AddWithValue("$task", taskId);
            cmd.Parameters.AddWithValue("$id", configId);
        }, cancellationToken) > 0;

    /// <inheritdoc />
    public async Task<IReadOnlyList<string>> ListWatchedPushTasksAsync(CancellationToken cancellationToken = default)
    {
        await using var c = await OpenAsync(cancellationToken);
        await using var cmd = c.CreateCommand();
        cmd.CommandText = "SELECT task_id FROM a2a_push_configs WHERE watched = 1 GROUP BY task_id ORDER BY min(seq)";
        return await ReadStringsAsync(cmd, cancellationToken);
    }

    /// <inheritdoc />
    public Task UnwatchPushTaskAsync(string taskId, CancellationToken cancellationToken = default) =>
        WriteAsync(cmd =>
        {
            cmd.CommandText = "UPDATE a2a_push_configs SET watched = 0 WHERE task_id = $task AND watched = 1";
            cmd.Parameters.AddWithValue("$task", taskId);
        }, cancellationToken);

    private static async Task<IReadOnlyList<string>> ReadStringsAsync(SqliteCommand cmd, CancellationToken ct)
    {
        await using var r = await cmd.ExecuteReaderAsync(ct);
        var list = new List<string>();
        while (await r.ReadAsync(ct)) list.Add(r.GetString(0));
        return list;
    }

    private const string Columns = "id, key, trigger, event_id, reason, agent, input, event, data, error, run_id, at, retries, retried_at, retry_run_id";

    private static DeadLetter Read(SqliteDataReader r) => new()
    {
        Id = r.GetString(0),
        Key = r.GetString(1),
        Trigger = r.GetString(2),
        EventId = r.IsDBNull(3) ? null : r.GetString(3),
        Reason = r.GetString(4),
        Agent = r.GetString(5),
        Input = r.GetString(6),
        Event = r.IsDBNull(7) ? null : r.GetString(7),
        Data = r.IsDBNull(8) ? null : r.GetString(8),
        Error = r.GetString(9),
        RunId = r.IsDBNull(10) ? null : r.GetString(10),
        At = DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(11)),
        Retries = r.GetInt32(12),
        RetriedAt = r.IsDBNull(13) ? null : DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(13)),
        RetryRunId = r.IsDBNull(14) ? null : r.GetString(14),
    };

    private async Task<int> WriteAsync(Action<SqliteCommand> build, CancellationToken ct)
    {
        await using var c = await OpenAsync(ct);
        await using var cmd = c.CreateCommand();
        build(cmd);
        try
        {
            return await cmd.ExecuteNonQueryAsync(ct);
        }
        catch (SqliteException ex) when (SqliteFaults.Classify(ex, Options.Path) is { } fault)
        {
            throw fault;
        }
    }
}
