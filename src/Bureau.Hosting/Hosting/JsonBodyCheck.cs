using System.Text.Json;

namespace Bureau.Hosting;

/// <summary>
/// Checks a request body, token by token, for what <see cref="JsonDocument"/> and
/// <see cref="System.Text.Json.Nodes.JsonNode"/> accept but fail on later, when a field is read:
/// a field given twice, text that is not UTF-8, a <c>\uD800</c> escape without its pair (text that
/// has no UTF-8 form), nesting past 64 levels (<see cref="StrictJson"/>, shared with tool-call arguments).
/// Syntax errors throw <see cref="JsonException"/>, as parsing would.
/// </summary>
internal static class JsonBodyCheck
{
    /// <summary>One problem: the field's path (<c>agent</c>, <c>input.a</c>, <c>items[2]</c>; <c>body</c> at the root) and why.</summary>
    public readonly record struct Problem(string Field, string Detail);

    /// <summary>The first problem of <paramref name="utf8Json"/>, or null when every field can be read.</summary>
    /// <exception cref="JsonException">The body is not JSON.</exception>
    public static Problem? Find(ReadOnlySpan<byte> utf8Json)
    {
        if (StrictJson.Find(utf8Json, MaxDepth, checkNumbers: false) is not { } p) return null;
        var path = StrictJson.DottedPath(p.Path);
        var field = path.Length == 0 ? "body" : path;
        var notText = p.NotUtf8
            ? "is not valid UTF-8; send the body in UTF-8"
            : "has a \\uD800-\\uDFFF escape without its pair (a lone surrogate), which is not text; escape whole characters only";
        return p.Issue switch
        {
            StrictJsonIssue.DuplicateName => new Problem(field, $"'{field}' is given twice (again at byte {p.ByteOffset}); send each field once"),
            StrictJsonIssue.NameNotText => new Problem(field, $"a field name at byte {p.ByteOffset} {notText}"),
            StrictJsonIssue.StringNotText => new Problem(field, $"'{field}' (the string at byte {p.ByteOffset}) {notText}"),
            StrictJsonIssue.TooDeep => new Problem(field, $"the body is nested deeper than {MaxDepth} levels (at byte {p.ByteOffset})"),
            _ => new Problem(field, $"'{field}' cannot be read"),
        };
    }

    /// <summary>As deep as <see cref="JsonDocument"/> parses by default.</summary>
    private const int MaxDepth = 64;
}
