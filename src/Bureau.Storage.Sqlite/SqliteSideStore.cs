using Microsoft.Data.Sqlite;

namespace Bureau.Storage.Sqlite;

/// <summary>
/// A store that shares the runs' SQLite file (API keys, events): it readies the database on
/// <see cref="InitializeAsync"/> and opens one pooled connection per call, so it is safe beside a host
/// on the same database (a CLI command while <c>bureau serve</c> runs).
/// </summary>
public abstract class SqliteSideStore
{
    private readonly string _connectionString;
    private readonly string _what;
    private bool _initialized;

    /// <summary>Creates the store; <paramref name="what"/> names it in errors ("the event store").</summary>
    protected SqliteSideStore(SqliteStoreOptions options, string what)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        Options = options;
        _what = what;
        _connectionString = options.ConnectionString();
    }

    /// <summary>The store's options (its database path for storage fault messages).</summary>
    protected SqliteStoreOptions Options { get; }

    /// <summary>Readies the database (folder, WAL mode, schema); once.</summary>
    public async Task InitializeAsync(CancellationToken cancellationToken = default)
    {
        if (_initialized) return;
        await Migrations.PrepareAsync(Options, _connectionString, cancellationToken);
        _initialized = true;
    }

    /// <summary>Opens a connection to the database (from the pool).</summary>
    protected async Task<SqliteConnection> OpenAsync(CancellationToken ct)
    {
        if (!_initialized) throw new InvalidOperationException($"{_what} is not initialized: call InitializeAsync first");
        var c = new SqliteConnection(_connectionString);
        await c.OpenAsync(ct);
        return c;
    }
}
