using System.Globalization;
using System.Text.RegularExpressions;

namespace Bureau.Models.Scripted;

/// <summary>What a template can refer to: the built-ins and the captures of the matched rule's regexes.</summary>
internal readonly struct ScriptContext
{
    public ScriptContext(string input, int turn, string last, Match? inputMatch, Match? userMatch, Match? textMatch)
    {
        Input = input;
        Turn = turn;
        Last = last;
        InputMatch = inputMatch;
        UserMatch = userMatch;
        TextMatch = textMatch;
    }

    public string Input { get; }
    public int Turn { get; }
    public string Last { get; }
    public Match? InputMatch { get; }
    public Match? UserMatch { get; }
    public Match? TextMatch { get; }

    /// <summary>
    /// The value of a placeholder: a named or numbered capture (from <c>match</c>, else <c>user</c>, else
    /// <c>input</c>: the latest regex wins), else a built-in; null when unknown.
    /// </summary>
    public string? Resolve(string name)
    {
        if (Capture(TextMatch, name) is { } m) return m;
        if (Capture(UserMatch, name) is { } u) return u;
        if (Capture(InputMatch, name) is { } i) return i;
        return name switch
        {
            "input" => Input,
            "turn" => Turn.ToString(CultureInfo.InvariantCulture),
            "turnIndex" => (Turn - 1).ToString(CultureInfo.InvariantCulture),
            "last" => Last,
            _ => null,
        };
    }

    /// <summary>A group by number (named groups are numbered after the unnamed ones, as .NET does) or by name.</summary>
    private static string? Capture(Match? match, string name)
    {
        if (match is null) return null;
        Group? group;
        if (int.TryParse(name, NumberStyles.None, CultureInfo.InvariantCulture, out var number))
            group = number < match.Groups.Count ? match.Groups[number] : null;
        else if (!match.Groups.TryGetValue(name, out group))
            group = null;
        return group is { Success: true } ? group.Value : null;
    }
}
