using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Bureau.Governance;
using Bureau.Engine;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Bureau.Hosting;

/// <summary>
/// AG-UI (docs/interop.md, docs/decisions/0027): a run's journal as AG-UI events over Server-Sent Events.
/// <c>POST /v1/agents/{name}/agui</c> takes AG-UI's <c>RunAgentInput</c>, starts a durable run (or, with
/// <c>resume</c>, answers the approvals the last stream ended on) and streams it; <c>GET /v1/runs/{id}/agui</c>
/// streams an existing run from its first step. A stream ends with <c>RUN_FINISHED</c> (outcome <c>success</c>,
/// <c>interrupt</c> when the run waits for a person, <c>cancelled</c>) or <c>RUN_ERROR</c>.
/// </summary>
internal static class AguiApi
{
    private static BureauEngine Engine(HttpContext ctx) => ctx.RequestServices.GetRequiredService<BureauEngine>();
    private static BureauHttpOptions Options(HttpContext ctx) => ctx.RequestServices.GetRequiredService<IOptions<BureauHttpOptions>>().Value;

    public static async Task<IResult> RunAsync(HttpContext ctx, string name)
    {
        var engine = Engine(ctx);
        var defs = engine.Definitions;
        if (!defs.Agents.ContainsKey(name) && !defs.Teams.ContainsKey(name))
            throw new UnknownAgentException(name, defs.Agents.Keys.Concat(defs.Teams.Keys));
        var body = (await RequestBody.ReadAsync(ctx, Options(ctx).MaxRequestBodyBytes, optional: false))!;
        var threadId = OpenAiConversation.String(body, "threadId", null) ?? throw ApiException.BadField("threadId", "'threadId' is required (a string)");
        var clientRunId = OpenAiConversation.String(body, "runId", null) ?? throw ApiException.BadField("runId", "'runId' is required (a string)");
        var caller = ApiAccess.Caller(ctx);

        string followed;
        long after = 0;
        if (body["resume"] is JsonArray { Count: > 0 } resume)
        {
            ApiAccess.Demand(ctx, ApiPermission.Resolve, "answering interrupts (resume)", "resume");
            (followed, after) = await ResumeAsync(ctx, name, resume, caller);
        }
        else
        {
            ApiAccess.Demand(ctx, ApiPermission.StartOrCancel, "starting a run");
            var messages = ReadMessages(body);
            var input = OpenAiConversation.ToInput(messages);
            engine.EnsureQueueRoom(name);
            var key = $"agui:{threadId}:{clientRunId}";
            var result = await engine.SubmitAsync(new RunRequest(name, input, key.Length <= Options(ctx).MaxIdempotencyKeyLength ? key : null, caller.Actor), ctx.RequestAborted);
            if (!result.Created && result.Run.Input != input)
            {
                throw new ApiException(StatusCodes.Status409Conflict, "idempotency-key-reused",
                    $"runId '{clientRunId}' of thread '{threadId}' already started run {result.Run.Id} with other messages; send a new runId", "runId", result.Run.Id);
            }
            followed = result.Run.Id;
        }
        return await StreamAsync(ctx, followed, threadId, clientRunId, after);
    }

    public static async Task<IResult> StreamRunAsync(HttpContext ctx, string id)
    {
        var run = await Engine(ctx).GetRunAsync(id, ctx.RequestAborted) ?? throw new RunNotFoundException(id);
        return await StreamAsync(ctx, run.Id, run.RootRunId ?? run.Id, run.Id, 0);
    }

