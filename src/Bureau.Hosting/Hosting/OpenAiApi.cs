using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Bureau.Engine;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Bureau.Hosting;

/// <summary>
/// The OpenAI-compatible API (docs/interop.md, docs/decisions/0026): <c>POST /v1/chat/completions</c>,
/// <c>POST /v1/responses</c>, <c>GET /v1/responses/{id}</c>, <c>GET /v1/models</c>. The <c>model</c> names a
/// deployed agent or team; each request starts a durable run (the same submit as <c>POST /v1/runs</c>) and
/// answers with its output once it ends, or with a message saying what it waits for once it waits for a
/// person. The run's id is the answer's <c>id</c> and the <c>x-bureau-run-id</c> header.
/// </summary>
internal static class OpenAiApi
{
    /// <summary>The header naming the run a request started (or found again by its Idempotency-Key).</summary>
    public const string RunIdHeader = "x-bureau-run-id";

    /// <summary>The header with the run's status when the answer was written.</summary>
    public const string RunStatusHeader = "x-bureau-run-status";

    private static readonly JsonSerializerOptions Compact = RunDocuments.JsonOptions;
    private static readonly long s_started = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    private static BureauEngine Engine(HttpContext ctx) => ctx.RequestServices.GetRequiredService<BureauEngine>();
    private static BureauHttpOptions Options(HttpContext ctx) => ctx.RequestServices.GetRequiredService<IOptions<BureauHttpOptions>>().Value;

    // ---- models ----

    public static IResult Models(HttpContext ctx)
    {
        var defs = Engine(ctx).Definitions;
        var data = new JsonArray();
        foreach (var name in defs.Agents.Keys.Concat(defs.Teams.Keys).Order(StringComparer.Ordinal)) data.Add(ModelDoc(defs, name));
        return BureauApi.Json(new JsonObject { ["object"] = "list", ["data"] = data });
    }

    public static IResult Model(HttpContext ctx, string model)
    {
        var defs = Engine(ctx).Definitions;
        if (!defs.Agents.ContainsKey(model) && !defs.Teams.ContainsKey(model)) throw ModelNotFound(defs, model);
        return BureauApi.Json(ModelDoc(defs, model));
    }

    private static JsonObject ModelDoc(BureauDefinitions defs, string name)
    {
        var team = defs.Teams.TryGetValue(name, out var t) ? t : null;
        return new JsonObject
        {
            ["id"] = name,
            ["object"] = "model",
            ["created"] = s_started,
            ["owned_by"] = team is null ? "bureau:agent" : "bureau:team",
            ["description"] = team?.Description ?? defs.Agents[name].Description,
        };
    }

    private static ApiException ModelNotFound(BureauDefinitions defs, string model) =>
        new(StatusCodes.Status404NotFound, "model_not_found",
            $"The model '{model}' does not exist: Bureau serves its deployed agents and teams as models ({string.Join(", ", defs.Agents.Keys.Concat(defs.Teams.Keys).Order(StringComparer.Ordinal))}); GET /v1/models lists them",
            "model");

    // ---- chat completions ----

