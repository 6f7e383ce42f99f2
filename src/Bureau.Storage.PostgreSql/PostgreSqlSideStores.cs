using Npgsql;

namespace Bureau.Storage.PostgreSql;

/// <summary>
/// API keys in Bureau's PostgreSQL schema (table <c>api_keys</c>): id, role, SHA-256 hash and dates, never the key itself.
/// Each change and its audit entry (<c>key.created</c>, <c>key.revoked</c>) commit in one transaction, chained under
/// the audit lock, so a CLI command beside running nodes chains correctly.
/// </summary>
public sealed class PostgreSqlApiKeyStore : PostgreSqlSideStore, IApiKeyStore
{
    /// <summary>Creates the store on its own pool.</summary>
    public PostgreSqlApiKeyStore(PostgreSqlStoreOptions options) : base(new PostgreSqlDatabase(options), ownsDatabase: true, "the API key store") { }

    /// <summary>Creates the store on a pool shared with the other stores of the database.</summary>
    public PostgreSqlApiKeyStore(PostgreSqlDatabase database) : base(database, ownsDatabase: false, "the API key store") { }

    /// <inheritdoc />
    public async Task AddAsync(ApiKeyRecord key, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(key);
        try
        {
            await InTransactionAsync(async (c, tx, ct) =>
            {
                await using var cmd = new NpgsqlCommand("INSERT INTO api_keys(id, name, role, hash, created_at, revoked_at) VALUES($1, $2, $3, $4, $5, $6)", c, tx);
                cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = key.Id });
                cmd.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Text, Value = (object?)key.Name ?? DBNull.Value });
                cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = key.Role.ToWireName() });
                cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = key.Hash });
                cmd.Parameters.Add(new NpgsqlParameter<long> { TypedValue = key.CreatedAt.ToUnixTimeMilliseconds() });
                cmd.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Bigint, Value = key.RevokedAt is { } r ? r.ToUnixTimeMilliseconds() : DBNull.Value });
                await cmd.ExecuteNonQueryAsync(ct);
                await PostgreSqlAudit.AppendAsync(c, tx, key.CreatedAt, key.Name ?? "bk_" + key.Id, "key.created", null, null,
                    new System.Text.Json.Nodes.JsonObject { ["key"] = "bk_" + key.Id, ["name"] = key.Name, ["role"] = key.Role.ToWireName() }.ToJsonString(), ct);
                return 0;
            }, cancellationToken);
        }
        catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.UniqueViolation)
        {
            throw new InvalidOperationException($"an API key with id {key.Id} already exists", ex);
        }
    }

    /// <inheritdoc />
    public async Task<ApiKeyRecord?> FindAsync(string id, CancellationToken cancellationToken = default)
    {
        await using var c = await OpenAsync(cancellationToken);
        await using var cmd = new NpgsqlCommand($"SELECT {Columns} FROM api_keys WHERE id = $1", c);
        cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = id });
        await using var r = await cmd.ExecuteReaderAsync(cancellationToken);
        return await r.ReadAsync(cancellationToken) ? Read(r) : null;
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<ApiKeyRecord>> ListAsync(bool includeRevoked = false, CancellationToken cancellationToken = default)
    {
        await using var c = await OpenAsync(cancellationToken);
        await using var cmd = new NpgsqlCommand($"SELECT {Columns} FROM api_keys {(includeRevoked ? "" : "WHERE revoked_at IS NULL")} ORDER BY created_at, id", c);
        await using var r = await cmd.ExecuteReaderAsync(cancellationToken);
        var list = new List<ApiKeyRecord>();
        while (await r.ReadAsync(cancellationToken)) list.Add(Read(r));
        return list;
    }

    /// <inheritdoc />
    public Task<bool> RevokeAsync(string id, DateTimeOffset at, CancellationToken cancellationToken = default) =>
        InTransactionAsync(async (c, tx, ct) =>
        {
            await using var cmd = new NpgsqlCommand("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL", c, tx);
            cmd.Parameters.Add(new NpgsqlParameter<long> { TypedValue = at.ToUnixTimeMilliseconds() });
            cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = id });
            var revoked = await cmd.ExecuteNonQueryAsync(ct) == 1;
            if (revoked) await PostgreSqlAudit.AppendAsync(c, tx, at, null, "key.revoked", null, null, new System.Text.Json.Nodes.JsonObject { ["key"] = "bk_" + id }.ToJsonString(), ct);
            return revoked;
        }, cancellationToken);

    /// <inheritdoc />
    public async Task<bool> AnyActiveAsync(CancellationToken cancellationToken = default)
    {
        await using var c = await OpenAsync(cancellationToken);
        await using var cmd = new NpgsqlCommand("SELECT EXISTS(SELECT 1 FROM api_keys WHERE revoked_at IS NULL)", c);
        return await cmd.ExecuteScalarAsync(cancellationToken) is true;
    }

    private const string Columns = "id, name, role, hash, created_at, revoked_at";

    private static ApiKeyRecord Read(NpgsqlDataReader r)
    {
        var roleText = r.GetString(2);
        if (!ApiKeys.TryParseRole(roleText, out var role))
            throw new InvalidDataException($"API key {r.GetString(0)}: unknown role '{roleText}' in the database");
        return new ApiKeyRecord
        {
            Id = r.GetString(0),
            Name = r.IsDBNull(1) ? null : r.GetString(1),
            Role = role,
            Hash = r.GetString(3),
            CreatedAt = DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(4)),
            RevokedAt = r.IsDBNull(5) ? null : DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(5)),
        };
    }
}

