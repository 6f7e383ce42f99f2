using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Bureau.Governance;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Bureau.Hosting;

/// <summary>How <c>POST /v1/approvals/slack</c> answers Slack.</summary>
public sealed class SlackApprovalOptions
{
    /// <summary>How far a request's <c>X-Slack-Request-Timestamp</c> may be from this host's clock. Default 5 minutes (Slack's advice).</summary>
    public TimeSpan Tolerance { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>
    /// The hosts a click's <c>response_url</c> may name; the answer is posted there (Slack shows it in the
    /// channel, or to the clicking user only). Default <c>hooks.slack.com</c>: a signed request still cannot
    /// make this host post anywhere else.
    /// </summary>
    public IReadOnlyList<string> ResponseHosts { get; set; } = ["hooks.slack.com"];
}

/// <summary>
/// <c>POST /v1/approvals/slack</c>: the interactivity Request URL of the Slack app whose messages carry
/// the Approve and Reject buttons (<see cref="ApprovalNotifier.SigningSecret"/>). Authenticated by Slack's
/// signature, not by an API key. The clicking Slack user answers as the approver the notify target's
/// <c>users</c> maps it to, through the same engine path as <c>POST /v1/approvals/{id}/decision</c> (who
/// may answer, first wins). Refusals that are not about the request (an unmapped user, an approval
/// already answered, a user not among the level's approvers) are answered as a message to the clicking
/// user only, and change nothing.
/// </summary>
internal static partial class SlackApprovalsApi
{
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };

    public static void Map(IEndpointRouteBuilder endpoints)
    {
        // Not in the /v1 group: Slack has no API key; its signature is checked instead.
        endpoints.MapPost("/v1/approvals/slack", (Delegate)InteractAsync)
            .AddEndpointFilter(async (ctx, next) =>
            {
                try
                {
                    return await next(ctx);
                }
                catch (Exception ex) when (ex is ApiException or StorageUnavailableException or BadHttpRequestException { StatusCode: StatusCodes.Status413PayloadTooLarge })
                {
                    if (ctx.HttpContext.Response.HasStarted) throw;
                    return Problems.From(ex);
                }
            })
            .WithTags("bureau").WithName("SlackApprovalAction")
            .WithSummary("Slack's interactivity Request URL: a click on an approval message's Approve or Reject button, verified by the Slack app's Signing Secret.")
            .Produces<SlackAnswerDoc>(StatusCodes.Status200OK).ProducesProblem(400).ProducesProblem(401).ProducesProblem(404).ProducesProblem(413);
    }

