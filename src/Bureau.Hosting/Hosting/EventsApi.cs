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
internal static class EventsApi
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
        if (id.Length > WebhookApi.MaxEventIdLength)
            throw ApiException.BadField("id", $"the event's id is longer than {WebhookApi.MaxEventIdLength} characters");
        var engine = ctx.RequestServices.GetRequiredService<BureauEngine>();
        var subscribers = engine.Definitions.Triggers.Values.OfType<TopicTriggerDefinition>()
            .Where(t => string.Equals(t.Topic, type, StringComparison.Ordinal))
            .OrderBy(t => t.Name, StringComparer.Ordinal)
            .ToList();
        using var doc = JsonDocument.Parse(envelope.ToJsonString());
        var root = doc.RootElement;
        var data = root.TryGetProperty("data", out var d) ? d : (JsonElement?)null;
        var runs = new JsonArray();
        var created = 0;
        foreach (var trigger in subscribers)
        {
            var input = TriggerTemplate.InputFor(trigger, root, data ?? root);
            var result = await engine.SubmitAsync(new RunRequest(trigger.Agent, input, $"event:{id}:{trigger.Name}", trigger.Actor), ctx.RequestAborted);
            if (result.Created) created++;
            runs.Add(new JsonObject
            {
                ["trigger"] = trigger.Name,
                ["duplicate"] = !result.Created,
                ["run"] = RunDocuments.Summary(result.Run),
            });
        }
        return BureauApi.Json(new JsonObject
        {
            ["id"] = id,
            ["type"] = type,
            ["runs"] = runs,
            ["detail"] = subscribers.Count == 0 ? $"no topic trigger is subscribed to '{type}'; nothing was started or stored" : null,
        }, created > 0 ? StatusCodes.Status202Accepted : StatusCodes.Status200OK);
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
            throw ApiException.BadField("body", $"the body is not valid JSON: {ex.Message}");
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
        return envelope;
    }

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
