using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Bureau.Hosting.A2A;

/// <summary>Which push URLs the host may call: http(s) only, and public addresses only unless allowed (SSRF).</summary>
internal static class A2APushTargets
{
    /// <summary>True for an address a client must not make the host call: loopback, private, link-local, CGNAT, multicast, unspecified, reserved.</summary>
    public static bool IsNonPublic(IPAddress ip)
    {
        if (ip.IsIPv4MappedToIPv6) ip = ip.MapToIPv4();
        if (IPAddress.IsLoopback(ip)) return true;
        if (ip.AddressFamily == AddressFamily.InterNetwork)
        {
            var b = ip.GetAddressBytes();
            return b[0] is 0 or 10 or 127 || b[0] >= 224
                   || (b[0] == 172 && b[1] is >= 16 and <= 31)
                   || (b[0] == 192 && b[1] == 168)
                   || (b[0] == 169 && b[1] == 254)
                   || (b[0] == 100 && b[1] is >= 64 and <= 127)
                   || (b[0] == 192 && b[1] == 0 && b[2] == 0)
                   || (b[0] == 198 && b[1] is 18 or 19);
        }
        if (ip.AddressFamily == AddressFamily.InterNetworkV6)
        {
            var b = ip.GetAddressBytes();
            return ip.Equals(IPAddress.IPv6Any) || ip.IsIPv6LinkLocal || ip.IsIPv6SiteLocal || ip.IsIPv6Multicast
                   || (b[0] & 0xFE) == 0xFC // unique local fc00::/7
                   || (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8); // documentation
        }
        return true;
    }

    /// <summary>Checks a push URL when a config is created; throws -32602 naming <paramref name="field"/>.</summary>
    public static async Task<Uri> CheckAsync(string url, bool allowPrivate, string field, CancellationToken ct)
    {
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps))
            throw A2AException.BadParam(field, $"'{field}' must be an absolute http or https URL, not '{url}'");
        if (uri.UserInfo.Length > 0)
            throw A2AException.BadParam(field, $"'{field}' must not carry credentials in the URL; give them in 'authentication'");
        if (allowPrivate) return uri;
        IPAddress[] addresses;
        try
        {
            addresses = IPAddress.TryParse(uri.IdnHost, out var literal) ? [literal] : await Dns.GetHostAddressesAsync(uri.IdnHost, ct);
        }
        catch (SocketException ex)
        {
            throw A2AException.BadParam(field, $"'{field}': the host '{uri.Host}' does not resolve ({ex.Message})");
        }
        if (addresses.FirstOrDefault(IsNonPublic) is { } bad)
        {
            throw A2AException.BadParam(field,
                $"'{field}' points at {bad}, a loopback, private or otherwise non-public address: this host sends push notifications to public addresses only (A2AOptions.AllowPrivatePushUrls allows others)");
        }
        return uri;
    }

    /// <summary>
    /// Connects only to public addresses (unless allowed), checking the address actually connected to: a name that
    /// resolved to a public address when the config was made and to a private one now (DNS rebinding) is refused.
    /// </summary>
    public static SocketsHttpHandler Handler(bool allowPrivate) => new()
    {
        AllowAutoRedirect = false,
        PooledConnectionLifetime = TimeSpan.FromMinutes(2),
        ConnectCallback = async (context, ct) =>
        {
            var host = context.DnsEndPoint.Host;
            var addresses = IPAddress.TryParse(host, out var literal) ? [literal] : await Dns.GetHostAddressesAsync(host, ct);
            if (!allowPrivate && addresses.FirstOrDefault(IsNonPublic) is { } bad)
                throw new HttpRequestException($"push notification refused: '{host}' resolves to the non-public address {bad}");
            var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                await socket.ConnectAsync(addresses, context.DnsEndPoint.Port, ct);
                return new NetworkStream(socket, ownsSocket: true);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        },
    };
}

