using System.Collections.Concurrent;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using System.Text.Json.Nodes;
using ModelContextProtocol;
using ModelContextProtocol.Client;
using ModelContextProtocol.Protocol;

namespace Bureau.Tools.Mcp;

/// <summary>
/// Bureau's connections to its MCP servers: one client per server, made on first use and made again on the next
/// call after it closed (a stdio server that crashed or was killed is started again; an HTTP session that ended
/// is opened again). A server that announces tool list changes is subscribed to, and its
/// <c>notifications/tools/list_changed</c> make its tools be listed again (docs/decisions/0051). Disposing closes them
/// all (stdio servers are stopped).
/// </summary>
public sealed class McpConnections : IAsyncDisposable
{
    private readonly ConcurrentDictionary<string, McpServerConnection> _servers = new(StringComparer.Ordinal);
    private readonly ILoggerFactory _loggers;
    private readonly Resilience.DependencyHealth? _health;
    private int _disposed;

    /// <summary>Creates the registry.</summary>
    public McpConnections(ILoggerFactory? loggerFactory = null) : this(loggerFactory, null) { }

    /// <summary>Creates the registry; each server's connection state is shown in <paramref name="health"/> as <c>mcp:name</c>.</summary>
    internal McpConnections(ILoggerFactory? loggerFactory, Resilience.DependencyHealth? health)
    {
        _loggers = loggerFactory ?? NullLoggerFactory.Instance;
        _health = health;
    }

    /// <summary>The wait before the first background attempt to connect a server unreachable at start; it doubles (with jitter) up to <see cref="ReconnectMaxDelay"/>.</summary>
    internal TimeSpan ReconnectDelay { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>The longest wait between two background attempts.</summary>
    internal TimeSpan ReconnectMaxDelay { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// How long a server's tools are re-listed after its first <c>notifications/tools/list_changed</c>: the
    /// notifications of a burst that arrive meanwhile (or while a listing runs) make one more listing, not one each.
    /// </summary>
    internal TimeSpan RelistDelay { get; init; } = TimeSpan.FromMilliseconds(200);

    /// <summary>True once the deployment follows the servers' tool list changes (<see cref="FollowToolChanges"/>).</summary>
    internal bool Following => Volatile.Read(ref _following) != 0;

    private int _following;

    /// <summary>
    /// Starts following the servers' <c>notifications/tools/list_changed</c> (docs/decisions/0051): called by the
    /// deployment once its definitions are built, so a notification that arrived during the start is acted on now.
    /// </summary>
    internal void FollowToolChanges()
    {
        if (Interlocked.Exchange(ref _following, 1) != 0) return;
        foreach (var server in _servers.Values) server.RelistIfWanted();
    }

    /// <summary>The connection of <paramref name="server"/> (not yet connected until used).</summary>
    public McpServerConnection For(McpServerToolDefinition server)
    {
        ArgumentNullException.ThrowIfNull(server);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        return _servers.GetOrAdd(server.Name, static (_, s) => new McpServerConnection(s.server, s.loggers, s.self), (server, loggers: _loggers, self: this));
    }

    /// <summary>The health entry of <paramref name="server"/> (<c>mcp:name</c>), when this registry reports to one.</summary>
    internal Resilience.DependencyMonitor? Monitor(McpServerToolDefinition server) =>
        _health?.GetOrAdd("mcp:" + server.Name, n => new Resilience.DependencyMonitor(n, TimeProvider.System, hasBreaker: false, maxConcurrency: null));

    /// <summary>Closes every connection; stdio servers are stopped.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        foreach (var server in _servers.Values) await server.DisposeAsync();
    }
}

/// <summary>One MCP server's client, (re)connected on demand.</summary>
public sealed class McpServerConnection : IAsyncDisposable
{
    private readonly McpServerToolDefinition _server;
    private readonly ILogger _logger;
    private readonly McpConnections _owner;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly CancellationTokenSource _stopping = new();
    private McpClient? _client;
    private int _connects;
    private bool _disposed;
    private volatile Pending? _pending;
    private Task? _background;

    // Following the server's tool list (docs/decisions/0051).
    private Action<IList<McpClientTool>>? _deploy;
    private readonly Lock _relistGate = new();
    private int _relistWanted;
    private bool _relistRunning;
    private Task? _relistTask;
    private int _relistings;
    private int _listChangedReceived;
    private volatile bool _followsChanges;
    private volatile Offering? _offered;

    /// <summary>The tools the server offered in its last listing, and when it was listed.</summary>
    private sealed record Offering(IReadOnlySet<string> Names, DateTimeOffset At);

