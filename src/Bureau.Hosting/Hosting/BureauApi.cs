using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Bureau.Hosting;

/// <summary>The route handlers of <c>/v1</c>.</summary>
internal static class BureauApi
{
    private static readonly JsonSerializerOptions Compact = RunDocuments.JsonOptions;

    private static BureauHttpOptions Options(HttpContext ctx) => ctx.RequestServices.GetRequiredService<IOptions<BureauHttpOptions>>().Value;
    private static BureauEngine Engine(HttpContext ctx) => ctx.RequestServices.GetRequiredService<BureauEngine>();

    /// <summary>
    /// A true/false query parameter: absent or empty is false; true or 1, false or 0; anything else is a 400 naming it
    /// (a mistyped <c>?revoked=yes</c> must not quietly answer as if it were false).
    /// </summary>
    internal static bool Flag(HttpContext ctx, string name)
    {
        var text = ctx.Request.Query.TryGetValue(name, out var values) ? values.ToString() : "";
        return text switch
        {
            "" or "false" or "0" => false,
            "true" or "1" => true,
            _ => throw ApiException.BadField(name, $"{name} must be true or false, not '{text}'"),
        };
    }

    public static IResult Json(JsonNode node, int status = StatusCodes.Status200OK) =>
        Results.Text(node.ToJsonString(Compact), "application/json", Encoding.UTF8, status);

    /// <summary>Liveness: 503 only when the process must be restarted (the store latched after a failed fsync).</summary>
    public static IResult Alive(HttpContext ctx)
    {
        var storage = ctx.RequestServices.GetRequiredService<BureauEngine>().StorageHealth;
        if (storage.Latched)
            return Problems.Create(503, "restart-needed", $"the store refuses writes until the process restarts: {storage.Detail}",
                extra: new() { ["fault"] = WireNames.Of(storage.Fault!.Value) });
        return TypedResults.Json(new HealthAnswer("alive"));
    }

    public static IResult Ready(HttpContext ctx)
    {
        var engine = ctx.RequestServices.GetRequiredService<BureauEngine>();
        if (!engine.IsReady) return Problems.Create(503, "not-ready", "the engine has not started (the silo is starting, or unfinished runs are being scheduled, or the host is stopping)");
        var storage = engine.StorageHealth;
        if (!storage.CanWrite)
        {
            return Problems.Create(503, "storage-unavailable",
                $"the store cannot write since {storage.Since:yyyy-MM-ddTHH:mm:ssZ}: {storage.Detail}"
                + (storage.Latched ? "; restart the process once the disk is checked" : "; runs resume by themselves once it can"),
                extra: new() { ["fault"] = WireNames.Of(storage.Fault!.Value), ["retryingRuns"] = engine.RetryingRuns });
        }
        return TypedResults.Json(new HealthAnswer("ready"));
    }

    public static async Task<IResult> SubmitAsync(HttpContext ctx)
    {
        var options = Options(ctx);
        var idempotencyKey = ctx.Request.Headers["Idempotency-Key"].ToString();
        if (ctx.Request.Headers.ContainsKey("Idempotency-Key"))
        {
            if (string.IsNullOrWhiteSpace(idempotencyKey))
                throw ApiException.BadField("Idempotency-Key", "the Idempotency-Key header is empty");
            if (idempotencyKey.Length > options.MaxIdempotencyKeyLength)
                throw ApiException.BadField("Idempotency-Key", $"the Idempotency-Key header is longer than {options.MaxIdempotencyKeyLength} characters");
        }
        var body = (await RequestBody.ReadAsync(ctx, options.MaxRequestBodyBytes, optional: false))!;
        RequestBody.OnlyFields(body, "agent", "input");
        var agent = RequestBody.RequiredString(body, "agent");
        var input = RequestBody.RequiredString(body, "input");
        var caller = ApiAccess.Caller(ctx);
        // A request sent again with its key is answered with its run, full queue or not.
        await Engine(ctx).EnsureQueueRoomAsync(agent, idempotencyKey, ctx.RequestAborted);
        var result = await Engine(ctx).SubmitAsync(
            new RunRequest(agent, input, idempotencyKey.Length > 0 ? idempotencyKey : null, caller.Actor), ctx.RequestAborted);
        var run = result.Run;
        if (!result.Created && (run.Agent != agent || run.Input != input))
        {
            throw new ApiException(StatusCodes.Status409Conflict, "idempotency-key-reused",
                $"the Idempotency-Key '{idempotencyKey}' already named run {run.Id} (agent '{run.Agent}') with another agent or input; nothing was started",
                "Idempotency-Key", run.Id);
        }
        ctx.Response.Headers.Location = $"{ctx.Request.PathBase}/v1/runs/{run.Id}";
        return Json(RunDocuments.Summary(run), result.Created ? StatusCodes.Status202Accepted : StatusCodes.Status200OK);
    }

