using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace Bureau.Hosting.A2A;

/// <summary>A request's scope: one agent (or team), or the whole host (<c>/a2a</c>, where <c>metadata.agent</c> picks the target).</summary>
internal sealed record A2AScope(string? Agent)
{
    public bool Covers(RunRecord run) => Agent is null || run.Agent == Agent;
}

/// <summary>A message accepted: its run and how the caller wants the answer.</summary>
internal sealed record A2ASent(RunRecord Run, bool ReturnImmediately, int? HistoryLength);

/// <summary>
/// The A2A operations on Bureau's runs, shared by the JSON-RPC and the HTTP+JSON bindings (<see cref="A2AEndpoints"/>):
/// the parameters are the protobuf-JSON request messages of A2A 1.0, the answers its response messages.
/// </summary>
internal static class A2AService
{
    private const int MaxPageSize = 100;
    private const int CountCap = 10_000;

    private static BureauEngine Engine(HttpContext ctx) => ctx.RequestServices.GetRequiredService<BureauEngine>();

    /// <summary>Marks a task whose answers come from the scripted model (<c>metadata.scripted</c>): never a real model's.</summary>
    private static JsonObject Labelled(BureauEngine engine, JsonObject task, RunRecord run)
    {
        if (ScriptedModels.Behind(engine, run.Agent) && task["metadata"] is JsonObject metadata) metadata["scripted"] = true;
        return task;
    }

    /// <summary>SendMessage (and the start of SendStreamingMessage): a new message starts a durable run (once per messageId).</summary>
    public static async Task<A2ASent> AcceptAsync(HttpContext ctx, A2AScope scope, JsonObject p)
    {
        var engine = Engine(ctx);
        var message = P.RequiredObject(p, "message");
        var messageId = P.RequiredString(message, "message.messageId");
        if (messageId.Length > A2AMapping.MaxIdLength) throw A2AException.BadParam("message.messageId", $"'message.messageId' is longer than {A2AMapping.MaxIdLength} characters");
        if (message.TryGetPropertyValue("role", out var role) && role is not null
            && !(role is JsonValue rv && (rv.ToJsonString() is "\"ROLE_USER\"" or "1" or "\"ROLE_UNSPECIFIED\"" or "0")))
            throw A2AException.BadParam("message.role", $"'message.role' must be ROLE_USER for a message sent to an agent, not {role.ToJsonString()}");
        var parts = P.OptionalArray(message, "message.parts");
        if (parts is null || parts.Count == 0) throw A2AException.BadParam("message.parts", "'message.parts' is required: at least one part (text or data)");
        var input = A2AMapping.Input(parts);
        var contextId = P.OptionalString(message, "message.contextId");
        if (contextId is { Length: 0 }) contextId = null;
        if (contextId is { Length: > A2AMapping.MaxIdLength }) throw A2AException.BadParam("message.contextId", $"'message.contextId' is longer than {A2AMapping.MaxIdLength} characters");
        var taskId = P.OptionalString(message, "message.taskId");
        if (taskId is { Length: 0 }) taskId = null;

        var returnImmediately = false;
        int? historyLength = null;
        JsonObject? pushConfig = null;
        if (P.OptionalObject(p, "configuration") is { } configuration)
        {
            returnImmediately = P.OptionalBool(configuration, "configuration.returnImmediately") ?? false;
            historyLength = P.OptionalInt(configuration, "configuration.historyLength", 0, int.MaxValue);
            if (P.OptionalObject(configuration, "configuration.taskPushNotificationConfig") is { } push)
                pushConfig = await PushConfigAsync(ctx, push, "configuration.taskPushNotificationConfig.");
        }
        var caller = ApiAccess.Caller(ctx);

        if (taskId is not null)
        {
            // A message for an existing task answers what it waits for (an outside event); nothing else continues a task.
            var run = await engine.GetRunAsync(taskId, ctx.RequestAborted);
            if (run is null || !scope.Covers(run)) throw new A2AException(A2AErrorKind.TaskNotFound, $"task {taskId} does not exist{(scope.Agent is null ? "" : $" for agent '{scope.Agent}'")}", "message.taskId", taskId: taskId);
            var (runContext, _) = A2AMapping.ContextOf(run);
            if (contextId is not null && contextId != runContext)
                throw A2AException.BadParam("message.contextId", $"task {taskId} belongs to context '{runContext}', not '{contextId}'");
            if (run.Status == RunStatus.Waiting && run.WaitingFor is ExternalEventWait wait)
            {
                run = await engine.AnswerWaitAsync(run.Id, wait.Step, input, caller.Actor, ctx.RequestAborted);
                await KeepPushConfigAsync(ctx, run, pushConfig);
                return new A2ASent(run, returnImmediately, historyLength);
            }
            var why = run.Status.IsTerminal()
                ? $"task {taskId} is already {A2AMapping.State(run)}: a finished task takes no more messages; send a new message (without taskId, with its contextId) to start a new task"
                : run.WaitingFor is ApprovalWait or InDoubtWait
                    ? $"task {taskId} waits for a person's decision, not a message: {A2AMapping.Status(run, runContext)["message"]?["parts"]?[0]?["text"]}"
                    : $"task {taskId} is {A2AMapping.State(run)} and waits for no message; send a new message (without taskId) to start a new task";
            throw new A2AException(A2AErrorKind.UnsupportedOperation, why, "message.taskId", taskId: taskId);
        }

        var target = Target(ctx, scope, p, message);
        contextId ??= A2AMapping.NewContextId(target, messageId);
        var key = A2AMapping.Key(target, contextId, messageId);
        // A message sent again is answered with its task, full queue or not.
        await engine.EnsureQueueRoomAsync(target, key, ctx.RequestAborted);
        var result = await engine.SubmitAsync(new RunRequest(target, input, key, caller.Actor), ctx.RequestAborted);
        if (!result.Created && (result.Run.Agent != target || result.Run.Input != input))
        {
            throw A2AException.BadParam("message.messageId",
                $"the messageId '{messageId}' already started task {result.Run.Id} with another message; nothing was started (give each message its own messageId)");
        }
        await KeepPushConfigAsync(ctx, result.Run, pushConfig);
        return new A2ASent(result.Run, returnImmediately, historyLength);
    }

