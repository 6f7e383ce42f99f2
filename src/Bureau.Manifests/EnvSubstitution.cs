using System.Text;

namespace Bureau.Manifests;

/// <summary>
/// <c>${VAR}</c>, <c>${VAR:-default}</c> and <c>$$</c> (a literal dollar) in scalar values.
/// A <c>$</c> followed by anything else stays as written.
/// </summary>
internal static class EnvSubstitution
{
    /// <summary>Substitutes variables; returns null and sets <paramref name="error"/> when one is missing or malformed.</summary>
    public static string? Apply(string text, IReadOnlyDictionary<string, string?> environment, out string? error)
    {
        error = null;
        if (!text.Contains('$')) return text;
        var sb = new StringBuilder(text.Length);
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            if (c != '$' || i + 1 >= text.Length)
            {
                sb.Append(c);
                continue;
            }
            var next = text[i + 1];
            if (next == '$')
            {
                sb.Append('$');
                i++;
                continue;
            }
            if (next != '{')
            {
                sb.Append(c);
                continue;
            }
            var close = text.IndexOf('}', i + 2);
            if (close < 0)
            {
                error = $"unterminated '${{' in '{text}'; write ${{VAR}} or ${{VAR:-default}}, or $$ for a literal dollar";
                return null;
            }
            var body = text.Substring(i + 2, close - i - 2);
            string name;
            string? fallback = null;
            var sep = body.IndexOf(":-", StringComparison.Ordinal);
            if (sep >= 0)
            {
                name = body[..sep];
                fallback = body[(sep + 2)..];
            }
            else
            {
                name = body;
            }
            if (!IsVariableName(name))
            {
                error = $"'${{{body}}}' is not a valid variable reference; write ${{VAR}} or ${{VAR:-default}} (letters, digits and _), or $$ for a literal dollar";
                return null;
            }
            environment.TryGetValue(name, out var value);
            if (string.IsNullOrEmpty(value))
            {
                if (fallback is not null)
                {
                    value = fallback;
                }
                else if (value is null)
                {
                    error = $"environment variable '{name}' is not set (write ${{{name}:-default}} to give a default)";
                    return null;
                }
            }
            sb.Append(value);
            i = close;
        }
        return sb.ToString();
    }

    public static bool IsVariableName(string name)
    {
        if (name.Length == 0 || !(char.IsAsciiLetter(name[0]) || name[0] == '_')) return false;
        foreach (var ch in name)
            if (!(char.IsAsciiLetterOrDigit(ch) || ch == '_')) return false;
        return true;
    }
}