    /// <summary>Why the server is not connected yet and when Bureau tries again (a server unreachable at start).</summary>
    private sealed record Pending(string Reason, DateTimeOffset Since, DateTimeOffset NextAttemptAt, int Attempts);

    internal McpServerConnection(McpServerToolDefinition server, ILoggerFactory loggers, McpConnections owner)
    {
        _server = server;
        _owner = owner;
        _logger = loggers.CreateLogger("Bureau.Mcp");
    }

    /// <summary>
    /// <c>connected</c>; <c>connecting</c> while a server unreachable at start is tried again in the background
    /// (calls of its tools fail at once until it answers); <c>idle</c> before the first use or after a session closed.
    /// </summary>
    public string State => _pending is not null ? "connecting" : IsConnected ? "connected" : "idle";

    /// <summary>While <see cref="State"/> is <c>connecting</c>: when the next attempt is made.</summary>
    public DateTimeOffset? NextAttemptAt => _pending?.NextAttemptAt;

    /// <summary>True while a session is open and its transport has not closed (a stdio server that died closes it).</summary>
    public bool IsConnected => Volatile.Read(ref _client) is { } c && !c.Completion.IsCompleted;

    /// <summary>How many times a session was opened (1 after the first connect; more after restarts).</summary>
    public int Connects => Volatile.Read(ref _connects);

    /// <summary>
    /// True while the current session delivers the server's <c>notifications/tools/list_changed</c>: the server
    /// declares <c>capabilities.tools.listChanged</c>, and (on protocol revisions that need one) acknowledged Bureau's
    /// <c>subscriptions/listen</c> for them.
    /// </summary>
    internal bool FollowsToolChanges => _followsChanges && IsConnected;

    /// <summary>How many <c>notifications/tools/list_changed</c> arrived from the server.</summary>
    internal int ListChangedReceived => Volatile.Read(ref _listChangedReceived);

    /// <summary>How many times the server's tools were listed again after a change (attempts, failed ones included).</summary>
    internal int Relistings => Volatile.Read(ref _relistings);

    /// <summary>True while a re-listing is wanted or running.</summary>
    internal bool Relisting
    {
        get
        {
            lock (_relistGate) return _relistRunning || Volatile.Read(ref _relistWanted) != 0 && _deploy is not null && _owner.Following;
        }
    }

    /// <summary>
    /// Null when the server's tool list is not known (never listed); otherwise why a call of
    /// <paramref name="remoteName"/> must not be sent: the server's last listing does not have it (a tool withdrawn
    /// after <c>notifications/tools/list_changed</c>).
    /// </summary>
    internal string? NotOffered(string remoteName) =>
        _offered is { } offered && !offered.Names.Contains(remoteName)
            ? $"the MCP server '{_server.Name}' no longer offers tool '{remoteName}' (its tool list of {offered.At:yyyy-MM-dd HH:mm:ss}Z does not have it): the tool was withdrawn, and runs started since do not see it"
            : null;

    /// <summary>Records what a listing of the server's tools returned (at start, after start, after a change).</summary>
    internal void RecordListing(IList<McpClientTool> tools) =>
        _offered = new Offering(tools.Select(t => t.ProtocolTool.Name).ToHashSet(StringComparer.Ordinal), DateTimeOffset.UtcNow);

    /// <summary>
    /// From now on, a <c>notifications/tools/list_changed</c> of the server makes Bureau list its tools again
    /// (bounded by its connect timeout, a burst coalesced into one listing) and hand them to <paramref name="deploy"/>;
    /// a listing that fails is logged and changes nothing.
    /// </summary>
    internal void FollowToolChanges(Action<IList<McpClientTool>> deploy)
    {
        lock (_relistGate) _deploy = deploy;
        RelistIfWanted();
    }

    /// <summary>Starts a re-listing when a notification asked for one before Bureau was ready to act on it.</summary>
    internal void RelistIfWanted()
    {
        if (Volatile.Read(ref _relistWanted) != 0) RequestRelist();
    }

    private void ToolListChanged()
    {
        Interlocked.Increment(ref _listChangedReceived);
        _logger.LogInformation("MCP server '{Server}' says its tools changed (notifications/tools/list_changed); listing them again", _server.Name);
        RequestRelist();
    }

    /// <summary>
    /// Asks for one re-listing: one worker at a time lists; requests that arrive while it waits or lists are folded
    /// into one more listing after it, so a burst of N notifications makes at most two listings.
    /// </summary>
    private void RequestRelist()
    {
        Volatile.Write(ref _relistWanted, 1);
        lock (_relistGate)
        {
            if (_relistRunning || _deploy is null || !_owner.Following || _stopping.IsCancellationRequested) return;
            _relistRunning = true;
            _relistTask = Task.Run(RelistLoopAsync);
        }
    }