    /// <summary>Answers each interrupt (an approval, by its id RUN:STEP); returns the run to follow and the step after which its new entries start.</summary>
    private static async Task<(string RunId, long After)> ResumeAsync(HttpContext ctx, string name, JsonArray resume, ApiCaller caller)
    {
        var engine = Engine(ctx);
        var (actor, roles) = ApprovalsApi.Identity(caller);
        string? root = null;
        long after = 0;
        var decisions = new List<(string Path, string RunId, long Step, ApprovalDecision Decision)>();
        for (var i = 0; i < resume.Count; i++)
        {
            var path = $"resume[{i}]";
            if (resume[i] is not JsonObject entry) throw ApiException.BadField(path, $"'{path}' must be an object {{interruptId, status, payload}}");
            var interruptId = OpenAiConversation.String(entry, "interruptId", path) ?? throw ApiException.BadField(path + ".interruptId", $"'{path}.interruptId' is required");
            var status = OpenAiConversation.String(entry, "status", path) ?? throw ApiException.BadField(path + ".status", $"'{path}.status' is required (resolved or cancelled)");
            var colon = interruptId.LastIndexOf(':');
            if (colon <= 0 || !long.TryParse(interruptId.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var step) || step < 1)
                throw ApiException.BadField(path + ".interruptId", $"'{path}.interruptId' is '{interruptId}', not an interrupt this API sent (RUN:STEP)");
            bool approve;
            string? reason = null, arguments = null;
            if (status == "cancelled")
            {
                approve = false;
                reason = "cancelled by the AG-UI client";
            }
            else if (status == "resolved")
            {
                if (entry["payload"] is not JsonObject payload)
                    throw ApiException.BadField(path + ".payload", $"'{path}.payload' must be an object {{\"approved\": true|false, \"reason\"?, \"arguments\"?}}");
                approve = OpenAiConversation.Bool(payload, "approved", path + ".payload")
                    ?? throw ApiException.BadField(path + ".payload.approved", $"'{path}.payload.approved' is required (true or false)");
                reason = OpenAiConversation.String(payload, "reason", path + ".payload");
                if (payload["arguments"] is { } args)
                {
                    if (args is not JsonObject) throw ApiException.BadField(path + ".payload.arguments", $"'{path}.payload.arguments' must be an object: the tool call's edited arguments");
                    arguments = args.ToJsonString();
                }
            }
            else
            {
                throw ApiException.BadField(path + ".status", $"'{path}.status' must be resolved or cancelled, not '{status}'");
            }
            var runId = interruptId[..colon];
            var waiting = await engine.GetRunAsync(runId, ctx.RequestAborted)
                ?? throw new ApiException(StatusCodes.Status404NotFound, "run-not-found", $"interrupt '{interruptId}' names run {runId}, which does not exist", path + ".interruptId", runId);
            var top = waiting.RootRunId ?? waiting.Id;
            var topRun = await engine.GetRunAsync(top, ctx.RequestAborted) ?? waiting;
            if (topRun.Agent != name)
                throw ApiException.BadField(path + ".interruptId", $"interrupt '{interruptId}' belongs to a run of '{topRun.Agent}', not of '{name}'");
            if (root is not null && root != top)
                throw ApiException.BadField(path + ".interruptId", $"interrupts of one resume must belong to one run; '{interruptId}' belongs to run {top}, not {root}");
            if (root is null)
            {
                root = top;
                after = topRun.Version;
            }
            if (arguments is not null && engine.ApprovalEditProblem(waiting, arguments) is { } problem)
                throw ApiException.BadField(path + ".payload.arguments", $"'{path}.payload.arguments' were refused, nothing was decided: {problem}");
            decisions.Add((path, runId, step, new ApprovalDecision(approve, reason, arguments)));
        }
        // Every entry checked before any is answered: a bad entry answers none.
        foreach (var (path, runId, step, decision) in decisions)
        {
            try
            {
                await engine.DecideApprovalAsync(runId, step, decision, actor, roles, ctx.RequestAborted);
            }
            catch (ApprovalForbiddenException ex)
            {
                throw new ApiException(StatusCodes.Status403Forbidden, "not-an-approver", ex.Message, path + ".interruptId", runId, step);
            }
            catch (ArgumentException ex) when (ex.ParamName == "decision")
            {
                throw new ApiException(StatusCodes.Status400BadRequest, "invalid-request", ex.Message.Split(" (Parameter")[0], path + ".payload.arguments", runId, step);
            }
        }
        return (root!, after);
    }