    // ---- push notification configs (decision 0034) ----

    /// <summary>A push config from a request, checked (URL scheme and address: SSRF), with an id; nothing stored yet.</summary>
    private static async Task<JsonObject> PushConfigAsync(HttpContext ctx, JsonObject p, string prefix)
    {
        if (!A2APushNotifier.Supported(ctx.RequestServices))
            throw new A2AException(A2AErrorKind.PushNotificationNotSupported, "this host's storage keeps no push configs (no event store); stream the task or poll it", prefix + "url");
        var options = A2APushNotifier.Options(ctx.RequestServices);
        var url = P.RequiredString(p, prefix + "url");
        var uri = await A2APushTargets.CheckAsync(url, options.AllowPrivatePushUrls, prefix + "url", ctx.RequestAborted);
        var id = P.OptionalString(p, prefix + "id") is { Length: > 0 } given ? given : Guid.NewGuid().ToString();
        if (id.Length > A2AMapping.MaxIdLength) throw A2AException.BadParam(prefix + "id", $"'{prefix}id' is longer than {A2AMapping.MaxIdLength} characters");
        var config = new JsonObject { ["id"] = id, ["url"] = uri.AbsoluteUri };
        if (P.OptionalString(p, prefix + "token") is { Length: > 0 } token) config["token"] = token;
        if (P.OptionalObject(p, prefix + "authentication") is { } auth)
        {
            var scheme = P.RequiredString(auth, prefix + "authentication.scheme");
            if (scheme.Any(char.IsWhiteSpace)) throw A2AException.BadParam(prefix + "authentication.scheme", $"'{prefix}authentication.scheme' is one word (Bearer, Basic, ...), not '{scheme}'");
            config["authentication"] = new JsonObject { ["scheme"] = scheme, ["credentials"] = P.OptionalString(auth, prefix + "authentication.credentials") ?? "" };
        }
        return config;
    }