    private async Task RelistLoopAsync()
    {
        var token = _stopping.Token;
        try
        {
            while (true)
            {
                await Task.Delay(_owner.RelistDelay, token).ConfigureAwait(false);
                Volatile.Write(ref _relistWanted, 0);
                await RelistOnceAsync(token).ConfigureAwait(false);
                lock (_relistGate)
                {
                    if (Volatile.Read(ref _relistWanted) == 0 || token.IsCancellationRequested)
                    {
                        _relistRunning = false;
                        return;
                    }
                }
            }
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            lock (_relistGate) _relistRunning = false;
        }
    }

    private async Task RelistOnceAsync(CancellationToken token)
    {
        var timeout = _server.ConnectTimeout ?? McpServerToolDefinition.DefaultConnectTimeout;
        Interlocked.Increment(ref _relistings);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(token);
        deadline.CancelAfter(timeout);
        IList<McpClientTool> tools;
        try
        {
            var client = await GetClientAsync(deadline.Token).ConfigureAwait(false);
            tools = await client.ListToolsAsync(cancellationToken: deadline.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            throw;
        }
        catch (Exception ex)
        {
            var why = ex is OperationCanceledException ? $"no answer within {timeout.TotalSeconds:0.#}s (connectTimeout)" : ex is McpConnectException ? ex.Message : Reason(ex);
            _logger.LogError("MCP server '{Server}' said its tools changed, but listing them again failed ({Why}); its tools stay as they were", _server.Name, why);
            return;
        }
        RecordListing(tools);
        try
        {
            Action<IList<McpClientTool>>? deploy;
            lock (_relistGate) deploy = _deploy;
            deploy?.Invoke(tools);
        }
        catch (Exception ex)
        {
            _logger.LogError(ex, "MCP server '{Server}': deploying its changed tools failed; its tools stay as they were", _server.Name);
        }
    }

    /// <summary>
    /// The connected client, connecting (again) when there is none or the last one closed (its transport ended: the
    /// stdio server exited, the HTTP session ended).
    /// </summary>
    /// <exception cref="McpConnectException">Connecting failed; the message names the server and why.</exception>
    public Task<McpClient> GetClientAsync(CancellationToken cancellationToken)
    {
        // Connecting in the background (unreachable at start): the call fails at once, saying when it is tried again,
        // instead of each call waiting for a handshake of its own.
        if (_pending is { } pending) throw new McpConnectException(NotConnected(pending)) { NothingSent = true };
        return GetClientCoreAsync(cancellationToken);
    }

    private string NotConnected(Pending p)
    {
        var now = DateTimeOffset.UtcNow;
        var wait = p.NextAttemptAt - now;
        return $"MCP server '{_server.Name}' ({Where}) is not connected: unreachable since {p.Since:yyyy-MM-dd HH:mm:ss}Z ({p.Reason}); "
            + $"Bureau tries again in the background, next at {p.NextAttemptAt:yyyy-MM-dd HH:mm:ss}Z ({(wait > TimeSpan.Zero ? "in " + Resilience.Backoff.Format(wait) : "now")}); its tools fail until it answers";
    }

    /// <summary>
    /// Connects in the background until the server answers and its tools are listed, waiting
    /// <see cref="McpConnections.ReconnectDelay"/>, doubling to <see cref="McpConnections.ReconnectMaxDelay"/>, between
    /// attempts; then <paramref name="listed"/> deploys them. Until then, calls fail at once (<see cref="GetClientAsync"/>).
    /// </summary>
    internal void ConnectInBackground(string firstError, Action<IList<McpClientTool>> listed)
    {
        var monitor = _owner.Monitor(_server);
        var now = DateTimeOffset.UtcNow;
        var settings = new RetrySettings { Delay = _owner.ReconnectDelay, MaxDelay = _owner.ReconnectMaxDelay, Jitter = true };
        var first = Resilience.Backoff.Delay(settings, 1, null, Random.Shared.NextDouble);
        _pending = new Pending(firstError, now, now + first, 1);
        monitor?.SetConnection("connecting", now + first, firstError);
        _logger.LogWarning("MCP server '{Server}' could not be reached at start ({Why}); the host starts without its tools, and Bureau tries again in the background (next in {Delay})",
            _server.Name, firstError, Resilience.Backoff.Format(first));
        _background = Task.Run(async () =>
        {
            var delay = first;
            var token = _stopping.Token;
            while (!token.IsCancellationRequested)
            {
                try
                {
                    await Task.Delay(delay, token).ConfigureAwait(false);
                    var timeout = _server.ConnectTimeout ?? McpServerToolDefinition.DefaultConnectTimeout;
                    using var deadline = CancellationTokenSource.CreateLinkedTokenSource(token);
                    deadline.CancelAfter(timeout * 2);
                    var client = await GetClientCoreAsync(deadline.Token).ConfigureAwait(false);
                    IList<McpClientTool> tools;
                    try
                    {
                        tools = await client.ListToolsAsync(cancellationToken: deadline.Token).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException) when (!token.IsCancellationRequested)
                    {
                        throw new McpConnectException($"listing its tools took longer than {(timeout * 2).TotalSeconds:0.#}s");
                    }
                    // Calls go to the server from now on; then its tools are deployed (placeholders replaced, the others added).
                    RecordListing(tools);
                    _pending = null;
                    monitor?.SetConnection("connected", null, null);
                    try
                    {
                        listed(tools);
                    }
                    catch (Exception ex)
                    {
                        _logger.LogError(ex, "MCP server '{Server}' answered after start, but deploying its tools failed; the tools known by name still call it", _server.Name);
                    }
                    return;
                }
                catch (OperationCanceledException) when (token.IsCancellationRequested)
                {
                    return;
                }
                catch (Exception ex)
                {
                    var p = _pending!;
                    var reason = ex is McpConnectException ? ex.Message : Reason(ex);
                    delay = Resilience.Backoff.Delay(settings, p.Attempts + 1, null, Random.Shared.NextDouble);
                    var next = DateTimeOffset.UtcNow + delay;
                    _pending = p with { Reason = reason, NextAttemptAt = next, Attempts = p.Attempts + 1 };
                    monitor?.SetConnection("connecting", next, reason);
                    _logger.LogWarning("MCP server '{Server}' still cannot be reached ({Why}); next attempt in {Delay}", _server.Name, reason, Resilience.Backoff.Format(delay));
                }
            }
        });
    }

    private async Task<McpClient> GetClientCoreAsync(CancellationToken cancellationToken)
    {
        var client = Volatile.Read(ref _client);
        if (client is not null && !client.Completion.IsCompleted)
        {
            // A stdio server may have died without the client noticing yet (the end of its stdout not read): a ping
            // (local, well under a millisecond) that fails on the transport proves it before the call is sent, so the
            // call goes to a new server instead of failing. An HTTP server is not pinged: a request costs a round trip.
            if (_server.Command is null || await AliveAsync(client, cancellationToken)) return client;
            await ForgetAsync(client);
        }
        await _gate.WaitAsync(cancellationToken);
        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_client is not null && !_client.Completion.IsCompleted) return _client;
            if (_client is { } closed)
            {
                var details = await closed.Completion;
                _logger.LogWarning("MCP server '{Server}' closed ({Why}); connecting again", _server.Name, Describe(details));
                _client = null;
                await DisposeQuietlyAsync(closed);
            }
            _client = await ConnectAsync(cancellationToken);
            // A new session after the first: changes announced while there was none were missed, so the tools are listed again.
            if (Interlocked.Increment(ref _connects) > 1) RequestRelist();
            if (_pending is null) _owner.Monitor(_server)?.SetConnection("connected", null, null);
            return _client;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>False only when a ping fails on the transport (the server is gone); a slow or refused ping is not proof.</summary>
    private static async Task<bool> AliveAsync(McpClient client, CancellationToken cancellationToken)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(TimeSpan.FromSeconds(5));
        try
        {
            await client.PingAsync(cancellationToken: deadline.Token);
            return true;
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return true;
        }
        catch (ModelContextProtocol.McpProtocolException)
        {
            return true;   // it answered, with an error: it is alive
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            return false;
        }
    }