/// <summary>Dead letters, poll cursors and A2A push configs in Bureau's PostgreSQL schema (tables <c>dead_letters</c>, <c>poll_cursors</c>, <c>a2a_push_configs</c>).</summary>
public sealed class PostgreSqlEventStore : PostgreSqlSideStore, IEventStore, IA2APushConfigStore
{
    /// <summary>Creates the store on its own pool.</summary>
    public PostgreSqlEventStore(PostgreSqlStoreOptions options) : base(new PostgreSqlDatabase(options), ownsDatabase: true, "the event store") { }

    /// <summary>Creates the store on a pool shared with the other stores of the database.</summary>
    public PostgreSqlEventStore(PostgreSqlDatabase database) : base(database, ownsDatabase: false, "the event store") { }

    /// <inheritdoc />
    public async Task<bool> AddDeadLetterAsync(DeadLetter letter, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(letter);
        return await WriteAsync("""
            INSERT INTO dead_letters(id, key, trigger, event_id, reason, agent, input, event, data, error, run_id, at)
            VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
            ON CONFLICT DO NOTHING
            """, [letter.Id, letter.Key, letter.Trigger, letter.EventId, letter.Reason, letter.Agent, letter.Input, letter.Event, letter.Data, letter.Error, letter.RunId,
            letter.At.ToUnixTimeMilliseconds()], cancellationToken) == 1;
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<DeadLetter>> ListDeadLettersAsync(bool includeRetried = false, int limit = 100, CancellationToken cancellationToken = default)
    {
        await using var c = await OpenAsync(cancellationToken);
        await using var cmd = new NpgsqlCommand($"SELECT {Columns} FROM dead_letters {(includeRetried ? "" : "WHERE retried_at IS NULL")} ORDER BY seq DESC LIMIT $1", c);
        cmd.Parameters.Add(new NpgsqlParameter<int> { TypedValue = Math.Max(1, limit) });
        await using var r = await cmd.ExecuteReaderAsync(cancellationToken);
        var list = new List<DeadLetter>();
        while (await r.ReadAsync(cancellationToken)) list.Add(Read(r));
        return list;
    }

    /// <inheritdoc />
    public async Task<DeadLetter?> GetDeadLetterAsync(string id, CancellationToken cancellationToken = default)
    {
        await using var c = await OpenAsync(cancellationToken);
        await using var cmd = new NpgsqlCommand($"SELECT {Columns} FROM dead_letters WHERE id = $1", c);
        cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = id });
        await using var r = await cmd.ExecuteReaderAsync(cancellationToken);
        return await r.ReadAsync(cancellationToken) ? Read(r) : null;
    }

    /// <inheritdoc />
    public Task MarkRetriedAsync(string id, int retries, string runId, DateTimeOffset at, CancellationToken cancellationToken = default) =>
        WriteAsync("UPDATE dead_letters SET retries = $2, retried_at = $4, retry_run_id = $3 WHERE id = $1 AND retries < $2",
            [id, retries, runId, at.ToUnixTimeMilliseconds()], cancellationToken);

    /// <inheritdoc />
    public async Task<string?> GetCursorAsync(string trigger, CancellationToken cancellationToken = default)
    {
        await using var c = await OpenAsync(cancellationToken);
        await using var cmd = new NpgsqlCommand("SELECT value FROM poll_cursors WHERE trigger = $1", c);
        cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = trigger });
        return await cmd.ExecuteScalarAsync(cancellationToken) as string;
    }

    /// <inheritdoc />
    public Task SetCursorAsync(string trigger, string value, DateTimeOffset at, CancellationToken cancellationToken = default) =>
        WriteAsync("INSERT INTO poll_cursors(trigger, value, at) VALUES($1, $2, $3) ON CONFLICT (trigger) DO UPDATE SET value = excluded.value, at = excluded.at",
            [trigger, value, at.ToUnixTimeMilliseconds()], cancellationToken);

    /// <inheritdoc />
    public async Task<IReadOnlyList<string>> ListPushConfigsAsync(string taskId, CancellationToken cancellationToken = default)
    {
        await using var c = await OpenAsync(cancellationToken);
        await using var cmd = new NpgsqlCommand("SELECT config FROM a2a_push_configs WHERE task_id = $1 ORDER BY seq", c);
        cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = taskId });
        return await ReadStringsAsync(cmd, cancellationToken);
    }

    /// <inheritdoc />
    public Task<bool> PutPushConfigAsync(string taskId, string configId, string config, int max, DateTimeOffset at, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(config);
        return InTransactionAsync(async (c, tx, ct) =>
        {
            // The task's rows are locked first (an advisory lock per task), so two puts cannot both pass the count.
            await using (var lockTask = new NpgsqlCommand("SELECT pg_advisory_xact_lock(hashtextextended('a2a-push:' || $1, 0))", c, tx))
            {
                lockTask.Parameters.Add(new NpgsqlParameter<string> { TypedValue = taskId });
                await lockTask.ExecuteNonQueryAsync(ct);
            }
            await using (var count = new NpgsqlCommand("SELECT count(*) FROM a2a_push_configs WHERE task_id = $1 AND config_id <> $2", c, tx))
            {
                count.Parameters.Add(new NpgsqlParameter<string> { TypedValue = taskId });
                count.Parameters.Add(new NpgsqlParameter<string> { TypedValue = configId });
                if ((long)(await count.ExecuteScalarAsync(ct))! >= max) return false;
            }
            await using var batch = new NpgsqlBatch(c, tx)
            {
                BatchCommands =
                {
                    new NpgsqlBatchCommand("DELETE FROM a2a_push_configs WHERE task_id = $1 AND config_id = $2")
                    {
                        Parameters = { new NpgsqlParameter<string> { TypedValue = taskId }, new NpgsqlParameter<string> { TypedValue = configId } },
                    },
                    new NpgsqlBatchCommand("INSERT INTO a2a_push_configs(task_id, config_id, config, watched, at) VALUES($1, $2, $3, true, $4)")
                    {
                        Parameters =
                        {
                            new NpgsqlParameter<string> { TypedValue = taskId }, new NpgsqlParameter<string> { TypedValue = configId },
                            new NpgsqlParameter<string> { TypedValue = config }, new NpgsqlParameter<long> { TypedValue = at.ToUnixTimeMilliseconds() },
                        },
                    },
                    new NpgsqlBatchCommand("UPDATE a2a_push_configs SET watched = true WHERE task_id = $1")
                    {
                        Parameters = { new NpgsqlParameter<string> { TypedValue = taskId } },
                    },
                },
            };
            await batch.ExecuteNonQueryAsync(ct);
            return true;
        }, cancellationToken);
    }

    /// <inheritdoc />
    public async Task<bool> DeletePushConfigAsync(string taskId, string configId, CancellationToken cancellationToken = default) =>
        await WriteAsync("DELETE FROM a2a_push_configs WHERE task_id = $1 AND config_id = $2", [taskId, configId], cancellationToken) > 0;

    /// <inheritdoc />
    public async Task<IReadOnlyList<string>> ListWatchedPushTasksAsync(CancellationToken cancellationToken = default)
    {
        await using var c = await OpenAsync(cancellationToken);
        await using var cmd = new NpgsqlCommand("SELECT task_id FROM a2a_push_configs WHERE watched GROUP BY task_id ORDER BY min(seq)", c);
        return await ReadStringsAsync(cmd, cancellationToken);
    }

    /// <inheritdoc />
    public Task UnwatchPushTaskAsync(string taskId, CancellationToken cancellationToken = default) =>
        WriteAsync("UPDATE a2a_push_configs SET watched = false WHERE task_id = $1 AND watched", [taskId], cancellationToken);

    private static async Task<IReadOnlyList<string>> ReadStringsAsync(NpgsqlCommand cmd, CancellationToken ct)
    {
        await using var r = await cmd.ExecuteReaderAsync(ct);
        var list = new List<string>();
        while (await r.ReadAsync(ct)) list.Add(r.GetString(0));
        return list;
    }

    private const string Columns = "id, key, trigger, event_id, reason, agent, input, event, data, error, run_id, at, retries, retried_at, retry_run_id";

    private static DeadLetter Read(NpgsqlDataReader r) => new()
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
}

