using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using Json.Schema;

namespace Bureau.Tools;

/// <summary>
/// Turns JSON Schema evaluation results into short messages a model can act on: where (a JSON Pointer
/// into the arguments), what was expected, and what was found.
/// </summary>
internal static partial class SchemaErrors
{
    private const int ValueExcerptChars = 40;

    /// <summary>One message per failed keyword, in evaluation order, without duplicates.</summary>
    public static List<string> Format(EvaluationResults results, JsonElement instance, JsonElement schema)
    {
        var messages = new List<string>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var node in Flatten(results))
        {
            if (node.Errors is null) continue;
            var location = node.InstanceLocation.ToString();
            var evaluationPath = node.EvaluationPath.ToString();
            foreach (var (keyword, message) in node.Errors)
            {
                foreach (var text in FormatOne(keyword, message, location, evaluationPath, instance, schema))
                    if (seen.Add(text)) messages.Add(text);
            }
        }
        return messages;
    }

    /// <summary>A value as the model should read it back: its JSON type and, for scalars, the value.</summary>
    public static string Describe(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.String => $"string {JsonSerializer.Serialize(ToolOutput.Excerpt(value.GetString()!, ValueExcerptChars))}",
        JsonValueKind.Number => IsInteger(value) ? $"integer {value.GetRawText()}" : $"number {value.GetRawText()}",
        JsonValueKind.True => "boolean true",
        JsonValueKind.False => "boolean false",
        JsonValueKind.Null => "null",
        JsonValueKind.Object => "object",
        JsonValueKind.Array => "array",
        _ => "nothing",
    };

    private static IEnumerable<EvaluationResults> Flatten(EvaluationResults results)
    {
        yield return results;
        if (results.Details is null) yield break;
        foreach (var detail in results.Details)
            foreach (var inner in Flatten(detail))
                yield return inner;
    }

    private static IEnumerable<string> FormatOne(string keyword, string message, string location, string evaluationPath, JsonElement instance, JsonElement schema)
    {
        var at = location.Length == 0 ? string.Empty : location + ": ";
        var value = Resolve(instance, Segments(location));
        var schemaNode = ResolveSchema(schema, Segments(evaluationPath));
        var got = value is { } v ? Describe(v) : "nothing";

        switch (keyword)
        {
            case "type":
                var expected = schemaNode?.TryGetProperty("type", out var type) == true ? TypeNames(type) : ExpectedFromMessage(message);
                yield return expected is null ? $"{at}{Lower(message)}" : $"{at}expected {expected}, got {got}";
                yield break;

            case "required":
                var missing = MissingRequired(schemaNode, value) ?? RequiredFromMessage(message);
                if (missing is null or { Count: 0 })
                {
                    yield return $"{at}{Lower(message)}";
                    yield break;
                }
                foreach (var name in missing) yield return $"{at}required property '{name}' missing";
                yield break;

            case "enum" when schemaNode?.TryGetProperty("enum", out var options) == true && options.ValueKind == JsonValueKind.Array:
                var listed = options.EnumerateArray().Take(10).Select(o => o.GetRawText()).ToList();
                var more = options.GetArrayLength() > listed.Count ? ", ..." : string.Empty;
                yield return $"{at}{got} is not one of {string.Join(", ", listed)}{more}";
                yield break;

            case "const" when schemaNode?.TryGetProperty("const", out var constant) == true:
                yield return $"{at}expected {constant.GetRawText()}, got {got}";
                yield break;

            case "":
                // A false schema: additionalProperties/unevaluatedProperties false, or a property forbidden outright.
                var segments = Segments(location);
                var last = Segments(evaluationPath).LastOrDefault();
                if (segments.Count > 0 && last is "additionalProperties" or "unevaluatedProperties")
                {
                    var parent = segments.Count == 1 ? string.Empty : string.Concat(segments.SkipLast(1).Select(s => "/" + Escape(s))) + ": ";
                    yield return $"{parent}property '{segments[^1]}' is not allowed";
                }
                else
                {
                    yield return $"{at}no value is allowed here (the schema at {(evaluationPath.Length == 0 ? "/" : evaluationPath)} is false), got {got}";
                }
                yield break;

            default:
                yield return $"{at}{Lower(message)} (got {got})";
                yield break;
        }
    }

    private static string? TypeNames(JsonElement type) => type.ValueKind switch
    {
        JsonValueKind.String => type.GetString(),
        JsonValueKind.Array => string.Join(" or ", type.EnumerateArray().Select(t => t.ToString())),
        _ => null,
    };

    private static List<string>? MissingRequired(JsonElement? schemaNode, JsonElement? value)
    {
        if (schemaNode is not { } node || !node.TryGetProperty("required", out var required) || required.ValueKind != JsonValueKind.Array)
            return null;
        if (value is not { ValueKind: JsonValueKind.Object } obj) return null;
        return [.. required.EnumerateArray()
            .Where(r => r.ValueKind == JsonValueKind.String && !obj.TryGetProperty(r.GetString()!, out _))
            .Select(r => r.GetString()!)];
    }

    private static string? ExpectedFromMessage(string message)
    {
        var m = ShouldBe().Match(message);
        return m.Success ? m.Groups[1].Value.Replace("\"", string.Empty, StringComparison.Ordinal).Replace(",", " or ", StringComparison.Ordinal).Trim('[', ']') : null;
    }

    private static List<string>? RequiredFromMessage(string message)
    {
        var m = JsonArray().Match(message);
        if (!m.Success) return null;
        try
        {
            return JsonSerializer.Deserialize(m.Value, ToolsJsonContext.Default.ListString);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static JsonElement? Resolve(JsonElement root, List<string> segments)
    {
        var current = root;
        foreach (var segment in segments)
        {
            if (current.ValueKind == JsonValueKind.Object && current.TryGetProperty(segment, out var child)) current = child;
            else if (current.ValueKind == JsonValueKind.Array && int.TryParse(segment, NumberStyles.None, CultureInfo.InvariantCulture, out var i) && i < current.GetArrayLength()) current = current[i];
            else return null;
        }
        return current;
    }

    /// <summary>Follows an evaluation path through the schema document, including local <c>$ref</c>s.</summary>
    private static JsonElement? ResolveSchema(JsonElement root, List<string> segments)
    {
        var current = root;
        foreach (var segment in segments)
        {
            if (segment == "$ref" && current.ValueKind == JsonValueKind.Object && current.TryGetProperty("$ref", out var reference)
                && reference.GetString() is { } target && target.StartsWith('#'))
            {
                var pointer = Uri.UnescapeDataString(target[1..]);
                if (Resolve(root, Segments(pointer)) is not { } resolved) return null;
                current = resolved;
                continue;
            }
            if (Resolve(current, [segment]) is not { } next) return null;
            current = next;
        }
        return current;
    }

    private static List<string> Segments(string pointer)
    {
        if (pointer.Length == 0 || pointer == "/") return pointer.Length == 0 ? [] : [string.Empty];
        return [.. pointer.TrimStart('/').Split('/').Select(s => s.Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal))];
    }

    private static string Escape(string segment) => segment.Replace("~", "~0", StringComparison.Ordinal).Replace("/", "~1", StringComparison.Ordinal);

    private static bool IsInteger(JsonElement number)
    {
        var raw = number.GetRawText();
        return raw.IndexOfAny(['.', 'e', 'E']) < 0 || (number.TryGetDouble(out var d) && Math.Floor(d) == d && !raw.Contains('.', StringComparison.Ordinal));
    }

    private static string Lower(string message) =>
        message.Length > 0 && char.IsUpper(message[0]) ? char.ToLowerInvariant(message[0]) + message[1..] : message;

    [GeneratedRegex("should be (.+)$")]
    private static partial Regex ShouldBe();

    [GeneratedRegex(@"\[.*\]")]
    private static partial Regex JsonArray();
}

[System.Text.Json.Serialization.JsonSerializable(typeof(List<string>))]
internal sealed partial class ToolsJsonContext : System.Text.Json.Serialization.JsonSerializerContext;