    /// <summary>Drops <paramref name="client"/> when it is still the current one (a call saw its transport fail), so the next call connects again.</summary>
    internal async Task ForgetAsync(McpClient client)
    {
        await _gate.WaitAsync(CancellationToken.None);
        try
        {
            if (!ReferenceEquals(_client, client)) return;
            _client = null;
        }
        finally
        {
            _gate.Release();
        }
        await DisposeQuietlyAsync(client);
    }

    private async Task<McpClient> ConnectAsync(CancellationToken cancellationToken)
    {
        var timeout = _server.ConnectTimeout ?? McpServerToolDefinition.DefaultConnectTimeout;
        IClientTransport transport;
        if (_server.Command is { Count: > 0 } command)
        {
            transport = new StdioClientTransport(new StdioClientTransportOptions
            {
                Name = _server.Name,
                Command = command[0],
                Arguments = [.. command.Skip(1)],
                WorkingDirectory = _server.WorkingDirectory,
                InheritEnvironmentVariables = false,
                EnvironmentVariables = McpEnvironment.Build(_server),
                StandardErrorLines = line => _logger.LogDebug("MCP server '{Server}' stderr: {Line}", _server.Name, line),
            });
        }
        else if (_server.Url is { } url)
        {
            var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
            if (_server.BearerTokenVariable is { } variable)
            {
                var token = System.Environment.GetEnvironmentVariable(variable);
                if (string.IsNullOrEmpty(token))
                    throw new McpConnectException($"MCP server '{_server.Name}': the bearer token variable {variable} is not set in Bureau's environment");
                headers["Authorization"] = "Bearer " + token;
            }
            transport = new HttpClientTransport(new HttpClientTransportOptions
            {
                Name = _server.Name,
                Endpoint = url,
                TransportMode = HttpTransportMode.StreamableHttp,
                AdditionalHeaders = headers,
                ConnectionTimeout = timeout,
            });
        }
        else
        {
            throw new McpConnectException($"MCP server '{_server.Name}': give either a command (stdio) or a url (streamable HTTP)");
        }

        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(timeout);
        try
        {
            var client = await McpClient.CreateAsync(transport, new McpClientOptions
            {
                ClientInfo = new ModelContextProtocol.Protocol.Implementation { Name = "bureau", Version = typeof(McpConnections).Assembly.GetName().Version?.ToString() ?? "1.0" },
                InitializationTimeout = timeout,
                Handlers = new McpClientHandlers
                {
                    NotificationHandlers =
                    [
                        new(NotificationMethods.ToolListChangedNotification, (_, _) => { ToolListChanged(); return ValueTask.CompletedTask; }),
                        new(NotificationMethods.SubscriptionsAcknowledgedNotification, (n, _) => { Acknowledged(n); return ValueTask.CompletedTask; }),
                    ],
                },
            }, cancellationToken: deadline.Token);
            Follow(client);
            return client;
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new McpConnectException($"MCP server '{_server.Name}' ({Where}): no answer to the handshake within {timeout.TotalSeconds:0.#}s");
        }
        catch (Exception ex) when (ex is not OperationCanceledException and not McpConnectException)
        {
            throw new McpConnectException($"MCP server '{_server.Name}' ({Where}): could not connect: {Reason(ex)}", ex);
        }
    }