    public static async Task<IResult> InteractAsync(HttpContext ctx)
    {
        var services = ctx.RequestServices;
        var engine = services.GetRequiredService<BureauEngine>();
        var options = services.GetService<SlackApprovalOptions>() ?? new SlackApprovalOptions();
        var logger = services.GetRequiredService<ILoggerFactory>().CreateLogger("Bureau.Approvals.Slack");
        var targets = engine.Definitions.Policies.Notify.Where(n => n.Kind == "slack" && n.SigningSecret is not null).ToList();
        if (targets.Count == 0)
        {
            throw new ApiException(StatusCodes.Status404NotFound, "slack-not-configured",
                "no Slack approval buttons are deployed: add signingSecret (the Slack app's Signing Secret) and users to a slack target under policies.notify");
        }
        var body = (await RequestBody.ReadBytesAsync(ctx, services.GetRequiredService<IOptions<BureauHttpOptions>>().Value.MaxRequestBodyBytes)).WrittenMemory;
        var target = Verify(ctx.Request, targets, body.Span, services.GetRequiredService<TimeProvider>().GetUtcNow(), options.Tolerance, logger);

        // Verified: Slack sent it. The payload: payload=URL-ENCODED-JSON.
        if (!(ctx.Request.ContentType ?? "").StartsWith("application/x-www-form-urlencoded", StringComparison.OrdinalIgnoreCase))
            throw ApiException.BadField("Content-Type", $"a Slack interaction is application/x-www-form-urlencoded with a 'payload' field, not '{ctx.Request.ContentType}'");
        var form = QueryHelpers.ParseQuery("?" + Encoding.UTF8.GetString(body.Span));
        if (!form.TryGetValue("payload", out var payloadText) || payloadText.Count != 1)
            throw ApiException.BadField("payload", "a Slack interaction carries exactly one 'payload' field (JSON)");
        JsonObject payload;
        try
        {
            // As every JSON body: a field given twice or a lone \uD800 escape would throw only when read (a 500).
            if (JsonBodyCheck.Find(Encoding.UTF8.GetBytes(payloadText.ToString())) is { } problem)
                throw ApiException.BadField(problem.Field == "body" ? "payload" : "payload." + problem.Field, "'payload': " + problem.Detail);
            payload = JsonNode.Parse(payloadText.ToString()) as JsonObject ?? throw ApiException.BadField("payload", "'payload' must be a JSON object");
        }
        catch (JsonException ex)
        {
            throw ApiException.BadField("payload", $"'payload' is not valid JSON: {ex.Message}");
        }
        var type = Text(payload, "type");
        if (type != "block_actions")
            return BureauApi.Json(new JsonObject { ["status"] = "ignored", ["detail"] = $"a Slack interaction of type '{type}' decides nothing (only the approval buttons' block_actions do)" });
        var user = Text(payload["user"] as JsonObject, "id") ?? throw ApiException.BadField("payload.user.id", "the Slack interaction names no user ('user.id')");
        var action = (payload["actions"] as JsonArray)?.OfType<JsonObject>().FirstOrDefault(a => Text(a, "action_id") is SlackActions.Approve or SlackActions.Reject)
            ?? throw ApiException.BadField("payload.actions", $"the Slack interaction has no {SlackActions.Approve} or {SlackActions.Reject} action (a button of a Bureau approval message)");
        var approve = Text(action, "action_id") == SlackActions.Approve;
        var id = Text(action, "value") ?? "";
        var colon = id.LastIndexOf(':');
        if (colon <= 0 || !long.TryParse(id[(colon + 1)..], out var step) || step < 1)
            throw ApiException.BadField("payload.actions[].value", $"'{id}' is not an approval id (RUN:STEP)");
        var runId = id[..colon];
        var responseUrl = Text(payload, "response_url");

        JsonObject answer;
        if (!target.Users.TryGetValue(user, out var approver))
        {
            Log.Unmapped(logger, user, runId, step);
            answer = Ephemeral($"You (Slack user {user}) are not an approver in Bureau: ask an operator to map your user id under policies.notify[].users. Approval {id} is unchanged.");
        }
        else
        {
            try
            {
                var decision = new ApprovalDecision(approve, $"in Slack (user {user})");
                var run = await engine.DecideApprovalAsync(runId, step, decision, approver.Name, [approver.Name, .. approver.Roles], ctx.RequestAborted);
                var verdict = approve ? run.WaitingFor is ApprovalWait ? "approved (more approvers are needed)" : "approved" : "rejected";
                Log.Decided(logger, runId, step, approver.Name, user, verdict);
                answer = new JsonObject
                {
                    ["replace_original"] = run.WaitingFor is not ApprovalWait, // decided: the buttons go
                    ["text"] = $"Approval {id} {verdict} by {approver.Name} (<@{user}>).",
                };
            }
            catch (Exception ex) when (ex is RunStateConflictException or ApprovalForbiddenException or RunNotFoundException)
            {
                answer = Ephemeral(ex is RunNotFoundException ? $"Approval {id}: there is no run {runId}." : ex.Message + ".");
            }
        }
        if (responseUrl is not null) Respond(responseUrl, answer, options, logger);
        return BureauApi.Json(answer);
    }

