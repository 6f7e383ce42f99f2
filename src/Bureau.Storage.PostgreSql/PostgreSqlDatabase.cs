using Npgsql;

namespace Bureau.Storage.PostgreSql;

/// <summary>
/// One PostgreSQL database (and schema) as Bureau's stores share it: one connection pool (an <see cref="NpgsqlDataSource"/>
/// whose connections have the schema as their <c>search_path</c>) and the schema's migrations, applied once.
/// The run store, the key store and the event store of a host share one instance.
/// </summary>
public sealed class PostgreSqlDatabase : IAsyncDisposable
{
    private readonly SemaphoreSlim _migrate = new(1, 1);
    private volatile bool _migrated;

    /// <summary>Creates the pool (no connection is opened until first use).</summary>
    /// <exception cref="ArgumentException">An option is not valid; the message names it.</exception>
    public PostgreSqlDatabase(PostgreSqlStoreOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        Options = options;
        var cs = new NpgsqlConnectionStringBuilder(options.ConnectionString) { SearchPath = options.Schema };
        // Every statement Bureau sends is one of a few fixed texts: let Npgsql prepare them on each connection.
        if (cs.MaxAutoPrepare == 0) cs.MaxAutoPrepare = 64;
        if (string.IsNullOrEmpty(cs.ApplicationName)) cs.ApplicationName = "bureau";
        Name = $"PostgreSQL {cs.Host}:{cs.Port}/{cs.Database ?? cs.Username} (schema {options.Schema})";
        DataSource = new NpgsqlDataSourceBuilder(cs.ConnectionString).Build();
    }

    /// <summary>This instance among the writers of the database (random): notices it sent say so, and its listener skips them.</summary>
    internal string Origin { get; } = Guid.NewGuid().ToString("n")[..16];

    /// <summary>The NOTIFY channel of commits (one per schema).</summary>
    internal string EventChannel => ChannelName("events");

    /// <summary>The NOTIFY channel of run commands between nodes (one per schema).</summary>
    internal string CommandChannel => ChannelName("commands");

    private string ChannelName(string kind)
    {
        var name = $"bureau.{Options.Schema}.{kind}";
        if (name.Length <= 63) return name;
        var hash = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(Options.Schema)))[..16];
        return $"bureau.{hash}.{kind}";
    }

    /// <summary>The options it was made with.</summary>
    public PostgreSqlStoreOptions Options { get; }

    /// <summary>The pool every store of this database uses.</summary>
    public NpgsqlDataSource DataSource { get; }

    /// <summary>The server, database and schema, as errors name them (never the password).</summary>
    public string Name { get; }

    /// <summary>Creates the schema if missing and applies the migrations this code has and the database lacks; once per instance.</summary>
    /// <exception cref="StorageUnavailableException">The server cannot be reached or refuses the writes.</exception>
    /// <exception cref="InvalidOperationException">The schema is newer than this Bureau understands.</exception>
    public async Task MigrateAsync(CancellationToken cancellationToken = default)
    {
        if (_migrated) return;
        await _migrate.WaitAsync(cancellationToken);
        try
        {
            if (_migrated) return;
            try
            {
                await PostgreSqlMigrations.ApplyAsync(this, cancellationToken);
            }
            catch (Exception ex) when (PostgreSqlFaults.Classify(ex, Name) is { } fault && fault != ex)
            {
                throw fault;
            }
            _migrated = true;
        }
        finally
        {
            _migrate.Release();
        }
    }

    /// <summary>Opens a pooled connection; a server that cannot be reached is a <see cref="StorageUnavailableException"/>.</summary>
    internal async Task<NpgsqlConnection> OpenAsync(CancellationToken ct)
    {
        try
        {
            return await DataSource.OpenConnectionAsync(ct);
        }
        catch (Exception ex) when (ex is not OperationCanceledException && PostgreSqlFaults.Classify(ex, Name) is { } fault)
        {
            throw fault;
        }
    }

    /// <summary>Closes the pool.</summary>
    public async ValueTask DisposeAsync()
    {
        await DataSource.DisposeAsync();
        _migrate.Dispose();
    }
}