    /// <summary>
    /// Asks the server for its tool list changes: servers that declare <c>capabilities.tools.listChanged</c> send them
    /// to the session on revisions before 2026-07-28, and on a <c>subscriptions/listen</c> stream from that revision on.
    /// </summary>
    private void Follow(McpClient client)
    {
        const string ListenSince = "2026-07-28";
        _followsChanges = false;
        if (client.ServerCapabilities.Tools?.ListChanged != true)
        {
            _logger.LogDebug("MCP server '{Server}' does not announce tool list changes (capabilities.tools.listChanged): its tools are listed at start only", _server.Name);
            return;
        }
        if (client.NegotiatedProtocolVersion is { } version && string.CompareOrdinal(version, ListenSince) >= 0)
            _ = ListenAsync(client);
        else
            _followsChanges = true;
    }

    private async Task ListenAsync(McpClient client)
    {
        try
        {
            // A long-lived request: its response stream carries the notifications until it is cancelled or the session ends.
            await client.SendRequestAsync<SubscriptionsListenRequestParams, EmptyResult>(RequestMethods.SubscriptionsListen,
                new SubscriptionsListenRequestParams { Notifications = new SubscriptionsListenNotifications { ToolsListChanged = true } },
                cancellationToken: _stopping.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (!_stopping.IsCancellationRequested && ReferenceEquals(Volatile.Read(ref _client), client) && !client.Completion.IsCompleted)
        {
            _logger.LogWarning("MCP server '{Server}': subscribing to its tool list changes (subscriptions/listen) failed ({Why}); its tools are not listed again until it reconnects",
                _server.Name, Reason(ex));
        }
        catch (Exception)
        {
            // The session ended or Bureau is stopping: a new session subscribes again.
        }
        finally
        {
            if (ReferenceEquals(Volatile.Read(ref _client), client)) _followsChanges = false;
        }
    }

    private void Acknowledged(JsonRpcNotification notification)
    {
        var granted = notification.Params?["notifications"]?["toolsListChanged"] is JsonNode node && node.GetValueKind() == JsonValueKind.True;
        _followsChanges = granted;
        if (!granted)
            _logger.LogInformation("MCP server '{Server}' did not grant tool list changes on its subscription: its tools are listed at start only", _server.Name);
    }

    private string Where => _server.Command is { Count: > 0 } c ? "stdio: " + string.Join(' ', c) : "http: " + _server.Url;

    /// <summary>The innermost useful message of <paramref name="ex"/> (the SDK wraps transport failures).</summary>
    internal static string Reason(Exception ex)
    {
        var messages = new List<string>();
        for (var e = ex; e is not null; e = e.InnerException)
            if (!string.IsNullOrWhiteSpace(e.Message) && !messages.Contains(e.Message)) messages.Add(e.Message.Trim());
        if (ex is ClientTransportClosedException { Details: StdioClientCompletionDetails stdio })
        {
            if (stdio.ExitCode is { } code) messages.Add($"exit code {code}");
            if (stdio.StandardErrorTail is { Count: > 0 } tail) messages.Add("stderr: " + string.Join(" | ", tail.TakeLast(5)));
        }
        return string.Join(": ", messages.Take(4));
    }

    private static string Describe(ClientCompletionDetails details) => details switch
    {
        StdioClientCompletionDetails s => $"process {s.ProcessId} exited{(s.ExitCode is { } c ? $" with code {c}" : string.Empty)}",
        HttpClientCompletionDetails h => h.HttpStatusCode is { } status ? $"HTTP {(int)status}" : details.Exception?.Message ?? "session ended",
        _ => details.Exception?.Message ?? "closed",
    };

    private static async Task DisposeQuietlyAsync(McpClient client)
    {
        try
        {
            await client.DisposeAsync();
        }
        catch (Exception)
        {
            // Closing a client whose transport already failed.
        }
    }

    /// <summary>Closes the client (a stdio server is stopped).</summary>
    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        Task? relist;
        lock (_relistGate) relist = _relistTask;
        if (relist is not null)
        {
            try
            {
                await relist;
            }
            catch (Exception)
            {
                // It ends on the cancellation.
            }
        }
        if (_background is { } background)
        {
            try
            {
                await background;
            }
            catch (Exception)
            {
                // It ends on the cancellation; nothing of it is needed any more.
            }
        }
        await _gate.WaitAsync(CancellationToken.None);
        try
        {
            _disposed = true;
            if (_client is { } client)
            {
                _client = null;
                await DisposeQuietlyAsync(client);
            }
        }
        finally
        {
            _gate.Release();
        }
    }
}

/// <summary>Connecting to an MCP server failed; the message names the server and why.</summary>
public sealed class McpConnectException : Exception
{
    /// <summary>Creates the exception.</summary>
    public McpConnectException(string message, Exception? inner = null) : base(message, inner) { }

