using System.Net;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Bureau.Hosting;

/// <summary>Enforces the loopback rule once the server listens: without API keys, only loopback addresses.</summary>
internal sealed partial class BureauHostService(IApiKeyStore keys, IServiceProvider services, ILogger<BureauHostService> logger)
    : IHostedLifecycleService
{
    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public async Task StartedAsync(CancellationToken cancellationToken)
    {
        var addresses = services.GetService<IServer>()?.Features.Get<IServerAddressesFeature>()?.Addresses ?? [];
        if (await keys.AnyActiveAsync(cancellationToken))
        {
            Log.KeysRequired(logger);
            return;
        }
        var exposed = addresses.Where(a => !IsLoopbackUrl(a)).ToList();
        if (exposed.Count > 0)
        {
            throw new InvalidOperationException(
                $"Bureau refuses to listen on {string.Join(", ", exposed)} without API keys: anyone who can reach it could start runs. " +
                "Create a key first (bureau keys create --role admin --db DB), or listen on loopback only (http://127.0.0.1:PORT).");
        }
        Log.LoopbackOnly(logger);
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

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
        [LoggerMessage(1, LogLevel.Warning, "No API keys in the store: serving loopback clients only, each with every right. Create a key with `bureau keys create --role admin` to require keys")]
        public static partial void LoopbackOnly(ILogger logger);

        [LoggerMessage(2, LogLevel.Information, "API keys found in the store: every /v1 request needs one")]
        public static partial void KeysRequired(ILogger logger);
    }
}