    public static async Task<IResult> GetAsync(HttpContext ctx, string id)
    {
        var engine = Engine(ctx);
        var run = await engine.GetRunAsync(id, ctx.RequestAborted) ?? throw new RunNotFoundException(id);
        var journal = await engine.ReadJournalAsync(id, 0, ctx.RequestAborted);
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(1024 + journal.Count * 256);
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = RunDocuments.JsonOptions.Encoder }))
        {
            RunDocuments.WriteFull(writer, run, journal);
        }
        return Results.Bytes(buffer.WrittenMemory.ToArray(), "application/json");
    }

    public static async Task<IResult> ListAsync(HttpContext ctx)
    {
        var q = ctx.Request.Query;
        RunStatus? status = null;
        if (q.TryGetValue("status", out var statusText) && statusText.ToString().Length > 0)
        {
            if (!RunStatusExtensions.TryParseWireName(statusText.ToString(), out var s))
                throw ApiException.BadField("status", $"status must be one of queued, running, waiting, succeeded, failed, canceled; not '{statusText}'");
            status = s;
        }
        var limit = 50;
        if (q.TryGetValue("limit", out var limitText) && limitText.ToString().Length > 0)
        {
            if (!int.TryParse(limitText.ToString(), NumberStyles.None, CultureInfo.InvariantCulture, out limit) || limit < 1 || limit > 1000)
                throw ApiException.BadField("limit", $"limit must be an integer from 1 to 1000, not '{limitText}'");
        }
        var agent = q.TryGetValue("agent", out var agentText) && agentText.ToString().Length > 0 ? agentText.ToString() : null;
        var cursor = q.TryGetValue("cursor", out var cursorText) && cursorText.ToString().Length > 0 ? cursorText.ToString() : null;
        var parent = q.TryGetValue("parent", out var parentText) && parentText.ToString().Length > 0 ? parentText.ToString() : null;
        RunPage page;
        try
        {
            page = await Engine(ctx).ListRunsAsync(new RunQuery { Status = status, Agent = agent, ParentRunId = parent, Limit = limit, Cursor = cursor }, ctx.RequestAborted);
        }
        catch (ArgumentException) when (cursor is not null)
        {
            throw ApiException.BadField("cursor", $"cursor '{cursor}' is not one this API returned: pass a page's \"next\" as it came, or no cursor for the first page");
        }
        var items = new JsonArray();
        foreach (var r in page.Items) items.Add(RunDocuments.Summary(r));
        return Json(new JsonObject { ["items"] = items, ["next"] = page.Next });
    }

    public static async Task<IResult> CancelAsync(HttpContext ctx, string id)
    {
        var body = await RequestBody.ReadAsync(ctx, Options(ctx).MaxRequestBodyBytes, optional: true);
        string? reason = null;
        if (body is not null)
        {
            RequestBody.OnlyFields(body, "reason");
            reason = RequestBody.OptionalString(body, "reason");
        }
        var engine = Engine(ctx);
        await engine.CancelAsync(id, ApiAccess.Caller(ctx).Actor, reason, ctx.RequestAborted);
        var run = await engine.GetRunAsync(id, ctx.RequestAborted) ?? throw new RunNotFoundException(id);
        return Json(RunDocuments.Summary(run), StatusCodes.Status202Accepted);
    }

    public static async Task<IResult> RollbackAsync(HttpContext ctx, string id)
    {
        // The rollback takes no fields: a field sent (a reason, a step) is refused naming it rather than ignored.
        if (await RequestBody.ReadAsync(ctx, Options(ctx).MaxRequestBodyBytes, optional: true) is { } body) RequestBody.OnlyFields(body);
        var result = await Engine(ctx).RollbackAsync(id, ApiAccess.Caller(ctx).Actor, ctx.RequestAborted);
        return Json(RunDocuments.Summary(result.Run), result.Created ? StatusCodes.Status202Accepted : StatusCodes.Status200OK);
    }

    public static async Task<IResult> ResolveAsync(HttpContext ctx, string id)
    {
        var body = (await RequestBody.ReadAsync(ctx, Options(ctx).MaxRequestBodyBytes, optional: false))!;
        RequestBody.OnlyFields(body, "step", "as", "result");
        var step = RequestBody.RequiredInteger(body, "step");
        if (step < 1) throw ApiException.BadField("step", $"'step' must be a step number (1 or more), not {step}");
        var asText = RequestBody.RequiredString(body, "as");
        var resolution = asText.ToLowerInvariant() switch
        {
            "done" => StepResolution.Done,
            "retry" => StepResolution.Retry,
            "failed" => StepResolution.Failed,
            _ => throw ApiException.BadField("as", $"'as' must be done, retry or failed; not '{asText}'"),
        };
        var result = RequestBody.OptionalString(body, "result");
        var run = await Engine(ctx).ResolveAsync(id, step, resolution, result, ApiAccess.Caller(ctx).Actor, ctx.RequestAborted);
        return Json(RunDocuments.Summary(run), StatusCodes.Status202Accepted);
    }

    public static IResult Agents(HttpContext ctx)
    {
        var defs = Engine(ctx).Definitions;
        var items = new JsonArray();
        foreach (var a in defs.Agents.Values.OrderBy(a => a.Name, StringComparer.Ordinal)) items.Add(AgentSummary(a));
        foreach (var t in defs.Teams.Values.OrderBy(t => t.Name, StringComparer.Ordinal)) items.Add(TeamSummary(t));
        return Json(new JsonObject { ["items"] = items });
    }

    public static IResult Agent(HttpContext ctx, string name)
    {
        var defs = Engine(ctx).Definitions;
        if (defs.Teams.TryGetValue(name, out var team)) return Json(TeamDocument(team));
        if (!defs.Agents.TryGetValue(name, out var a))
        {
            return Problems.Create(StatusCodes.Status404NotFound, "unknown-agent",
                $"agent '{name}' is not deployed; deployed agents: {string.Join(", ", defs.Agents.Keys.Order(StringComparer.Ordinal))}"
                + (defs.Teams.Count > 0 ? $"; teams: {string.Join(", ", defs.Teams.Keys.Order(StringComparer.Ordinal))}" : ""), "name");
        }
        var o = AgentSummary(a);
        o["instructions"] = a.Instructions;
        o["provider"] = defs.Models.TryGetValue(a.Model, out var m) ? m.Provider : null;
        var tools = new JsonArray();
        foreach (var t in a.Tools)
        {
            if (!defs.Tools.TryGetValue(t, out var td)) continue;
            tools.Add(new JsonObject
            {
                ["name"] = td.Name,
                ["kind"] = td.Kind,
                ["effect"] = WireNames.Of(td.Effect),
                ["description"] = td.Description,
            });
        }
        o["tools"] = tools;
        o["budgets"] = new JsonObject
        {
            ["maxSteps"] = a.Budgets.MaxSteps,
            ["maxTokens"] = a.Budgets.MaxTokens,
            ["maxWallTimeSeconds"] = a.Budgets.MaxWallTime?.TotalSeconds,
        };
        o["loopDetection"] = new JsonObject
        {
            ["maxRepeatedCalls"] = a.LoopDetection.MaxRepeatedCalls,
            ["maxTurnsWithoutProgress"] = a.LoopDetection.MaxTurnsWithoutProgress,
            ["action"] = WireNames.Of(a.LoopDetection.Action),
        };
        return Json(o);
    }

    private static JsonObject AgentSummary(AgentDefinition a)
    {
        var tools = new JsonArray();
        foreach (var t in a.Tools) tools.Add(t);
        return new JsonObject { ["name"] = a.Name, ["kind"] = RunKinds.Agent, ["description"] = a.Description, ["model"] = a.Model, ["tools"] = tools };
    }

    private static JsonObject TeamSummary(TeamDefinition t)
    {
        var members = new JsonArray();
        foreach (var m in t.Members) members.Add(m);
        return new JsonObject { ["name"] = t.Name, ["kind"] = RunKinds.Team, ["description"] = t.Description, ["pattern"] = WireNames.Of(t.Pattern), ["members"] = members };
    }

    private static JsonObject TeamDocument(TeamDefinition t)
    {
        var o = TeamSummary(t);
        var uses = new JsonArray();
        foreach (var u in t.Uses().Distinct(StringComparer.Ordinal)) uses.Add(u);
        o["uses"] = uses;
        o["join"] = t.Join.ToString();
        o["merge"] = t.Merge;
        o["planner"] = t.Planner;
        o["supervisor"] = t.Supervisor;
        o["reviewer"] = t.Reviewer;
        o["onMemberFailure"] = WireNames.Of(t.OnMemberFailure);
        o["limits"] = new JsonObject { ["maxDepth"] = t.Limits.MaxDepth, ["maxFanOut"] = t.Limits.MaxFanOut, ["maxChildren"] = t.Limits.MaxChildren };
        return o;
    }

    public static async Task<IResult> ListKeysAsync(HttpContext ctx)
    {
        var keys = ctx.RequestServices.GetRequiredService<IApiKeyStore>();
        var includeRevoked = Flag(ctx, "revoked");
        var items = new JsonArray();
        foreach (var k in await keys.ListAsync(includeRevoked, ctx.RequestAborted)) items.Add(KeyDoc(k));
        return Json(new JsonObject { ["items"] = items });
    }

    public static async Task<IResult> CreateKeyAsync(HttpContext ctx)
    {
        var body = (await RequestBody.ReadAsync(ctx, Options(ctx).MaxRequestBodyBytes, optional: false))!;
        RequestBody.OnlyFields(body, "role", "name");
        var roleText = RequestBody.RequiredString(body, "role");
        if (!ApiKeys.TryParseRole(roleText, out var role))
            throw ApiException.BadField("role", $"'role' must be {ApiKeys.RoleNames} (lower case); not '{roleText}'");
        var name = RequestBody.OptionalString(body, "name");
        if (ApiKeys.CheckName(name) is { } nameProblem) throw ApiException.BadField("name", $"'name' {nameProblem}");
        var created = ApiKeys.Create(role, name, ctx.RequestServices.GetRequiredService<TimeProvider>().GetUtcNow());
        await ctx.RequestServices.GetRequiredService<IApiKeyStore>().AddAsync(created.Record, ctx.RequestAborted);
        var doc = KeyDoc(created.Record);
        doc["key"] = created.Key;
        ctx.Response.Headers.Location = $"{ctx.Request.PathBase}/v1/keys/{created.Record.Id}";
        return Json(doc, StatusCodes.Status201Created);
    }

    public static async Task<IResult> RevokeKeyAsync(HttpContext ctx, string id)
    {
        var keys = ctx.RequestServices.GetRequiredService<IApiKeyStore>();
        if (!await keys.RevokeAsync(id, ctx.RequestServices.GetRequiredService<TimeProvider>().GetUtcNow(), ctx.RequestAborted))
            return Problems.Create(StatusCodes.Status404NotFound, "key-not-found", $"no valid API key has the id {id}", "id");
        return Results.NoContent();
    }

    private static JsonObject KeyDoc(ApiKeyRecord k) => new()
    {
        ["id"] = k.Id,
        ["name"] = k.Name,
        ["role"] = k.Role.ToWireName(),
        ["createdAt"] = k.CreatedAt,
        ["revokedAt"] = k.RevokedAt,
    };
}

