using System.Text.Json;
using System.Text.Unicode;

namespace Bureau.Hosting;

/// <summary>
/// Checks a request body, token by token, for what <see cref="JsonDocument"/> and
/// <see cref="System.Text.Json.Nodes.JsonNode"/> accept but fail on later, when a field is read:
/// a field given twice, text that is not UTF-8, and a <c>\uD800</c> escape without its pair (text that
/// has no UTF-8 form). Syntax errors and nesting deeper than the reader's limit throw
/// <see cref="JsonException"/>, as parsing would. Bounded work: one pass, the reader's depth limit.
/// </summary>
internal static class JsonBodyCheck
{
    /// <summary>One problem: the field's path (<c>agent</c>, <c>input.a</c>, <c>items[2]</c>; <c>body</c> at the root) and why.</summary>
    public readonly record struct Problem(string Field, string Detail);

    /// <summary>The first problem of <paramref name="utf8Json"/>, or null when every field can be read.</summary>
    /// <exception cref="JsonException">The body is not JSON (or is nested deeper than the reader allows).</exception>
    public static Problem? Find(ReadOnlySpan<byte> utf8Json)
    {
        var reader = new Utf8JsonReader(utf8Json, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Disallow });
        // One frame per open object or array: the names seen (objects) or the next index (arrays).
        var frames = new List<Frame>();
        string? pendingName = null;
        while (reader.Read())
        {
            switch (reader.TokenType)
            {
                case JsonTokenType.StartObject:
                case JsonTokenType.StartArray:
                    frames.Add(new Frame(Path(frames, pendingName), reader.TokenType == JsonTokenType.StartObject ? new HashSet<string>(StringComparer.Ordinal) : null));
                    pendingName = null;
                    break;
                case JsonTokenType.EndObject:
                case JsonTokenType.EndArray:
                    frames.RemoveAt(frames.Count - 1);
                    if (frames.Count > 0) frames[^1].Index++;
                    break;
                case JsonTokenType.PropertyName:
                    var parent = frames[^1];
                    if (ReadText(ref reader) is { } bad)
                        return new Problem(parent.Path.Length == 0 ? "body" : parent.Path, $"a field name at byte {reader.TokenStartIndex} {bad}");
                    var name = reader.GetString()!;
                    if (!parent.Names!.Add(name))
                        return new Problem(Path(frames, name), $"'{Path(frames, name)}' is given twice (again at byte {reader.TokenStartIndex}); send each field once");
                    pendingName = name;
                    break;
                case JsonTokenType.String:
                    if (ReadText(ref reader) is { } badValue)
                    {
                        var path = Path(frames, pendingName);
                        return new Problem(path.Length == 0 ? "body" : path, $"'{(path.Length == 0 ? "body" : path)}' (the string at byte {reader.TokenStartIndex}) {badValue}");
                    }
                    Scalar(frames, ref pendingName);
                    break;
                default:
                    Scalar(frames, ref pendingName);
                    break;
            }
        }
        return null;
    }

    private static void Scalar(List<Frame> frames, ref string? pendingName)
    {
        pendingName = null;
        if (frames.Count > 0 && frames[^1].Names is null) frames[^1].Index++;
    }

    /// <summary>Why the current string token cannot be read as text; null when it can.</summary>
    private static string? ReadText(ref Utf8JsonReader reader)
    {
        // Escapes are ASCII, so the raw bytes are UTF-8 exactly when the text is.
        if (!Utf8.IsValid(reader.ValueSpan)) return "is not valid UTF-8; send the body in UTF-8";
        if (!reader.ValueIsEscaped) return null;
        try
        {
            reader.GetString();
            return null;
        }
        catch (InvalidOperationException)
        {
            return "has a \\uD800-\\uDFFF escape without its pair (a lone surrogate), which is not text; escape whole characters only";
        }
    }

    private static string Path(List<Frame> frames, string? name)
    {
        if (frames.Count == 0) return string.Empty;
        var parent = frames[^1];
        if (parent.Names is null) return $"{parent.Path}[{parent.Index}]";
        if (name is null) return parent.Path;
        return parent.Path.Length == 0 ? name : parent.Path + "." + name;
    }

    private sealed class Frame(string path, HashSet<string>? names)
    {
        public string Path { get; } = path;
        public HashSet<string>? Names { get; } = names;
        public int Index { get; set; }
    }
}
