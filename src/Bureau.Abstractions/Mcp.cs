using System.Text.Json;

namespace Bureau;

/// <summary>
/// The tools of an MCP (Model Context Protocol) server, over stdio (<see cref="Command"/>) or streamable HTTP
/// (<see cref="Url"/>). When the host starts, Bureau connects, lists the server's tools, keeps those that pass
/// <see cref="Include"/> and <see cref="Exclude"/>, and deploys each as a tool of its own named
/// <see cref="Prefix"/> + the server's name for it (an <see cref="McpToolDefinition"/>). An agent that lists this
/// definition's name among its tools gets all of them. When the server sends <c>notifications/tools/list_changed</c>,
/// its tools are listed and deployed again by the same rules: new ones are added, changed ones replaced, withdrawn ones
/// removed, for runs that start from then on (a run already going keeps the list it started with). Each call is validated against the tool's input schema,
/// journaled, idempotency-keyed and goes through the retry, breaker and timeout links like any tool; the
/// settings inherited from <see cref="ToolDefinition"/> (timeout, retry, breaker, concurrency) apply to each tool.
/// <see cref="ToolDefinition.Effect"/> is the effect of a tool the server marks neither way (default <c>read</c>);
/// a tool the server annotates <c>destructiveHint: true</c> is a <c>write</c>, and <see cref="Effects"/> wins over both.
/// </summary>
public sealed class McpServerToolDefinition : ToolDefinition
{
    /// <inheritdoc />
    public override string Kind => "mcp";

    /// <summary>For a stdio server: the program and its arguments (argv, no shell). Exactly one of this and <see cref="Url"/>.</summary>
    public IReadOnlyList<string>? Command { get; init; }

    /// <summary>The folder a stdio server runs in (the manifest's folder for YAML tools); null: the host's current folder.</summary>
    public string? WorkingDirectory { get; init; }

    /// <summary>
    /// Environment of a stdio server, on top of <c>PATH</c>, <c>HOME</c> and <c>LANG</c>: a null value passes the
    /// host's variable of that name through, a non-null value sets it. Nothing else of the host's environment is passed on.
    /// </summary>
    public IReadOnlyDictionary<string, string?> Environment { get; init; } = new Dictionary<string, string?>();

    /// <summary>For a streamable HTTP server: its MCP endpoint, for example <c>https://mcp.example.com/mcp</c>.</summary>
    public Uri? Url { get; init; }

    /// <summary>
    /// For an HTTP server: the environment variable holding a bearer token, sent as <c>Authorization: Bearer ...</c>.
    /// It is read when Bureau connects (at start and on every reconnect), never written to the journal or logs.
    /// </summary>
    public string? BearerTokenVariable { get; init; }

    /// <summary>Names (as the server gives them) of the only tools deployed; empty: all the server's tools. A name that the server does not have is an error at start.</summary>
    public IReadOnlyList<string> Include { get; init; } = [];

    /// <summary>Names (as the server gives them) of tools not deployed.</summary>
    public IReadOnlyList<string> Exclude { get; init; } = [];

    /// <summary>Effects declared per tool (keys are the server's names); they win over the server's annotations.</summary>
    public IReadOnlyDictionary<string, ToolEffect> Effects { get; init; } = new Dictionary<string, ToolEffect>();

    /// <summary>Put before each tool's name to make Bureau's name; null: this definition's name and <c>_</c> (<c>files_read_file</c>).</summary>
    public string? Prefix { get; init; }

    /// <summary>How long connecting and listing the tools may take at start (and each reconnect's handshake, and each listing after the server said its tools changed); null: <see cref="DefaultConnectTimeout"/>.</summary>
    public TimeSpan? ConnectTimeout { get; init; }

    /// <summary>The connect timeout used when none is set: 30 seconds.</summary>
    public static readonly TimeSpan DefaultConnectTimeout = TimeSpan.FromSeconds(30);

    /// <summary>The prefix in effect: <see cref="Prefix"/>, or the definition's name and <c>_</c>.</summary>
    public string EffectivePrefix => Prefix ?? Name + "_";
}

/// <summary>
/// One tool of an MCP server as Bureau deploys it: made at start from the server's listing (see
/// <see cref="McpServerToolDefinition"/>), or from a later listing (the server answered after start, or said its tools
/// changed), with the server's input schema as <see cref="ToolDefinition.Parameters"/>.
/// </summary>
public sealed class McpToolDefinition : ToolDefinition
{
    /// <inheritdoc />
    public override string Kind => "mcp";

    /// <summary>The server it belongs to.</summary>
    public required McpServerToolDefinition Server { get; init; }

    /// <summary>The tool's name on the server (Bureau's name is <see cref="ToolDefinition.Name"/>).</summary>
    public required string RemoteName { get; init; }

    /// <summary>Where the effect came from: <c>declared</c> (the manifest's <c>effects</c>), <c>annotation</c> (the server's destructiveHint) or <c>default</c>.</summary>
    public string EffectSource { get; init; } = "default";

    /// <summary>The server's annotations as it listed them (JSON), if any, for listings.</summary>
    public JsonElement? Annotations { get; init; }

    /// <summary>
    /// False for a tool known only by the name its server's <c>include</c> gives, because the server could not be
    /// reached at start: its description and input schema are not known, and its calls fail until the server answers
    /// (then a listed definition replaces it).
    /// </summary>
    public bool Listed { get; init; } = true;
}