    /// <summary>AG-UI messages as the conversation of the run's input: the last is the user's (activity and reasoning messages are left out).</summary>
    private static List<ConversationMessage> ReadMessages(JsonObject body)
    {
        var messages = new List<ConversationMessage>();
        if (body["context"] is JsonArray context)
        {
            for (var i = 0; i < context.Count; i++)
            {
                var path = $"context[{i}]";
                if (context[i] is not JsonObject c) throw ApiException.BadField(path, $"'{path}' must be an object {{description, value}}");
                messages.Add(new ConversationMessage("context: " + (OpenAiConversation.String(c, "description", path) ?? ""), OpenAiConversation.String(c, "value", path) ?? ""));
            }
        }
        if (body["messages"] is not JsonArray array)
            throw ApiException.BadField("messages", "'messages' is required: an array of AG-UI messages, the last one the user's");
        for (var i = 0; i < array.Count; i++)
        {
            var path = $"messages[{i}]";
            if (array[i] is not JsonObject m) throw ApiException.BadField(path, $"'{path}' must be a message object");
            var role = OpenAiConversation.String(m, "role", path) ?? throw ApiException.BadField(path + ".role", $"'{path}.role' is required");
            if (role is "activity" or "reasoning") continue;
            if (role is not ("developer" or "system" or "user" or "assistant" or "tool"))
                throw ApiException.BadField(path + ".role", $"'{path}.role' must be developer, system, user, assistant, tool, activity or reasoning, not '{role}'");
            var text = m["content"] switch
            {
                null => "",
                JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>(),
                JsonArray parts => string.Join("\n", parts.OfType<JsonObject>().Where(p => (string?)p["type"] == "text").Select(p => (string?)p["text"] ?? "")),
                _ => throw ApiException.BadField(path + ".content", $"'{path}.content' must be a string or an array of parts"),
            };
            if (role == "assistant" && m["toolCalls"] is JsonArray calls && calls.Count > 0)
                text = (text.Length > 0 ? text + " " : "") + $"(asked for the tools: {string.Join(", ", calls.OfType<JsonObject>().Select(c => (string?)c["function"]?["name"]))})";
            if (role == "tool") role = "tool " + (OpenAiConversation.String(m, "toolCallId", path) ?? "");
            messages.Add(new ConversationMessage(role, text));
        }
        if (messages.Count == 0 || messages[^1].Role != "user")
        {
            throw ApiException.BadField(array.Count == 0 ? "messages" : $"messages[{array.Count - 1}].role",
                "the last message must be the user's (it is the run's input; earlier messages are context); to answer interrupts, send 'resume'");
        }
        return messages;
    }

    private static async Task<IResult> StreamAsync(HttpContext ctx, string runId, string threadId, string aguiRunId, long after)
    {
        var engine = Engine(ctx);
        ctx.Response.Headers[OpenAiApi.RunIdHeader] = runId;
        var sse = await OpenAiApi.SseAsync(ctx);
        var time = ctx.RequestServices.GetRequiredService<TimeProvider>();
        var mapper = new AguiEvents(sse, runId, threadId, aguiRunId, time) { Scripted = ScriptedModels.Behind(engine, (await engine.GetRunAsync(runId, ctx.RequestAborted))?.Agent ?? "") };
        if (after > 0)
        {
            // A resumed stream: results of calls the last stream announced keep their ids.
            foreach (var r in await engine.ReadJournalAsync(runId, 0, ctx.RequestAborted))
                if (r.N <= after) mapper.Remember(r);
        }
        // A stream from the first step starts when the run did (its entries' timestamps follow); a resumed one, now.
        var started = after == 0 ? (await engine.GetRunAsync(runId, ctx.RequestAborted))?.CreatedAt : null;
        await mapper.RunStartedAsync(started);
        var end = await RunFollower.FollowAsync(engine, runId, mapper.OnEventAsync, sse.CommentAsync, Options(ctx).HeartbeatInterval, time, ctx.RequestAborted,
            after, includeActivity: true);
        await mapper.EndAsync(end);
        return Results.Empty;
    }
}

/// <summary>Maps one run's journal entries to AG-UI events (docs/decisions/0027) and writes them.</summary>
internal sealed class AguiEvents(OpenAiApi.Sse sse, string runId, string threadId, string aguiRunId, TimeProvider time)
{
    /// <summary>Whether the run's answers come from the scripted model: the end event's metadata says so.</summary>
    public bool Scripted { get; init; }

    private const string ModelStep = "model call";
    private readonly Dictionary<string, string> _toolCallIds = new(StringComparer.Ordinal);
    private readonly HashSet<string> _openSteps = new(StringComparer.Ordinal);
    private string? _lastText;

    private Task WriteAsync(string type, JsonObject data, DateTimeOffset? at = null)
    {
        var o = new JsonObject { ["type"] = type, ["timestamp"] = (at ?? time.GetUtcNow()).ToUnixTimeMilliseconds() };
        foreach (var (k, v) in data) o[k] = v?.DeepClone();
        return sse.DataAsync(o);
    }

    public Task RunStartedAsync(DateTimeOffset? at) => WriteAsync("RUN_STARTED", new JsonObject
    {
        ["threadId"] = threadId,
        ["runId"] = aguiRunId,
        ["metadata"] = new JsonObject { ["bureau"] = new JsonObject { ["runId"] = runId } },
    }, at);