/// <summary>
/// Push notification configs of tasks, kept durably by the event store's database (<see cref="IA2APushConfigStore"/>,
/// table <c>a2a_push_configs</c>; they were poll-cursor rows before, moved there by the migration), with the tasks
/// still watched (unfinished ones are watched again after a restart).
/// </summary>
internal sealed class A2APushConfigs(IA2APushConfigStore store, TimeProvider time)
{
    public async Task<List<JsonObject>> ListAsync(string taskId, CancellationToken ct) =>
        [.. (await store.ListPushConfigsAsync(taskId, ct)).Select(text => JsonNode.Parse(text)).OfType<JsonObject>()];

    /// <summary>Adds or replaces (same id) a config; returns it as stored.</summary>
    public async Task<JsonObject> PutAsync(string taskId, JsonObject config, int max, CancellationToken ct)
    {
        var id = (string?)config["id"] ?? throw new ArgumentException("a push config has an id", nameof(config));
        if (!await store.PutPushConfigAsync(taskId, id, config.ToJsonString(), max, time.GetUtcNow(), ct))
            throw A2AException.BadParam("id", $"task {taskId} has {max} push configs, the most it may have (A2AOptions.MaxPushConfigsPerTask); delete one first");
        return config;
    }

    public Task<bool> DeleteAsync(string taskId, string id, CancellationToken ct) => store.DeletePushConfigAsync(taskId, id, ct);

    /// <summary>The tasks that had configs when they were last watched (unfinished ones are watched again after a restart).</summary>
    public async Task<IReadOnlyList<string>> ReadIndexAsync(CancellationToken ct) => await store.ListWatchedPushTasksAsync(ct);

    /// <summary>Stops watching a finished task (its configs stay readable).</summary>
    public Task ForgetAsync(string taskId, CancellationToken ct) => store.UnwatchPushTaskAsync(taskId, ct);
}

/// <summary>
/// Sends each change of a task with push configs (the task, its status updates, its output) to every config's URL,
/// with retries and exponential backoff. One per engine; it watches the tasks that get configs, and after a restart
/// the unfinished tasks of the index.
/// </summary>
internal sealed class A2APushNotifier
{
    private static readonly ConditionalWeakTable<BureauEngine, A2APushNotifier> s_byEngine = new();
    private readonly BureauEngine _engine;
    private readonly TimeSpan _heartbeat;
    private readonly A2APushConfigs _configs;
    private readonly A2AOptions _options;
    private readonly HttpClient _http;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly CancellationToken _stopping;
    private readonly HashSet<string> _watching = new(StringComparer.Ordinal);

    private A2APushNotifier(IServiceProvider services)
    {
        // Everything is resolved now: the provider may be a request's scope, gone when the request ends.
        _engine = services.GetRequiredService<BureauEngine>();
        _heartbeat = services.GetRequiredService<IOptions<BureauHttpOptions>>().Value.HeartbeatInterval;
        _time = services.GetRequiredService<TimeProvider>();
        _configs = new A2APushConfigs((IA2APushConfigStore)services.GetRequiredService<IEventStore>(), _time);
        _options = Options(services);
        _http = new HttpClient(A2APushTargets.Handler(_options.AllowPrivatePushUrls)) { Timeout = _options.PushTimeout };
        _logger = services.GetRequiredService<ILoggerFactory>().CreateLogger("Bureau.A2A.Push");
        _stopping = services.GetRequiredService<IHostApplicationLifetime>().ApplicationStopping;
    }

    /// <summary>The options: <c>IOptions&lt;A2AOptions&gt;</c>, with <c>Bureau:A2A</c> from configuration bound over them.</summary>
    public static A2AOptions Options(IServiceProvider services)
    {
        var options = services.GetService<IOptions<A2AOptions>>()?.Value ?? new A2AOptions();
        services.GetService<IConfiguration>()?.GetSection("Bureau:A2A").Bind(options);
        return options;
    }

    /// <summary>Whether the host can keep push configs (its storage's event store keeps them: SQLite, PostgreSQL).</summary>
    public static bool Supported(IServiceProvider services) => services.GetService<IEventStore>() is IA2APushConfigStore;

