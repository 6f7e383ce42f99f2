using System.Security.Claims;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using ModelContextProtocol;
using ModelContextProtocol.Protocol;
using ModelContextProtocol.Server;

namespace Bureau.Hosting;

/// <summary>
/// Bureau's deployed agents as MCP tools at <c>/mcp</c> (streamable HTTP, docs/mcp.md): <c>tools/list</c> gives one tool
/// per agent, taking <c>{"input": "..."}</c>; <c>tools/call</c> submits a durable run (as <c>POST /v1/runs</c> does),
/// sends a progress notification per journal step when the client asked for progress, and answers with the run's
/// output once it ends (or says that it waits, with its id). The API keys and roles of <c>/v1</c> apply: any role
/// may connect and list, starting a run needs operator or admin; without keys, only loopback clients are served.
/// </summary>
internal static class McpAgentServer
{
    private const string RoleClaim = "bureau.role";
    private const string ActorClaim = "bureau.actor";

    private static readonly JsonElement s_inputSchema = JsonDocument.Parse("""
        {"type":"object","properties":{"input":{"type":"string","description":"The run's input: the task or message for the agent."}},"required":["input"],"additionalProperties":false}
        """).RootElement.Clone();

    /// <summary>Registers the MCP server's handlers (stateless streamable HTTP).</summary>
    public static void Register(IServiceCollection services)
    {
        services.AddMcpServer(o => o.ServerInfo = new Implementation { Name = "bureau", Version = typeof(McpAgentServer).Assembly.GetName().Version?.ToString() ?? "1.0" })
            .WithHttpTransport(o => o.Stateless = true)
            .WithListToolsHandler(ListToolsAsync)
            .WithCallToolHandler(CallToolAsync);
    }

    /// <summary>Maps <c>/mcp</c>, each request checked as a <c>/v1</c> route is (key, role, loopback rule).</summary>
    public static IEndpointConventionBuilder Map(IEndpointRouteBuilder endpoints)
    {
        var mcp = endpoints.MapMcp("/mcp");
        mcp.Add(endpoint =>
        {
            var inner = endpoint.RequestDelegate!;
            endpoint.RequestDelegate = async ctx =>
            {
                ApiCaller caller;
                try
                {
                    caller = await ctx.RequestServices.GetRequiredService<ApiAccess>().AuthorizeAsync(ctx, ApiPermission.Read);
                }
                catch (ApiException ex)
                {
                    await Problems.From(ex).ExecuteAsync(ctx);
                    return;
                }
                ctx.User = new ClaimsPrincipal(new ClaimsIdentity(
                    [new Claim(ActorClaim, caller.Actor), new Claim(RoleClaim, caller.Role.ToString())], "bureau-api-key"));
                await inner(ctx);
            };
        });
        return mcp;
    }

    private static ValueTask<ListToolsResult> ListToolsAsync(RequestContext<ListToolsRequestParams> context, CancellationToken cancellationToken)
    {
        var engine = context.Services!.GetRequiredService<BureauEngine>();
        var tools = engine.Definitions.Agents.Values.OrderBy(a => a.Name, StringComparer.Ordinal).Select(a => new Tool
        {
            Name = a.Name,
            Description = $"Runs Bureau's agent '{a.Name}' as a durable run and answers with its output." + (a.Description is { Length: > 0 } d ? " " + d : string.Empty),
            InputSchema = s_inputSchema,
            Annotations = new ToolAnnotations { ReadOnlyHint = false, OpenWorldHint = true },
        }).ToList();
        return ValueTask.FromResult(new ListToolsResult { Tools = tools });
    }

    private static async ValueTask<CallToolResult> CallToolAsync(RequestContext<CallToolRequestParams> context, CancellationToken cancellationToken)
    {
        var engine = context.Services!.GetRequiredService<BureauEngine>();
        var name = context.Params?.Name ?? string.Empty;
        if (!engine.Definitions.Agents.ContainsKey(name))
            throw new McpProtocolException($"unknown tool '{name}': Bureau's MCP tools are its deployed agents ({string.Join(", ", engine.Definitions.Agents.Keys.Order(StringComparer.Ordinal))})", McpErrorCode.InvalidParams);
        var role = context.User?.FindFirst(RoleClaim)?.Value;
        var actor = context.User?.FindFirst(ActorClaim)?.Value ?? "mcp";
        if (role is null || !Enum.TryParse<ApiKeyRole>(role, out var parsed) || !ApiAccess.Allows(parsed, ApiPermission.StartOrCancel))
            return Error($"starting a run needs the role operator (or admin); the caller {actor} has the role {(Enum.TryParse<ApiKeyRole>(role, out var r) ? r.ToWireName() : "none")}");
        if (context.Params?.Arguments is not { } arguments || !arguments.TryGetValue("input", out var inputValue) || inputValue.ValueKind != JsonValueKind.String)
            return Error("the arguments must be {\"input\": \"...\"}: the run's input as a string");
        if (arguments.Keys.FirstOrDefault(k => k != "input") is { } extra)
            return Error($"unknown argument '{extra}': the only argument is 'input'");

        SubmitResult submitted;
        try
        {
            engine.EnsureQueueRoom(name);
            submitted = await engine.SubmitAsync(new RunRequest(name, inputValue.GetString()!, null, actor), cancellationToken);
        }
        catch (Exception ex) when (ex is EmptyInputException or QueueFullException or StorageUnavailableException or UnknownAgentException)
        {
            return Error(ex.Message);
        }
        var runId = submitted.Run.Id;

        // Progress: one notification per journal step, while the run goes on (only when the client sent a progress token).
        var token = context.Params?.ProgressToken;
        var step = 0;
        await foreach (var e in engine.WatchAsync(runId, untilWaiting: true, cancellationToken: cancellationToken))
        {
            if (token is not { } progressToken || e.Record is null) continue;
            step++;
            await context.Server.NotifyProgressAsync(progressToken, new ProgressNotificationValue
            {
                Progress = e.Record.N,
                Message = $"run {runId}: step {e.Record.N} {e.Record.Entry.Kind}",
            }, cancellationToken: cancellationToken);
        }
        var run = await engine.GetRunAsync(runId, cancellationToken) ?? throw new RunNotFoundException(runId);
        var meta = new System.Text.Json.Nodes.JsonObject { ["bureau/runId"] = runId, ["bureau/status"] = run.Status.ToWireName() };
        if (ScriptedModels.Behind(engine, run.Agent)) meta["bureau/scripted"] = true;   // never presented as a real model's answer
        return run.Status switch
        {
            RunStatus.Succeeded => new CallToolResult { Content = [new TextContentBlock { Text = run.Output ?? string.Empty }], Meta = meta },
            RunStatus.Waiting => new CallToolResult
            {
                Content = [new TextContentBlock { Text = $"run {runId} is waiting ({run.WaitingFor?.Reason ?? "for a person"}); follow it with GET /v1/runs/{runId}" }],
                Meta = meta,
            },
            _ => new CallToolResult
            {
                IsError = true,
                Content = [new TextContentBlock { Text = $"run {runId} {run.Status.ToWireName()}: {run.Error ?? run.Outcome ?? "no error recorded"}" }],
                Meta = meta,
            },
        };
    }

    private static CallToolResult Error(string message) => new() { IsError = true, Content = [new TextContentBlock { Text = message }] };
}
