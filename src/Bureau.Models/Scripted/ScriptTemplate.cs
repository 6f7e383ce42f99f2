using System.Text;
using System.Text.Json;

namespace Bureau.Models.Scripted;

/// <summary>
/// A string with <c>{{placeholder}}</c> parts, split once into literal and placeholder segments so that
/// rendering is a single pass with no parsing.
/// </summary>
internal sealed class ScriptTemplate
{
    private readonly string[] _literals;      // _literals.Length == _placeholders.Length + 1
    private readonly string[] _placeholders;

    private ScriptTemplate(string text, string[] literals, string[] placeholders)
    {
        Text = text;
        _literals = literals;
        _placeholders = placeholders;
    }

    /// <summary>The template as written.</summary>
    public string Text { get; }

    /// <summary>True when the template has no placeholder (it renders to <see cref="Text"/>).</summary>
    public bool IsLiteral => _placeholders.Length == 0;

    /// <summary>The placeholder name when the whole template is exactly one placeholder, otherwise null.</summary>
    public string? SinglePlaceholder =>
        _placeholders.Length == 1 && _literals[0].Length == 0 && _literals[1].Length == 0 ? _placeholders[0] : null;

    /// <summary>The placeholder names, in order of appearance.</summary>
    public IReadOnlyList<string> Placeholders => _placeholders;

    /// <summary>Splits <paramref name="text"/> into segments. <c>{{ name }}</c> may carry spaces inside the braces.</summary>
    public static ScriptTemplate Parse(string text)
    {
        List<string>? literals = null;
        List<string>? placeholders = null;
        var pos = 0;
        var literalStart = 0;
        while (pos < text.Length)
        {
            var open = text.IndexOf("{{", pos, StringComparison.Ordinal);
            if (open < 0) break;
            var close = text.IndexOf("}}", open + 2, StringComparison.Ordinal);
            if (close < 0) break;
            var name = text.AsSpan(open + 2, close - open - 2).Trim();
            if (!IsPlaceholderName(name))
            {
                pos = open + 1;
                continue;
            }
            (literals ??= []).Add(text[literalStart..open]);
            (placeholders ??= []).Add(name.ToString());
            pos = close + 2;
            literalStart = pos;
        }
        if (placeholders is null) return new ScriptTemplate(text, [text], []);
        literals!.Add(text[literalStart..]);
        return new ScriptTemplate(text, [.. literals], [.. placeholders]);
    }

    /// <summary>Whether <paramref name="name"/> is an identifier (letters, digits, <c>_</c>, <c>-</c>, <c>.</c>) or a group number.</summary>
    private static bool IsPlaceholderName(ReadOnlySpan<char> name)
    {
        if (name.IsEmpty) return false;
        foreach (var c in name)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '.')) return false;
        }
        return true;
    }

    /// <summary>Renders the template; an unknown placeholder renders as an empty string.</summary>
    public string Render(in ScriptContext context)
    {
        if (_placeholders.Length == 0) return Text;
        if (SinglePlaceholder is { } only) return context.Resolve(only) ?? "";
        var sb = new StringBuilder(Text.Length + 32);
        for (var i = 0; i < _placeholders.Length; i++)
        {
            sb.Append(_literals[i]);
            sb.Append(context.Resolve(_placeholders[i]));
        }
        sb.Append(_literals[^1]);
        return sb.ToString();
    }

    /// <summary>
    /// Writes the rendered template as a JSON value: a JSON number when the template is exactly one
    /// placeholder whose value is a JSON number, otherwise a JSON string.
    /// </summary>
    public void WriteJson(Utf8JsonWriter writer, in ScriptContext context)
    {
        var value = Render(context);
        if (SinglePlaceholder is not null && IsJsonNumber(value))
            writer.WriteRawValue(value, skipInputValidation: true);
        else
            writer.WriteStringValue(value);
    }

    /// <summary>Whether <paramref name="s"/> is a number as JSON writes it (<c>-?(0|[1-9]d*)(.d+)?([eE][+-]?d+)?</c>).</summary>
    internal static bool IsJsonNumber(ReadOnlySpan<char> s)
    {
        var i = 0;
        if (i < s.Length && s[i] == '-') i++;
        if (i >= s.Length || !char.IsAsciiDigit(s[i])) return false;
        if (s[i] == '0') i++;
        else while (i < s.Length && char.IsAsciiDigit(s[i])) i++;
        if (i < s.Length && s[i] == '.')
        {
            i++;
            if (i >= s.Length || !char.IsAsciiDigit(s[i])) return false;
            while (i < s.Length && char.IsAsciiDigit(s[i])) i++;
        }
        if (i < s.Length && s[i] is 'e' or 'E')
        {
            i++;
            if (i < s.Length && s[i] is '+' or '-') i++;
            if (i >= s.Length || !char.IsAsciiDigit(s[i])) return false;
            while (i < s.Length && char.IsAsciiDigit(s[i])) i++;
        }
        return i == s.Length;
    }
}