    /// <summary>Creates the exception.</summary>
    public McpConnectException() { }

    /// <summary>Creates the exception.</summary>
    public McpConnectException(string message) : base(message) { }

    /// <summary>True when nothing of the call was sent (the server is known to be unreachable).</summary>
    internal bool NothingSent { get; init; }
}

/// <summary>The environment of a stdio MCP server: as a process tool's, without the per-call variables.</summary>
internal static class McpEnvironment
{
    public static Dictionary<string, string?> Build(McpServerToolDefinition server)
    {
        var env = new Dictionary<string, string?>(StringComparer.Ordinal)
        {
            ["PATH"] = Host("PATH") ?? "/usr/local/bin:/usr/bin:/bin",
            ["HOME"] = Host("HOME") ?? Path.GetTempPath(),
            ["LANG"] = Host("LANG") ?? "C.UTF-8",
        };
        foreach (var (name, value) in server.Environment)
        {
            if (value is not null) env[name] = value;
            else if (Host(name) is { } hostValue) env[name] = hostValue;
        }
        return env;

        static string? Host(string name) => System.Environment.GetEnvironmentVariable(name) is { Length: > 0 } v ? v : null;
    }
}

/// <summary>Turns a server definition into Bureau tool definitions, from the server's listing.</summary>
internal static class McpToolListing
{
    private static readonly JsonElement AnyObject = JsonDocument.Parse("""{"type":"object"}""").RootElement.Clone();