internal sealed record PermissionMetadata(ApiPermission Permission);

internal sealed record HealthAnswer(string Status);

// Shapes for the OpenAPI document (the handlers read and write JSON themselves, to name the field of each error).
internal sealed record StartRunBody(string Agent, string Input);
internal sealed record CancelRunBody(string? Reason);
internal sealed record ResolveStepBody(long Step, string As, string? Result);
internal sealed record ApprovalDecisionBody(string Decision, string? Reason, System.Text.Json.JsonElement? Arguments);
internal sealed record CreateKeyBody(string Role, string? Name);
internal sealed record UsageDoc(long InputTokens, long OutputTokens, long TotalTokens);
/// <summary>What a waiting run waits for: <c>reason</c> (in-doubt, approval, children, timer, ...), the step, a deadline when it has one, then the wait's own fields.</summary>
internal sealed record WaitingForDoc(string Reason, long Step, DateTimeOffset? Deadline = null);
/// <summary>A run. <c>waitingFor</c>, <c>actor</c>, <c>kind</c> (team runs), <c>parentRunId</c> and <c>rootRunId</c> (child runs) appear only when they apply.</summary>
internal sealed record RunSummaryDoc(string Id, string Agent, string Status, string Input, string? Output, string? Error, string? Outcome,
    UsageDoc Usage, double Cost, DateTimeOffset CreatedAt, DateTimeOffset UpdatedAt, long Version, WaitingForDoc? WaitingFor = null, string? Actor = null,
    string? Kind = null, string? ParentRunId = null, string? RootRunId = null);
