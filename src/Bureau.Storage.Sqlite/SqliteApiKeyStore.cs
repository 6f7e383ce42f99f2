using Microsoft.Data.Sqlite;

namespace Bureau.Storage.Sqlite;

/// <summary>
/// API keys in the same SQLite file as the runs (table <c>api_keys</c>, migration step 2): id, role,
/// SHA-256 hash and dates, never the key itself. Safe to use from another process while a host
/// runs on the database (<c>bureau keys create</c> beside <c>bureau serve</c>): each call opens its own
/// connection, and SQLite's locking orders the writes.
/// </summary>
public sealed class SqliteApiKeyStore(SqliteStoreOptions options) : SqliteSideStore(options, "the API key store"), IApiKeyStore
{
    /// <inheritdoc />
    public async Task AddAsync(ApiKeyRecord key, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(key);
        await using var c = await OpenAsync(cancellationToken);
        await using var tx = (SqliteTransaction)await c.BeginTransactionAsync(System.Data.IsolationLevel.Serializable, cancellationToken); // BEGIN IMMEDIATE: the audit head is ours
        await using var cmd = c.CreateCommand();
        cmd.Transaction = tx;
        cmd.CommandText = "INSERT INTO api_keys(id, name, role, hash, created_at, revoked_at) VALUES($id, $name, $role, $hash, $created, $revoked)";
        cmd.Parameters.AddWithValue("$id", key.Id);
        cmd.Parameters.AddWithValue("$name", (object?)key.Name ?? DBNull.Value);
        cmd.Parameters.AddWithValue("$role", key.Role.ToWireName());
        cmd.Parameters.AddWithValue("$hash", key.Hash);
        cmd.Parameters.AddWithValue("$created", key.CreatedAt.ToUnixTimeMilliseconds());
        cmd.Parameters.AddWithValue("$revoked", key.RevokedAt is { } r ? r.ToUnixTimeMilliseconds() : DBNull.Value);
        try
        {
            await cmd.ExecuteNonQueryAsync(cancellationToken);
            AuditChain.Append(c, tx, AuditChain.ReadHead(c, tx), key.CreatedAt, key.Name ?? "bk_" + key.Id, "key.created", null, null,
                new System.Text.Json.Nodes.JsonObject { ["key"] = "bk_" + key.Id, ["name"] = key.Name, ["role"] = key.Role.ToWireName() }.ToJsonString());
            await tx.CommitAsync(cancellationToken);
        }
        catch (SqliteException ex) when (ex.SqliteErrorCode == 19 /* CONSTRAINT */)
        {
            throw new InvalidOperationException($"an API key with id {key.Id} already exists", ex);
        }
        catch (SqliteException ex) when (SqliteFaults.Classify(ex, Options.Path) is { } fault)
        {
            throw fault;
        }
    }

    /// <inheritdoc />
    public async Task<ApiKeyRecord?> FindAsync(string id, CancellationToken cancellationToken = default)
    {
        await using var c = await OpenAsync(cancellationToken);
        await using var cmd = c.CreateCommand();
        cmd.CommandText = $"SELECT {Columns} FROM api_keys WHERE id = $id";
        cmd.Parameters.AddWithValue("$id", id);
        await using var r = await cmd.ExecuteReaderAsync(cancellationToken);
        return await r.ReadAsync(cancellationToken) ? Read(r) : null;
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<ApiKeyRecord>> ListAsync(bool includeRevoked = false, CancellationToken cancellationToken = default)
    {
        await using var c = await OpenAsync(cancellationToken);
        await using var cmd = c.CreateCommand();
        cmd.CommandText = $"SELECT {Columns} FROM api_keys {(includeRevoked ? "" : "WHERE revoked_at IS NULL")} ORDER BY created_at, id";
        await using var r = await cmd.ExecuteReaderAsync(cancellationToken);
        var list = new List<ApiKeyRecord>();
        while (await r.ReadAsync(cancellationToken)) list.Add(Read(r));
        return list;
    }

    /// <inheritdoc />
    public async Task<bool> RevokeAsync(string id, DateTimeOffset at, CancellationToken cancellationToken = default)
    {
        await using var c = await OpenAsync(cancellationToken);
        await using var tx = (SqliteTransaction)await c.BeginTransactionAsync(System.Data.IsolationLevel.Serializable, cancellationToken);
        await using var cmd = c.CreateCommand();
        cmd.Transaction = tx;
        cmd.CommandText = "UPDATE api_keys SET revoked_at = $at WHERE id = $id AND revoked_at IS NULL";
        cmd.Parameters.AddWithValue("$id", id);
        cmd.Parameters.AddWithValue("$at", at.ToUnixTimeMilliseconds());
        try
        {
            var revoked = await cmd.ExecuteNonQueryAsync(cancellationToken) == 1;
            if (revoked) AuditChain.Append(c, tx, AuditChain.ReadHead(c, tx), at, null, "key.revoked", null, null, new System.Text.Json.Nodes.JsonObject { ["key"] = "bk_" + id }.ToJsonString());
            await tx.CommitAsync(cancellationToken);
            return revoked;
        }
        catch (SqliteException ex) when (SqliteFaults.Classify(ex, Options.Path) is { } fault)
        {
            throw fault;
        }
    }

    /// <inheritdoc />
    public async Task<bool> AnyActiveAsync(CancellationToken cancellationToken = default)
    {
        await using var c = await OpenAsync(cancellationToken);
        await using var cmd = c.CreateCommand();
        cmd.CommandText = "SELECT EXISTS(SELECT 1 FROM api_keys WHERE revoked_at IS NULL)";
        return Convert.ToInt64(await cmd.ExecuteScalarAsync(cancellationToken)) == 1;
    }

    private const string Columns = "id, name, role, hash, created_at, revoked_at";

    private static ApiKeyRecord Read(SqliteDataReader r)
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
