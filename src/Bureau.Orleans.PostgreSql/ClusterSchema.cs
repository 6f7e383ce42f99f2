using System.Reflection;
using Npgsql;

namespace Bureau.Orleans.PostgreSql;

/// <summary>
/// Orleans' ADO.NET scripts for PostgreSQL (Main, Clustering and the Clustering update that 10.4 expects), embedded,
/// applied in their own schema at start: once, in one transaction under an advisory lock (nodes starting together
/// apply them once), recorded in the schema's <c>bureau_scripts</c> table. A schema made by hand from the same
/// scripts (the tables there, no record) is adopted: only the idempotent update is applied.
/// </summary>
internal static class ClusterSchema
{
    /// <summary>The advisory lock key ('bureau_o').</summary>
    private const long ScriptLock = 0x6275726561755f6f;

    /// <summary>In order; append only.</summary>
    internal static readonly string[] Scripts = ["PostgreSQL-Main.sql", "PostgreSQL-Clustering.sql", "PostgreSQL-Clustering-AtomicWrites.sql"];

    /// <summary>The scripts' text as Orleans ships it, less the update's own BEGIN/COMMIT (it runs inside this transaction).</summary>
    internal static string Script(string name)
    {
        using var stream = typeof(ClusterSchema).Assembly.GetManifestResourceStream("Bureau.Orleans.PostgreSql.Scripts." + name)
            ?? throw new InvalidOperationException($"the embedded script {name} is missing from {typeof(ClusterSchema).Assembly.GetName().Name}");
        using var reader = new StreamReader(stream);
        var lines = reader.ReadToEnd().Split('\n').Where(l => l.Trim() is not ("BEGIN TRANSACTION;" or "COMMIT;"));
        return string.Join('\n', lines);
    }

    /// <summary>Applies what the schema lacks; returns the scripts applied now.</summary>
    public static async Task<IReadOnlyList<string>> ApplyAsync(string connectionString, string schema, CancellationToken cancellationToken)
    {
        await using var c = new NpgsqlConnection(connectionString);
        await c.OpenAsync(cancellationToken);
        await using var tx = await c.BeginTransactionAsync(cancellationToken);
        await ExecAsync(c, $"SELECT pg_advisory_xact_lock({ScriptLock})", cancellationToken);
        await ExecAsync(c, $"CREATE SCHEMA IF NOT EXISTS {schema}; SET LOCAL search_path TO {schema}; " +
                           "CREATE TABLE IF NOT EXISTS bureau_scripts(name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())", cancellationToken);
        var applied = new HashSet<string>(StringComparer.Ordinal);
        await using (var read = new NpgsqlCommand("SELECT name FROM bureau_scripts", c))
        await using (var r = await read.ExecuteReaderAsync(cancellationToken))
        {
            while (await r.ReadAsync(cancellationToken)) applied.Add(r.GetString(0));
        }
        if (applied.Count == 0 && await ExistsAsync(c, "orleansmembershiptable", cancellationToken))
        {
            // Made by hand from Orleans' scripts: Main and Clustering are there.
            foreach (var adopted in Scripts.Take(2)) await RecordAsync(c, adopted, cancellationToken);
            applied.UnionWith(Scripts.Take(2));
        }
        var now = new List<string>();
        foreach (var name in Scripts)
        {
            if (applied.Contains(name)) continue;
            await ExecAsync(c, Script(name), cancellationToken);
            await RecordAsync(c, name, cancellationToken);
            now.Add(name);
        }
        await tx.CommitAsync(cancellationToken);
        return now;
    }

    private static async Task<bool> ExistsAsync(NpgsqlConnection c, string table, CancellationToken ct)
    {
        await using var cmd = new NpgsqlCommand("SELECT to_regclass($1) IS NOT NULL", c);
        cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = table });
        return (bool)(await cmd.ExecuteScalarAsync(ct))!;
    }

    private static async Task RecordAsync(NpgsqlConnection c, string name, CancellationToken ct)
    {
        await using var cmd = new NpgsqlCommand("INSERT INTO bureau_scripts(name) VALUES ($1) ON CONFLICT DO NOTHING", c);
        cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = name });
        await cmd.ExecuteNonQueryAsync(ct);
    }

    private static async Task ExecAsync(NpgsqlConnection c, string sql, CancellationToken ct)
    {
        await using var cmd = new NpgsqlCommand(sql, c);
        await cmd.ExecuteNonQueryAsync(ct);
    }
}
