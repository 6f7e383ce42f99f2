using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Bureau.Hosting;

/// <summary>
/// <c>POST /v1/events</c>: a CloudEvent 1.0, in structured mode (<c>application/cloudevents+json</c>) or binary
/// mode (<c>ce-*</c> headers, the body is the data). Every topic trigger subscribed to the event's <c>type</c>
/// starts its agent with the idempotency key <c>event:ID:TRIGGER</c>: the same event posted again starts nothing.
/// </summary>
internal static partial class EventsApi
{
    private static readonly string[] s_required = ["specversion", "id", "source", "type"];
    private static readonly string[] s_binaryAttributes = ["specversion", "id", "source", "type", "subject", "time", "dataschema"];

    public static async Task<IResult> PublishAsync(HttpContext ctx)
    {
        var options = ctx.RequestServices.GetRequiredService<IOptions<BureauHttpOptions>>().Value;
        var body = (await RequestBody.ReadBytesAsync(ctx, options.MaxRequestBodyBytes)).WrittenMemory;
        var contentType = ctx.Request.ContentType ?? "";
        var mediaType = contentType.Split(';')[0].Trim();
        var envelope = mediaType.Equals("application/cloudevents+json", StringComparison.OrdinalIgnoreCase)
            ? Structured(body.Span)
            : mediaType.Equals("application/cloudevents-batch+json", StringComparison.OrdinalIgnoreCase)
                ? throw new ApiException(StatusCodes.Status415UnsupportedMediaType, "unsupported-media-type",
                    "batched CloudEvents (application/cloudevents-batch+json) are not accepted; post one event per request", "Content-Type")
                : Binary(ctx.Request, mediaType, body.Span);

        var id = (string)envelope["id"]!;
        var type = (string)envelope["type"]!;
        WebhookApi.CheckEventId(id, "the event's id");
        var ingest = ctx.RequestServices.GetRequiredService<Triggers.TriggerIngest>();
        using var doc = JsonDocument.Parse(envelope.ToJsonString());
        var outcomes = await ingest.PublishAsync(doc.RootElement, ctx.RequestAborted);
        var runs = new JsonArray();
        var created = 0;
        foreach (var o in outcomes)
        {
            if (o.Created) created++;
            runs.Add(o.Result is { } result
                ? new JsonObject { ["trigger"] = o.Trigger.Name, ["duplicate"] = !result.Created, ["run"] = RunDocuments.Summary(result.Run) }
                : o.Task is { } task
                    ? new JsonObject { ["trigger"] = o.Trigger.Name, ["duplicate"] = !task.Created, ["task"] = WorkforceApi.Document(task.Task) }
                    : new JsonObject { ["trigger"] = o.Trigger.Name, ["deadLetter"] = DeadLetterDocument(o.DeadLetter!) });
        }
        return BureauApi.Json(new JsonObject
        {
            ["id"] = id,
            ["type"] = type,
            ["runs"] = runs,
            ["detail"] = outcomes.Count == 0 ? $"no topic trigger is subscribed to '{type}'; nothing was started or stored" : null,
        }, created > 0 ? StatusCodes.Status202Accepted : StatusCodes.Status200OK);
    }

    /// <summary>A dead letter as the API shows it.</summary>
    internal static JsonObject DeadLetterDocument(DeadLetter d) => new()
    {
        ["id"] = d.Id,
        ["trigger"] = d.Trigger,
        ["eventId"] = d.EventId,
        ["reason"] = d.Reason,
        ["agent"] = d.Agent,
        ["error"] = d.Error,
        ["runId"] = d.RunId,
        ["key"] = d.Key,
        ["input"] = d.Input,
        ["at"] = d.At,
        ["retries"] = d.Retries,
        ["retriedAt"] = d.RetriedAt,
        ["retryRunId"] = d.RetryRunId,
    };

    private static IEventStore DeadLetters(HttpContext ctx) => ctx.RequestServices.GetService<IEventStore>()
        ?? throw new ApiException(StatusCodes.Status404NotFound, "no-dead-letters", "this host's storage keeps no dead letters");

