using Microsoft.Data.Sqlite;

namespace Bureau.Storage.Sqlite;

/// <summary>
/// Teams' operational boards in the runs' SQLite file (tables <c>board_tasks</c>, <c>board_decisions</c>,
/// <c>board_keys</c>, migration step 10). A state change of a task is one conditional <c>UPDATE</c> (a claim:
/// <c>WHERE status = 'open'</c>), so exactly one of any number of racing claims, from any thread, connection or
/// process, is applied; the others get the task as it is. Each call opens its own pooled connection.
/// </summary>
public sealed class SqliteBoardStore(SqliteStoreOptions options) : SqliteSideStore(options, "the board store"), IBoardStore
{
    private const string TaskColumns = "board, id, title, detail, status, claimed_by, version, created_by, created_at, updated_at, note";

    /// <inheritdoc />
    public async Task<BoardTask> AddTaskAsync(string board, string id, string title, string? detail, string by, DateTimeOffset at, CancellationToken cancellationToken = default)
    {
        Check(board, "board");
        Check(id, "id");
        Check(title, "title");
        Check(by, "by");
        await using var c = await OpenAsync(cancellationToken);
        await ExecAsync(c, """
            INSERT INTO board_tasks(board, id, seq, title, detail, status, claimed_by, version, created_by, created_at, updated_at)
            VALUES($board, $id, coalesce((SELECT max(seq) FROM board_tasks WHERE board = $board), 0) + 1, $title, $detail, 'open', NULL, 1, $by, $at, $at)
            ON CONFLICT(board, id) DO NOTHING
            """, p =>
        {
            p.AddWithValue("$board", board);
            p.AddWithValue("$id", id);
            p.AddWithValue("$title", title);
            p.AddWithValue("$detail", (object?)detail ?? DBNull.Value);
            p.AddWithValue("$by", by);
            p.AddWithValue("$at", at.ToUnixTimeMilliseconds());
        }, cancellationToken);
        return (await TaskAsync(c, board, id, cancellationToken))!;
    }

    /// <inheritdoc />
    public Task<BoardTaskResult> ClaimAsync(string board, string id, string by, DateTimeOffset at, CancellationToken cancellationToken = default) =>
        ChangeAsync(board, id, by, at, "status = 'claimed', claimed_by = $by", "status = 'open'", null, cancellationToken);

    /// <inheritdoc />
    public Task<BoardTaskResult> CompleteAsync(string board, string id, string by, string? result, DateTimeOffset at, CancellationToken cancellationToken = default) =>
        ChangeAsync(board, id, by, at, "status = 'done', note = $note", "status = 'claimed' AND claimed_by = $by", result, cancellationToken);

    /// <inheritdoc />
    public Task<BoardTaskResult> BlockAsync(string board, string id, string by, string reason, DateTimeOffset at, CancellationToken cancellationToken = default)
    {
        Check(reason, "reason");
        return ChangeAsync(board, id, by, at, "status = 'blocked', claimed_by = $by, note = $note", "(status = 'open' OR (status = 'claimed' AND claimed_by = $by))", reason, cancellationToken);
    }

    private async Task<BoardTaskResult> ChangeAsync(string board, string id, string by, DateTimeOffset at, string set, string condition, string? note, CancellationToken ct)
    {
        Check(board, "board");
        Check(id, "id");
        Check(by, "by");
        await using var c = await OpenAsync(ct);
        var changed = await ExecAsync(c, $"UPDATE board_tasks SET {set}, version = version + 1, updated_at = $at WHERE board = $board AND id = $id AND {condition}", p =>
        {
            p.AddWithValue("$board", board);
            p.AddWithValue("$id", id);
            p.AddWithValue("$by", by);
            p.AddWithValue("$at", at.ToUnixTimeMilliseconds());
            p.AddWithValue("$note", (object?)note ?? DBNull.Value);
        }, ct);
        var task = await TaskAsync(c, board, id, ct);
        return new BoardTaskResult(task is null ? BoardChange.NotFound : changed == 1 ? BoardChange.Applied : BoardChange.Conflict, task);
    }

    /// <inheritdoc />
    public async Task<BoardDecision> AddDecisionAsync(string board, string title, string text, string by, DateTimeOffset at, CancellationToken cancellationToken = default)
    {
        Check(board, "board");
        Check(title, "title");
        Check(text, "text");
        Check(by, "by");
        await using var c = await OpenAsync(cancellationToken);
        await using var cmd = c.CreateCommand();
        cmd.CommandText = "INSERT INTO board_decisions(board, title, text, by, at) VALUES($board, $title, $text, $by, $at); SELECT last_insert_rowid();";
        cmd.Parameters.AddWithValue("$board", board);
        cmd.Parameters.AddWithValue("$title", title);
        cmd.Parameters.AddWithValue("$text", text);
        cmd.Parameters.AddWithValue("$by", by);
        cmd.Parameters.AddWithValue("$at", at.ToUnixTimeMilliseconds());
        var seq = Convert.ToInt64(await Guard(() => cmd.ExecuteScalarAsync(cancellationToken)), System.Globalization.CultureInfo.InvariantCulture);
        return new BoardDecision(board, seq, title, text, by, DateTimeOffset.FromUnixTimeMilliseconds(at.ToUnixTimeMilliseconds()));
    }

