using System.Buffers;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

namespace Bureau.Hosting;

/// <summary>Reads a JSON object body within the size limit, with errors that name the field.</summary>
internal static class RequestBody
{
    public static async Task<JsonObject?> ReadAsync(HttpContext ctx, long maxBytes, bool optional)
    {
        var request = ctx.Request;
        var buffer = await ReadBytesAsync(ctx, maxBytes);

        if (buffer.WrittenCount == 0)
        {
            if (optional) return null;
            throw ApiException.BadField("body", "the request body is empty; send a JSON object");
        }
        var contentType = request.ContentType;
        if (contentType is null || !IsJson(contentType))
        {
            throw new ApiException(StatusCodes.Status415UnsupportedMediaType, "unsupported-media-type",
                $"the body must be sent as 'Content-Type: application/json' (got '{contentType ?? "none"}')", "Content-Type");
        }
        JsonNode? node;
        try
        {
            // JsonNode parses lazily: a field given twice, text that is not UTF-8 or a lone \uD800 escape
            // would only throw when a handler reads it (a 500). Found here, once, for every endpoint.
            if (JsonBodyCheck.Find(buffer.WrittenSpan) is { } problem) throw ApiException.BadField(problem.Field, problem.Detail);
            node = JsonNode.Parse(buffer.WrittenSpan, documentOptions: new JsonDocumentOptions { AllowDuplicateProperties = false });
        }
        catch (JsonException ex)
        {
            throw ApiException.BadField("body", $"the body is not valid JSON{Bureau.Tools.ArgumentsJson.Describe(ex)}");
        }
        return node as JsonObject ?? throw ApiException.BadField("body", $"the body must be a JSON object, not {Describe(node)}");
    }

    /// <summary>The body's bytes as sent (what a signature covers), within the size limit (413 beyond it).</summary>
    public static async Task<ArrayBufferWriter<byte>> ReadBytesAsync(HttpContext ctx, long maxBytes)
    {
        var request = ctx.Request;
        if (request.ContentLength > maxBytes) throw TooLarge(maxBytes);
        var sizeFeature = ctx.Features.Get<IHttpMaxRequestBodySizeFeature>();
        if (sizeFeature is { IsReadOnly: false }) sizeFeature.MaxRequestBodySize = maxBytes;

        var buffer = new ArrayBufferWriter<byte>(4096);
        try
        {
            while (true)
            {
                var memory = buffer.GetMemory(8192);
                var read = await request.Body.ReadAsync(memory, ctx.RequestAborted);
                if (read == 0) break;
                buffer.Advance(read);
                if (buffer.WrittenCount > maxBytes) throw TooLarge(maxBytes);
            }
        }
        catch (BadHttpRequestException ex) when (ex.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            throw TooLarge(maxBytes);
        }

        return buffer;
    }

    internal static bool IsJson(string contentType)
    {
        var mediaType = contentType.Split(';')[0].Trim();
        return mediaType.Equals("application/json", StringComparison.OrdinalIgnoreCase)
            || (mediaType.StartsWith("application/", StringComparison.OrdinalIgnoreCase) && mediaType.EndsWith("+json", StringComparison.OrdinalIgnoreCase));
    }

    private static ApiException TooLarge(long max) =>
        new(StatusCodes.Status413PayloadTooLarge, "body-too-large", $"the request body is larger than {max} bytes (Bureau:MaxRequestBodyBytes); nothing was done", "body");

    /// <summary>Throws 400 for a field not in <paramref name="allowed"/> (for every field when none is allowed).</summary>
    public static void OnlyFields(JsonObject body, params string[] allowed)
    {
        foreach (var (name, _) in body)
        {
            if (!allowed.Contains(name, StringComparer.Ordinal))
            {
                throw ApiException.BadField(name, allowed.Length == 0
                    ? $"unknown field '{name}'; this endpoint takes no fields (send no body, or {{}})"
                    : $"unknown field '{name}'; expected {string.Join(", ", allowed.Select(a => "'" + a + "'"))}");
            }
        }
    }

    public static string RequiredString(JsonObject body, string name) =>
        OptionalString(body, name) ?? throw ApiException.BadField(name, $"'{name}' is required (a string)");

    public static string? OptionalString(JsonObject body, string name)
    {
        if (!body.TryGetPropertyValue(name, out var node) || node is null) return null;
        if (node is JsonValue v && v.GetValueKind() == JsonValueKind.String) return v.GetValue<string>();
        throw ApiException.BadField(name, $"'{name}' must be a string, not {Describe(node)}");
    }

    public static long RequiredInteger(JsonObject body, string name)
    {
        if (!body.TryGetPropertyValue(name, out var node) || node is null) throw ApiException.BadField(name, $"'{name}' is required (an integer)");
        if (node is JsonValue v && v.GetValueKind() == JsonValueKind.Number && v.TryGetValue<long>(out var n)) return n;
        throw ApiException.BadField(name, $"'{name}' must be an integer, not {Describe(node)}");
    }

    private static string Describe(JsonNode? node) => node switch
    {
        null => "null",
        JsonObject => "an object",
        JsonArray => "an array",
        JsonValue v => v.GetValueKind() switch
        {
            JsonValueKind.String => "a string",
            JsonValueKind.Number => "a number",
            JsonValueKind.True or JsonValueKind.False => "a boolean",
            _ => "null",
        },
        _ => "something else",
    };
}
