using Bureau.Models;
using Bureau.Storage.Sqlite;
using Bureau.Tools;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Bureau.Cli;

/// <summary>
/// Bureau in this process for the CLI: the SQLite store, one Orleans silo on loopback, and the
/// engine (which resumes unfinished runs of the database as it starts).
/// </summary>
internal sealed class EmbeddedBureau : IAsyncDisposable
{
    private readonly IHost _host;
    private readonly FileStream _lock;

    private EmbeddedBureau(IHost host, BureauEngine engine, SqliteRunStore store, FileStream dbLock)
    {
        _host = host;
        _lock = dbLock;
        Engine = engine;
        Store = store;
    }

    public BureauEngine Engine { get; }
    public SqliteRunStore Store { get; }

    public static async Task<EmbeddedBureau> StartAsync(BureauDefinitions definitions, string dbPath, StoreDurability durability,
        int maxConcurrentRuns, LogLevel logLevel, CancellationToken cancellationToken)
    {
        var dbLock = LockDatabase(dbPath);
        var store = new SqliteRunStore(new SqliteStoreOptions { Path = dbPath, Durability = durability });
        try
        {
            await store.InitializeAsync(cancellationToken);
        }
        catch
        {
            await dbLock.DisposeAsync();
            throw;
        }
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o => { o.SingleLine = true; o.IncludeScopes = false; });
        builder.Logging.Services.Configure<Microsoft.Extensions.Logging.Console.ConsoleLoggerOptions>(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
        builder.Logging.SetMinimumLevel(logLevel);
        builder.Logging.AddFilter("Orleans", LogLevel.Error);
        builder.Logging.AddFilter("Microsoft", LogLevel.Error);
        builder.Services.AddSingleton<IRunStore>(store);
        builder.Services.AddSingleton(sp => new BureauEngine(
            definitions, store, new ModelClientFactory().Create,
            new BureauEngineOptions { MaxConcurrentRuns = maxConcurrentRuns },
            new ToolFactory(), TimeProvider.System, sp.GetRequiredService<ILoggerFactory>()));
        builder.UseOrleans(silo => silo.UseEmbeddedSilo());
        var host = builder.Build();
        try
        {
            await host.StartAsync(cancellationToken);
        }
        catch
        {
            host.Dispose();
            await store.DisposeAsync();
            await dbLock.DisposeAsync();
            throw;
        }
        return new EmbeddedBureau(host, host.Services.GetRequiredService<BureauEngine>(), store, dbLock);
    }

    public async ValueTask DisposeAsync()
    {
        using (var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30)))
        {
            try { await _host.StopAsync(cts.Token); } catch (OperationCanceledException) { }
        }
        _host.Dispose();
        await Store.DisposeAsync();
        await _lock.DisposeAsync();
    }

    private static FileStream LockDatabase(string dbPath)
    {
        try
        {
            return SqliteDatabaseLock.Acquire(dbPath);
        }
        catch (InvalidOperationException ex)
        {
            throw new CliUsageException(ex.Message);
        }
    }
}
