using Bureau.Engine;
using Bureau.Manifests;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Bureau;

/// <summary>What the application added in code through <see cref="BureauBuilder"/>.</summary>
internal sealed class CodeDefinitions
{
    public BureauDefinitions Definitions { get; } = new();
}

/// <summary>What this host deploys: the manifests' definitions, then those added in code.</summary>
public sealed class BureauDeployment
{
    internal BureauDeployment(IOptions<BureauOptions> options, CodeDefinitions code, Tools.Mcp.McpConnections? mcp = null, Microsoft.Extensions.Logging.ILoggerFactory? loggers = null,
        Func<BureauWorkforce>? workforce = null)
    {
        var all = new BureauDefinitions();
        foreach (var path in options.Value.Manifests) all.Merge(LoadManifest(path));
        lock (code) all.Merge(code.Definitions);
        // MCP servers: their tools are listed now, each deployed as a tool of its own (docs/decisions/0028).
        if (all.Tools.Values.Any(t => t is McpServerToolDefinition))
        {
            if (mcp is null) throw new InvalidOperationException("MCP servers are deployed, but this host has no MCP connections (compose it with AddBureau())");
            // A server that cannot be reached now does not stop the start: it is connected in the background, and its
            // tools are deployed when it answers (McpToolsArrived).
            _mcpLogger = (loggers ?? Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance).CreateLogger("Bureau.Mcp");
            Tools.Mcp.McpToolListing.Expand(all, mcp, _mcpLogger, McpToolsListed);
        }
        if (workforce is not null) Workforce.WorkforceDelegation.Deploy(all, workforce); // the built-in 'delegate' tool of members that delegate
        _definitions = all;
        // A server's notifications/tools/list_changed is acted on from now on, when there are definitions to change (decision 0051).
        mcp?.FollowToolChanges();
    }

    private readonly Microsoft.Extensions.Logging.ILogger _mcpLogger = Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;

    private volatile BureauDefinitions _definitions = null!;
    private readonly Lock _swap = new();

    /// <summary>
    /// The deployed models, tools and agents. Never changed in place: when an MCP server that could not be reached
    /// at start is listed (docs/decisions/0028), or a server's tools changed (docs/decisions/0051), a new set replaces
    /// this one, so a reader that holds one sees a consistent whole.
    /// </summary>
    public BureauDefinitions Definitions => _definitions;

    /// <summary>
    /// Deploys the tools of <paramref name="server"/> listed after start: when it could not be reached at start
    /// (<paramref name="relisting"/> false; decision 0028) or after its <c>notifications/tools/list_changed</c>
    /// (<paramref name="relisting"/> true; decision 0051). The tools are named as at start, against the tools deployed
    /// now: a name another tool has, an invalid name or an input schema that does not compile is logged as an error
    /// naming the server and the tool, and that tool is left out. New tools are added to <paramref name="agents"/>
    /// (the agents that list the server); a tool whose definition changed is replaced; on a re-listing, a tool the
    /// server no longer offers is withdrawn from the tools and the agents. Nothing changes when nothing did.
    /// </summary>
    internal void McpToolsListed(McpServerToolDefinition server, IList<ModelContextProtocol.Client.McpClientTool> listing, IReadOnlyCollection<string> agents, bool relisting)
    {
        var when = relisting ? "re-listed after notifications/tools/list_changed" : "listed after start";
        lock (_swap)
        {
            var old = _definitions;
            var mine = old.Tools.Values.OfType<McpToolDefinition>().Where(t => t.Server.Name == server.Name).ToDictionary(t => t.Name, StringComparer.Ordinal);
            var problems = new List<string>();
            var deployed = Tools.Mcp.McpToolListing.Deploy(server, listing, name => old.Tools.ContainsKey(name) && !mine.ContainsKey(name), problems);
            foreach (var problem in problems) _mcpLogger.LogError("{Problem} ({When}: the tool is left out)", problem, when);
            var added = new List<McpToolDefinition>();
            var changed = new List<McpToolDefinition>();
            foreach (var tool in deployed)
            {
                if (!mine.TryGetValue(tool.Name, out var current)) added.Add(tool);
                else if (!SameTool(current, tool)) changed.Add(tool);
            }
            foreach (var tool in added.Concat(changed).ToList())
            {
                if (Tools.ToolCallValidator.SchemaProblem(tool.Parameters) is not { } problem) continue;
                _mcpLogger.LogError("MCP server '{Server}': tool '{Remote}' ({Name}) has an input schema that is not a valid JSON Schema ({Problem}); {When}: the tool is left out{Kept}",
                    server.Name, tool.RemoteName, tool.Name, problem, when, mine.ContainsKey(tool.Name) ? ", its earlier definition stays" : "");
                added.Remove(tool);
                changed.Remove(tool);
            }
            // A placeholder the first listing lacks (an include name the server does not have) stays: its calls say the server does not offer it.
            var withdrawn = relisting
                ? mine.Keys.Where(n => !deployed.Any(d => d.Name == n)).ToHashSet(StringComparer.Ordinal)
                : [];
            if (added.Count + changed.Count + withdrawn.Count == 0)
            {
                if (relisting) _mcpLogger.LogInformation("MCP server '{Server}': its tools were listed again; nothing changed", server.Name);
                return;
            }
            var copy = new BureauDefinitions { SourcePath = old.SourcePath }.Merge(old);
            copy.Policies = old.Policies;
            foreach (var tool in added.Concat(changed)) copy.Add(tool);
            foreach (var name in withdrawn) copy.Tools.Remove(name);
            foreach (var agent in old.Agents.Values)
            {
                var lists = agents.Contains(agent.Name, StringComparer.Ordinal);
                if (!lists && !agent.Tools.Any(withdrawn.Contains)) continue;
                var list = agent.Tools.Where(n => !withdrawn.Contains(n)).ToList();
                if (lists) list.AddRange(added.Select(t => t.Name).Where(n => !list.Contains(n, StringComparer.Ordinal)));
                copy.Add(agent.WithTools(list));
            }
            _definitions = copy;
            _mcpLogger.LogInformation("MCP server '{Server}': tools {When}: {Added} added ({AddedNames}), {Changed} changed ({ChangedNames}), {Withdrawn} withdrawn ({WithdrawnNames})",
                server.Name, when, added.Count, string.Join(", ", added.Select(t => t.Name)), changed.Count, string.Join(", ", changed.Select(t => t.Name)),
                withdrawn.Count, string.Join(", ", withdrawn.Order(StringComparer.Ordinal)));
        }
    }