/// <summary>Why a failed or canceled run ended: the cause class, the step, the dependency and a hint.</summary>
internal sealed record FailureDoc(string Cause, string Hint, string? Kind = null, long? Step = null, string? Dependency = null, int? Attempts = null);
/// <summary>A journal entry: its number, time and kind, then the entry's own fields (docs/concepts.md lists the kinds).</summary>
internal sealed record StepDoc(long N, string Kind, DateTimeOffset At);
/// <summary>A run with every step of its journal; <c>failure</c> explains a failed or canceled one.</summary>
internal sealed record RunDoc(string Id, string Agent, string Status, string Input, string? Output, string? Error, string? Outcome,
    UsageDoc Usage, double Cost, DateTimeOffset CreatedAt, DateTimeOffset UpdatedAt, long Version, IReadOnlyList<StepDoc> Steps, WaitingForDoc? WaitingFor = null, string? Actor = null,
    string? Kind = null, string? ParentRunId = null, string? RootRunId = null, FailureDoc? Failure = null);
internal sealed record RunListDoc(IReadOnlyList<RunSummaryDoc> Items, string? Next);
/// <summary>An agent (<c>model</c>, <c>tools</c>) or a team (<c>pattern</c>, <c>members</c>).</summary>
internal sealed record AgentSummaryDoc(string Name, string Kind, string? Description, string? Model = null, IReadOnlyList<string>? Tools = null, string? Pattern = null, IReadOnlyList<string>? Members = null);
internal sealed record AgentListDoc(IReadOnlyList<AgentSummaryDoc> Items);
internal sealed record AgentToolDoc(string Name, string Kind, string Effect, string? Description);
internal sealed record AgentBudgetsDoc(int? MaxSteps, long? MaxTokens, double? MaxWallTimeSeconds);
internal sealed record LoopDetectionDoc(int MaxRepeatedCalls, int MaxTurnsWithoutProgress, string Action);
internal sealed record TeamLimitsDoc(int MaxDepth, int MaxFanOut, int MaxChildren);
/// <summary>An agent (<c>kind: agent</c>: model, tools, budgets) or a team (<c>kind: team</c>: pattern, members and its roles).</summary>
internal sealed record AgentDoc(string Name, string Kind, string? Description, string? Model = null, string? Instructions = null, string? Provider = null,
    IReadOnlyList<AgentToolDoc>? Tools = null, AgentBudgetsDoc? Budgets = null, LoopDetectionDoc? LoopDetection = null,
    string? Pattern = null, IReadOnlyList<string>? Members = null, IReadOnlyList<string>? Uses = null, string? Join = null, string? Merge = null, string? Planner = null,
    string? Supervisor = null, string? Reviewer = null, string? OnMemberFailure = null, TeamLimitsDoc? Limits = null);