    public static async Task<IResult> ChatCompletionsAsync(HttpContext ctx)
    {
        var body = (await RequestBody.ReadAsync(ctx, Options(ctx).MaxRequestBodyBytes, optional: false))!;
        var model = RequiredModel(body);
        RejectClientTools(body);
        if (body["n"] is JsonValue nv && !(nv.TryGetValue<int>(out var n) && n == 1))
            throw ApiException.BadField("n", $"'n' must be 1: a run gives one answer (got {nv.ToJsonString()})");
        var stream = OpenAiConversation.Bool(body, "stream") ?? false;
        var includeUsage = body["stream_options"] is JsonObject so && (OpenAiConversation.Bool(so, "include_usage", "stream_options") ?? false);
        var input = OpenAiConversation.ToInput(OpenAiConversation.ReadChatMessages(body));
        var run = await SubmitAsync(ctx, model, input);
        var engine = Engine(ctx);
        var created = OpenAiConversation.Unix(run.CreatedAt);

        if (!stream)
        {
            var end = await FollowAsync(ctx, run.Id, null, null);
            SetStatus(ctx, end);
            if (!end.Waiting && end.Run.Status != RunStatus.Succeeded) return RunFailed(end.Run);
            var message = new JsonObject { ["role"] = "assistant", ["content"] = AnswerText(end), ["refusal"] = null };
            return BureauApi.Json(new JsonObject
            {
                ["id"] = run.Id,
                ["object"] = "chat.completion",
                ["created"] = created,
                ["model"] = model,
                ["choices"] = new JsonArray(new JsonObject { ["index"] = 0, ["message"] = message, ["logprobs"] = null, ["finish_reason"] = "stop" }),
                ["usage"] = ChatUsage(end.Run),
                ["bureau"] = Extension(ctx, end),
            });
        }

        var sse = await SseAsync(ctx);
        JsonObject Chunk(JsonObject delta, string? finish) => new()
        {
            ["id"] = run.Id,
            ["object"] = "chat.completion.chunk",
            ["created"] = created,
            ["model"] = model,
            ["choices"] = new JsonArray(new JsonObject { ["index"] = 0, ["delta"] = delta, ["logprobs"] = null, ["finish_reason"] = finish }),
        };
        await sse.DataAsync(Chunk(new JsonObject { ["role"] = "assistant", ["content"] = "" }, null));
        var done = await FollowAsync(ctx, run.Id, null, sse.CommentAsync);
        if (!done.Waiting && done.Run.Status != RunStatus.Succeeded)
        {
            // The protocol's way to fail a started stream: an error object where a chunk would be (clients raise it).
            await sse.DataAsync(RunFailedBody(done.Run));
            return Results.Empty;
        }
        var text = AnswerText(done);
        if (text.Length > 0) await sse.DataAsync(Chunk(new JsonObject { ["content"] = text }, null));
        var last = Chunk(new JsonObject(), "stop");
        last["bureau"] = Extension(ctx, done);
        await sse.DataAsync(last);
        if (includeUsage)
        {
            await sse.DataAsync(new JsonObject
            {
                ["id"] = run.Id, ["object"] = "chat.completion.chunk", ["created"] = created, ["model"] = model,
                ["choices"] = new JsonArray(), ["usage"] = ChatUsage(done.Run),
            });
        }
        await sse.RawAsync("data: [DONE]\n\n");
        return Results.Empty;
    }

    private static JsonObject ChatUsage(RunRecord run) => new()
    {
        ["prompt_tokens"] = run.Usage.InputTokens,
        ["completion_tokens"] = run.Usage.OutputTokens,
        ["total_tokens"] = run.Usage.TotalTokens,
    };

    // ---- responses ----

