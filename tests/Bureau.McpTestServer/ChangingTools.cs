using System.Text.Json;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using ModelContextProtocol;
using ModelContextProtocol.Protocol;
using ModelContextProtocol.Server;

namespace Bureau.McpTestServer;

/// <summary>
/// Lets a test change the server's tool list while it runs: add, remove or change a tool (each change makes the SDK
/// send <c>notifications/tools/list_changed</c> to the clients that follow it), count the <c>tools/list</c> requests
/// answered, and make listings fail or wait. A tool may have any name and (<see cref="SetSchema"/>) any input schema,
/// so a test can offer one that its client cannot use. A stdio server started with <c>BUREAU_TEST_CHANGING_TOOLS</c> set offers it
/// to its client as the tool <c>change_tools</c> (the value lists the tools to start with: <c>name:property,...</c>, or 1).
/// </summary>
public sealed class ChangingTools
{
    private McpServerPrimitiveCollection<McpServerTool>? _tools;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, McpServerTool> _dynamic = new(StringComparer.Ordinal);
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _listings;
    private volatile bool _failListing;
    private volatile TaskCompletionSource? _hold;

    /// <summary>How many <c>tools/list</c> requests reached the server (failed ones included).</summary>
    public int Listings => Volatile.Read(ref _listings);

    /// <summary>While true, every <c>tools/list</c> fails with a JSON-RPC error.</summary>
    public bool FailListing
    {
        get => _failListing;
        set => _failListing = value;
    }

    /// <summary>Makes <c>tools/list</c> requests wait (counted when they arrive) until <see cref="ReleaseListing"/>.</summary>
    public void HoldListing() => _hold = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Lets the held listings (and the later ones) go on.</summary>
    public void ReleaseListing() => Interlocked.Exchange(ref _hold, null)?.TrySetResult();

    /// <summary>Adds the filter that counts (and fails, or holds) listings, and keeps the server's tool collection to change, with the tools <paramref name="initial"/> in it.</summary>
    public IMcpServerBuilder AddTo(IMcpServerBuilder builder, IReadOnlyList<(string Name, string Property)>? initial = null)
    {
        initial ??= [];
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.Configure<McpServerOptions>(o =>
        {
            _tools = o.ToolCollection ??= [];
            foreach (var (name, property) in initial)
            {
                var tool = Create(name, property, "A tool the server started with.");
                _dynamic[name] = tool;
                _tools.Add(tool);
            }
        });
        return builder.WithRequestFilters(f => f.AddListToolsFilter(CountListings));
    }

    /// <summary>
    /// For a streamable HTTP server (stateless: a server per request, so the SDK's own tool collection cannot change
    /// for everyone): the changing tools are listed and called through handlers, and a <c>subscriptions/listen</c>
    /// handler acknowledges <c>toolsListChanged</c> and sends <c>notifications/tools/list_changed</c> on its stream after
    /// each change, as an HTTP server that supports the changes must on the 2026-07-28 revision.
    /// </summary>
    public IMcpServerBuilder AddToHttp(IMcpServerBuilder builder, IReadOnlyList<(string Name, string Property)>? initial = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        foreach (var (name, property) in initial ?? []) _dynamic[name] = Create(name, property, "A tool the server started with.");
        builder.Services.Configure<McpServerOptions>(o =>
        {
            o.Capabilities ??= new();
            o.Capabilities.Tools ??= new();
            o.Capabilities.Tools.ListChanged = true;
        });
        return builder
            .WithListToolsHandler((_, _) => ValueTask.FromResult(new ListToolsResult { Tools = [.. _dynamic.Values.Select(t => t.ProtocolTool)] }))
            .WithCallToolHandler(async (context, cancellationToken) =>
                _dynamic.TryGetValue(context.Params?.Name ?? "", out var tool)
                    ? await tool.InvokeAsync(context, cancellationToken)
                    : throw new McpProtocolException($"Unknown tool: '{context.Params?.Name}'", McpErrorCode.InvalidParams))
            .WithSubscriptionsListenHandler(async (context, cancellationToken) =>
            {
                var next = Volatile.Read(ref _changed).Task;
                var wanted = context.Params?.Notifications?.ToolsListChanged == true;
                await context.Server.SendNotificationAsync(NotificationMethods.SubscriptionsAcknowledgedNotification,
                    new SubscriptionsAcknowledgedNotificationParams { Notifications = new SubscriptionsListenNotifications { ToolsListChanged = wanted ? true : null } },
                    cancellationToken: cancellationToken);
                try
                {
                    while (wanted)
                    {
                        await next.WaitAsync(cancellationToken);
                        next = Volatile.Read(ref _changed).Task;
                        await context.Server.SendNotificationAsync(NotificationMethods.ToolListChangedNotification, new ToolListChangedNotificationParams(), cancellationToken: cancellationToken);
                    }
                    await Task.Delay(Timeout.Infinite, cancellationToken);
                }
                catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
                {
                    // The client ended its subscription.
                }
                return new EmptyResult();
            })
            .WithRequestFilters(f => f.AddListToolsFilter(next => async (context, cancellationToken) =>
            {
                Interlocked.Increment(ref _listings);
                if (_hold is { } hold) await hold.Task.WaitAsync(cancellationToken);
                if (_failListing) throw new McpException("listing fails on purpose (ChangingTools.FailListing)");
                return await next(context, cancellationToken);
            }));
    }

