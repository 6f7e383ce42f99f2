using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Bureau.Hosting;

/// <summary>
/// <c>POST /v1/hooks/{trigger}</c>: a webhook authenticated by its signature (not by an API key). The request is
/// verified as its source signs it, filtered, mapped to a run's input and submitted with the idempotency key
/// <c>trigger:NAME:EVENT_ID</c>; the answer (202, or 200 for a delivery seen before, with the same run) comes only
/// after the run is durable. A trigger that targets the workforce adds a task instead (its id derived from the same key), answered
/// the same way with the task. Unsigned, wrongly signed or stale requests get 401 and start nothing.
/// </summary>
internal static partial class WebhookApi
{
    /// <summary>Longest event id accepted (it becomes part of an idempotency key).</summary>
    internal const int MaxEventIdLength = 200;

    /// <summary>
    /// Refuses an event id Bureau cannot keep as a key: longer than <see cref="MaxEventIdLength"/>, or with a control
    /// character (it becomes part of the run's idempotency key, logs and dead letters).
    /// </summary>
    internal static void CheckEventId(string id, string what)
    {
        if (id.Length > MaxEventIdLength)
            throw ApiException.BadField("id", $"{what} is longer than {MaxEventIdLength} characters");
        var bad = id.AsSpan().IndexOfAnyInRange('\u0000', '\u001f');
        if (bad < 0) bad = id.IndexOf('\u007f');
        if (bad >= 0)
            throw ApiException.BadField("id", $"{what} has a control character (U+{(int)id[bad]:X4}) at position {bad + 1}");
    }

    /// <summary>What a verified request is about.</summary>
    private sealed record WebhookEvent(string Id, string Name, string? Action, JsonElement? Payload);

    public static async Task<IResult> ReceiveAsync(HttpContext ctx, string trigger)
    {
        var engine = ctx.RequestServices.GetRequiredService<BureauEngine>();
        // Callers are not authenticated yet: the answer names no other trigger.
        if (!engine.Definitions.Triggers.TryGetValue(trigger, out var definition) || definition is not WebhookTriggerDefinition hook)
            throw new ApiException(StatusCodes.Status404NotFound, "unknown-trigger", $"no webhook trigger named '{trigger}' is deployed", "trigger");
        var options = ctx.RequestServices.GetRequiredService<IOptions<BureauHttpOptions>>().Value;
        var body = (await RequestBody.ReadBytesAsync(ctx, options.MaxRequestBodyBytes)).WrittenMemory;
        var now = ctx.RequestServices.GetRequiredService<TimeProvider>().GetUtcNow();
        var logger = ctx.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger("Bureau.Webhooks");

        WebhookEvent ev;
        try
        {
            var verified = hook.Source switch
            {
                WebhookSource.GitHub => GitHub(ctx.Request, hook, body.Span),
                WebhookSource.Slack => Slack(ctx.Request, hook, body.Span, now),
                WebhookSource.Standard => Standard(ctx.Request, hook, body.Span, now),
                _ => Hmac(ctx.Request, hook, body.Span),
            };
            if (verified.Answer is { } answer) return answer;
            ev = verified.Event!;
        }
        catch (ApiException ex) when (ex.Status == StatusCodes.Status401Unauthorized)
        {
            Log.Refused(logger, trigger, ex.Message);
            throw;
        }

        CheckEventId(ev.Id, $"webhook '{trigger}': the event id");
        if (!hook.Accepts(ev.Name, ev.Action))
        {
            var what = ev.Action is null ? ev.Name : $"{ev.Name}.{ev.Action}";
            Log.Ignored(logger, trigger, ev.Id, what);
            return BureauApi.Json(new JsonObject
            {
                ["status"] = "ignored", ["trigger"] = trigger, ["eventId"] = ev.Id,
                ["detail"] = $"event '{what}' is not one of this trigger's events ({string.Join(", ", hook.Events)}); nothing was started",
            });
        }

        var data = ev.Payload ?? TriggerTemplate.StringElement(Encoding.UTF8.GetString(body.Span));
        var outcome = await ctx.RequestServices.GetRequiredService<Triggers.TriggerIngest>()
            .StartAsync(hook, $"trigger:{hook.Name}:{ev.Id}", ev.Id, data, null, ctx.RequestAborted);
        if (outcome.Task is { } added)
        {
            // The trigger targets the workforce: the event is a task in the inbox (its id from the delivery's id).
            Log.TaskAdded(logger, trigger, ev.Id, added.Task.Id, added.Created);
            ctx.Response.Headers.Location = $"{ctx.Request.PathBase}/v1/workforce/tasks/{Uri.EscapeDataString(added.Task.Id)}";
            return BureauApi.Json(new JsonObject
            {
                ["status"] = added.Created ? "accepted" : "duplicate",
                ["trigger"] = trigger,
                ["eventId"] = ev.Id,
                ["task"] = WorkforceApi.Document(added.Task),
            }, added.Created ? StatusCodes.Status202Accepted : StatusCodes.Status200OK);
        }
        if (outcome.Result is not { } result)
        {
            // Accepted (durably, as a dead letter) though it could not start a run: the sender cannot fix that by sending again.
            return BureauApi.Json(new JsonObject
            {
                ["status"] = "dead-letter", ["trigger"] = trigger, ["eventId"] = ev.Id,
                ["deadLetter"] = EventsApi.DeadLetterDocument(outcome.DeadLetter!),
            }, StatusCodes.Status202Accepted);
        }
        Log.Accepted(logger, trigger, ev.Id, result.Run.Id, result.Created);
        ctx.Response.Headers.Location = $"{ctx.Request.PathBase}/v1/runs/{result.Run.Id}";
        return BureauApi.Json(new JsonObject
        {
            ["status"] = result.Created ? "accepted" : "duplicate",
            ["trigger"] = trigger,
            ["eventId"] = ev.Id,
            ["run"] = RunDocuments.Summary(result.Run),
        }, result.Created ? StatusCodes.Status202Accepted : StatusCodes.Status200OK);
    }

