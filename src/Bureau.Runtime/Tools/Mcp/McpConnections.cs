using System.Collections.Concurrent;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using ModelContextProtocol.Client;

namespace Bureau.Tools.Mcp;

/// <summary>
/// Bureau's connections to its MCP servers: one client per server, made on first use and made again on the next
/// call after it closed (a stdio server that crashed or was killed is started again; an HTTP session that ended
/// is opened again). Disposing closes them all (stdio servers are stopped).
/// </summary>
public sealed class McpConnections : IAsyncDisposable
{
    private readonly ConcurrentDictionary<string, McpServerConnection> _servers = new(StringComparer.Ordinal);
    private readonly ILoggerFactory _loggers;
    private int _disposed;

    /// <summary>Creates the registry.</summary>
    public McpConnections(ILoggerFactory? loggerFactory = null) => _loggers = loggerFactory ?? NullLoggerFactory.Instance;

    /// <summary>The connection of <paramref name="server"/> (not yet connected until used).</summary>
    public McpServerConnection For(McpServerToolDefinition server)
    {
        ArgumentNullException.ThrowIfNull(server);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        return _servers.GetOrAdd(server.Name, static (_, s) => new McpServerConnection(s.server, s.loggers), (server, loggers: _loggers));
    }

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
    private readonly SemaphoreSlim _gate = new(1, 1);
    private McpClient? _client;
    private int _connects;
    private bool _disposed;

    internal McpServerConnection(McpServerToolDefinition server, ILoggerFactory loggers)
    {
        _server = server;
        _logger = loggers.CreateLogger("Bureau.Mcp");
    }

    /// <summary>True while a session is open and its transport has not closed (a stdio server that died closes it).</summary>
    public bool IsConnected => Volatile.Read(ref _client) is { } c && !c.Completion.IsCompleted;

    /// <summary>How many times a session was opened (1 after the first connect; more after restarts).</summary>
    public int Connects => Volatile.Read(ref _connects);

    /// <summary>
    /// The connected client, connecting (again) when there is none or the last one closed (its transport ended: the
    /// stdio server exited, the HTTP session ended).
    /// </summary>
    /// <exception cref="McpConnectException">Connecting failed; the message names the server and why.</exception>
    public async Task<McpClient> GetClientAsync(CancellationToken cancellationToken)
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
            Interlocked.Increment(ref _connects);
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
            return await McpClient.CreateAsync(transport, new McpClientOptions
            {
                ClientInfo = new ModelContextProtocol.Protocol.Implementation { Name = "bureau", Version = typeof(McpConnections).Assembly.GetName().Version?.ToString() ?? "1.0" },
                InitializationTimeout = timeout,
            }, cancellationToken: deadline.Token);
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
    /// <summary>
    /// Connects to every MCP server in <paramref name="definitions"/>, lists its tools and returns definitions in which
    /// each server entry is replaced by its tools, and each agent that listed the server lists those tools instead.
    /// </summary>
    /// <exception cref="InvalidOperationException">A server could not be listed, or its tools are not usable (the message says which and why).</exception>
    public static BureauDefinitions Expand(BureauDefinitions definitions, McpConnections connections, ILogger logger)
    {
        var servers = definitions.Tools.Values.OfType<McpServerToolDefinition>().ToList();
        if (servers.Count == 0) return definitions;
        var expanded = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        var problems = new List<string>();
        var listed = new List<(McpServerToolDefinition Server, Task<IList<McpClientTool>> Tools)>();
        foreach (var server in servers) listed.Add((server, ListAsync(server, connections)));
        foreach (var (server, task) in listed)
        {
            IList<McpClientTool> tools;
            try
            {
                tools = task.GetAwaiter().GetResult();
            }
            catch (Exception ex)
            {
                problems.Add(ex is McpConnectException ? ex.Message : $"MCP server '{server.Name}': listing its tools failed: {McpServerConnection.Reason(ex)}");
                continue;
            }
            var names = new List<string>();
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
                if (definitions.Tools.ContainsKey(name) || names.Contains(name, StringComparer.Ordinal) || expanded.Values.Any(v => v.Contains(name, StringComparer.Ordinal)))
                {
                    problems.Add($"MCP server '{server.Name}': tool '{p.Name}' would be named '{name}', which another tool already has; change the prefix");
                    continue;
                }
                var (effect, source) = server.Effects.TryGetValue(p.Name, out var declaredEffect) ? (declaredEffect, "declared")
                    : p.Annotations?.DestructiveHint == true ? (ToolEffect.Write, "annotation")
                    : (server.Effect, "default");
                definitions.Add(new McpToolDefinition
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
                names.Add(name);
            }
            expanded[server.Name] = names;
            logger.LogInformation("MCP server '{Server}': {Count} tool(s) deployed: {Tools}", server.Name, names.Count, string.Join(", ", names));
        }
        if (problems.Count > 0)
            throw new InvalidOperationException("the MCP servers' tools could not be deployed:" + System.Environment.NewLine + string.Join(System.Environment.NewLine, problems));

        foreach (var server in servers) definitions.Tools.Remove(server.Name);
        foreach (var agent in definitions.Agents.Values.ToList())
        {
            if (!agent.Tools.Any(expanded.ContainsKey)) continue;
            var tools = agent.Tools.SelectMany(t => expanded.TryGetValue(t, out var list) ? list : [t]).Distinct(StringComparer.Ordinal).ToList();
            definitions.Add(agent.WithTools(tools));
        }
        return definitions;
    }

    private static async Task<IList<McpClientTool>> ListAsync(McpServerToolDefinition server, McpConnections connections)
    {
        var timeout = server.ConnectTimeout ?? McpServerToolDefinition.DefaultConnectTimeout;
        using var deadline = new CancellationTokenSource(timeout * 2);
        var client = await connections.For(server).GetClientAsync(deadline.Token).ConfigureAwait(false);
        try
        {
            return await client.ListToolsAsync(cancellationToken: deadline.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            throw new McpConnectException($"MCP server '{server.Name}': listing its tools took longer than {(timeout * 2).TotalSeconds:0.#}s");
        }
    }

    private static bool IsToolName(string name) =>
        name.Length is >= 1 and <= 64 && name.All(c => c is (>= 'a' and <= 'z') or (>= 'A' and <= 'Z') or (>= '0' and <= '9') or '_' or '-');
}