/// <summary>
/// A store on Bureau's PostgreSQL schema beside the run store (API keys, events): it migrates the schema on
/// <see cref="InitializeAsync"/> (whichever store comes first) and runs each call on a pooled connection.
/// </summary>
public abstract class PostgreSqlSideStore : IAsyncDisposable
{
    private readonly bool _ownsDatabase;
    private readonly string _what;
    private bool _initialized;

    /// <summary>Creates the store; <paramref name="what"/> names it in errors ("the event store").</summary>
    private protected PostgreSqlSideStore(PostgreSqlDatabase database, bool ownsDatabase, string what)
    {
        ArgumentNullException.ThrowIfNull(database);
        Database = database;
        _ownsDatabase = ownsDatabase;
        _what = what;
    }

    /// <summary>The database.</summary>
    protected PostgreSqlDatabase Database { get; }

    /// <summary>Creates or migrates the schema; once.</summary>
    public async Task InitializeAsync(CancellationToken cancellationToken = default)
    {
        if (_initialized) return;
        await Database.MigrateAsync(cancellationToken);
        _initialized = true;
    }

    /// <summary>Opens a pooled connection.</summary>
    private protected Task<NpgsqlConnection> OpenAsync(CancellationToken ct)
    {
        if (!_initialized) throw new InvalidOperationException($"{_what} is not initialized: call InitializeAsync first");
        return Database.OpenAsync(ct);
    }