    /// <summary>
    /// Connects to every MCP server in <paramref name="definitions"/>, lists its tools and returns definitions in which
    /// each server entry is replaced by its tools, and each agent that listed the server lists those tools instead.
    /// A server that cannot be reached or listed fails the start when <paramref name="listed"/> is null; otherwise the
    /// start goes on without it (a degraded start, docs/decisions/0028): the tools its <c>include</c> names are deployed
    /// by name, failing at once until it answers; it is connected in the background, and when it answers its tools
    /// are handed to <paramref name="listed"/> with the agents that listed the server. With <paramref name="listed"/>,
    /// every server's <c>notifications/tools/list_changed</c> is followed (docs/decisions/0051): its tools are listed
    /// again and handed to <paramref name="listed"/> as a re-listing (the last argument true) once
    /// <see cref="McpConnections.FollowToolChanges()"/> is called.
    /// </summary>
    /// <exception cref="InvalidOperationException">A server could not be listed, or its tools are not usable (the message says which and why).</exception>
    public static BureauDefinitions Expand(BureauDefinitions definitions, McpConnections connections, ILogger logger,
        Action<McpServerToolDefinition, IList<McpClientTool>, IReadOnlyCollection<string>, bool>? listed = null)
    {
        var servers = definitions.Tools.Values.OfType<McpServerToolDefinition>().ToList();
        if (servers.Count == 0) return definitions;
        var expanded = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        var problems = new List<string>();
        var late = new List<(McpServerToolDefinition Server, string Error)>();
        var listings = new List<(McpServerToolDefinition Server, Task<IList<McpClientTool>> Tools)>();
        foreach (var server in servers) listings.Add((server, ListAsync(server, connections)));
        foreach (var (server, task) in listings)
        {
            IList<McpClientTool> tools;
            try
            {
                tools = task.GetAwaiter().GetResult();
            }
            catch (Exception ex)
            {
                var error = ex is McpConnectException ? ex.Message : $"MCP server '{server.Name}': listing its tools failed: {McpServerConnection.Reason(ex)}";
                if (listed is null)
                {
                    problems.Add(error);
                    continue;
                }
                // Degraded start: the tools declared by name are known now; the others appear when the server answers.
                var placeholders = new List<string>();
                foreach (var remote in server.Include)
                {
                    var name = server.EffectivePrefix + remote;
                    if (!IsToolName(name) || definitions.Tools.ContainsKey(name) || expanded.Values.Any(v => v.Contains(name, StringComparer.Ordinal)))
                    {
                        problems.Add($"MCP server '{server.Name}': tool '{remote}' would be named '{name}', which is not a valid or free tool name; change the prefix");
                        continue;
                    }
                    definitions.Add(Placeholder(server, remote, name));
                    placeholders.Add(name);
                }
                expanded[server.Name] = placeholders;
                late.Add((server, error));
                continue;
            }
            var names = new List<string>();
            foreach (var tool in Deploy(server, tools, name => definitions.Tools.ContainsKey(name) || expanded.Values.Any(v => v.Contains(name, StringComparer.Ordinal)), problems))
            {
                definitions.Add(tool);
                names.Add(tool.Name);
            }
            expanded[server.Name] = names;
            logger.LogInformation("MCP server '{Server}': {Count} tool(s) deployed: {Tools}", server.Name, names.Count, string.Join(", ", names));
        }
        if (problems.Count > 0)
            throw new InvalidOperationException("the MCP servers' tools could not be deployed:" + System.Environment.NewLine + string.Join(System.Environment.NewLine, problems));

        var agentsOf = servers.ToDictionary(s => s.Name, s => (IReadOnlyCollection<string>)[.. definitions.Agents.Values.Where(a => a.Tools.Contains(s.Name, StringComparer.Ordinal)).Select(a => a.Name)], StringComparer.Ordinal);
        foreach (var server in servers) definitions.Tools.Remove(server.Name);
        foreach (var agent in definitions.Agents.Values.ToList())
        {
            if (!agent.Tools.Any(expanded.ContainsKey)) continue;
            var tools = agent.Tools.SelectMany(t => expanded.TryGetValue(t, out var list) ? list : [t]).Distinct(StringComparer.Ordinal).ToList();
            definitions.Add(agent.WithTools(tools));
        }

        if (listed is null) return definitions;
        var lateServers = late.Select(l => l.Server.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var server in servers.Where(s => !lateServers.Contains(s.Name)))
        {
            var agents = agentsOf[server.Name];
            connections.For(server).FollowToolChanges(tools => listed(server, tools, agents, true));
        }
        foreach (var (server, error) in late)
        {
            var agents = agentsOf[server.Name];
            var connection = connections.For(server);
            connection.ConnectInBackground(error, tools =>
            {
                // Named and deployed by the deployment, against the tools deployed now (the rules of the start).
                listed(server, tools, agents, false);
                connection.FollowToolChanges(changed => listed(server, changed, agents, true));
            });
        }
        return definitions;
    }