    /// <summary>Learns the ids of the tool calls of an entry streamed before (by an earlier stream of the run).</summary>
    public void Remember(JournalRecord r)
    {
        if (r.Entry is not ModelResponded m) return;
        foreach (var call in m.ToolCalls) _toolCallIds[call.CallId] = $"{runId}:{r.N.ToString(CultureInfo.InvariantCulture)}:{call.CallId}";
    }

    public async ValueTask OnEventAsync(RunEvent e)
    {
        if (e.Record is not { } r)
        {
            if (e.Activity == "model.started") await StartStepAsync(ModelStep, null);
            return;
        }
        var at = r.At;
        var n = r.N.ToString(CultureInfo.InvariantCulture);
        switch (r.Entry)
        {
            case ModelResponded m:
                await StartStepAsync(ModelStep, at);
                var messageId = $"{runId}:{n}";
                if (!string.IsNullOrEmpty(m.Text))
                {
                    await WriteAsync("TEXT_MESSAGE_START", new JsonObject { ["messageId"] = messageId, ["role"] = "assistant" }, at);
                    await WriteAsync("TEXT_MESSAGE_CONTENT", new JsonObject { ["messageId"] = messageId, ["delta"] = m.Text }, at);
                    await WriteAsync("TEXT_MESSAGE_END", new JsonObject { ["messageId"] = messageId }, at);
                    _lastText = m.Text;
                }
                foreach (var call in m.ToolCalls)
                {
                    var id = $"{runId}:{n}:{call.CallId}";
                    _toolCallIds[call.CallId] = id;
                    await WriteAsync("TOOL_CALL_START", new JsonObject { ["toolCallId"] = id, ["toolCallName"] = call.Name, ["parentMessageId"] = messageId }, at);
                    if (call.Arguments.Length > 0) await WriteAsync("TOOL_CALL_ARGS", new JsonObject { ["toolCallId"] = id, ["delta"] = call.Arguments }, at);
                    await WriteAsync("TOOL_CALL_END", new JsonObject { ["toolCallId"] = id }, at);
                }
                await FinishStepAsync(ModelStep, at);
                break;
            case ToolCompleted t:
                await WriteAsync("TOOL_CALL_RESULT", new JsonObject
                {
                    ["messageId"] = $"{runId}:{n}", ["toolCallId"] = ToolCallId(t.CallId), ["content"] = t.Content, ["role"] = "tool",
                    ["metadata"] = new JsonObject { ["bureau"] = new JsonObject { ["isError"] = t.IsError, ["step"] = r.N } },
                }, at);
                break;
            case ToolCallRejected rejected:
                await WriteAsync("TOOL_CALL_RESULT", new JsonObject
                {
                    ["messageId"] = $"{runId}:{n}", ["toolCallId"] = ToolCallId(rejected.CallId), ["content"] = "rejected: " + rejected.Error, ["role"] = "tool",
                    ["metadata"] = new JsonObject { ["bureau"] = new JsonObject { ["isError"] = true, ["step"] = r.N } },
                }, at);
                break;
            case ChildRunStarted c:
                await StartStepAsync(ChildStep(c.ChildRunId, c.Target, c.Label), at);
                break;
            case ChildRunFinished c:
                foreach (var open in _openSteps.Where(s => s.EndsWith($"(run {c.ChildRunId})", StringComparison.Ordinal)).ToList()) await FinishStepAsync(open, at);
                break;
        }
    }

    private static string ChildStep(string childRunId, string target, string? label) => $"{label ?? "child"} {target} (run {childRunId})";

    private string ToolCallId(string callId) => _toolCallIds.TryGetValue(callId, out var id) ? id : callId;

    private async Task StartStepAsync(string name, DateTimeOffset? at)
    {
        if (_openSteps.Add(name)) await WriteAsync("STEP_STARTED", new JsonObject { ["stepName"] = name }, at);
    }

    private async Task FinishStepAsync(string name, DateTimeOffset? at)
    {
        if (_openSteps.Remove(name)) await WriteAsync("STEP_FINISHED", new JsonObject { ["stepName"] = name }, at);
    }