    /// <summary>Runs one statement with positional parameters (<c>$1</c>, ...; null is NULL); returns the rows it changed.</summary>
    private protected async Task<int> WriteAsync(string sql, object?[] parameters, CancellationToken ct)
    {
        await using var c = await OpenAsync(ct);
        await using var cmd = new NpgsqlCommand(sql, c);
        foreach (var p in parameters)
        {
            cmd.Parameters.Add(p switch
            {
                null => new NpgsqlParameter { NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Text, Value = DBNull.Value },
                _ => new NpgsqlParameter { Value = p },
            });
        }
        try
        {
            return await cmd.ExecuteNonQueryAsync(ct);
        }
        catch (Exception ex) when (ex is not OperationCanceledException && PostgreSqlFaults.Classify(ex, Database.Name) is { } fault)
        {
            throw fault;
        }
    }

    /// <summary>Runs <paramref name="work"/> in a transaction on a pooled connection and commits it; storage faults classified.</summary>
    private protected async Task<T> InTransactionAsync<T>(Func<NpgsqlConnection, NpgsqlTransaction, CancellationToken, Task<T>> work, CancellationToken ct)
    {
        await using var c = await OpenAsync(ct);
        try
        {
            await using var tx = await c.BeginTransactionAsync(ct);
            var result = await work(c, tx, ct);
            await tx.CommitAsync(ct);
            return result;
        }
        catch (Exception ex) when (ex is not OperationCanceledException && PostgreSqlFaults.Classify(ex, Database.Name) is { } fault)
        {
            throw fault;
        }
    }

    /// <summary>Closes the pool when the store made it.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_ownsDatabase) await Database.DisposeAsync();
        GC.SuppressFinalize(this);
    }
}