    /// <summary>A tool named by the <c>include</c> of a server not reached yet: its calls fail at once until the server answers.</summary>
    private static McpToolDefinition Placeholder(McpServerToolDefinition server, string remote, string name)
    {
        var declared = server.Effects.TryGetValue(remote, out var effect);
        return new McpToolDefinition
        {
            Name = name,
            Server = server,
            RemoteName = remote,
            Description = $"Tool '{remote}' of the MCP server '{server.Name}', which could not be reached when Bureau started: its description and input are not known yet, and calls fail until it answers.",
            Effect = declared ? effect : server.Effect,
            EffectSource = declared ? "declared" : "default",
            Parameters = AnyObject,
            Listed = false,
            Timeout = server.Timeout, OnInDoubt = server.OnInDoubt, InDoubtTimeout = server.InDoubtTimeout,
            Retry = server.Retry, CircuitBreaker = server.CircuitBreaker, MaxConcurrency = server.MaxConcurrency, MaxQueue = server.MaxQueue, StepTimeout = server.StepTimeout,
        };
    }

    /// <summary>The tools of <paramref name="server"/>'s listing that pass its filters, named and given effects; what is wrong goes to <paramref name="problems"/>.</summary>
    internal static List<McpToolDefinition> Deploy(McpServerToolDefinition server, IList<McpClientTool> tools, Func<string, bool> taken, List<string> problems)
    {
        var result = new List<McpToolDefinition>();
        var byRemote = tools.ToDictionary(t => t.ProtocolTool.Name, StringComparer.Ordinal);
        foreach (var missing in server.Include.Where(n => !byRemote.ContainsKey(n)))
            problems.Add($"MCP server '{server.Name}': include names '{missing}', which the server does not have (it has: {string.Join(", ", byRemote.Keys.Order(StringComparer.Ordinal))})");
        foreach (var declared in server.Effects.Keys.Where(n => !byRemote.ContainsKey(n)))
            problems.Add($"MCP server '{server.Name}': effects names '{declared}', which the server does not have (it has: {string.Join(", ", byRemote.Keys.Order(StringComparer.Ordinal))})");
        foreach (var tool in tools)
        {
            var p = tool.ProtocolTool;
            if (server.Include.Count > 0 && !server.Include.Contains(p.Name, StringComparer.Ordinal)) continue;
            if (server.Exclude.Contains(p.Name, StringComparer.Ordinal)) continue;
            var name = server.EffectivePrefix + p.Name;
            if (!IsToolName(name))
            {
                problems.Add($"MCP server '{server.Name}': tool '{p.Name}' would be named '{name}', but tool names are 1 to 64 letters, digits, '_' or '-'; exclude it or change the prefix");
                continue;
            }
            if (taken(name) || result.Any(t => t.Name == name))
            {
                problems.Add($"MCP server '{server.Name}': tool '{p.Name}' would be named '{name}', which another tool already has; change the prefix");
                continue;
            }
            var (effect, source) = server.Effects.TryGetValue(p.Name, out var declaredEffect) ? (declaredEffect, "declared")
                : p.Annotations?.DestructiveHint == true ? (ToolEffect.Write, "annotation")
                : (server.Effect, "default");
            result.Add(new McpToolDefinition
            {
                Name = name,
                Server = server,
                RemoteName = p.Name,
                Description = p.Description ?? p.Title,
                Effect = effect,
                EffectSource = source,
                Parameters = p.InputSchema.ValueKind == JsonValueKind.Object ? p.InputSchema.Clone() : null,
                Annotations = p.Annotations is null ? null : JsonSerializer.SerializeToElement(p.Annotations, ModelContextProtocol.McpJsonUtilities.DefaultOptions),
                Timeout = server.Timeout, OnInDoubt = server.OnInDoubt, InDoubtTimeout = server.InDoubtTimeout,
                Retry = server.Retry, CircuitBreaker = server.CircuitBreaker, MaxConcurrency = server.MaxConcurrency, MaxQueue = server.MaxQueue, StepTimeout = server.StepTimeout,
            });
        }
        return result;
    }

    private static async Task<IList<McpClientTool>> ListAsync(McpServerToolDefinition server, McpConnections connections)
    {
        var timeout = server.ConnectTimeout ?? McpServerToolDefinition.DefaultConnectTimeout;
        using var deadline = new CancellationTokenSource(timeout * 2);
        var connection = connections.For(server);
        var client = await connection.GetClientAsync(deadline.Token).ConfigureAwait(false);
        try
        {
            var tools = await client.ListToolsAsync(cancellationToken: deadline.Token).ConfigureAwait(false);
            connection.RecordListing(tools);
            return tools;
        }
        catch (OperationCanceledException)
        {
            throw new McpConnectException($"MCP server '{server.Name}': listing its tools took longer than {(timeout * 2).TotalSeconds:0.#}s");
        }
    }

    private static bool IsToolName(string name) =>
        name.Length is >= 1 and <= 64 && name.All(c => c is (>= 'a' and <= 'z') or (>= 'A' and <= 'Z') or (>= '0' and <= '9') or '_' or '-');
}