    private static async Task<JsonObject> KeepPushConfigAsync(HttpContext ctx, RunRecord run, JsonObject? config)
    {
        if (config is null) return new JsonObject();
        config["taskId"] = run.Id;
        var notifier = A2APushNotifier.For(ctx.RequestServices);
        var stored = await notifier.Configs.PutAsync(run.Id, config, notifier.Settings.MaxPushConfigsPerTask, ctx.RequestAborted);
        notifier.Watch(run.Id);
        return stored;
    }

    /// <summary>What a reader sees of a config: the secrets (token, credentials) are not shown again.</summary>
    private static JsonObject Redacted(JsonObject config)
    {
        var copy = config.DeepClone().AsObject();
        if (copy.ContainsKey("token")) copy["token"] = "(set)";
        if (copy["authentication"] is JsonObject auth) auth["credentials"] = "(set)";
        return copy;
    }

    /// <summary>CreateTaskPushNotificationConfig: stored durably; the task's changes from now on are pushed.</summary>
    public static async Task<JsonObject> CreatePushConfigAsync(HttpContext ctx, A2AScope scope, JsonObject p)
    {
        var taskId = P.RequiredString(p, "taskId");
        var run = await FindAsync(ctx, scope, taskId);
        if (run.Status.IsTerminal())
            throw new A2AException(A2AErrorKind.UnsupportedOperation, $"task {taskId} is already {A2AMapping.State(run)}: nothing more will be pushed (GetTask reads it)", "taskId", taskId: taskId);
        var config = await PushConfigAsync(ctx, p, "");
        return await KeepPushConfigAsync(ctx, run, config);
    }

    private static async Task<(A2APushNotifier Notifier, string TaskId)> PushScopeAsync(HttpContext ctx, A2AScope scope, JsonObject p)
    {
        if (!A2APushNotifier.Supported(ctx.RequestServices))
            throw new A2AException(A2AErrorKind.PushNotificationNotSupported, "this host's storage keeps no push configs (no event store)", "taskId");
        var taskId = P.RequiredString(p, "taskId");
        await FindAsync(ctx, scope, taskId);
        return (A2APushNotifier.For(ctx.RequestServices), taskId);
    }

    public static async Task<JsonObject> GetPushConfigAsync(HttpContext ctx, A2AScope scope, JsonObject p)
    {
        var (notifier, taskId) = await PushScopeAsync(ctx, scope, p);
        var id = P.RequiredString(p, "id");
        var config = (await notifier.Configs.ListAsync(taskId, ctx.RequestAborted)).FirstOrDefault(c => (string?)c["id"] == id)
                     ?? throw new A2AException(A2AErrorKind.InvalidParams, $"task {taskId} has no push config '{id}'", "id", StatusCodes.Status404NotFound, taskId);
        return Redacted(config);
    }

    public static async Task<JsonObject> ListPushConfigsAsync(HttpContext ctx, A2AScope scope, JsonObject p)
    {
        var (notifier, taskId) = await PushScopeAsync(ctx, scope, p);
        var configs = new JsonArray();
        foreach (var c in await notifier.Configs.ListAsync(taskId, ctx.RequestAborted)) configs.Add(Redacted(c));
        return new JsonObject { ["configs"] = configs, ["nextPageToken"] = "" };
    }

    public static async Task<JsonObject> DeletePushConfigAsync(HttpContext ctx, A2AScope scope, JsonObject p)
    {
        var (notifier, taskId) = await PushScopeAsync(ctx, scope, p);
        var id = P.RequiredString(p, "id");
        if (!await notifier.Configs.DeleteAsync(taskId, id, ctx.RequestAborted))
            throw new A2AException(A2AErrorKind.InvalidParams, $"task {taskId} has no push config '{id}'", "id", StatusCodes.Status404NotFound, taskId);
        return new JsonObject();
    }

