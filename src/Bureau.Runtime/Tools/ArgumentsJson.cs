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
    public static JsonElement? Parse(string json, out string? error)
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
            return error is null ? JsonElement.Parse(utf8, new JsonDocumentOptions { MaxDepth = MaxDepth, AllowDuplicateProperties = false }) : null;
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
        if (StrictJson.Find(utf8, MaxDepth, checkNumbers: true) is not { } p) return null;
        var pointer = StrictJson.Pointer(p.Path);
        var where = pointer.Length == 0 ? string.Empty : pointer + ": ";
        return p.Issue switch
        {
            StrictJsonIssue.TooDeep => $"the arguments are nested deeper than {MaxDepth} levels (at {(pointer.Length > 0 ? pointer : "/")}); flatten them",
            StrictJsonIssue.NameNotText => $"{where}a property name {LoneSurrogate}",
            StrictJsonIssue.DuplicateName => $"{Where(p.Path.Take(p.Path.Count - 1))}property '{p.Name}' is given twice; send each property once",
            StrictJsonIssue.StringNotText => $"{where}the string {LoneSurrogate}",
            StrictJsonIssue.NumberOutOfRange => $"{where}the number {ToolOutput.Excerpt(p.Name!, ExcerptChars)} is out of range: numbers must fit a 64-bit float (at most about 1.8e308)",
            _ => $"{where}cannot be read",
        };
    }

    private static string Where(IEnumerable<object> parentPath)
    {
        var pointer = StrictJson.Pointer([.. parentPath]);
        return pointer.Length == 0 ? string.Empty : pointer + ": ";
    }

    private const string LoneSurrogate = "has a \\uD800-\\uDFFF escape without its pair (a lone surrogate), which is not text; escape whole characters only";

    /// <summary>Where the JSON broke and why, for a message: <c> at line 1, position 30: Expected ...</c> (System.Text.Json's zero-based line and position, as people count them).</summary>
    internal static string Describe(JsonException ex) => $"{Place(ex)}: {Reason(ex)}";

    private static string Place(JsonException ex) =>
        ex.LineNumber is { } line && ex.BytePositionInLine is { } pos ? $" at line {line + 1}, position {pos + 1}" : string.Empty;

    private static string Reason(JsonException ex)
    {
        var message = ex.Message;
        var cut = message.IndexOf(" LineNumber:", StringComparison.Ordinal);
        if (cut < 0) cut = message.IndexOf(" Path:", StringComparison.Ordinal);
        return (cut >= 0 ? message[..cut] : message).TrimEnd('.', ' ');
    }
}