    /// <summary>Counts the listings, and holds or fails them when asked.</summary>
    private McpRequestHandler<ListToolsRequestParams, ListToolsResult> CountListings(McpRequestHandler<ListToolsRequestParams, ListToolsResult> next) =>
        async (context, cancellationToken) =>
        {
            Interlocked.Increment(ref _listings);
            if (_hold is { } hold) await hold.Task.WaitAsync(cancellationToken);
            if (_failListing) throw new McpException("listing fails on purpose (ChangingTools.FailListing)");
            return await next(context, cancellationToken);
        };

    private void Signal() => Interlocked.Exchange(ref _changed, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();

    /// <summary>Adds (or replaces) a tool named <paramref name="name"/> taking one string property, <paramref name="property"/>; it answers with its name and arguments.</summary>
    public void Set(string name, string property, string description = "A tool added while the server runs.") =>
        Put(Create(name, property, description));

    /// <summary>
    /// Adds (or replaces) a tool named <paramref name="name"/> whose input schema is <paramref name="schema"/>, as given:
    /// nothing checks that it is a valid JSON Schema (a test of what the client does with one that is not).
    /// </summary>
    public void SetSchema(string name, JsonElement schema, string description = "A tool added while the server runs.") =>
        Put(Create(name, schema, description));

    private void Put(McpServerTool tool)
    {
        var name = tool.ProtocolTool.Name;
        _dynamic[name] = tool;
        if (_tools is { } tools)
        {
            using (tools.DeferChangedEvents())
            {
                if (tools.TryGetPrimitive(name, out var old)) tools.Remove(old);
                tools.Add(tool);
            }
        }
        Signal();
    }

    /// <summary>Removes the tool named <paramref name="name"/>; false when there is none.</summary>
    public bool Remove(string name)
    {
        var removed = _dynamic.TryRemove(name, out _);
        if (_tools is { } tools && tools.TryGetPrimitive(name, out var tool)) removed = tools.Remove(tool) || removed;
        Signal();
        return removed;
    }

    private static McpServerTool Create(string name, string property, string description) =>
        Create(name, JsonSerializer.SerializeToElement(new Dictionary<string, object>
        {
            ["type"] = "object",
            ["properties"] = new Dictionary<string, object> { [property] = new Dictionary<string, string> { ["type"] = "string" } },
            ["required"] = new[] { property },
        }), description);

    private static McpServerTool Create(string name, JsonElement schema, string description) =>
        McpServerTool.Create(new Changing(name, description, schema), new McpServerToolCreateOptions { Name = name, Description = description, ReadOnly = true });

    /// <summary>The tool <c>change_tools</c>, through which the client of a stdio server changes it.</summary>
    public McpServerTool ControlTool() => McpServerTool.Create(
        (string action, string? name = null, string? property = null, string? description = null, string? schema = null) => action switch
        {
            "set" => Do(() => Set(name!, property ?? "text", description ?? "A tool added while the server runs."), $"set {name}({property ?? "text"})"),
            "set-schema" => Do(() => SetSchema(name!, JsonDocument.Parse(schema!).RootElement.Clone(), description ?? "A tool added while the server runs."), $"set {name} with schema {schema}"),
            "remove" => Remove(name!) ? $"removed {name}" : $"no tool {name}",
            "fail-listing" => Do(() => FailListing = name == "on", $"listing fails: {FailListing}"),
            "hold-listing" => Do(HoldListing, "listings wait"),
            "release-listing" => Do(ReleaseListing, "listings go on"),
            "listings" => Listings.ToString(System.Globalization.CultureInfo.InvariantCulture),
            _ => throw new McpException($"unknown action '{action}': set, set-schema, remove, fail-listing, hold-listing, release-listing, listings"),
        },
        new McpServerToolCreateOptions
        {
            Name = "change_tools",
            Description = "Changes this test server's tools: action set|remove (name, property, description), set-schema (name, schema: the input schema's JSON, as given, description), fail-listing (name on|off), hold-listing, release-listing, listings.",
        });

    private static string Do(Action action, string result)
    {
        action();
        return result;
    }

    /// <summary>A tool whose input schema is given, not derived from a method.</summary>
    private sealed class Changing(string name, string description, JsonElement schema) : AIFunction
    {
        public override string Name => name;
        public override string Description => description;
        public override JsonElement JsonSchema => schema;

        protected override ValueTask<object?> InvokeCoreAsync(AIFunctionArguments arguments, CancellationToken cancellationToken) =>
            ValueTask.FromResult<object?>($"{name}: " + string.Join(", ", arguments.Select(a => $"{a.Key}={a.Value}")));
    }
}
