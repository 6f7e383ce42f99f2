using System.Text.Json;
using System.Text.Unicode;

namespace Bureau;

/// <summary>What <see cref="StrictJson.Find"/> found.</summary>
internal enum StrictJsonIssue
{
    /// <summary>A name given twice in one object (parsers disagree on which value wins).</summary>
    DuplicateName,
    /// <summary>A property name that is not text (invalid UTF-8 or a lone surrogate escape).</summary>
    NameNotText,
    /// <summary>A string value that is not text.</summary>
    StringNotText,
    /// <summary>A number beyond a 64-bit float (<c>1e400</c>).</summary>
    NumberOutOfRange,
    /// <summary>Nesting deeper than allowed.</summary>
    TooDeep,
}

/// <summary>
/// The first problem found: its kind; the path of the value concerned, as segments (a property name is a
/// <see cref="string"/>, an array index an <see cref="int"/>; empty at the root); the byte offset of its
/// token; the duplicated name, or the raw number; and, for text, whether the bytes were not UTF-8 (else a
/// lone <c>\uD800</c>-<c>\uDFFF</c> escape).
/// </summary>
internal readonly record struct StrictJsonProblem(StrictJsonIssue Issue, IReadOnlyList<object> Path, long ByteOffset, string? Name, bool NotUtf8);

/// <summary>
/// One pass over UTF-8 JSON for what <see cref="JsonDocument"/> accepts but parsers disagree on or fail
/// on later, when a value is read: a name twice in one object, text that is not UTF-8, a
/// <c>\uD800</c> escape without its pair, optionally numbers beyond a double, and nesting past a limit.
/// Syntax errors throw <see cref="JsonException"/> as parsing would. Work and memory grow with the length
/// of the input only. Shared by the API's request bodies and the model's tool-call arguments.
/// </summary>
internal static class StrictJson
{
    /// <summary>The first problem of <paramref name="utf8"/>, or null.</summary>
    /// <exception cref="JsonException">Not JSON.</exception>
    public static StrictJsonProblem? Find(ReadOnlySpan<byte> utf8, int maxDepth, bool checkNumbers)
    {
        // One more level than allowed, so that going past the limit is reported here, as a problem.
        var reader = new Utf8JsonReader(utf8, new JsonReaderOptions { MaxDepth = maxDepth + 1, CommentHandling = JsonCommentHandling.Disallow });
        var frames = new List<Frame>();
        string? pendingName = null;
        while (reader.Read())
        {
            switch (reader.TokenType)
            {
                case JsonTokenType.StartObject:
                case JsonTokenType.StartArray:
                    if (reader.CurrentDepth >= maxDepth)
                        return new StrictJsonProblem(StrictJsonIssue.TooDeep, PathOf(frames, pendingName), reader.TokenStartIndex, null, false);
                    frames.Add(new Frame(PathOf(frames, pendingName), reader.TokenType == JsonTokenType.StartObject ? new HashSet<string>(StringComparer.Ordinal) : null));
                    pendingName = null;
                    break;
                case JsonTokenType.EndObject:
                case JsonTokenType.EndArray:
                    frames.RemoveAt(frames.Count - 1);
                    if (frames.Count > 0) frames[^1].Index++;
                    break;
                case JsonTokenType.PropertyName:
                    var parent = frames[^1];
                    if (ReadText(ref reader, out var name) is { } notUtf8)
                        return new StrictJsonProblem(StrictJsonIssue.NameNotText, parent.Path, reader.TokenStartIndex, null, notUtf8);
                    if (!parent.Names!.Add(name))
                        return new StrictJsonProblem(StrictJsonIssue.DuplicateName, PathOf(frames, name), reader.TokenStartIndex, name, false);
                    pendingName = name;
                    break;
                case JsonTokenType.String:
                    if (ReadText(ref reader, out _) is { } stringNotUtf8)
                        return new StrictJsonProblem(StrictJsonIssue.StringNotText, PathOf(frames, pendingName), reader.TokenStartIndex, null, stringNotUtf8);
                    Next(frames, ref pendingName);
                    break;
                case JsonTokenType.Number when checkNumbers && (!reader.TryGetDouble(out var number) || !double.IsFinite(number)):
                    return new StrictJsonProblem(StrictJsonIssue.NumberOutOfRange, PathOf(frames, pendingName), reader.TokenStartIndex,
                        System.Text.Encoding.UTF8.GetString(reader.ValueSpan), false);
                default:
                    Next(frames, ref pendingName);
                    break;
            }
        }
        return null;
    }

    /// <summary>The path as a dotted field name: <c>input.a</c>, <c>items[2].x</c>; empty at the root.</summary>
    public static string DottedPath(IReadOnlyList<object> path)
    {
        var text = new System.Text.StringBuilder();
        foreach (var segment in path)
        {
            if (segment is int index) text.Append('[').Append(index).Append(']');
            else text.Append(text.Length == 0 ? "" : ".").Append((string)segment);
        }
        return text.ToString();
    }

    /// <summary>The path as a JSON Pointer: <c>/items/2/x</c>; empty at the root.</summary>
    public static string Pointer(IReadOnlyList<object> path)
    {
        var text = new System.Text.StringBuilder();
        foreach (var segment in path)
        {
            text.Append('/');
            if (segment is int index) text.Append(index);
            else text.Append(((string)segment).Replace("~", "~0", StringComparison.Ordinal).Replace("/", "~1", StringComparison.Ordinal));
        }
        return text.ToString();
    }

    /// <summary>Null when the string token reads as text (<paramref name="text"/> set); else whether its bytes were not UTF-8.</summary>
    private static bool? ReadText(ref Utf8JsonReader reader, out string text)
    {
        text = string.Empty;
        // Escapes are ASCII, so the raw bytes are UTF-8 exactly when the text is.
        if (!Utf8.IsValid(reader.ValueSpan)) return true;
        try
        {
            text = reader.GetString()!;
            return null;
        }
        catch (InvalidOperationException)
        {
            return false; // a lone surrogate escape
        }
    }

    private static void Next(List<Frame> frames, ref string? pendingName)
    {
        pendingName = null;
        if (frames.Count > 0 && frames[^1].Names is null) frames[^1].Index++;
    }

    private static object[] PathOf(List<Frame> frames, string? name)
    {
        if (frames.Count == 0) return [];
        var parent = frames[^1];
        if (parent.Names is null) return [.. parent.Path, parent.Index];
        return name is null ? parent.Path : [.. parent.Path, name];
    }

    private sealed class Frame(object[] path, HashSet<string>? names)
    {
        public object[] Path { get; } = path;
        public HashSet<string>? Names { get; } = names;
        public int Index { get; set; }
    }
}
