using Microsoft.Data.Sqlite;
namespace Bureau.Storage.Sqlite;

/// <summary>How durable an acknowledged write is.</summary>
public enum StoreDurability
{
    /// <summary>
    /// Survives a power loss: WAL with <c>synchronous=FULL</c>, every commit is fsync'd.
    /// The default. Group commit keeps it fast: concurrent appends share one fsync.
    /// </summary>
    Full,

    /// <summary>
    /// Survives a crash of the process, not of the machine: WAL with <c>synchronous=NORMAL</c>.
    /// A power loss can lose the last commits (steps that were acknowledged), which then run again.
    /// </summary>
    Process,
}

/// <summary>Options of the embedded SQLite store.</summary>
public sealed class SqliteStoreOptions
{
    /// <summary>The database file. Default <c>bureau.db</c> in the current folder.</summary>
    public string Path { get; set; } = "bureau.db";

    /// <summary>Durability of acknowledged writes. Default <see cref="StoreDurability.Full"/>.</summary>
    public StoreDurability Durability { get; set; } = StoreDurability.Full;

    /// <summary>Most operations grouped into one transaction.</summary>
    public int MaxBatchSize { get; set; } = 1024;

    /// <summary>How long a statement waits for another process's lock before failing.</summary>
    public TimeSpan BusyTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Throws if an option is out of range; the message names the option.</summary>
    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(Path)) throw new ArgumentException("Bureau:Sqlite:Path must name a database file", nameof(Path));
        if (MaxBatchSize < 1) throw new ArgumentOutOfRangeException(nameof(MaxBatchSize), MaxBatchSize, "Bureau:Sqlite:MaxBatchSize must be at least 1");
        if (BusyTimeout < TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(BusyTimeout), BusyTimeout, "Bureau:Sqlite:BusyTimeout must not be negative");
    }

    /// <summary>The connection string every connection to this database uses.</summary>
    internal string ConnectionString() => new SqliteConnectionStringBuilder
    {
        DataSource = Path,
        Mode = SqliteOpenMode.ReadWriteCreate,
        Cache = SqliteCacheMode.Private,
        Pooling = true,
        DefaultTimeout = (int)Math.Ceiling(BusyTimeout.TotalSeconds),
    }.ToString();
}
