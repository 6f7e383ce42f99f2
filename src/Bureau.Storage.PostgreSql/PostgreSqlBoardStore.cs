using Npgsql;
using NpgsqlTypes;

namespace Bureau.Storage.PostgreSql;

/// <summary>
/// Teams' operational boards in Bureau's PostgreSQL schema (tables <c>board_tasks</c>, <c>board_decisions</c>,
/// <c>board_keys</c>, migration step 2), with the SQLite store's semantics (decision 0025). A state change of a task is
/// one conditional <c>UPDATE</c> (a claim: <c>WHERE status = 'open'</c>): the row lock orders racing claims of any node,
/// and each re-checks the condition on the committed row, so exactly one is applied and the others get the task as it is.
/// A key's compare-and-set is one statement too (an insert when absent is expected, an update at the expected version).
/// </summary>
public sealed class PostgreSqlBoardStore : PostgreSqlSideStore, IBoardStore
{
    private const string TaskColumns = "board, id, title, detail, status, claimed_by, version, created_by, created_at, updated_at, note";

    /// <summary>Creates the store on its own pool.</summary>
    public PostgreSqlBoardStore(PostgreSqlStoreOptions options) : base(new PostgreSqlDatabase(options), ownsDatabase: true, "the board store") { }

    /// <summary>Creates the store on a pool shared with the other stores of the database.</summary>
    public PostgreSqlBoardStore(PostgreSqlDatabase database) : base(database, ownsDatabase: false, "the board store") { }

    /// <inheritdoc />
    public async Task<BoardTask> AddTaskAsync(string board, string id, string title, string? detail, string by, DateTimeOffset at, CancellationToken cancellationToken = default)
    {
        Check(board, "board");
        Check(id, "id");
        Check(title, "title");
        Check(by, "by");
        await WriteAsync("""
            INSERT INTO board_tasks(board, id, title, detail, status, claimed_by, version, created_by, created_at, updated_at)
            VALUES($1, $2, $3, $4, 'open', NULL, 1, $5, $6, $6)
            ON CONFLICT(board, id) DO NOTHING
            """, [board, id, title, detail, by, at.ToUnixTimeMilliseconds()], cancellationToken);
        await using var c = await OpenAsync(cancellationToken);
        return (await TaskAsync(c, board, id, cancellationToken))!;
    }

    /// <inheritdoc />
    public Task<BoardTaskResult> ClaimAsync(string board, string id, string by, DateTimeOffset at, CancellationToken cancellationToken = default) =>
        ChangeAsync(board, id, by, at, "status = 'claimed', claimed_by = $3", "status = 'open'", null, cancellationToken);

    /// <inheritdoc />
    public Task<BoardTaskResult> CompleteAsync(string board, string id, string by, string? result, DateTimeOffset at, CancellationToken cancellationToken = default) =>
        ChangeAsync(board, id, by, at, "status = 'done', note = $5", "status = 'claimed' AND claimed_by = $3", result, cancellationToken);

    /// <inheritdoc />
    public Task<BoardTaskResult> BlockAsync(string board, string id, string by, string reason, DateTimeOffset at, CancellationToken cancellationToken = default)
    {
        Check(reason, "reason");
        return ChangeAsync(board, id, by, at, "status = 'blocked', claimed_by = $3, note = $5", "(status = 'open' OR (status = 'claimed' AND claimed_by = $3))", reason, cancellationToken);
    }