    /// <summary>The agent a message goes to: the scope's, or the host's only one, or the one <c>metadata.agent</c> names.</summary>
    private static string Target(HttpContext ctx, A2AScope scope, JsonObject p, JsonObject message)
    {
        var named = (P.OptionalObject(p, "metadata") is { } m ? P.OptionalString(m, "metadata.agent") : null)
                    ?? (P.OptionalObject(message, "message.metadata") is { } mm ? P.OptionalString(mm, "message.metadata.agent") : null);
        if (scope.Agent is { } agent)
        {
            if (named is not null && named != agent)
                throw A2AException.BadParam("metadata.agent", $"this endpoint is agent '{agent}'s; 'metadata.agent' names '{named}' (send it to /a2a, or to that agent's endpoint)");
            return agent;
        }
        var targets = A2AEndpoints.Targets(Engine(ctx).Definitions);
        if (named is not null)
        {
            if (!targets.Contains(named, StringComparer.Ordinal))
                throw A2AException.BadParam("metadata.agent", $"'metadata.agent' names '{named}', which is not deployed; deployed agents and teams: {string.Join(", ", targets)}");
            return named;
        }
        if (targets.Count == 1) return targets[0];
        throw A2AException.BadParam("metadata.agent",
            $"this host serves several agents: name one in 'metadata.agent' (one of {string.Join(", ", targets)}), or use its own endpoint /a2a/agents/NAME");
    }

    /// <summary>Waits until the task is terminal or interrupted (INPUT_REQUIRED): a team waiting for its members is still working.</summary>
    public static async Task<RunRecord> WaitSettledAsync(BureauEngine engine, string runId, CancellationToken ct)
    {
        var run = await engine.GetRunAsync(runId, ct) ?? throw new RunNotFoundException(runId);
        while (!A2AMapping.IsSettled(run))
        {
            await foreach (var e in engine.WatchAsync(runId, run.Version, cancellationToken: ct))
            {
                if (e.Record?.Entry is RunFinished) break;
                if (e.Record?.Entry is RunWaiting { WaitingFor: ApprovalWait or InDoubtWait or ExternalEventWait }) break;
            }
            run = await engine.GetRunAsync(runId, ct) ?? throw new RunNotFoundException(runId);
        }
        return run;
    }

    /// <summary>SendMessage's answer: <c>{"task": Task}</c>, once the task is settled unless the caller asked to return at once.</summary>
    public static async Task<JsonObject> SendAsync(HttpContext ctx, A2AScope scope, JsonObject p)
    {
        var sent = await AcceptAsync(ctx, scope, p);
        var run = sent.ReturnImmediately ? sent.Run : await WaitSettledAsync(Engine(ctx), sent.Run.Id, ctx.RequestAborted);
        return new JsonObject { ["task"] = Labelled(Engine(ctx), A2AMapping.Task(run, sent.HistoryLength), run) };
    }

    /// <summary>The task a request names (<c>id</c>), in scope.</summary>
    public static async Task<RunRecord> FindAsync(HttpContext ctx, A2AScope scope, string id)
    {
        var run = await Engine(ctx).GetRunAsync(id, ctx.RequestAborted);
        if (run is null || !scope.Covers(run))
            throw new A2AException(A2AErrorKind.TaskNotFound, $"task {id} does not exist{(scope.Agent is null ? "" : $" for agent '{scope.Agent}'")}", "id", taskId: id);
        return run;
    }

    public static async Task<JsonObject> GetTaskAsync(HttpContext ctx, A2AScope scope, JsonObject p)
    {
        var id = P.RequiredString(p, "id");
        var historyLength = P.OptionalInt(p, "historyLength", 0, int.MaxValue);
        var found = await FindAsync(ctx, scope, id);
        return Labelled(Engine(ctx), A2AMapping.Task(found, historyLength), found);
    }