    public static A2APushNotifier For(IServiceProvider services) =>
        s_byEngine.GetValue(services.GetRequiredService<BureauEngine>(), _ => new A2APushNotifier(services));

    public A2APushConfigs Configs => _configs;
    public A2AOptions Settings => _options;

    /// <summary>After a start: watches the unfinished tasks that have configs.</summary>
    public async Task ResumeAsync()
    {
        foreach (var taskId in await _configs.ReadIndexAsync(_stopping)) Watch(taskId, resumed: true);
    }

    /// <summary>Starts watching a task (once): its changes from now on are pushed.</summary>
    public void Watch(string taskId, bool resumed = false)
    {
        lock (_watching)
        {
            if (!_watching.Add(taskId)) return;
        }
        _ = Task.Run(async () =>
        {
            try
            {
                var run = await _engine.GetRunAsync(taskId, _stopping);
                if (run is null || (resumed && run.Status.IsTerminal()))
                {
                    await _configs.ForgetAsync(taskId, _stopping);
                    return;
                }
                await A2AService.StreamAsync(_engine, _heartbeat, _time, run, data => PushAsync(taskId, data), () => Task.CompletedTask, _stopping, untilTerminal: true);
                var now = await _engine.GetRunAsync(taskId, _stopping);
                if (now is null || now.Status.IsTerminal()) await _configs.ForgetAsync(taskId, _stopping);
            }
            catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
            {
            }
            catch (Exception ex)
            {
                _logger.LogWarning(ex, "A2A push notifications of task {TaskId} stopped", taskId);
            }
            finally
            {
                lock (_watching) _watching.Remove(taskId);
            }
        }, CancellationToken.None);
    }

    /// <summary>Sends one StreamResponse to every config of the task, each with its retries; a failure is logged, never thrown.</summary>
    private async Task PushAsync(string taskId, JsonObject data)
    {
        var configs = await _configs.ListAsync(taskId, _stopping);
        await Task.WhenAll(configs.Select(c => SendAsync(taskId, c, data.ToJsonString())));
    }

    private async Task SendAsync(string taskId, JsonObject config, string body)
    {
        var url = (string?)config["url"];
        if (url is null) return;
        var delay = _options.PushRetryDelay;
        for (var attempt = 1; ; attempt++)
        {
            string failure;
            try
            {
                using var request = new HttpRequestMessage(HttpMethod.Post, url) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
                request.Headers.TryAddWithoutValidation("A2A-Version", A2AEndpoints.ProtocolVersion);
                if ((string?)config["token"] is { Length: > 0 } token) request.Headers.TryAddWithoutValidation("X-A2A-Notification-Token", token);
                if (config["authentication"] is JsonObject auth && (string?)auth["scheme"] is { Length: > 0 } scheme)
                    request.Headers.TryAddWithoutValidation("Authorization", $"{scheme} {(string?)auth["credentials"]}".TrimEnd());
                using var response = await _http.SendAsync(request, _stopping);
                var status = (int)response.StatusCode;
                if (status is >= 200 and < 300) return;
                failure = $"HTTP {status.ToString(CultureInfo.InvariantCulture)}";
                if (status is >= 400 and < 500 and not 408 and not 429)
                {
                    _logger.LogWarning("A2A push notification of task {TaskId} to {Url} refused ({Failure}); not retried", taskId, url, failure);
                    return;
                }
            }
            catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
            {
                throw;
            }
            catch (Exception ex) when (ex is HttpRequestException or OperationCanceledException)
            {
                failure = ex.Message;
            }
            if (attempt >= _options.PushAttempts)
            {
                _logger.LogWarning("A2A push notification of task {TaskId} to {Url} given up after {Attempts} attempts: {Failure}", taskId, url, attempt, failure);
                return;
            }
            await Task.Delay(delay, _time, _stopping);
            delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, TimeSpan.FromMinutes(1).Ticks));
        }
    }
}