internal sealed record KeyDocument(string Id, string? Name, string Role, DateTimeOffset CreatedAt, DateTimeOffset? RevokedAt);
internal sealed record KeyListDoc(IReadOnlyList<KeyDocument> Items);
/// <summary>The created key: <c>key</c> is the secret, shown this once.</summary>
internal sealed record CreatedKeyDoc(string Id, string? Name, string Role, DateTimeOffset CreatedAt, DateTimeOffset? RevokedAt, string Key);
internal sealed record ApprovalDoc(string Id, string RunId, long Step, string Agent, string? Tool, System.Text.Json.JsonElement? Arguments,
    string? Question, string? Rule, int Level, IReadOnlyList<string> Approvers, int Required, IReadOnlyList<string> ApprovedBy,
    bool EditableArguments, DateTimeOffset? Deadline, DateTimeOffset WaitingSince);
internal sealed record ApprovalListDoc(IReadOnlyList<ApprovalDoc> Items);
internal sealed record DeadLetterDoc(string Id, string Trigger, string? EventId, string Reason, string? Agent, string? Error, string? RunId,
    string? Key, string? Input, DateTimeOffset At, int Retries, DateTimeOffset? RetriedAt, string? RetryRunId);
internal sealed record DeadLetterListDoc(IReadOnlyList<DeadLetterDoc> Items);
/// <summary>A dead letter with the event it kept (<c>event</c>: the CloudEvent or webhook payload).</summary>
internal sealed record DeadLetterWithEventDoc(string Id, string Trigger, string? EventId, string Reason, string? Agent, string? Error, string? RunId,
    string? Key, string? Input, DateTimeOffset At, int Retries, DateTimeOffset? RetriedAt, string? RetryRunId, System.Text.Json.JsonElement? Event);
