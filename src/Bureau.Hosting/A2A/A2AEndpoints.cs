using System.Reflection;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Bureau.Hosting.A2A;

/// <summary>
/// A2A 1.0 (Agent2Agent) over Bureau's runs: agent cards, the JSON-RPC binding and the HTTP+JSON (REST) binding,
/// per agent at <c>/a2a/agents/{agent}</c> and for the whole host at <c>/a2a</c>. Tasks are durable runs; the same
/// API keys and roles as <c>/v1</c>. See docs/a2a.md and decision 0033.
/// </summary>
internal static class A2AEndpoints
{
    public const string ProtocolVersion = "1.0";
    private static readonly JsonSerializerOptions s_json = RunDocuments.JsonOptions;

    /// <summary>The agents and teams a message may go to, by name.</summary>
    public static IReadOnlyList<string> Targets(BureauDefinitions defs) =>
        [.. defs.Agents.Keys.Concat(defs.Teams.Keys).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal)];

    public static void Map(IEndpointRouteBuilder endpoints)
    {
        endpoints.MapGet("/.well-known/agent-card.json", HostCardAsync).ExcludeFromDescription();
        endpoints.MapGet("/a2a/.well-known/agent-card.json", HostCardAsync).ExcludeFromDescription();
        endpoints.MapGet("/a2a/agents/{agent}/.well-known/agent-card.json", (HttpContext ctx, string agent) => AgentCardAsync(ctx, agent)).ExcludeFromDescription();

        // Push notifications of unfinished tasks go on after a restart.
        var services = endpoints.ServiceProvider;
        if (A2APushNotifier.Supported(services))
        {
            services.GetRequiredService<IHostApplicationLifetime>().ApplicationStarted.Register(() => _ = Task.Run(async () =>
            {
                try
                {
                    await A2APushNotifier.For(services).ResumeAsync();
                }
                catch (Exception ex) when (ex is not OutOfMemoryException)
                {
                    services.GetRequiredService<Microsoft.Extensions.Logging.ILoggerFactory>().CreateLogger("Bureau.A2A.Push")
                        .LogWarning(ex, "A2A push notifications were not resumed after the start");
                }
            }));
        }

        MapScope(endpoints, "/a2a", _ => new A2AScope(null));
        MapScope(endpoints, "/a2a/agents/{agent}", ctx => new A2AScope((string)ctx.Request.RouteValues["agent"]!));
    }

    private static void MapScope(IEndpointRouteBuilder endpoints, string prefix, Func<HttpContext, A2AScope> scopeOf)
    {
        endpoints.MapPost(prefix, ctx => JsonRpcAsync(ctx, scopeOf(ctx))).ExcludeFromDescription();
        endpoints.MapPost(prefix + "/message:send", ctx => RestAsync(ctx, scopeOf(ctx), ApiPermission.StartOrCancel, async (s, p) => await A2AService.SendAsync(ctx, s, p)))
            .ExcludeFromDescription();
        endpoints.MapPost(prefix + "/message:stream", ctx => RestStreamAsync(ctx, scopeOf(ctx), ApiPermission.StartOrCancel, async (s, p) =>
        {
            var sent = await A2AService.AcceptAsync(ctx, s, p);
            return sent.Run;
        })).ExcludeFromDescription();
        endpoints.MapGet(prefix + "/tasks", ctx => ListAsync(ctx, scopeOf(ctx))).ExcludeFromDescription();
        // tasks/{id}, tasks/{id}:cancel, tasks/{id}:subscribe (GET in the proto, POST in the spec's text: both).
        endpoints.MapGet(prefix + "/tasks/{task}", ctx => TaskRouteAsync(ctx, scopeOf(ctx))).ExcludeFromDescription();
        endpoints.MapPost(prefix + "/tasks/{task}", ctx => TaskRouteAsync(ctx, scopeOf(ctx))).ExcludeFromDescription();
        endpoints.MapPost(prefix + "/tasks/{task}/pushNotificationConfigs", ctx => PushRouteAsync(ctx, scopeOf(ctx), ApiPermission.StartOrCancel, A2AService.CreatePushConfigAsync))
            .ExcludeFromDescription();
        endpoints.MapGet(prefix + "/tasks/{task}/pushNotificationConfigs", ctx => PushRouteAsync(ctx, scopeOf(ctx), ApiPermission.Read, A2AService.ListPushConfigsAsync))
            .ExcludeFromDescription();
        endpoints.MapGet(prefix + "/tasks/{task}/pushNotificationConfigs/{id}", ctx => PushRouteAsync(ctx, scopeOf(ctx), ApiPermission.Read, A2AService.GetPushConfigAsync))
            .ExcludeFromDescription();
        endpoints.MapDelete(prefix + "/tasks/{task}/pushNotificationConfigs/{id}", ctx => PushRouteAsync(ctx, scopeOf(ctx), ApiPermission.StartOrCancel, A2AService.DeletePushConfigAsync))
            .ExcludeFromDescription();
    }

    private static Task PushRouteAsync(HttpContext ctx, A2AScope scope, ApiPermission permission, Func<HttpContext, A2AScope, JsonObject, Task<JsonObject>> operation) =>
        RestAsync(ctx, scope, permission, (s, p) =>
        {
            p["taskId"] = (string)ctx.Request.RouteValues["task"]!;
            if (ctx.Request.RouteValues.TryGetValue("id", out var id)) p["id"] = (string?)id;
            return operation(ctx, s, p);
        }, optionalBody: HttpMethods.IsDelete(ctx.Request.Method));

    private static Task ListAsync(HttpContext ctx, A2AScope scope) =>
        RestAsync(ctx, scope, ApiPermission.Read, (s, p) => A2AService.ListTasksAsync(ctx, s, p));

    private static Task TaskRouteAsync(HttpContext ctx, A2AScope scope)
    {
        var task = (string)ctx.Request.RouteValues["task"]!;
        var post = HttpMethods.IsPost(ctx.Request.Method);
        if (task.EndsWith(":subscribe", StringComparison.Ordinal))
        {
            var id = task[..^":subscribe".Length];
            return RestStreamAsync(ctx, scope, ApiPermission.Read, (s, _) => SubscribeStartAsync(ctx, s, new JsonObject { ["id"] = id }), readBody: false);
        }
        if (task.EndsWith(":cancel", StringComparison.Ordinal) && post)
        {
            var id = task[..^":cancel".Length];
            return RestAsync(ctx, scope, ApiPermission.StartOrCancel, (s, p) =>
            {
                p["id"] = id;
                return A2AService.CancelTaskAsync(ctx, s, p);
            }, optionalBody: true);
        }
        if (!post && !task.Contains(':', StringComparison.Ordinal))
            return RestAsync(ctx, scope, ApiPermission.Read, (s, p) =>
            {
                p["id"] = task;
                return A2AService.GetTaskAsync(ctx, s, p);
            });
        return WriteRestErrorAsync(ctx, new A2AException(A2AErrorKind.MethodNotFound,
            $"{ctx.Request.Method} {ctx.Request.Path} is not an A2A operation: GET tasks/{{id}}, POST tasks/{{id}}:cancel, GET or POST tasks/{{id}}:subscribe", "path"));
    }

    /// <summary>SubscribeToTask's checks: the task exists, in scope, and is not finished.</summary>
    private static async Task<RunRecord> SubscribeStartAsync(HttpContext ctx, A2AScope scope, JsonObject p)
    {
        var id = P.RequiredString(p, "id");
        var run = await A2AService.FindAsync(ctx, scope, id);
        if (run.Status.IsTerminal())
            throw new A2AException(A2AErrorKind.UnsupportedOperation, $"task {id} is already {A2AMapping.State(run)}: there is nothing to subscribe to (GetTask reads it)", "id", taskId: id);
        return run;
    }

    // ---- agent cards ----

    private static async Task HostCardAsync(HttpContext ctx)
    {
        if (!await CardAccessAsync(ctx)) return;
        var defs = ctx.RequestServices.GetRequiredService<BureauEngine>().Definitions;
        var targets = Targets(defs);
        JsonObject card;
        if (targets.Count == 1)
        {
            card = await CardAsync(ctx, targets[0]);
        }
        else
        {
            var skills = new JsonArray();
            foreach (var t in targets) skills.Add(Skill(defs, t));
            card = await CardShellAsync(ctx, "Bureau", $"The agents and teams of this Bureau host ({targets.Count}); name one in a message's metadata.agent, or use its own card at /a2a/agents/NAME/.well-known/agent-card.json.",
                Base(ctx, null), skills);
        }
        await WriteJsonAsync(ctx, card, StatusCodes.Status200OK);
    }

    private static async Task AgentCardAsync(HttpContext ctx, string agent)
    {
        if (!await CardAccessAsync(ctx)) return;
        var defs = ctx.RequestServices.GetRequiredService<BureauEngine>().Definitions;
        if (!Targets(defs).Contains(agent, StringComparer.Ordinal))
        {
            await WriteRestErrorAsync(ctx, UnknownAgent(defs, agent));
            return;
        }
        await WriteJsonAsync(ctx, await CardAsync(ctx, agent), StatusCodes.Status200OK);
    }

    /// <summary>
    /// Cards are discovery: readable without a key, so a client learns it needs one (the card says so). With no key in
    /// the store the host serves loopback only, cards included (the same check as <c>/v1</c>).
    /// </summary>
    private static async Task<bool> CardAccessAsync(HttpContext ctx)
    {
        var keys = ctx.RequestServices.GetRequiredService<IApiKeyStore>();
        if (await keys.AnyActiveAsync(ctx.RequestAborted)) return true;
        try
        {
            await ctx.RequestServices.GetRequiredService<ApiAccess>().AuthorizeAsync(ctx, ApiPermission.Read);
            return true;
        }
        catch (ApiException ex)
        {
            await WriteRestErrorAsync(ctx, A2AException.From(ex)!);
            return false;
        }
    }

    private static A2AException UnknownAgent(BureauDefinitions defs, string agent) =>
        new(A2AErrorKind.InvalidRequest, $"no agent or team '{agent}' is deployed here; deployed: {string.Join(", ", Targets(defs))}", "agent", StatusCodes.Status404NotFound);

    private static JsonObject Skill(BureauDefinitions defs, string name)
    {
        var team = !defs.Agents.ContainsKey(name) && defs.Teams.ContainsKey(name);
        var description = team ? defs.Teams[name].Description : defs.Agents[name].Description;
        return new JsonObject
        {
            ["id"] = name,
            ["name"] = name,
            ["description"] = string.IsNullOrWhiteSpace(description) ? $"Bureau {(team ? "team" : "agent")} '{name}'." : description,
            ["tags"] = new JsonArray(team ? RunKinds.Team : RunKinds.Agent),
        };
    }

    private static async Task<JsonObject> CardAsync(HttpContext ctx, string agent)
    {
        var defs = ctx.RequestServices.GetRequiredService<BureauEngine>().Definitions;
        var skill = Skill(defs, agent);
        return await CardShellAsync(ctx, agent, (string)skill["description"]!, Base(ctx, agent), new JsonArray(skill));
    }

    private static async Task<JsonObject> CardShellAsync(HttpContext ctx, string name, string description, string url, JsonArray skills)
    {
        var card = new JsonObject
        {
            ["name"] = name,
            ["description"] = description,
            ["supportedInterfaces"] = new JsonArray(
                new JsonObject { ["url"] = url, ["protocolBinding"] = "JSONRPC", ["protocolVersion"] = ProtocolVersion },
                new JsonObject { ["url"] = url, ["protocolBinding"] = "HTTP+JSON", ["protocolVersion"] = ProtocolVersion }),
            ["provider"] = new JsonObject { ["organization"] = "Bureau", ["url"] = $"{ctx.Request.Scheme}://{ctx.Request.Host}{ctx.Request.PathBase}/" },
            ["version"] = Version(),
            ["capabilities"] = new JsonObject { ["streaming"] = true, ["pushNotifications"] = A2APushNotifier.Supported(ctx.RequestServices), ["extendedAgentCard"] = false },
            ["defaultInputModes"] = new JsonArray("text/plain", "application/json"),
            ["defaultOutputModes"] = new JsonArray("text/plain"),
            ["skills"] = skills,
        };
        if (await ctx.RequestServices.GetRequiredService<IApiKeyStore>().AnyActiveAsync(ctx.RequestAborted))
        {
            card["securitySchemes"] = new JsonObject
            {
                ["bureauApiKey"] = new JsonObject
                {
                    ["httpAuthSecurityScheme"] = new JsonObject
                    {
                        ["scheme"] = "Bearer",
                        ["bearerFormat"] = "bk_ID_SECRET",
                        ["description"] = "A Bureau API key (bureau keys create): viewer reads tasks; operator or admin also sends messages and cancels.",
                    },
                },
            };
            card["securityRequirements"] = new JsonArray(new JsonObject { ["schemes"] = new JsonObject { ["bureauApiKey"] = new JsonObject { ["list"] = new JsonArray() } } });
        }
        return card;
    }

    /// <summary>The interface URL, from the request as it reached the app (PathBase-aware; forwarded headers apply when the app uses them).</summary>
    private static string Base(HttpContext ctx, string? agent) =>
        $"{ctx.Request.Scheme}://{ctx.Request.Host}{ctx.Request.PathBase}/a2a{(agent is null ? "" : "/agents/" + Uri.EscapeDataString(agent))}";

    private static string Version()
    {
        var v = typeof(A2AEndpoints).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "0.0.0";
        var plus = v.IndexOf('+', StringComparison.Ordinal);
        return plus < 0 ? v : v[..plus];
    }

    // ---- shared checks ----

    /// <summary>The <c>A2A-Version</c> header: absent (taken as 1.0) or a 1.x version.</summary>
    private static void CheckVersion(HttpContext ctx)
    {
        var v = ctx.Request.Headers["A2A-Version"].ToString().Trim();
        if (v.Length == 0 || v == "1" || v.StartsWith("1.", StringComparison.Ordinal)) return;
        throw new A2AException(A2AErrorKind.VersionNotSupported, $"this server speaks A2A 1.0; the request asks for version '{v}' (header A2A-Version)", "A2A-Version");
    }

    /// <summary>The route's agent is deployed (a per-agent route).</summary>
    private static void CheckScope(HttpContext ctx, A2AScope scope)
    {
        if (scope.Agent is null) return;
        var defs = ctx.RequestServices.GetRequiredService<BureauEngine>().Definitions;
        if (!Targets(defs).Contains(scope.Agent, StringComparer.Ordinal)) throw UnknownAgent(defs, scope.Agent);
    }

    private static async Task<JsonNode?> ReadJsonAsync(HttpContext ctx, bool optional)
    {
        var max = ctx.RequestServices.GetRequiredService<IOptions<BureauHttpOptions>>().Value.MaxRequestBodyBytes;
        var buffer = await RequestBody.ReadBytesAsync(ctx, max);
        if (buffer.WrittenCount == 0)
        {
            if (optional) return null;
            throw new A2AException(A2AErrorKind.ParseError, "the request body is empty; send a JSON object", "body");
        }
        if (ctx.Request.ContentType is not { } type || !RequestBody.IsJson(type))
            throw new A2AException(A2AErrorKind.InvalidRequest, $"the body must be sent as 'Content-Type: application/json' (got '{ctx.Request.ContentType ?? "none"}')", "Content-Type", StatusCodes.Status415UnsupportedMediaType);
        try
        {
            if (JsonBodyCheck.Find(buffer.WrittenSpan) is { } problem) throw new A2AException(A2AErrorKind.ParseError, problem.Detail, problem.Field);
            return JsonNode.Parse(buffer.WrittenSpan, documentOptions: new JsonDocumentOptions { AllowDuplicateProperties = false });
        }
        catch (JsonException ex)
        {
            throw new A2AException(A2AErrorKind.ParseError, $"the body is not valid JSON: {ex.Message}", "body");
        }
    }

    private static async Task WriteJsonAsync(HttpContext ctx, JsonNode body, int status)
    {
        ctx.Response.StatusCode = status;
        ctx.Response.ContentType = "application/json; charset=utf-8";
        ctx.Response.Headers["A2A-Version"] = ProtocolVersion;
        await ctx.Response.WriteAsync(body.ToJsonString(s_json), Encoding.UTF8, ctx.RequestAborted);
    }

    private static Task WriteRestErrorAsync(HttpContext ctx, A2AException error)
    {
        if (error.HttpStatus == StatusCodes.Status401Unauthorized) ctx.Response.Headers.WWWAuthenticate = "Bearer";
        return WriteJsonAsync(ctx, error.ToRestBody(), error.HttpStatus);
    }

    // ---- HTTP+JSON binding ----

    private static async Task RestAsync(HttpContext ctx, A2AScope scope, ApiPermission permission, Func<A2AScope, JsonObject, Task<JsonObject>> operation, bool optionalBody = false)
    {
        try
        {
            CheckVersion(ctx);
            await ctx.RequestServices.GetRequiredService<ApiAccess>().AuthorizeAsync(ctx, permission);
            CheckScope(ctx, scope);
            var p = await RestParamsAsync(ctx, optionalBody);
            await WriteJsonAsync(ctx, await operation(scope, p), StatusCodes.Status200OK);
        }
        catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
        {
            // The caller left (a blocking send it stopped waiting for): the task goes on.
        }
        catch (Exception ex) when (A2AException.From(ex) is { } error && !ctx.Response.HasStarted)
        {
            await WriteRestErrorAsync(ctx, error);
        }
    }

    /// <summary>A GET's query (each name once) or a POST's JSON body, as the request message.</summary>
    private static async Task<JsonObject> RestParamsAsync(HttpContext ctx, bool optionalBody)
    {
        if (HttpMethods.IsGet(ctx.Request.Method))
        {
            var p = new JsonObject();
            foreach (var (name, values) in ctx.Request.Query)
            {
                if (values.Count != 1) throw A2AException.BadParam(name, $"the query parameter '{name}' is given {values.Count} times");
                p[name] = values.ToString();
            }
            return p;
        }
        var body = await ReadJsonAsync(ctx, optionalBody);
        if (body is null) return new JsonObject();
        return body as JsonObject ?? throw new A2AException(A2AErrorKind.InvalidParams, "the body must be a JSON object", "body");
    }

    private static async Task RestStreamAsync(HttpContext ctx, A2AScope scope, ApiPermission permission, Func<A2AScope, JsonObject, Task<RunRecord>> start, bool readBody = true)
    {
        RunRecord run;
        try
        {
            CheckVersion(ctx);
            await ctx.RequestServices.GetRequiredService<ApiAccess>().AuthorizeAsync(ctx, permission);
            CheckScope(ctx, scope);
            var p = readBody ? await RestParamsAsync(ctx, optionalBody: false) : new JsonObject();
            run = await start(scope, p);
        }
        catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
        {
            return;
        }
        catch (Exception ex) when (A2AException.From(ex) is { } error && !ctx.Response.HasStarted)
        {
            await WriteRestErrorAsync(ctx, error);
            return;
        }
        await SseAsync(ctx, run, data => data, error => $"event: error\ndata: {error.ToRestBody().ToJsonString(s_json)}\n\n");
    }

    // ---- JSON-RPC binding ----

    private static async Task JsonRpcAsync(HttpContext ctx, A2AScope scope)
    {
        JsonNode? id = null;
        try
        {
            var node = await ReadJsonAsync(ctx, optional: false);
            if (node is not JsonObject request)
                throw new A2AException(A2AErrorKind.InvalidRequest, "a JSON-RPC request is a JSON object (batches are not supported)", "body");
            if (request.TryGetPropertyValue("id", out var idNode) && idNode is JsonValue idValue && idValue.GetValueKind() is JsonValueKind.String or JsonValueKind.Number)
                id = idNode.DeepClone();
            else if (idNode is not null)
                throw new A2AException(A2AErrorKind.InvalidRequest, "'id' must be a string or a number", "id");
            if (request["jsonrpc"] is not JsonValue version || version.GetValueKind() != JsonValueKind.String || version.GetValue<string>() != "2.0")
                throw new A2AException(A2AErrorKind.InvalidRequest, "'jsonrpc' must be \"2.0\"", "jsonrpc");
            var method = request["method"] is JsonValue m && m.GetValueKind() == JsonValueKind.String ? m.GetValue<string>()
                : throw new A2AException(A2AErrorKind.InvalidRequest, "'method' is required (a string)", "method");
            var p = request["params"] switch
            {
                null => new JsonObject(),
                JsonObject o => o,
                _ => throw A2AException.BadParam("params", "'params' must be an object"),
            };
            var permission = method switch
            {
                "SendMessage" or "SendStreamingMessage" or "CancelTask" => ApiPermission.StartOrCancel,
                "GetTask" or "ListTasks" or "SubscribeToTask" => ApiPermission.Read,
                "CreateTaskPushNotificationConfig" or "DeleteTaskPushNotificationConfig" => ApiPermission.StartOrCancel,
                "GetTaskPushNotificationConfig" or "ListTaskPushNotificationConfigs" => ApiPermission.Read,
                "GetExtendedAgentCard" => throw new A2AException(A2AErrorKind.UnsupportedOperation, "this server has no extended agent card: the public card is the whole card", "method"),
                _ => throw new A2AException(A2AErrorKind.MethodNotFound,
                    $"no method '{method}'; this server answers SendMessage, SendStreamingMessage, GetTask, ListTasks, CancelTask, SubscribeToTask and the TaskPushNotificationConfig methods", "method"),
            };
            CheckVersion(ctx);
            await ctx.RequestServices.GetRequiredService<ApiAccess>().AuthorizeAsync(ctx, permission);
            CheckScope(ctx, scope);

            if (method is "SendStreamingMessage" or "SubscribeToTask")
            {
                var run = method == "SubscribeToTask" ? await SubscribeStartAsync(ctx, scope, p) : (await A2AService.AcceptAsync(ctx, scope, p)).Run;
                var rpcId = id;
                await SseAsync(ctx, run,
                    data => new JsonObject { ["jsonrpc"] = "2.0", ["id"] = rpcId?.DeepClone(), ["result"] = data },
                    error => $"data: {new JsonObject { ["jsonrpc"] = "2.0", ["id"] = rpcId?.DeepClone(), ["error"] = error.ToJsonRpcError() }.ToJsonString(s_json)}\n\n");
                return;
            }
            JsonObject result = method switch
            {
                "SendMessage" => await A2AService.SendAsync(ctx, scope, p),
                "GetTask" => await A2AService.GetTaskAsync(ctx, scope, p),
                "ListTasks" => await A2AService.ListTasksAsync(ctx, scope, p),
                "CreateTaskPushNotificationConfig" => await A2AService.CreatePushConfigAsync(ctx, scope, p),
                "GetTaskPushNotificationConfig" => await A2AService.GetPushConfigAsync(ctx, scope, p),
                "ListTaskPushNotificationConfigs" => await A2AService.ListPushConfigsAsync(ctx, scope, p),
                "DeleteTaskPushNotificationConfig" => await A2AService.DeletePushConfigAsync(ctx, scope, p),
                _ => await A2AService.CancelTaskAsync(ctx, scope, p),
            };
            await WriteJsonAsync(ctx, new JsonObject { ["jsonrpc"] = "2.0", ["id"] = id, ["result"] = result }, StatusCodes.Status200OK);
        }
        catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
        {
            // The caller left (a blocking send it stopped waiting for): the task goes on.
        }
        catch (Exception ex) when (A2AException.From(ex) is { } error && !ctx.Response.HasStarted)
        {
            // JSON-RPC errors travel in a 200 answer; a caller refused entry (401, 403), an unknown agent (404), a body
            // too large (413) or of the wrong type (415) and an unavailable store (503) also get that HTTP status.
            var status = (error.Kind == A2AErrorKind.InvalidRequest && error.HttpStatus != StatusCodes.Status400BadRequest) || error.HttpStatus is 429 or 503
                ? error.HttpStatus : StatusCodes.Status200OK;
            if (status == StatusCodes.Status401Unauthorized) ctx.Response.Headers.WWWAuthenticate = "Bearer";
            await WriteJsonAsync(ctx, new JsonObject { ["jsonrpc"] = "2.0", ["id"] = id, ["error"] = error.ToJsonRpcError() }, status);
        }
    }

    // ---- Server-Sent Events ----

    private static async Task SseAsync(HttpContext ctx, RunRecord run, Func<JsonObject, JsonObject> envelope, Func<A2AException, string> errorEvent)
    {
        var response = ctx.Response;
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = "text/event-stream";
        response.Headers.CacheControl = "no-cache";
        response.Headers["X-Accel-Buffering"] = "no";
        response.Headers["A2A-Version"] = ProtocolVersion;
        ctx.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        var lifetime = ctx.RequestServices.GetRequiredService<IHostApplicationLifetime>();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted, lifetime.ApplicationStopping);
        var ct = stop.Token;
        try
        {
            await response.StartAsync(ct);
            await A2AService.StreamAsync(ctx.RequestServices, run,
                async data =>
                {
                    await response.WriteAsync("data: " + envelope(data).ToJsonString(s_json) + "\n\n", ct);
                    await response.Body.FlushAsync(ct);
                },
                async () =>
                {
                    await response.WriteAsync(": ping\n\n", ct);
                    await response.Body.FlushAsync(ct);
                }, ct);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // The client went away or the host stops: the task goes on; SubscribeToTask picks it up again.
        }
        catch (Exception ex) when (A2AException.From(ex) is { } error)
        {
            await response.WriteAsync(errorEvent(error), CancellationToken.None);
            await response.Body.FlushAsync(CancellationToken.None);
        }
    }
}