    public static async Task<IResult> ResponsesAsync(HttpContext ctx)
    {
        var body = (await RequestBody.ReadAsync(ctx, Options(ctx).MaxRequestBodyBytes, optional: false))!;
        var model = RequiredModel(body);
        RejectClientTools(body);
        if (OpenAiConversation.Bool(body, "background") == true)
            throw ApiException.BadField("background", "'background' is not supported: every request is a durable run already; poll GET /v1/responses/{id} with the id of an answer");
        var stream = OpenAiConversation.Bool(body, "stream") ?? false;
        var messages = OpenAiConversation.ReadResponsesInput(body);
        if (OpenAiConversation.String(body, "previous_response_id", null) is { } previousId)
        {
            var previous = await Engine(ctx).GetRunAsync(previousId, ctx.RequestAborted)
                ?? throw new ApiException(StatusCodes.Status404NotFound, "not_found", $"previous_response_id '{previousId}' names no response (no run has that id)", "previous_response_id");
            messages.InsertRange(0, [new ConversationMessage("user", previous.Input), new ConversationMessage("assistant", previous.Output ?? "")]);
        }
        var input = OpenAiConversation.ToInput(messages);
        var run = await SubmitAsync(ctx, model, input);

        if (!stream)
        {
            var end = await FollowAsync(ctx, run.Id, null, null);
            SetStatus(ctx, end);
            return BureauApi.Json(ResponseDoc(ctx, end, model));
        }

        var sse = await SseAsync(ctx);
        var seq = 0;
        Task Event(string type, JsonObject data)
        {
            data["type"] = type;
            data["sequence_number"] = seq++;
            return sse.EventAsync(type, data);
        }
        var pending = new RunEnd(run, null);
        await Event("response.created", new JsonObject { ["response"] = ResponseDoc(ctx, pending, model, inProgress: true) });
        await Event("response.in_progress", new JsonObject { ["response"] = ResponseDoc(ctx, pending, model, inProgress: true) });
        var done = await FollowAsync(ctx, run.Id, null, sse.CommentAsync);
        var final = ResponseDoc(ctx, done, model);
        var text = final["output"] is JsonArray { Count: > 0 } ? AnswerText(done) : null;
        if (text is not null)
        {
            var itemId = MessageId(run.Id);
            var item = new JsonObject { ["id"] = itemId, ["type"] = "message", ["status"] = "in_progress", ["role"] = "assistant", ["content"] = new JsonArray() };
            await Event("response.output_item.added", new JsonObject { ["output_index"] = 0, ["item"] = item });
            await Event("response.content_part.added", new JsonObject
            {
                ["item_id"] = itemId, ["output_index"] = 0, ["content_index"] = 0,
                ["part"] = new JsonObject { ["type"] = "output_text", ["text"] = "", ["annotations"] = new JsonArray() },
            });
            await Event("response.output_text.delta", new JsonObject
            {
                ["item_id"] = itemId, ["output_index"] = 0, ["content_index"] = 0, ["delta"] = text, ["logprobs"] = new JsonArray(),
            });
            await Event("response.output_text.done", new JsonObject
            {
                ["item_id"] = itemId, ["output_index"] = 0, ["content_index"] = 0, ["text"] = text, ["logprobs"] = new JsonArray(),
            });
            await Event("response.content_part.done", new JsonObject
            {
                ["item_id"] = itemId, ["output_index"] = 0, ["content_index"] = 0,
                ["part"] = new JsonObject { ["type"] = "output_text", ["text"] = text, ["annotations"] = new JsonArray() },
            });
            await Event("response.output_item.done", new JsonObject { ["output_index"] = 0, ["item"] = final["output"]![0]!.DeepClone() });
        }
        var terminal = (string?)final["status"] switch
        {
            "completed" => "response.completed",
            "incomplete" => "response.incomplete",
            _ => "response.failed",
        };
        await Event(terminal, new JsonObject { ["response"] = final });
        return Results.Empty;
    }

    public static async Task<IResult> GetResponseAsync(HttpContext ctx, string id)
    {
        var engine = Engine(ctx);
        var run = await engine.GetRunAsync(id, ctx.RequestAborted)
            ?? throw new ApiException(StatusCodes.Status404NotFound, "not_found", $"no response has the id '{id}' (no run has that id)", "id");
        RunRecord? waiting = null;
        if (run.Status == RunStatus.Waiting)
            waiting = RunFollower.NeedsPerson(run.WaitingFor) ? run : await RunFollower.FindWaitingDescendantAsync(engine, run.Id, ctx.RequestAborted);
        var end = new RunEnd(run, waiting);
        SetStatus(ctx, end);
        ctx.Response.Headers[RunIdHeader] = run.Id;
        return BureauApi.Json(ResponseDoc(ctx, end, run.Agent, inProgress: !run.Status.IsTerminal() && waiting is null));
    }