    private readonly record struct Verified(WebhookEvent? Event, IResult? Answer);

    // ---- GitHub: X-Hub-Signature-256: sha256=HEX(HMAC-SHA256(secret, body)) ----

    private static Verified GitHub(HttpRequest request, WebhookTriggerDefinition hook, ReadOnlySpan<byte> body)
    {
        const string header = "X-Hub-Signature-256";
        var signature = Header(request, header, hook)
            ?? throw Unauthorized(hook, header, $"the request has no {header} header; set the webhook's secret in GitHub (Settings > Webhooks) to the trigger's secret");
        if (!signature.StartsWith("sha256=", StringComparison.Ordinal) || !TryHex(signature["sha256=".Length..], out var given))
            throw Unauthorized(hook, header, $"{header} must be 'sha256=' followed by 64 hex digits");
        if (!Matches(HMACSHA256.HashData(Encoding.UTF8.GetBytes(hook.Secret), body), given))
            throw Unauthorized(hook, header, $"{header} does not match the body signed with the trigger's secret (a wrong secret, or the body was changed)");
        var name = Header(request, "X-GitHub-Event", hook) ?? throw ApiException.BadField("X-GitHub-Event", $"webhook '{hook.Name}': the X-GitHub-Event header is missing");
        var delivery = Header(request, "X-GitHub-Delivery", hook) ?? throw ApiException.BadField("X-GitHub-Delivery", $"webhook '{hook.Name}': the X-GitHub-Delivery header is missing (it identifies the delivery, so that a redelivery starts nothing new)");
        if (name == "ping")
            return new(null, BureauApi.Json(new JsonObject { ["status"] = "pong", ["trigger"] = hook.Name, ["eventId"] = delivery }));
        var payload = JsonPayload(request, hook, body, github: true);
        var action = payload.ValueKind == JsonValueKind.Object && payload.TryGetProperty("action", out var a) && a.ValueKind == JsonValueKind.String ? a.GetString() : null;
        return new(new WebhookEvent(delivery, name, action, payload), null);
    }

    // ---- Slack: X-Slack-Signature: v0=HEX(HMAC-SHA256(secret, "v0:" + timestamp + ":" + body)) ----

    private static Verified Slack(HttpRequest request, WebhookTriggerDefinition hook, ReadOnlySpan<byte> body, DateTimeOffset now)
    {
        const string sigHeader = SlackSignature.SignatureHeader, tsHeader = SlackSignature.TimestampHeader;
        var timestamp = Header(request, tsHeader, hook) ?? throw Unauthorized(hook, tsHeader, $"the request has no {tsHeader} header");
        CheckTimestamp(hook, tsHeader, timestamp, now);
        var signature = Header(request, sigHeader, hook) ?? throw Unauthorized(hook, sigHeader, $"the request has no {sigHeader} header; set the trigger's secret to the Slack app's Signing Secret");
        var given = SlackSignature.Parse(signature) ?? throw Unauthorized(hook, sigHeader, $"{sigHeader} must be 'v0=' followed by 64 hex digits");
        if (!SlackSignature.Matches(hook.Secret, timestamp, body, given))
            throw Unauthorized(hook, sigHeader, $"{sigHeader} does not match the request signed with the trigger's secret (a wrong Signing Secret, or the body was changed)");
        var payload = JsonPayload(request, hook, body, github: false);
        var type = StringAt(payload, "type");
        if (type == "url_verification")
            return new(null, BureauApi.Json(new JsonObject { ["challenge"] = StringAt(payload, "challenge") }));
        if (type != "event_callback")
            return new(null, BureauApi.Json(new JsonObject { ["status"] = "ignored", ["trigger"] = hook.Name, ["detail"] = $"Slack request of type '{type}' starts nothing" }));
        var id = StringAt(payload, "event_id") ?? throw ApiException.BadField("event_id", $"webhook '{hook.Name}': the Slack event has no 'event_id'");
        var name = payload.TryGetProperty("event", out var inner) ? StringAt(inner, "type") : null;
        return new(new WebhookEvent(id, name ?? "", null, payload), null);
    }

