using System.Text.RegularExpressions;
using Npgsql;

namespace Bureau.Storage.PostgreSql;

/// <summary>Options of the PostgreSQL store (configuration section <c>Bureau:PostgreSql</c>).</summary>
public sealed partial class PostgreSqlStoreOptions
{
    /// <summary>An Npgsql connection string: <c>Host=db.internal;Port=5432;Database=bureau;Username=bureau;Password=...</c>. Required.</summary>
    public string ConnectionString { get; set; } = "";

    /// <summary>The schema Bureau's tables live in (created if missing). Default <c>bureau</c>; lower-case letters, digits and <c>_</c>.</summary>
    public string Schema { get; set; } = "bureau";

    /// <summary>Most operations grouped into one transaction by the writer (group commit).</summary>
    public int MaxBatchSize { get; set; } = 1024;

    /// <summary>
    /// Whether each commit is announced on a NOTIFY channel (run ids and step ranges, one statement per transaction), so
    /// watchers on other nodes see runs this node executes. Default true; a single node may turn it off.
    /// </summary>
    public bool Notify { get; set; } = true;

    /// <summary>Throws if an option is out of range; the message names the option.</summary>
    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(ConnectionString))
            throw new ArgumentException("Bureau:PostgreSql:ConnectionString must be set (for example Host=localhost;Database=bureau;Username=bureau)", nameof(ConnectionString));
        try
        {
            _ = new NpgsqlConnectionStringBuilder(ConnectionString);
        }
        catch (ArgumentException ex)
        {
            throw new ArgumentException($"Bureau:PostgreSql:ConnectionString is not a valid connection string: {ex.Message}", nameof(ConnectionString), ex);
        }
        if (!SchemaName().IsMatch(Schema ?? ""))
            throw new ArgumentException($"Bureau:PostgreSql:Schema '{Schema}' must be 1 to 63 lower-case letters, digits or '_', starting with a letter or '_'", nameof(Schema));
        if (MaxBatchSize < 1) throw new ArgumentOutOfRangeException(nameof(MaxBatchSize), MaxBatchSize, "Bureau:PostgreSql:MaxBatchSize must be at least 1");
    }

    [GeneratedRegex("^[a-z_][a-z0-9_]{0,62}$")]
    private static partial Regex SchemaName();
}
