namespace Bureau.Tools;

/// <summary>Builds the runnable tool for a <see cref="ToolDefinition"/>.</summary>
public sealed class ToolFactory
{
    // The base class applies each tool's timeout, so the shared client has none of its own.
    private static readonly Lazy<HttpClient> s_sharedClient = new(() => new HttpClient(new SocketsHttpHandler
    {
        PooledConnectionLifetime = TimeSpan.FromMinutes(5),
    })
    {
        Timeout = Timeout.InfiniteTimeSpan,
    });

    private readonly HttpClient? _httpClient;

    /// <summary>Creates the factory.</summary>
    /// <param name="httpClient">The client http tools send with; null uses a shared client without a timeout of its own (each tool's timeout applies).</param>
    public ToolFactory(HttpClient? httpClient = null) => _httpClient = httpClient;

    /// <summary>Where <c>emit</c> tools publish (set by <c>AddBureau()</c>).</summary>
    internal Func<Triggers.TriggerIngest>? Events { get; init; }

    /// <summary>The connections <c>mcp</c> tools call through (set by <c>AddBureau()</c>); null: a registry of the factory's own.</summary>
    internal Func<Mcp.McpConnections>? Mcp { get; init; }

    private Mcp.McpConnections? _ownMcp;

    /// <summary>Builds the tool.</summary>
    /// <exception cref="ArgumentException">The definition is of an unknown kind, or is invalid (the message names the tool and what is wrong).</exception>
    public BureauTool Create(ToolDefinition definition)
    {
        ArgumentNullException.ThrowIfNull(definition);
        return definition switch
        {
            ProcessToolDefinition p => new ProcessTool(p),
            HttpToolDefinition h => new HttpTool(h, _httpClient ?? s_sharedClient.Value),
            A2AToolDefinition a => new A2ATool(a, _httpClient ?? s_sharedClient.Value),
            FunctionToolDefinition f => new FunctionTool(f),
            EmitToolDefinition e => new EmitTool(e, Events ?? throw new ArgumentException(
                $"tool '{e.Name}': an emit tool needs Bureau's event bus; build the factory through AddBureau()", nameof(definition))),
            Bureau.McpToolDefinition m => new Mcp.McpTool(m, Mcp?.Invoke() ?? LazyInitializer.EnsureInitialized(ref _ownMcp, () => new Mcp.McpConnections())),
            McpServerToolDefinition s => throw new ArgumentException(
                $"tool '{s.Name}': an MCP server's tools are listed when the host starts (AddBureau()); its entry is not a tool of its own", nameof(definition)),
            _ => throw new ArgumentException(
                $"tool '{definition.Name}': unknown kind '{definition.Kind}' ({definition.GetType().Name}); supported kinds: process, http, function, emit, mcp, a2a",
                nameof(definition)),
        };
    }
}