    /// <summary><c>GET /v1/events/dead?all=true&amp;limit=N</c>.</summary>
    public static async Task<IResult> ListDeadAsync(HttpContext ctx)
    {
        var all = BureauApi.Flag(ctx, "all");
        var limit = 100;
        if (ctx.Request.Query.TryGetValue("limit", out var l)
            && (!int.TryParse(l.ToString(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out limit) || limit is < 1 or > 1000))
            throw ApiException.BadField("limit", $"limit must be a whole number from 1 to 1000, not '{l}'");
        var letters = await DeadLetters(ctx).ListDeadLettersAsync(all, limit, ctx.RequestAborted);
        return BureauApi.Json(new JsonObject { ["items"] = new JsonArray([.. letters.Select(d => (JsonNode)DeadLetterDocument(d))]) });
    }

    /// <summary><c>GET /v1/events/dead/{id}</c>.</summary>
    public static async Task<IResult> GetDeadAsync(HttpContext ctx, string id)
    {
        var letter = await DeadLetters(ctx).GetDeadLetterAsync(id, ctx.RequestAborted) ?? throw new DeadLetterNotFoundException(id);
        var doc = DeadLetterDocument(letter);
        doc["event"] = letter.Event is { } e ? JsonNode.Parse(e) : null;
        return BureauApi.Json(doc);
    }

    /// <summary><c>POST /v1/events/dead/{id}/retry</c>: 202 with the new run (200 when this retry had already started it).</summary>
    public static async Task<IResult> RetryDeadAsync(HttpContext ctx, string id)
    {
        DeadLetters(ctx);
        var (letter, delivered) = await ctx.RequestServices.GetRequiredService<Triggers.TriggerIngest>().RetryAsync(id, ctx.RequestAborted);
        var answer = new JsonObject { ["deadLetter"] = DeadLetterDocument(letter) };
        if (delivered.Run is { } result)
        {
            ctx.Response.Headers.Location = $"{ctx.Request.PathBase}/v1/runs/{result.Run.Id}";
            answer["run"] = RunDocuments.Summary(result.Run);
        }
        else
        {
            ctx.Response.Headers.Location = $"{ctx.Request.PathBase}/v1/workforce/tasks/{Uri.EscapeDataString(delivered.Task!.Task.Id)}";
            answer["task"] = WorkforceApi.Document(delivered.Task.Task);
        }
        return BureauApi.Json(answer, delivered.Created ? StatusCodes.Status202Accepted : StatusCodes.Status200OK);
    }

    /// <summary>The whole event is the body.</summary>
    private static JsonObject Structured(ReadOnlySpan<byte> body)
    {
        if (body.IsEmpty) throw ApiException.BadField("body", "the request body is empty; send a CloudEvent (a JSON object with specversion, id, source and type)");
        JsonNode? node;
        try
        {
            if (JsonBodyCheck.Find(body) is { } problem) throw ApiException.BadField(problem.Field, problem.Detail);
            node = JsonNode.Parse(body, documentOptions: new JsonDocumentOptions { AllowDuplicateProperties = false });
        }
        catch (JsonException ex)
        {
            throw ApiException.BadField("body", $"the body is not valid JSON{Bureau.Tools.ArgumentsJson.Describe(ex)}");
        }
        if (node is not JsonObject envelope) throw ApiException.BadField("body", "a structured CloudEvent is a JSON object");
        foreach (var name in s_required)
        {
            if (!envelope.TryGetPropertyValue(name, out var v) || v is not JsonValue value || value.GetValueKind() != JsonValueKind.String || ((string)value!).Length == 0)
                throw ApiException.BadField(name, $"the CloudEvent's '{name}' is required (a non-empty string)");
        }
        if ((string)envelope["specversion"]! != "1.0")
            throw ApiException.BadField("specversion", $"specversion must be '1.0', not '{(string)envelope["specversion"]!}'");
        if (envelope.ContainsKey("data") && envelope.ContainsKey("data_base64"))
            throw ApiException.BadField("data_base64", "a CloudEvent carries 'data' or 'data_base64', not both");
        foreach (var name in s_optionalText)
        {
            if (envelope.TryGetPropertyValue(name, out var v) && v is not null && (v is not JsonValue value || value.GetValueKind() != JsonValueKind.String || ((string)value!).Length == 0))
                throw ApiException.BadField(name, $"the CloudEvent's '{name}' must be a non-empty string when given");
        }
        if (envelope["data_base64"] is { } b64 && !Convert.TryFromBase64String((string)b64!, new byte[((string)b64!).Length], out _))
            throw ApiException.BadField("data_base64", "the CloudEvent's 'data_base64' is not base64");
        CheckTime(envelope, "time");
        return envelope;
    }

    /// <summary>Attributes the spec types as strings (data_base64 is checked as base64 too).</summary>
    private static readonly string[] s_optionalText = ["subject", "time", "dataschema", "datacontenttype", "data_base64"];

    /// <summary>The <c>time</c> attribute, when given, is an RFC 3339 timestamp (2026-12-07T10:00:00Z).</summary>
    private static void CheckTime(JsonObject envelope, string field)
    {
        if (envelope["time"] is not JsonValue t || t.GetValueKind() != JsonValueKind.String) return;
        var text = (string)t!;
        if (!RfcTime().IsMatch(text) || !DateTimeOffset.TryParse(text, System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.RoundtripKind, out _))
            throw ApiException.BadField(field, $"the CloudEvent's time must be an RFC 3339 timestamp such as 2026-12-07T10:00:00Z, not '{text}'");
    }

    [System.Text.RegularExpressions.GeneratedRegex(@"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")]
    private static partial System.Text.RegularExpressions.Regex RfcTime();

    /// <summary>Attributes in <c>ce-*</c> headers; the body is the data, typed by Content-Type.</summary>
    private static JsonObject Binary(HttpRequest request, string mediaType, ReadOnlySpan<byte> body)
    {
        var envelope = new JsonObject();
        foreach (var (name, values) in request.Headers)
        {
            if (!name.StartsWith("ce-", StringComparison.OrdinalIgnoreCase) || name.Length == 3) continue;
            var attribute = name[3..].ToLowerInvariant();
            envelope[attribute] = values.ToString();
        }
        if (!envelope.ContainsKey("specversion") && !envelope.ContainsKey("id"))
        {
            throw new ApiException(StatusCodes.Status415UnsupportedMediaType, "unsupported-media-type",
                $"send a CloudEvent: structured ('Content-Type: application/cloudevents+json') or binary (ce-specversion, ce-id, ce-source, ce-type headers); got Content-Type '{(mediaType.Length == 0 ? "none" : mediaType)}' and no ce-* headers", "Content-Type");
        }
        foreach (var name in s_required)
        {
            if (!envelope.TryGetPropertyValue(name, out var v) || ((string?)v)?.Length is null or 0)
                throw ApiException.BadField("ce-" + name, $"the ce-{name} header is required in binary mode");
        }
        if ((string)envelope["specversion"]! != "1.0")
            throw ApiException.BadField("ce-specversion", $"ce-specversion must be '1.0', not '{(string)envelope["specversion"]!}'");
        CheckTime(envelope, "ce-time");
        if (mediaType.Length > 0) envelope["datacontenttype"] = request.ContentType;
        if (body.IsEmpty) return envelope;
        if (mediaType.Length == 0 || RequestBody.IsJson(mediaType))
        {
            try
            {
                if (JsonBodyCheck.Find(body) is { } problem) throw ApiException.BadField("data", problem.Detail);
                envelope["data"] = JsonNode.Parse(body);
            }
            catch (JsonException ex)
            {
                throw ApiException.BadField("data", $"the body is sent as JSON ({(mediaType.Length == 0 ? "no Content-Type" : mediaType)}) but is not valid JSON: {ex.Message}");
            }
        }
        else if (mediaType.StartsWith("text/", StringComparison.OrdinalIgnoreCase))
        {
            envelope["data"] = Encoding.UTF8.GetString(body);
        }
        else
        {
            envelope["data_base64"] = Convert.ToBase64String(body);
        }
        return envelope;
    }
}