    public static async Task<JsonObject> CancelTaskAsync(HttpContext ctx, A2AScope scope, JsonObject p)
    {
        var id = P.RequiredString(p, "id");
        var run = await FindAsync(ctx, scope, id);
        if (run.Status.IsTerminal())
            throw new A2AException(A2AErrorKind.TaskNotCancelable, $"task {id} is already {A2AMapping.State(run)}; only an unfinished task can be canceled", "id", taskId: id);
        var reason = P.OptionalObject(p, "metadata") is { } m ? P.OptionalString(m, "metadata.reason") : null;
        var engine = Engine(ctx);
        await engine.CancelAsync(id, ApiAccess.Caller(ctx).Actor, reason ?? "canceled by an A2A client", ctx.RequestAborted);
        // The cancellation is journaled by the run's executor; answer the canceled task once it is (a few seconds at most).
        using var wait = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted);
        wait.CancelAfter(TimeSpan.FromSeconds(10));
        try
        {
            run = await WaitTerminalAsync(engine, id, wait.Token);
        }
        catch (OperationCanceledException) when (!ctx.RequestAborted.IsCancellationRequested)
        {
            run = await engine.GetRunAsync(id, ctx.RequestAborted) ?? throw new RunNotFoundException(id);
        }
        return Labelled(Engine(ctx), A2AMapping.Task(run), run);
    }

    private static async Task<RunRecord> WaitTerminalAsync(BureauEngine engine, string runId, CancellationToken ct)
    {
        var run = await engine.GetRunAsync(runId, ct) ?? throw new RunNotFoundException(runId);
        if (run.Status.IsTerminal()) return run;
        await foreach (var e in engine.WatchAsync(runId, run.Version, cancellationToken: ct))
        {
            if (e.Record?.Entry is RunFinished) break;
        }
        return await engine.GetRunAsync(runId, ct) ?? throw new RunNotFoundException(runId);
    }

    public static async Task<JsonObject> ListTasksAsync(HttpContext ctx, A2AScope scope, JsonObject p)
    {
        var contextId = P.OptionalString(p, "contextId");
        if (contextId is { Length: 0 }) contextId = null;
        RunStatus? status = null;
        var interruptedOnly = false;
        if (P.OptionalString(p, "status") is { Length: > 0 } stateText && stateText != "TASK_STATE_UNSPECIFIED")
        {
            status = A2AMapping.StatusOf(stateText)
                     ?? throw A2AException.BadParam("status", $"'status' must be one of TASK_STATE_SUBMITTED, TASK_STATE_WORKING, TASK_STATE_INPUT_REQUIRED, TASK_STATE_COMPLETED, TASK_STATE_FAILED, TASK_STATE_CANCELED; not '{stateText}'");
            interruptedOnly = status == RunStatus.Waiting;
        }
        var pageSize = P.OptionalInt(p, "pageSize", 1, MaxPageSize) ?? 50;
        var pageToken = P.OptionalString(p, "pageToken");
        if (pageToken is { Length: 0 }) pageToken = null;
        var historyLength = P.OptionalInt(p, "historyLength", 0, int.MaxValue);
        var includeArtifacts = P.OptionalBool(p, "includeArtifacts") ?? false;
        DateTimeOffset? after = null;
        if (P.OptionalString(p, "statusTimestampAfter") is { Length: > 0 } afterText)
        {
            if (!DateTimeOffset.TryParse(afterText, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var a))
                throw A2AException.BadParam("statusTimestampAfter", $"'statusTimestampAfter' must be an ISO 8601 time such as 2026-01-31T10:00:00Z, not '{afterText}'");
            after = a;
        }
        bool Keep(RunRecord r) => (!interruptedOnly || A2AMapping.IsInterrupted(r)) && (after is null || r.UpdatedAt >= after);

        var query = new RunQuery
        {
            Agent = scope.Agent,
            Status = status,
            IdempotencyKeyPrefix = contextId is null ? null : A2AMapping.ContextPrefix(contextId),
            Limit = pageSize,
            Cursor = pageToken,
        };
        var engine = Engine(ctx);
        RunPage page;
        try
        {
            page = await engine.ListRunsAsync(query, ctx.RequestAborted);
        }
        catch (ArgumentException ex) when (pageToken is not null)
        {
            throw A2AException.BadParam("pageToken", $"'pageToken' '{pageToken}' is not one this server returned ({ex.Message})");
        }
        var tasks = new JsonArray();
        foreach (var r in page.Items.Where(Keep)) tasks.Add(Labelled(Engine(ctx), A2AMapping.Task(r, historyLength, includeArtifacts), r));

        // totalSize: the matching tasks counted (up to a cap: the store keeps no counts).
        var total = 0;
        string? cursor = null;
        do
        {
            var counted = await engine.ListRunsAsync(query with { Limit = 1000, Cursor = cursor }, ctx.RequestAborted);
            total += counted.Items.Count(Keep);
            cursor = counted.Next;
        }
        while (cursor is not null && total < CountCap);

        return new JsonObject
        {
            ["tasks"] = tasks,
            ["nextPageToken"] = page.Next ?? "",
            ["pageSize"] = pageSize,
            ["totalSize"] = total,
        };
    }

    /// <summary>The stream of a task: the task as it is, then its changes, until it is terminal or interrupted.</summary>
    /// <param name="services">The host's services.</param>
    /// <param name="run">The task's run as last read.</param>
    /// <param name="write">Writes one StreamResponse (and flushes).</param>
    /// <param name="ping">Writes a keep-alive comment.</param>
    /// <param name="ct">Stops the stream (the client left, the host stops).</param>
    /// <param name="untilTerminal">Go on past INPUT_REQUIRED until the task is terminal (push notifications).</param>
    public static async Task StreamAsync(IServiceProvider services, RunRecord run, Func<JsonObject, Task> write, Func<Task> ping, CancellationToken ct, bool untilTerminal = false) =>
        await StreamAsync(services.GetRequiredService<BureauEngine>(), services.GetRequiredService<Microsoft.Extensions.Options.IOptions<BureauHttpOptions>>().Value.HeartbeatInterval,
            services.GetRequiredService<TimeProvider>(), run, write, ping, ct, untilTerminal);

    /// <summary>The same, with the services resolved (a push notifier outlives the request that made it).</summary>
    public static async Task StreamAsync(BureauEngine engine, TimeSpan heartbeat, TimeProvider time, RunRecord run, Func<JsonObject, Task> write, Func<Task> ping,
        CancellationToken ct, bool untilTerminal = false)
    {
        var (contextId, _) = A2AMapping.ContextOf(run);
        await write(new JsonObject { ["task"] = Labelled(engine, A2AMapping.Task(run), run) });
        if (untilTerminal ? run.Status.IsTerminal() : A2AMapping.IsSettled(run)) return;
        var state = A2AMapping.State(run);

        JsonObject StatusUpdate(RunRecord r, JsonObject? message = null)
        {
            var status = A2AMapping.Status(r, contextId);
            if (message is not null) status["message"] = message;
            return new JsonObject { ["statusUpdate"] = new JsonObject { ["taskId"] = run.Id, ["contextId"] = contextId, ["status"] = status } };
        }

        await using var events = engine.WatchAsync(run.Id, run.Version, cancellationToken: ct).GetAsyncEnumerator(ct);
        var next = events.MoveNextAsync().AsTask();
        while (true)
        {
            using (var beat = CancellationTokenSource.CreateLinkedTokenSource(ct))
            {
                var delay = Task.Delay(heartbeat, time, beat.Token);
                if (await Task.WhenAny(next, delay) != next)
                {
                    await ping();
                    continue;
                }
                await beat.CancelAsync();
            }
            if (!await next) return;
            if (events.Current.Record is { } rec)
            {
                var at = run with { UpdatedAt = rec.At, Version = rec.N };
                switch (rec.Entry)
                {
                    case RunFinished f:
                        var done = at with { Status = f.Status, Output = f.Output, Error = f.Error, Outcome = f.Outcome, WaitingFor = null };
                        if (f.Status == RunStatus.Succeeded && f.Output is not null)
                        {
                            await write(new JsonObject
                            {
                                ["artifactUpdate"] = new JsonObject
                                {
                                    ["taskId"] = run.Id, ["contextId"] = contextId, ["artifact"] = A2AMapping.OutputArtifact(f.Output), ["append"] = false, ["lastChunk"] = true,
                                },
                            });
                        }
                        await write(StatusUpdate(done));
                        return;
                    case RunWaiting w:
                        var waiting = at with { Status = RunStatus.Waiting, WaitingFor = w.WaitingFor };
                        if (A2AMapping.IsInterrupted(waiting))
                        {
                            await write(StatusUpdate(waiting));
                            if (!untilTerminal) return;
                            state = A2AMapping.InputRequired;
                        }
                        break;
                    case ModelResponded { Text: { Length: > 0 } text, ToolCalls.Count: > 0 }:
                        // What the model said on its way (before calling tools): progress, not the answer.
                        state = A2AMapping.Working;
                        await write(StatusUpdate(at with { Status = RunStatus.Running, WaitingFor = null },
                            A2AMapping.AgentMessage(run, contextId, $"{run.Id}:{rec.N.ToString(CultureInfo.InvariantCulture)}", text)));
                        break;
                    default:
                        if (state != A2AMapping.Working)
                        {
                            state = A2AMapping.Working;
                            await write(StatusUpdate(at with { Status = RunStatus.Running, WaitingFor = null }));
                        }
                        break;
                }
            }
            next = events.MoveNextAsync().AsTask();
        }
    }
}

