using System.Text;
using System.Text.Json;

namespace Bureau.Tools;

/// <summary>
/// Reads a model's tool arguments strictly, before any schema sees them. Beyond the JSON grammar it
/// refuses what parsers disagree on or fail on later: a property name twice in one object (one parser
/// keeps the first value, another the last, so the schema could check one and the tool read the other),
/// a <c>\uD800</c> escape without its pair (no text has it, so reading the string throws), a number
/// beyond a 64-bit float (<c>1e400</c>), nesting deeper than <see cref="MaxDepth"/>, and text that is not
/// UTF-16 in the first place. One pass over the text: work and memory grow with its length only.
/// </summary>
internal static class ArgumentsJson
{
    /// <summary>The deepest nesting accepted (objects and arrays), as <see cref="JsonDocument"/> allows by default.</summary>
    public const int MaxDepth = 64;

    private const int ExcerptChars = 40;
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>Parses <paramref name="json"/>; null with <paramref name="error"/> set (the message for the model) when it may not be used.</summary>
    public static JsonDocument? Parse(string json, out string? error)
    {
        byte[] utf8;
        try
        {
            utf8 = StrictUtf8.GetBytes(json);
        }
        catch (EncoderFallbackException ex)
        {
            error = $"the arguments contain an unpaired UTF-16 surrogate (character {ex.Index + 1}), which is not text";
            return null;
        }
        try
        {
            error = Check(utf8);
            // What passed the check parses: same grammar, same depth limit.
            return error is null ? JsonDocument.Parse(utf8, new JsonDocumentOptions { MaxDepth = MaxDepth, AllowDuplicateProperties = false }) : null;
        }
        catch (JsonException ex)
        {
            error = $"not valid JSON{Place(ex)}: {Reason(ex)}";
            return null;
        }
    }

    /// <summary>The first problem, as a message with a JSON Pointer to where it is; null when there is none.</summary>
    /// <exception cref="JsonException">Not JSON.</exception>
    private static string? Check(ReadOnlySpan<byte> utf8)
    {
        // One more level than allowed, so that going past the limit is reported here, with its own message.
        var reader = new Utf8JsonReader(utf8, new JsonReaderOptions { MaxDepth = MaxDepth + 1 });
        var frames = new List<Frame>();
        string? pendingName = null;
        while (reader.Read())
        {
            switch (reader.TokenType)
            {
                case JsonTokenType.StartObject:
                case JsonTokenType.StartArray:
                    if (reader.CurrentDepth >= MaxDepth)
                        return $"the arguments are nested deeper than {MaxDepth} levels (at {(Pointer(frames, pendingName) is { Length: > 0 } p ? p : "/")}); flatten them";
                    frames.Add(new Frame(Pointer(frames, pendingName), reader.TokenType == JsonTokenType.StartObject ? new HashSet<string>(StringComparer.Ordinal) : null));
                    pendingName = null;
                    break;
                case JsonTokenType.EndObject:
                case JsonTokenType.EndArray:
                    frames.RemoveAt(frames.Count - 1);
                    if (frames.Count > 0) frames[^1].Index++;
                    break;
                case JsonTokenType.PropertyName:
                    var parent = frames[^1];
                    var at = parent.Pointer.Length == 0 ? string.Empty : parent.Pointer + ": ";
                    if (!TryReadString(ref reader, out var name))
                        return $"{at}a property name {LoneSurrogate}";
                    if (!parent.Names!.Add(name))
                        return $"{at}property '{name}' is given twice; send each property once";
                    pendingName = name;
                    break;
                case JsonTokenType.String:
                    if (!TryReadString(ref reader, out _))
                        return $"{Where(frames, pendingName)}the string {LoneSurrogate}";
                    Next(frames, ref pendingName);
                    break;
                case JsonTokenType.Number:
                    if (!reader.TryGetDouble(out var number) || !double.IsFinite(number))
                    {
                        var raw = Encoding.UTF8.GetString(reader.ValueSpan);
                        return $"{Where(frames, pendingName)}the number {ToolOutput.Excerpt(raw, ExcerptChars)} is out of range: numbers must fit a 64-bit float (at most about 1.8e308)";
                    }
                    Next(frames, ref pendingName);
                    break;
                default:
                    Next(frames, ref pendingName);
                    break;
            }
        }
        return null;
    }

    private const string LoneSurrogate = "has a \\uD800-\\uDFFF escape without its pair (a lone surrogate), which is not text; escape whole characters only";

    private static bool TryReadString(ref Utf8JsonReader reader, out string text)
    {
        try
        {
            text = reader.GetString()!;
            return true;
        }
        catch (InvalidOperationException)
        {
            // Only an escape can make it unreadable: the bytes came from valid UTF-16.
            text = string.Empty;
            return false;
        }
    }

    private static void Next(List<Frame> frames, ref string? pendingName)
    {
        pendingName = null;
        if (frames.Count > 0 && frames[^1].Names is null) frames[^1].Index++;
    }

    private static string Where(List<Frame> frames, string? name)
    {
        var pointer = Pointer(frames, name);
        return pointer.Length == 0 ? string.Empty : pointer + ": ";
    }

    /// <summary>The JSON Pointer of the value being read (empty at the root).</summary>
    private static string Pointer(List<Frame> frames, string? name)
    {
        if (frames.Count == 0) return string.Empty;
        var parent = frames[^1];
        if (parent.Names is null) return $"{parent.Pointer}/{parent.Index}";
        return name is null ? parent.Pointer : $"{parent.Pointer}/{name.Replace("~", "~0", StringComparison.Ordinal).Replace("/", "~1", StringComparison.Ordinal)}";
    }

    private static string Place(JsonException ex) =>
        ex.LineNumber is { } line && ex.BytePositionInLine is { } pos ? $" at line {line + 1}, position {pos + 1}" : string.Empty;

    private static string Reason(JsonException ex)
    {
        var message = ex.Message;
        var cut = message.IndexOf(" LineNumber:", StringComparison.Ordinal);
        if (cut < 0) cut = message.IndexOf(" Path:", StringComparison.Ordinal);
        return (cut >= 0 ? message[..cut] : message).TrimEnd('.', ' ');
    }

    private sealed class Frame(string pointer, HashSet<string>? names)
    {
        public string Pointer { get; } = pointer;
        public HashSet<string>? Names { get; } = names;
        public int Index { get; set; }
    }
}