    /// <summary>Checks the timestamp and the signature against each deployed Slack signing secret; the target whose secret signed it.</summary>
    private static ApprovalNotifier Verify(HttpRequest request, List<ApprovalNotifier> targets, ReadOnlySpan<byte> body, DateTimeOffset now, TimeSpan tolerance, ILogger logger)
    {
        var timestamp = Header(request, SlackSignature.TimestampHeader) ?? throw Unauthorized(SlackSignature.TimestampHeader, $"the request has no {SlackSignature.TimestampHeader} header", logger);
        if (SlackSignature.TimestampProblem(timestamp, now, tolerance) is { } stale) throw Unauthorized(SlackSignature.TimestampHeader, stale, logger);
        var signature = Header(request, SlackSignature.SignatureHeader)
            ?? throw Unauthorized(SlackSignature.SignatureHeader, $"the request has no {SlackSignature.SignatureHeader} header", logger);
        var given = SlackSignature.Parse(signature) ?? throw Unauthorized(SlackSignature.SignatureHeader, $"{SlackSignature.SignatureHeader} must be 'v0=' followed by 64 hex digits", logger);
        ApprovalNotifier? matched = null;
        foreach (var t in targets)
        {
            if (SlackSignature.Matches(t.SigningSecret!, timestamp, body, given)) matched ??= t; // go on: every target costs the same
        }
        return matched ?? throw Unauthorized(SlackSignature.SignatureHeader,
            $"{SlackSignature.SignatureHeader} does not match the request signed with the signingSecret of a slack target under policies.notify (a wrong Signing Secret, or the body was changed)", logger);
    }

    /// <summary>Posts the answer to the click's response_url (Slack shows it), in the background: Slack wants the request answered within 3 s.</summary>
    private static void Respond(string responseUrl, JsonObject answer, SlackApprovalOptions options, ILogger logger)
    {
        if (!Uri.TryCreate(responseUrl, UriKind.Absolute, out var url) || !options.ResponseHosts.Contains(url.Host, StringComparer.OrdinalIgnoreCase))
        {
            Log.ResponseHostRefused(logger, url?.Host ?? "(not an absolute URL)");
            return;
        }
        var json = answer.ToJsonString();
        _ = Task.Run(async () =>
        {
            try
            {
                using var content = new StringContent(json, Encoding.UTF8, "application/json");
                using var response = await Http.PostAsync(url, content);
                if (!response.IsSuccessStatusCode) Log.ResponseFailed(logger, url.Host, $"HTTP {(int)response.StatusCode}");
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
            {
                Log.ResponseFailed(logger, url.Host, ex.Message);
            }
        });
    }

    private static JsonObject Ephemeral(string text) => new() { ["response_type"] = "ephemeral", ["replace_original"] = false, ["text"] = text };

    private static string? Text(JsonObject? o, string name) => o?[name] is JsonValue v && v.TryGetValue<string>(out var s) ? s : null;

    private static string? Header(HttpRequest request, string name)
    {
        if (!request.Headers.TryGetValue(name, out var values) || values.Count == 0) return null;
        if (values.Count > 1) throw ApiException.BadField(name, $"the {name} header is given {values.Count} times");
        var value = values.ToString().Trim();
        return value.Length == 0 ? null : value;
    }

    private static ApiException Unauthorized(string header, string detail, ILogger logger)
    {
        Log.Refused(logger, detail);
        return new ApiException(StatusCodes.Status401Unauthorized, "invalid-signature", $"Slack approval action: {detail}; nothing was decided", header);
    }

    private static partial class Log
    {
        [LoggerMessage(80, LogLevel.Warning, "Slack approval action refused: {Reason}")]
        public static partial void Refused(ILogger logger, string reason);

        [LoggerMessage(81, LogLevel.Warning, "Slack user {SlackUser} is not mapped to an approver; approval {RunId}:{Step} unchanged")]
        public static partial void Unmapped(ILogger logger, string slackUser, string runId, long step);

        [LoggerMessage(82, LogLevel.Information, "Approval {RunId}:{Step} {Verdict} by {Approver} (Slack user {SlackUser})")]
        public static partial void Decided(ILogger logger, string runId, long step, string approver, string slackUser, string verdict);

        [LoggerMessage(83, LogLevel.Warning, "Slack response_url on host {Host} ignored: not one of SlackApprovalOptions.ResponseHosts")]
        public static partial void ResponseHostRefused(ILogger logger, string host);

        [LoggerMessage(84, LogLevel.Warning, "Posting the answer to Slack's response_url at {Host} failed: {Error}")]
        public static partial void ResponseFailed(ILogger logger, string host, string error);
    }
}