/// <summary>Reads request parameters (protobuf JSON), with errors naming the field.</summary>
internal static class P
{
    private static string Leaf(string path) => path[(path.LastIndexOf('.') + 1)..];

    private static JsonNode? Get(JsonObject o, string path) => o.TryGetPropertyValue(Leaf(path), out var n) ? n : null;

    public static JsonObject RequiredObject(JsonObject o, string path) =>
        OptionalObject(o, path) ?? throw A2AException.BadParam(path, $"'{path}' is required (an object)");

    public static JsonObject? OptionalObject(JsonObject o, string path) => Get(o, path) switch
    {
        null => null,
        JsonObject x => x,
        var other => throw A2AException.BadParam(path, $"'{path}' must be an object, not {other.ToJsonString()}"),
    };

    public static JsonArray? OptionalArray(JsonObject o, string path) => Get(o, path) switch
    {
        null => null,
        JsonArray x => x,
        var other => throw A2AException.BadParam(path, $"'{path}' must be an array, not {other.ToJsonString()}"),
    };

    public static string RequiredString(JsonObject o, string path) =>
        OptionalString(o, path) is { Length: > 0 } s ? s : throw A2AException.BadParam(path, $"'{path}' is required (a non-empty string)");

    public static string? OptionalString(JsonObject o, string path) => Get(o, path) switch
    {
        null => null,
        JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>(),
        var other => throw A2AException.BadParam(path, $"'{path}' must be a string, not {other.ToJsonString()}"),
    };

    public static bool? OptionalBool(JsonObject o, string path) => Get(o, path) switch
    {
        null => null,
        JsonValue v when v.GetValueKind() is JsonValueKind.True or JsonValueKind.False => v.GetValue<bool>(),
        JsonValue v when v.GetValueKind() == JsonValueKind.String && bool.TryParse(v.GetValue<string>(), out var b) => b, // a query string's "true"
        var other => throw A2AException.BadParam(path, $"'{path}' must be true or false, not {other.ToJsonString()}"),
    };

    public static int? OptionalInt(JsonObject o, string path, int min, int max)
    {
        var node = Get(o, path);
        if (node is null) return null;
        int n;
        if (node is JsonValue v && v.GetValueKind() == JsonValueKind.Number && v.TryGetValue<int>(out var i)) n = i;
        else if (node is JsonValue s && s.GetValueKind() == JsonValueKind.String && int.TryParse(s.GetValue<string>(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var j)) n = j;
        else throw A2AException.BadParam(path, $"'{path}' must be an integer, not {node.ToJsonString()}");
        if (n < min || n > max) throw A2AException.BadParam(path, $"'{path}' must be from {min} to {max}, not {n}");
        return n;
    }
}