    /// <summary>A run as a Responses API object: completed, failed, cancelled, incomplete (waits for a person) or queued/in_progress.</summary>
    private static JsonObject ResponseDoc(HttpContext ctx, RunEnd end, string model, bool inProgress = false)
    {
        var run = end.Run;
        string status;
        JsonNode? error = null, incomplete = null;
        string? text = null;
        if (inProgress) status = run.Status == RunStatus.Queued ? "queued" : "in_progress";
        else if (end.Waiting)
        {
            status = "incomplete";
            incomplete = new JsonObject { ["reason"] = "waiting" };
            text = AnswerText(end);
        }
        else if (run.Status == RunStatus.Succeeded)
        {
            status = "completed";
            text = run.Output ?? "";
        }
        else
        {
            status = run.Status == RunStatus.Canceled ? "cancelled" : "failed";
            error = new JsonObject { ["code"] = "server_error", ["message"] = RunFailedMessage(run) };
        }
        var output = new JsonArray();
        if (text is not null)
        {
            output.Add(new JsonObject
            {
                ["id"] = MessageId(run.Id),
                ["type"] = "message",
                ["status"] = end.Waiting ? "incomplete" : "completed",
                ["role"] = "assistant",
                ["content"] = new JsonArray(new JsonObject { ["type"] = "output_text", ["text"] = text, ["annotations"] = new JsonArray() }),
            });
        }
        return new JsonObject
        {
            ["id"] = run.Id,
            ["object"] = "response",
            ["created_at"] = OpenAiConversation.Unix(run.CreatedAt),
            ["status"] = status,
            ["error"] = error,
            ["incomplete_details"] = incomplete,
            ["instructions"] = null,
            ["max_output_tokens"] = null,
            ["model"] = model,
            ["output"] = output,
            ["parallel_tool_calls"] = false,
            ["previous_response_id"] = null,
            ["reasoning"] = null,
            ["store"] = true,
            ["temperature"] = null,
            ["text"] = new JsonObject { ["format"] = new JsonObject { ["type"] = "text" } },
            ["tool_choice"] = "auto",
            ["tools"] = new JsonArray(),
            ["top_p"] = null,
            ["truncation"] = "disabled",
            ["usage"] = inProgress ? null : new JsonObject
            {
                ["input_tokens"] = run.Usage.InputTokens,
                ["input_tokens_details"] = new JsonObject { ["cached_tokens"] = 0 },
                ["output_tokens"] = run.Usage.OutputTokens,
                ["output_tokens_details"] = new JsonObject { ["reasoning_tokens"] = 0 },
                ["total_tokens"] = run.Usage.TotalTokens,
            },
            ["metadata"] = new JsonObject(),
            ["bureau"] = Extension(ctx, end),
        };
    }

    private static string MessageId(string runId) => "msg_" + runId;

    // ---- shared ----

    private static string RequiredModel(JsonObject body)
    {
        var model = OpenAiConversation.String(body, "model", null);
        if (string.IsNullOrEmpty(model)) throw ApiException.BadField("model", "'model' is required: the name of a deployed agent or team (GET /v1/models lists them)");
        return model;
    }

    /// <summary>Client-side tools would make the client run the agent's tools; Bureau's agents run their own (and journal them).</summary>
    private static void RejectClientTools(JsonObject body)
    {
        foreach (var field in new[] { "tools", "functions" })
        {
            if (body[field] is JsonArray { Count: > 0 })
            {
                throw ApiException.BadField(field,
                    $"'{field}' is not supported: a Bureau agent calls the tools its definition declares, on the server, journaled and governed; client-side tools are not offered to it");
            }
        }
    }

    /// <summary>Starts the run (durable before anything is answered), as <c>POST /v1/runs</c> does; an Idempotency-Key finds the same run again.</summary>
    private static async Task<RunRecord> SubmitAsync(HttpContext ctx, string model, string input)
    {
        var engine = Engine(ctx);
        var defs = engine.Definitions;
        if (!defs.Agents.ContainsKey(model) && !defs.Teams.ContainsKey(model)) throw ModelNotFound(defs, model);
        var options = Options(ctx);
        var key = ctx.Request.Headers["Idempotency-Key"].ToString();
        if (ctx.Request.Headers.ContainsKey("Idempotency-Key"))
        {
            if (string.IsNullOrWhiteSpace(key)) throw ApiException.BadField("Idempotency-Key", "the Idempotency-Key header is empty");
            if (key.Length > options.MaxIdempotencyKeyLength)
                throw ApiException.BadField("Idempotency-Key", $"the Idempotency-Key header is longer than {options.MaxIdempotencyKeyLength} characters");
        }
        await engine.EnsureQueueRoomAsync(model, key, ctx.RequestAborted);
        var result = await engine.SubmitAsync(new RunRequest(model, input, key.Length > 0 ? key : null, ApiAccess.Caller(ctx).Actor), ctx.RequestAborted);
        var run = result.Run;
        if (!result.Created && (run.Agent != model || run.Input != input))
        {
            throw new ApiException(StatusCodes.Status409Conflict, "idempotency-key-reused",
                $"the Idempotency-Key '{key}' already named run {run.Id} (model '{run.Agent}') with another model or conversation; nothing was started",
                "Idempotency-Key", run.Id);
        }
        ctx.Response.Headers[RunIdHeader] = run.Id;
        return run;
    }