    /// <inheritdoc />
    public async Task<BoardKeyResult> SetKeyAsync(string board, string key, string value, long expectedVersion, string by, DateTimeOffset at, CancellationToken cancellationToken = default)
    {
        Check(board, "board");
        Check(key, "key");
        Check(by, "by");
        ArgumentNullException.ThrowIfNull(value);
        ArgumentOutOfRangeException.ThrowIfNegative(expectedVersion);
        await using var c = await OpenAsync(cancellationToken);
        // Each statement is atomic: an insert when 0 is expected (nothing if the key exists), or an update at the expected version.
        var changed = await ExecAsync(c, """
            INSERT INTO board_keys(board, key, value, version, by, at) SELECT $board, $key, $value, 1, $by, $at WHERE $expected = 0
            ON CONFLICT(board, key) DO NOTHING;
            UPDATE board_keys SET value = $value, version = version + 1, by = $by, at = $at WHERE board = $board AND key = $key AND version = $expected AND $expected > 0;
            """, p =>
        {
            p.AddWithValue("$board", board);
            p.AddWithValue("$key", key);
            p.AddWithValue("$value", value);
            p.AddWithValue("$by", by);
            p.AddWithValue("$at", at.ToUnixTimeMilliseconds());
            p.AddWithValue("$expected", expectedVersion);
        }, cancellationToken);
        var current = (await KeysAsync(c, board, key, cancellationToken)).FirstOrDefault();
        return new BoardKeyResult(changed == 1 ? BoardChange.Applied : BoardChange.Conflict, current);
    }

    /// <inheritdoc />
    public async Task<BoardSnapshot> ReadAsync(string board, CancellationToken cancellationToken = default)
    {
        Check(board, "board");
        await using var c = await OpenAsync(cancellationToken);
        var tasks = new List<BoardTask>();
        await using (var cmd = c.CreateCommand())
        {
            cmd.CommandText = $"SELECT {TaskColumns} FROM board_tasks WHERE board = $board ORDER BY seq";
            cmd.Parameters.AddWithValue("$board", board);
            await using var r = await cmd.ExecuteReaderAsync(cancellationToken);
            while (await r.ReadAsync(cancellationToken)) tasks.Add(ReadTask(r));
        }
        var decisions = new List<BoardDecision>();
        await using (var cmd = c.CreateCommand())
        {
            cmd.CommandText = "SELECT seq, title, text, by, at FROM board_decisions WHERE board = $board ORDER BY seq";
            cmd.Parameters.AddWithValue("$board", board);
            await using var r = await cmd.ExecuteReaderAsync(cancellationToken);
            while (await r.ReadAsync(cancellationToken))
                decisions.Add(new BoardDecision(board, r.GetInt64(0), r.GetString(1), r.GetString(2), r.GetString(3), DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(4))));
        }
        return new BoardSnapshot(board, tasks, decisions, await KeysAsync(c, board, null, cancellationToken));
    }

    private static async Task<IReadOnlyList<BoardKey>> KeysAsync(SqliteConnection c, string board, string? key, CancellationToken ct)
    {
        await using var cmd = c.CreateCommand();
        cmd.CommandText = $"SELECT key, value, version, by, at FROM board_keys WHERE board = $board {(key is null ? "" : "AND key = $key")} ORDER BY key";
        cmd.Parameters.AddWithValue("$board", board);
        if (key is not null) cmd.Parameters.AddWithValue("$key", key);
        var list = new List<BoardKey>();
        await using var r = await cmd.ExecuteReaderAsync(ct);
        while (await r.ReadAsync(ct)) list.Add(new BoardKey(board, r.GetString(0), r.GetString(1), r.GetInt64(2), r.GetString(3), DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(4))));
        return list;
    }

    private static async Task<BoardTask?> TaskAsync(SqliteConnection c, string board, string id, CancellationToken ct)
    {
        await using var cmd = c.CreateCommand();
        cmd.CommandText = $"SELECT {TaskColumns} FROM board_tasks WHERE board = $board AND id = $id";
        cmd.Parameters.AddWithValue("$board", board);
        cmd.Parameters.AddWithValue("$id", id);
        await using var r = await cmd.ExecuteReaderAsync(ct);
        return await r.ReadAsync(ct) ? ReadTask(r) : null;
    }

    private static BoardTask ReadTask(SqliteDataReader r) => new(
        r.GetString(0), r.GetString(1), r.GetString(2), r.IsDBNull(3) ? null : r.GetString(3),
        r.GetString(4) switch { "claimed" => BoardTaskStatus.Claimed, "done" => BoardTaskStatus.Done, "blocked" => BoardTaskStatus.Blocked, _ => BoardTaskStatus.Open },
        r.IsDBNull(5) ? null : r.GetString(5), r.GetInt64(6), r.GetString(7),
        DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(8)), DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(9)), r.IsDBNull(10) ? null : r.GetString(10));

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

    private static void Check(string? value, string what)
    {
        if (string.IsNullOrWhiteSpace(value)) throw new ArgumentException($"board: '{what}' must not be empty", what);
        if (value.Length > 10_000) throw new ArgumentException($"board: '{what}' is longer than 10000 characters", what);
    }
}
