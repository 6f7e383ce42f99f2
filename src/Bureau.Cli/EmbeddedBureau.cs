using Bureau.Storage.PostgreSql;
using Bureau.Storage.Sqlite;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Bureau.Cli;

/// <summary>How the CLI's commands compose Bureau: the same root as any application (<c>AddBureau()</c>).</summary>
internal static class CliComposition
{
    /// <summary>Test hosts add services here (crash points) before a command builds its host. Never set by the <c>bureau</c> executable.</summary>
    public static Action<IServiceCollection>? ConfigureServices { get; set; }

    /// <summary>
    /// Bureau's services for a command: the definitions, the store (the SQLite file at <paramref name="dbPath"/>, or
    /// PostgreSQL when <paramref name="postgres"/> is given: options from <c>Bureau:PostgreSql</c>, then it), and the executors.
    /// </summary>
    /// <remarks><paramref name="maxConcurrentRuns"/>: set by the command (bench), or null to keep <c>Bureau:MaxConcurrentRuns</c> from configuration (serve).</remarks>
    /// <remarks><paramref name="cluster"/>: join the cluster on the PostgreSQL database (docs/cluster.md); needs <paramref name="postgres"/>.</remarks>
    public static BureauBuilder Add(IServiceCollection services, BureauDefinitions definitions, string dbPath, StoreDurability durability, int? maxConcurrentRuns, bool orleans = false,
        Action<PostgreSqlStoreOptions>? postgres = null, Action<Bureau.Orleans.PostgreSql.PostgreSqlClusterOptions>? cluster = null)
    {
        var bureau = services.AddBureau(o => o.MaxConcurrentRuns = maxConcurrentRuns ?? o.MaxConcurrentRuns)
            .AddDefinitions(definitions);
        if (postgres is not null)
        {
            bureau.UsePostgreSqlStorage(postgres);
        }
        else
        {
            CliShared.CheckDbPath(dbPath);
            bureau.UseSqliteStorage(o =>
            {
                o.Path = dbPath;
                o.Durability = durability;
            });
        }
        if (cluster is not null)
        {
            if (postgres is null) throw new CliUsageException("--cluster needs PostgreSQL (--postgres CONNECTION_STRING or Bureau:Storage=postgres): the cluster's membership and runs live there");
            bureau.UsePostgreSqlCluster(cluster); // runs in grains, silos in a cluster whose membership is in PostgreSQL (docs/cluster.md)
        }
        else if (orleans) bureau.UseOrleans(); // runs in grains of an embedded silo; in this process otherwise (decision 0010)
        if (Commands.AuditCommand.Key(null) is { } auditKey) // BUREAU_AUDIT_KEY(_FILE): signed audit checkpoints every 1000 entries and at a clean stop
            services.AddSingleton(new Governance.AuditCheckpointOptions { Key = auditKey, File = Governance.AuditCheckpointOptions.DefaultFile(dbPath) });
        ConfigureServices?.Invoke(services);
        return bureau;
    }
}

/// <summary>
/// Bureau in this process for the CLI, composed by <c>AddBureau()</c>: the SQLite store (its engine
/// lock held), the engine (which resumes unfinished runs of the database as it starts), in a generic host.
/// </summary>
internal sealed class EmbeddedBureau : IAsyncDisposable
{
    private readonly IHost _host;

    private EmbeddedBureau(IHost host)
    {
        _host = host;
        Engine = host.Services.GetRequiredService<BureauEngine>();
        Runs = host.Services.GetRequiredService<IRunStore>();
        _sqlite = Runs as SqliteRunStore;
    }

    private readonly SqliteRunStore? _sqlite;

    public BureauEngine Engine { get; }

    /// <summary>The store, SQLite or PostgreSQL.</summary>
    public IRunStore Runs { get; }

    /// <summary>The SQLite store (commands that work on a database file).</summary>
    public SqliteRunStore Store => _sqlite ?? throw new InvalidOperationException("this command works on a SQLite database, not on PostgreSQL");

    /// <summary>Transactions the store's writer committed (group commit: fewer than the writes).</summary>
    public long WriterTransactions => Runs switch
    {
        SqliteRunStore s => s.Stats.Transactions,
        PostgreSqlRunStore p => p.Stats.Transactions,
        _ => 0,
    };

    /// <summary>The SQLite database's size on disk, or 0 on PostgreSQL (the server's files are not this process's).</summary>
    public long StoreBytes => _sqlite?.SizeOnDisk() ?? 0;

    public static async Task<EmbeddedBureau> StartAsync(BureauDefinitions definitions, string dbPath, StoreDurability durability,
        int maxConcurrentRuns, LogLevel logLevel, CancellationToken cancellationToken, bool orleans = false, Action<BureauBuilder>? configure = null,
        Action<PostgreSqlStoreOptions>? postgres = null)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o => { o.SingleLine = true; o.IncludeScopes = false; });
        builder.Logging.Services.Configure<Microsoft.Extensions.Logging.Console.ConsoleLoggerOptions>(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
        builder.Logging.SetMinimumLevel(logLevel);
        builder.Logging.AddFilter("Orleans", LogLevel.Error);
        builder.Logging.AddFilter("Microsoft", LogLevel.Error);
        builder.Logging.AddFilter("Microsoft.Extensions.Hosting.Internal.Host", LogLevel.None); // a failed start is printed as one line
        var bureau = CliComposition.Add(builder.Services, definitions, dbPath, durability, maxConcurrentRuns, orleans, postgres);
        configure?.Invoke(bureau);
        var host = builder.Build();
        try
        {
            await host.StartAsync(cancellationToken);
        }
        catch (Exception ex) when (ex is StorageUnavailableException or MissingWriteAheadLogException
                                   || (ex is InvalidOperationException && ex.Message.Contains("in use by another Bureau engine", StringComparison.Ordinal)))
        {
            await DisposeHostAsync(host);
            throw new CliUsageException(ex.Message);
        }
        catch
        {
            await DisposeHostAsync(host);
            throw;
        }
        return new EmbeddedBureau(host);
    }

    private static async Task DisposeHostAsync(IHost host)
    {
        if (host is IAsyncDisposable d) await d.DisposeAsync();
        else host.Dispose();
    }

    public async ValueTask DisposeAsync()
    {
        using (var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30)))
        {
            try { await _host.StopAsync(cts.Token); } catch (OperationCanceledException) { }
        }
        await DisposeHostAsync(_host);
    }
}