    // ---- Standard Webhooks: webhook-signature: v1,BASE64(HMAC-SHA256(key, id + "." + timestamp + "." + body)) ----

    private static Verified Standard(HttpRequest request, WebhookTriggerDefinition hook, ReadOnlySpan<byte> body, DateTimeOffset now)
    {
        var id = Header(request, "webhook-id", hook) ?? throw Unauthorized(hook, "webhook-id", "the request has no webhook-id header");
        var timestamp = Header(request, "webhook-timestamp", hook) ?? throw Unauthorized(hook, "webhook-timestamp", "the request has no webhook-timestamp header");
        CheckTimestamp(hook, "webhook-timestamp", timestamp, now);
        var signatures = Header(request, "webhook-signature", hook) ?? throw Unauthorized(hook, "webhook-signature", "the request has no webhook-signature header");
        var key = Convert.FromBase64String(hook.Secret["whsec_".Length..]);
        var expected = HMACSHA256.HashData(key, Concat(Encoding.UTF8.GetBytes($"{id}.{timestamp}."), body));
        var matched = false;
        foreach (var part in signatures.Split(' ', StringSplitOptions.RemoveEmptyEntries))
        {
            if (!part.StartsWith("v1,", StringComparison.Ordinal)) continue;
            var given = new byte[32];
            if (Convert.TryFromBase64String(part[3..], given, out var n) && n == 32 && CryptographicOperations.FixedTimeEquals(expected, given))
                matched = true; // go on: every candidate costs the same
        }
        if (!matched)
            throw Unauthorized(hook, "webhook-signature", "no v1 signature in webhook-signature matches the request signed with the trigger's secret (a wrong secret, or the body was changed)");
        var payload = TryJson(body, hook);
        return new(new WebhookEvent(id, payload is { } p ? StringAt(p, "type") ?? "" : "", null, payload), null);
    }

    // ---- plain HMAC: HEX(HMAC-SHA256(secret, body)), optionally "sha256=", in a configured header ----

    private static Verified Hmac(HttpRequest request, WebhookTriggerDefinition hook, ReadOnlySpan<byte> body)
    {
        var header = hook.SignatureHeader;
        var signature = Header(request, header, hook) ?? throw Unauthorized(hook, header, $"the request has no {header} header");
        var hex = signature.StartsWith("sha256=", StringComparison.OrdinalIgnoreCase) ? signature["sha256=".Length..] : signature;
        if (!TryHex(hex, out var given))
            throw Unauthorized(hook, header, $"{header} must be 64 hex digits (optionally after 'sha256=')");
        if (!Matches(HMACSHA256.HashData(Encoding.UTF8.GetBytes(hook.Secret), body), given))
            throw Unauthorized(hook, header, $"{header} does not match the body signed with the trigger's secret (a wrong secret, or the body was changed)");
        var id = hook.IdHeader is { } idHeader && Header(request, idHeader, hook) is { } given2 ? given2 : "sha256-" + Convert.ToHexStringLower(SHA256.HashData(body));
        var payload = TryJson(body, hook);
        return new(new WebhookEvent(id, payload is { } p ? StringAt(p, "type") ?? "" : "", null, payload), null);
    }

    // ---- helpers ----

    private static string? Header(HttpRequest request, string name, WebhookTriggerDefinition hook)
    {
        if (!request.Headers.TryGetValue(name, out var values) || values.Count == 0) return null;
        if (values.Count > 1) throw ApiException.BadField(name, $"webhook '{hook.Name}': the {name} header is given {values.Count} times");
        var value = values.ToString().Trim();
        return value.Length == 0 ? null : value;
    }