internal sealed record DeadLetterRetryDoc(DeadLetterDoc DeadLetter, RunSummaryDoc? Run = null, WorkforceTaskDoc? Task = null);
/// <summary>What one subscribed topic trigger did with the event: started (or found) a run, or kept a dead letter.</summary>
internal sealed record EventOutcomeDoc(string Trigger, bool? Duplicate = null, RunSummaryDoc? Run = null, DeadLetterDoc? DeadLetter = null, WorkforceTaskDoc? Task = null);
internal sealed record PublishedEventDoc(string Id, string Type, IReadOnlyList<EventOutcomeDoc> Runs, string? Detail);
/// <summary><c>status</c>: accepted, duplicate, ignored (not one of the trigger's events), dead-letter, pong (GitHub's ping), challenge answered elsewhere.</summary>
internal sealed record WebhookAnswerDoc(string Status, string? Trigger = null, string? EventId = null, RunSummaryDoc? Run = null, DeadLetterDoc? DeadLetter = null, string? Detail = null, WorkforceTaskDoc? Task = null);

/// <summary>The message Slack shows the user who clicked (also posted to the interaction's response_url).</summary>
internal sealed record SlackAnswerDoc(
    string? Text = null,
    [property: System.Text.Json.Serialization.JsonPropertyName("replace_original")] bool? ReplaceOriginal = null,
    [property: System.Text.Json.Serialization.JsonPropertyName("response_type")] string? ResponseType = null,
    string? Status = null,
    string? Detail = null);