    /// <summary>True when <paramref name="b"/> deploys the tool exactly as <paramref name="a"/> does (a listing that changed nothing keeps the definition, its tool and its breaker).</summary>
    private static bool SameTool(McpToolDefinition a, McpToolDefinition b) =>
        a.Listed == b.Listed && a.RemoteName == b.RemoteName && a.Description == b.Description && a.Effect == b.Effect && a.EffectSource == b.EffectSource
        && SameJson(a.Parameters, b.Parameters) && SameJson(a.Annotations, b.Annotations);

    private static bool SameJson(System.Text.Json.JsonElement? a, System.Text.Json.JsonElement? b) =>
        a is null ? b is null : b is not null && System.Text.Json.JsonElement.DeepEquals(a.Value, b.Value);

    private static BureauDefinitions LoadManifest(string path)
    {
        if (!File.Exists(path)) throw new InvalidOperationException($"Bureau:Manifests: no manifest at '{path}' (full path {Path.GetFullPath(path)})");
        var result = ManifestLoader.LoadFile(path);
        if (result.Success) return result.Definitions!;
        throw new InvalidOperationException($"the manifest {path} is not valid:{Environment.NewLine}{string.Join(Environment.NewLine, result.Diagnostics)}");
    }
}

/// <summary>A link of every model's chat pipeline.</summary>
internal sealed record ChatPipelineStep(Action<ModelDefinition, ChatClientBuilder> Configure);

/// <summary>One <see cref="IChatClient"/> per model: the provider's client, wrapped by the configured <see cref="ChatClientBuilder"/> pipeline.</summary>
internal sealed class ChatClients(Models.ModelClientFactory factory, IEnumerable<ChatPipelineStep> steps, IServiceProvider services)
{
    private readonly Dictionary<string, IChatClient> _clients = new(StringComparer.Ordinal);
    private readonly ChatPipelineStep[] _steps = [.. steps];

    public IChatClient Get(ModelDefinition model)
    {
        lock (_clients)
        {
            if (_clients.TryGetValue(model.Name, out var client)) return client;
            var inner = factory.Create(model, providerRetries: false);   // the runtime's retry link retries (docs/decisions/0012)
            if (_steps.Length > 0)
            {
                var builder = new ChatClientBuilder(inner);
                foreach (var step in _steps) step.Configure(model, builder);
                inner = builder.Build(services);
            }
            return _clients[model.Name] = inner;
        }
    }
}

/// <summary>Checks <see cref="BureauOptions"/>; each failure names its configuration key.</summary>
internal sealed class BureauOptionsValidator : IValidateOptions<BureauOptions>
{
    public ValidateOptionsResult Validate(string? name, BureauOptions options)
    {
        var problems = options.Problems().ToList();
        return problems.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(problems);
    }
}

