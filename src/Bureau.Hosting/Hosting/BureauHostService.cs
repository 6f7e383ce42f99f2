using Bureau.Storage.Sqlite;
using System.Net;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Bureau.Hosting;

/// <summary>
/// Opens the database (lock, migrations) before the silo starts the engine, enforces the loopback
/// rule once the server listens, and closes the database after the silo stopped.
/// </summary>
internal sealed partial class BureauHostService(BureauStorage storage, IServiceProvider services, ILogger<BureauHostService> logger)
    : IHostedLifecycleService
{
    private FileStream? _lock;

    public async Task StartingAsync(CancellationToken cancellationToken)
    {
        _lock = SqliteDatabaseLock.Acquire(storage.Options.Path);
        try
        {
            await storage.Runs.InitializeAsync(cancellationToken);
            await storage.Keys.InitializeAsync(cancellationToken);
            storage.IsOpen = true;
        }
        catch
        {
            await _lock.DisposeAsync();
            _lock = null;
            throw;
        }
    }

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public async Task StartedAsync(CancellationToken cancellationToken)
    {
        var addresses = services.GetService<IServer>()?.Features.Get<IServerAddressesFeature>()?.Addresses ?? [];
        var hasKeys = await storage.Keys.AnyActiveAsync(cancellationToken);
        if (hasKeys)
        {
            Log.KeysRequired(logger, storage.Options.Path);
            return;
        }
        var exposed = addresses.Where(a => !IsLoopbackUrl(a)).ToList();
        if (exposed.Count > 0)
        {
            throw new InvalidOperationException(
                $"Bureau refuses to listen on {string.Join(", ", exposed)} without API keys: anyone who can reach it could start runs. " +
                $"Create a key first (bureau keys create --role admin --db {storage.Options.Path}), or listen on loopback only (http://127.0.0.1:PORT).");
        }
        Log.LoopbackOnly(logger, storage.Options.Path);
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public async Task StoppedAsync(CancellationToken cancellationToken)
    {
        storage.IsOpen = false;
        await storage.Runs.DisposeAsync();
        if (_lock is not null) await _lock.DisposeAsync();
        _lock = null;
    }

    /// <summary>True for http(s)://localhost, 127.x.x.x and [::1] addresses; false for wildcards and anything else.</summary>
    internal static bool IsLoopbackUrl(string url)
    {
        var schemeEnd = url.IndexOf("://", StringComparison.Ordinal);
        var rest = schemeEnd < 0 ? url : url[(schemeEnd + 3)..];
        var slash = rest.IndexOf('/');
        if (slash >= 0) rest = rest[..slash];
        string host;
        if (rest.StartsWith('['))
        {
            var close = rest.IndexOf(']');
            host = close < 0 ? rest : rest[1..close];
        }
        else
        {
            var colon = rest.LastIndexOf(':');
            host = colon < 0 ? rest : rest[..colon];
        }
        return IsLoopbackHost(host);
    }

    internal static bool IsLoopbackHost(string host)
    {
        if (string.Equals(host, "localhost", StringComparison.OrdinalIgnoreCase)) return true;
        return IPAddress.TryParse(host, out var ip) && IPAddress.IsLoopback(ip);
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Warning, "No API keys in {Db}: serving loopback clients only, each with every right. Create a key with `bureau keys create --role admin --db {Db}` to require keys")]
        public static partial void LoopbackOnly(ILogger logger, string db);

        [LoggerMessage(2, LogLevel.Information, "API keys found in {Db}: every /v1 request needs one")]
        public static partial void KeysRequired(ILogger logger, string db);
    }
}