    private static Task<RunEnd> FollowAsync(HttpContext ctx, string runId, Func<RunEvent, ValueTask>? onEvent, Func<ValueTask>? onIdle) =>
        RunFollower.FollowAsync(Engine(ctx), runId, onEvent, onIdle, Options(ctx).HeartbeatInterval,
            ctx.RequestServices.GetRequiredService<TimeProvider>(), ctx.RequestAborted);

    private static void SetStatus(HttpContext ctx, RunEnd end)
    {
        if (ctx.Response.HasStarted) return;
        ctx.Response.Headers[RunStatusHeader] = end.Run.Status.ToWireName();
        if (Scripted(ctx, end.Run.Agent)) ctx.Response.Headers[ScriptedHeader] = "true";
    }

    /// <summary>Says that the answer comes from the scripted model (rules, not a real model): tests, demos, offline use.</summary>
    public const string ScriptedHeader = "x-bureau-scripted";

    internal static bool Scripted(HttpContext ctx, string agentOrTeam) => ScriptedModels.Behind(Engine(ctx), agentOrTeam);

    /// <summary>What the client reads as the answer: the run's output, or, while it waits for a person, what it waits for.</summary>
    private static string AnswerText(RunEnd end) => end.Waiting ? RunFollower.WaitingMessage(end) : end.Run.Output ?? "";

    /// <summary>Bureau's own facts beside the protocol's fields (clients ignore unknown fields).</summary>
    private static JsonObject Extension(HttpContext ctx, RunEnd end)
    {
        var o = new JsonObject { ["run_id"] = end.Run.Id, ["status"] = end.Run.Status.ToWireName() };
        if (Scripted(ctx, end.Run.Agent)) o["scripted"] = true;   // never presented as a real model's answer
        if (end.WaitingRun is { WaitingFor: { } w } waiting)
        {
            var doc = new JsonObject { ["run_id"] = waiting.Id, ["reason"] = w.Reason, ["step"] = w.Step };
            if (w is ApprovalWait a)
            {
                doc["approval_id"] = $"{waiting.Id}:{w.Step}";
                doc["tool"] = a.Tool;
                doc["arguments"] = a.Arguments;
            }
            o["waiting_for"] = doc;
        }
        return o;
    }

    private static string RunFailedMessage(RunRecord run) =>
        $"run {run.Id} {run.Status.ToWireName()}{(run.Outcome is null ? "" : $" ({run.Outcome})")}: {run.Error ?? "no error recorded"}; its journal: GET /v1/runs/{run.Id}";

    private static JsonObject RunFailedBody(RunRecord run) =>
        OpenAiErrors.Body(RunFailedMessage(run), run.Status == RunStatus.Canceled ? "run_canceled" : "run_failed", null, run.Outcome ?? "error");

    /// <summary>
    /// A run that failed or was canceled: 422 (the request was valid and its run is durable; sending it again
    /// would start another run, so not a 5xx that clients retry on their own).
    /// </summary>
    private static IResult RunFailed(RunRecord run)
    {
        var body = RunFailedBody(run);
        var e = (JsonObject)body["error"]!;
        return OpenAiErrors.Create(StatusCodes.Status422UnprocessableEntity, (string)e["message"]!, (string)e["type"]!, null, (string?)e["code"], run.Id);
    }

    internal static async Task<Sse> SseAsync(HttpContext ctx)
    {
        var response = ctx.Response;
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = "text/event-stream; charset=utf-8";
        response.Headers.CacheControl = "no-cache";
        response.Headers["X-Accel-Buffering"] = "no";
        ctx.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        await response.StartAsync(ctx.RequestAborted);
        return new Sse(response, ctx.RequestAborted);
    }

    /// <summary>Writes Server-Sent Events, each flushed.</summary>
    internal sealed class Sse(HttpResponse response, CancellationToken ct)
    {
        public Task DataAsync(JsonObject data) => RawAsync("data: " + data.ToJsonString(Compact) + "\n\n");

        public Task EventAsync(string type, JsonObject data) => RawAsync("event: " + type + "\ndata: " + data.ToJsonString(Compact) + "\n\n");

        public async ValueTask CommentAsync() => await RawAsync(": keep-alive\n\n");

        public async Task RawAsync(string text)
        {
            await response.WriteAsync(text, Encoding.UTF8, ct);
            await response.Body.FlushAsync(ct);
        }
    }
}