/// <summary>
/// Opens the stores as the host starts (before anything else starts: the storage provider takes its
/// database lock here), starts the engine unless a silo starts it, and stops it gracefully.
/// </summary>
internal sealed class BureauRuntimeService(IServiceProvider services) : IHostedLifecycleService
{
    private BureauEngine? _engine;

    // Whether a silo starts and stops the engine: read once at start, so that stopping needs nothing from a
    // service provider that the host may be disposing already.
    private bool _startedBySilo;

    public async Task StartingAsync(CancellationToken cancellationToken)
    {
        _startedBySilo = services.GetService<EngineStartedBySilo>() is not null;
        var store = services.GetService<IRunStore>() ?? throw new InvalidOperationException(
            "Bureau has no store: pick one with a Use*Storage call, for example services.AddBureau().UseSqliteStorage(\"bureau.db\")");
        // The engine first: building it checks the definitions (models, tools, teams), before any database is opened.
        var engine = services.GetRequiredService<BureauEngine>();
        Triggers.TriggerChecks.Check(engine.Definitions);
        // Sandboxed process tools: what this machine cannot apply is said now, not discovered at the first call (docs/decisions/0029).
        Tools.ToolSandbox.ReportAtStart(engine.Definitions, services.GetRequiredService<Microsoft.Extensions.Logging.ILoggerFactory>().CreateLogger("Bureau.Sandbox"),
            services.GetService<Resilience.DependencyHealth>());
        await store.InitializeAsync(cancellationToken);
        if (services.GetService<IApiKeyStore>() is { } keys) await keys.InitializeAsync(cancellationToken);
        if (services.GetService<IEventStore>() is { } events) await events.InitializeAsync(cancellationToken);
        var memory = services.GetService<IMemoryStore>();
        if (memory is null && engine.Definitions.Agents.Values.FirstOrDefault(a => a.Memory is not null) is { } remembering)
            throw new InvalidOperationException($"agent '{remembering.Name}' has memory, but this host has no memory store: pick one with UseSqliteStorage, or register an IMemoryStore");
        if (memory is not null) await memory.InitializeAsync(cancellationToken);
        if (services.GetService<IBoardStore>() is { } boards) await boards.InitializeAsync(cancellationToken);
        Workforce.WorkforceChecks.Check(engine.Definitions);
        var workforce = services.GetService<IWorkforceStore>();
        if (workforce is null && engine.Definitions.Workforce.Members.Count > 0)
            throw new InvalidOperationException("a workforce is deployed, but this host has no workforce store: pick one with UseSqliteStorage or UsePostgreSqlStorage, or register an IWorkforceStore");
        if (workforce is not null) await workforce.InitializeAsync(cancellationToken);
        if (store is IAuditLog audit && (!engine.Definitions.Policies.IsEmpty || engine.Definitions.Policies.Notify.Count > 0 || await audit.LastAuditAsync("policy.loaded", cancellationToken) is not null))
            await Governance.PolicyAudit.RecordAsync(engine.Definitions.Policies, audit, engine.Definitions.SourcePath ?? "code", services.GetRequiredService<TimeProvider>().GetUtcNow(), cancellationToken);
        _engine = engine;
    }

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (_engine is not null && !_startedBySilo) await _engine.StartAsync(cancellationToken);
    }

    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        // A host whose start failed is stopped too: there is nothing of Bureau's to stop then.
        if (_engine is not null && !_startedBySilo) await _engine.StopAsync(cancellationToken);
    }

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}

/// <summary>Registered by a distribution layer (Orleans) that starts and stops the engine itself.</summary>
public sealed class EngineStartedBySilo;

/// <summary>Options binding that works with or without an <see cref="Microsoft.Extensions.Configuration.IConfiguration"/> (a bare service collection in a test or a tool).</summary>
public static class BureauOptionsBuilderExtensions
{
    /// <summary>Binds the options from the configuration section <paramref name="section"/> when the application has a configuration.</summary>
    public static OptionsBuilder<TOptions> BindIfConfigured<TOptions>(this OptionsBuilder<TOptions> builder, string section) where TOptions : class
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.Configure<IServiceProvider>((o, sp) => Microsoft.Extensions.Configuration.ConfigurationBinder.Bind(
            sp.GetService<Microsoft.Extensions.Configuration.IConfiguration>()?.GetSection(section) ?? EmptySection, o));
    }

    private static readonly Microsoft.Extensions.Configuration.IConfigurationSection EmptySection =
        new Microsoft.Extensions.Configuration.ConfigurationBuilder().Build().GetSection("none");
}