    private static void CheckTimestamp(WebhookTriggerDefinition hook, string header, string text, DateTimeOffset now)
    {
        if (!long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var seconds) || seconds > 253_402_300_799)
            throw Unauthorized(hook, header, $"{header} must be Unix seconds, not '{text}'");
        var age = now - DateTimeOffset.FromUnixTimeSeconds(seconds);
        if (age.Duration() > hook.Tolerance)
        {
            throw Unauthorized(hook, header, age > TimeSpan.Zero
                ? $"{header} is {(long)age.TotalSeconds} s old, more than the trigger's tolerance of {(long)hook.Tolerance.TotalSeconds} s (a replayed or delayed request)"
                : $"{header} is {(long)(-age).TotalSeconds} s ahead of this host's clock, more than the trigger's tolerance of {(long)hook.Tolerance.TotalSeconds} s");
        }
    }

    private static JsonElement JsonPayload(HttpRequest request, WebhookTriggerDefinition hook, ReadOnlySpan<byte> body, bool github)
    {
        var contentType = request.ContentType ?? "";
        if (github && contentType.StartsWith("application/x-www-form-urlencoded", StringComparison.OrdinalIgnoreCase))
        {
            // GitHub's other content type: payload=URL-ENCODED-JSON (the signature covers the form as sent).
            var form = Microsoft.AspNetCore.WebUtilities.QueryHelpers.ParseQuery("?" + Encoding.UTF8.GetString(body));
            if (!form.TryGetValue("payload", out var json))
                throw ApiException.BadField("payload", $"webhook '{hook.Name}': a form-encoded GitHub delivery must carry 'payload'");
            return TryJson(Encoding.UTF8.GetBytes(json.ToString()), hook, "payload") ?? throw ApiException.BadField("payload", $"webhook '{hook.Name}': 'payload' is not valid JSON");
        }
        return TryJson(body, hook) ?? throw ApiException.BadField("body", $"webhook '{hook.Name}': the body is not valid JSON");
    }

    /// <summary>
    /// The body as JSON, or null when it is not JSON (a text body). JSON whose fields cannot all be read (a field
    /// given twice, text that is not UTF-8, a lone surrogate escape, nesting past 64 levels) is a 400 naming the field:
    /// read later, by the event filter or the input template, it would be a 500 after the signature was accepted.
    /// </summary>
    private static JsonElement? TryJson(ReadOnlySpan<byte> body, WebhookTriggerDefinition hook, string? under = null)
    {
        if (body.IsEmpty) return null;
        try
        {
            if (JsonBodyCheck.Find(body) is { } problem)
            {
                var field = under is null ? problem.Field : problem.Field == "body" ? under : $"{under}.{problem.Field}";
                throw ApiException.BadField(field, $"webhook '{hook.Name}': {problem.Detail}; nothing was started");
            }
            var reader = new Utf8JsonReader(body);
            return JsonElement.ParseValue(ref reader) is var e && reader.BytesConsumed == body.Length ? e : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static string? StringAt(JsonElement element, string name) =>
        element.ValueKind == JsonValueKind.Object && element.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    private static bool TryHex(string text, out byte[] bytes)
    {
        bytes = [];
        if (text.Length != 64) return false;
        try
        {
            bytes = Convert.FromHexString(text);
            return true;
        }
        catch (FormatException)
        {
            return false;
        }
    }

    private static bool Matches(byte[] expected, byte[] given) => CryptographicOperations.FixedTimeEquals(expected, given);

    private static byte[] Concat(byte[] head, ReadOnlySpan<byte> body)
    {
        var all = new byte[head.Length + body.Length];
        head.CopyTo(all, 0);
        body.CopyTo(all.AsSpan(head.Length));
        return all;
    }

    private static ApiException Unauthorized(WebhookTriggerDefinition hook, string header, string detail) =>
        new(StatusCodes.Status401Unauthorized, "invalid-signature", $"webhook '{hook.Name}' ({WireNames.Of(hook.Source)}): {detail}; nothing was started", header);

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Warning, "Webhook {Trigger} refused a request: {Reason}")]
        public static partial void Refused(ILogger logger, string trigger, string reason);

        [LoggerMessage(2, LogLevel.Information, "Webhook {Trigger} ignored event {EventId} ({Event}): not one of its events")]
        public static partial void Ignored(ILogger logger, string trigger, string eventId, string @event);

        [LoggerMessage(4, LogLevel.Information, "Webhook {Trigger} event {EventId}: workforce task {TaskId} (new: {Created})")]
        public static partial void TaskAdded(ILogger logger, string trigger, string eventId, string taskId, bool created);

        [LoggerMessage(3, LogLevel.Information, "Webhook {Trigger} event {EventId}: run {RunId} (new: {Created})")]
        public static partial void Accepted(ILogger logger, string trigger, string eventId, string runId, bool created);
    }
}