    private async Task<BoardTaskResult> ChangeAsync(string board, string id, string by, DateTimeOffset at, string set, string condition, string? note, CancellationToken ct)
    {
        Check(board, "board");
        Check(id, "id");
        Check(by, "by");
        object?[] parameters = set.Contains("$5", StringComparison.Ordinal) ? [board, id, by, at.ToUnixTimeMilliseconds(), note] : [board, id, by, at.ToUnixTimeMilliseconds()];
        var changed = await WriteAsync($"UPDATE board_tasks SET {set}, version = version + 1, updated_at = $4 WHERE board = $1 AND id = $2 AND {condition}", parameters, ct);
        await using var c = await OpenAsync(ct);
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
        var seq = await InTransactionAsync(async (c, tx, ct) =>
        {
            await using var cmd = new NpgsqlCommand("INSERT INTO board_decisions(board, title, text, \"by\", at) VALUES($1, $2, $3, $4, $5) RETURNING seq", c, tx);
            cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = board });
            cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = title });
            cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = text });
            cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = by });
            cmd.Parameters.Add(new NpgsqlParameter<long> { TypedValue = at.ToUnixTimeMilliseconds() });
            return (long)(await cmd.ExecuteScalarAsync(ct))!;
        }, cancellationToken);
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
        // One atomic statement either way: an insert when absent is expected (nothing if the key exists), or an update at the expected version.
        var changed = expectedVersion == 0
            ? await WriteAsync("INSERT INTO board_keys(board, key, value, version, \"by\", at) VALUES($1, $2, $3, 1, $4, $5) ON CONFLICT(board, key) DO NOTHING",
                [board, key, value, by, at.ToUnixTimeMilliseconds()], cancellationToken)
            : await WriteAsync("UPDATE board_keys SET value = $3, version = version + 1, \"by\" = $4, at = $5 WHERE board = $1 AND key = $2 AND version = $6",
                [board, key, value, by, at.ToUnixTimeMilliseconds(), expectedVersion], cancellationToken);
        await using var c = await OpenAsync(cancellationToken);
        var current = (await KeysAsync(c, board, key, cancellationToken)).FirstOrDefault();
        return new BoardKeyResult(changed == 1 ? BoardChange.Applied : BoardChange.Conflict, current);
    }

    /// <inheritdoc />
    public async Task<BoardSnapshot> ReadAsync(string board, CancellationToken cancellationToken = default)
    {
        Check(board, "board");
        await using var c = await OpenAsync(cancellationToken);
        var tasks = new List<BoardTask>();
        await using (var cmd = new NpgsqlCommand($"SELECT {TaskColumns} FROM board_tasks WHERE board = $1 ORDER BY seq", c))
        {
            cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = board });
            await using var r = await cmd.ExecuteReaderAsync(cancellationToken);
            while (await r.ReadAsync(cancellationToken)) tasks.Add(ReadTask(r));
        }
        var decisions = new List<BoardDecision>();
        await using (var cmd = new NpgsqlCommand("SELECT seq, title, text, \"by\", at FROM board_decisions WHERE board = $1 ORDER BY seq", c))
        {
            cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = board });
            await using var r = await cmd.ExecuteReaderAsync(cancellationToken);
            while (await r.ReadAsync(cancellationToken))
                decisions.Add(new BoardDecision(board, r.GetInt64(0), r.GetString(1), r.GetString(2), r.GetString(3), DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(4))));
        }
        return new BoardSnapshot(board, tasks, decisions, await KeysAsync(c, board, null, cancellationToken));
    }

    private static async Task<IReadOnlyList<BoardKey>> KeysAsync(NpgsqlConnection c, string board, string? key, CancellationToken ct)
    {
        await using var cmd = new NpgsqlCommand($"SELECT key, value, version, \"by\", at FROM board_keys WHERE board = $1 {(key is null ? "" : "AND key = $2")} ORDER BY key", c);
        cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = board });
        if (key is not null) cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = key });
        var list = new List<BoardKey>();
        await using var r = await cmd.ExecuteReaderAsync(ct);
        while (await r.ReadAsync(ct)) list.Add(new BoardKey(board, r.GetString(0), r.GetString(1), r.GetInt64(2), r.GetString(3), DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(4))));
        return list;
    }

    private static async Task<BoardTask?> TaskAsync(NpgsqlConnection c, string board, string id, CancellationToken ct)
    {
        await using var cmd = new NpgsqlCommand($"SELECT {TaskColumns} FROM board_tasks WHERE board = $1 AND id = $2", c);
        cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = board });
        cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = id });
        await using var r = await cmd.ExecuteReaderAsync(ct);
        return await r.ReadAsync(ct) ? ReadTask(r) : null;
    }

    private static BoardTask ReadTask(NpgsqlDataReader r) => new(
        r.GetString(0), r.GetString(1), r.GetString(2), r.IsDBNull(3) ? null : r.GetString(3),
        r.GetString(4) switch { "claimed" => BoardTaskStatus.Claimed, "done" => BoardTaskStatus.Done, "blocked" => BoardTaskStatus.Blocked, _ => BoardTaskStatus.Open },
        r.IsDBNull(5) ? null : r.GetString(5), r.GetInt64(6), r.GetString(7),
        DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(8)), DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(9)), r.IsDBNull(10) ? null : r.GetString(10));

    private static void Check(string? value, string what)
    {
        if (string.IsNullOrWhiteSpace(value)) throw new ArgumentException($"board: '{what}' must not be empty", what);
        if (value.Length > 10_000) throw new ArgumentException($"board: '{what}' is longer than 10000 characters", what);
    }
}