    /// <summary>Closes open steps, then RUN_FINISHED (success, interrupt, cancelled) or RUN_ERROR.</summary>
    public async Task EndAsync(RunEnd end)
    {
        foreach (var open in _openSteps.ToList()) await FinishStepAsync(open, null);
        var run = end.Run;
        var usage = new JsonArray(new JsonObject
        {
            ["inputTokens"] = run.Usage.InputTokens, ["outputTokens"] = run.Usage.OutputTokens, ["totalTokens"] = run.Usage.TotalTokens,
        });
        var bureau = new JsonObject { ["bureau"] = new JsonObject { ["runId"] = run.Id, ["status"] = run.Status.ToWireName() } };
        if (Scripted) bureau["bureau"]!["scripted"] = true;   // never presented as a real model's answer
        if (end.Waiting)
        {
            await WriteAsync("RUN_FINISHED", new JsonObject
            {
                ["threadId"] = threadId, ["runId"] = aguiRunId,
                ["outcome"] = new JsonObject { ["type"] = "interrupt", ["interrupts"] = new JsonArray(Interrupt(end)) },
                ["usage"] = usage, ["metadata"] = bureau,
            });
            return;
        }
        switch (run.Status)
        {
            case RunStatus.Succeeded:
                if (!string.IsNullOrEmpty(run.Output) && run.Output != _lastText)
                {
                    // A team's answer (its members spoke in their own runs): one message with the run's output.
                    var id = $"{run.Id}:output";
                    await WriteAsync("TEXT_MESSAGE_START", new JsonObject { ["messageId"] = id, ["role"] = "assistant" });
                    await WriteAsync("TEXT_MESSAGE_CONTENT", new JsonObject { ["messageId"] = id, ["delta"] = run.Output });
                    await WriteAsync("TEXT_MESSAGE_END", new JsonObject { ["messageId"] = id });
                }
                await WriteAsync("RUN_FINISHED", new JsonObject
                {
                    ["threadId"] = threadId, ["runId"] = aguiRunId, ["result"] = run.Output ?? "",
                    ["outcome"] = new JsonObject { ["type"] = "success" }, ["usage"] = usage, ["metadata"] = bureau,
                });
                break;
            case RunStatus.Canceled:
                await WriteAsync("RUN_FINISHED", new JsonObject
                {
                    ["threadId"] = threadId, ["runId"] = aguiRunId, ["outcome"] = new JsonObject { ["type"] = "cancelled" }, ["usage"] = usage, ["metadata"] = bureau,
                });
                break;
            default:
                await WriteAsync("RUN_ERROR", new JsonObject
                {
                    ["message"] = $"run {run.Id} {run.Status.ToWireName()}: {run.Error ?? "no error recorded"}",
                    ["code"] = run.Outcome ?? "error", ["usage"] = usage, ["metadata"] = bureau,
                });
                break;
        }
    }

    private JsonObject Interrupt(RunEnd end)
    {
        var w = end.WaitingRun!;
        var wait = w.WaitingFor!;
        var interrupt = new JsonObject
        {
            ["id"] = $"{w.Id}:{wait.Step.ToString(CultureInfo.InvariantCulture)}",
            ["reason"] = wait.Reason,
            ["message"] = RunFollower.WaitingMessage(end),
        };
        var meta = new JsonObject { ["runId"] = w.Id, ["step"] = wait.Step };
        if (wait is ApprovalWait a)
        {
            if (w.Id == runId && a.CallId is not null && _toolCallIds.TryGetValue(a.CallId, out var callId)) interrupt["toolCallId"] = callId;
            interrupt["responseSchema"] = new JsonObject
            {
                ["type"] = "object",
                ["properties"] = new JsonObject
                {
                    ["approved"] = new JsonObject { ["type"] = "boolean" },
                    ["reason"] = new JsonObject { ["type"] = "string" },
                    ["arguments"] = new JsonObject { ["type"] = "object", ["description"] = "the tool call's edited arguments (when the policy allows editing)" },
                },
                ["required"] = new JsonArray("approved"),
            };
            meta["tool"] = a.Tool;
            meta["arguments"] = a.Arguments;
            meta["question"] = a.Question;
            var approvers = new JsonArray();
            foreach (var who in a.Approvers) approvers.Add(who);
            meta["approvers"] = approvers;
        }
        if (wait.Deadline is { } deadline) interrupt["expiresAt"] = deadline.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ss.fffZ", CultureInfo.InvariantCulture);
        interrupt["metadata"] = new JsonObject { ["bureau"] = meta };
        return interrupt;
    }
}
