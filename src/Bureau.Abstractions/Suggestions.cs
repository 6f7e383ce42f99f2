namespace Bureau;

/// <summary>"Did you mean" by Levenshtein distance.</summary>
internal static class Suggestions
{
    /// <summary>The closest candidate, if close enough to be a likely typo; otherwise null.</summary>
    public static string? Closest(string value, IEnumerable<string> candidates)
    {
        string? best = null;
        var bestDistance = int.MaxValue;
        foreach (var candidate in candidates)
        {
            var d = string.Equals(value, candidate, StringComparison.OrdinalIgnoreCase) ? 0 : Distance(value, candidate);
            if (d < bestDistance)
            {
                best = candidate;
                bestDistance = d;
            }
        }
        var allowed = Math.Max(2, Math.Min(value.Length, best?.Length ?? 0) / 3);
        return best is not null && bestDistance <= allowed ? best : null;
    }

    /// <summary>"; did you mean 'x'?" or, when nothing is close, "; expected one of a, b, c" (empty when there are no candidates).</summary>
    public static string Hint(string value, IReadOnlyCollection<string> candidates)
    {
        var closest = Closest(value, candidates);
        if (closest is not null) return $"; did you mean '{closest}'?";
        return candidates.Count == 0 ? "" : "; expected one of " + string.Join(", ", candidates);
    }

    public static int Distance(string a, string b)
    {
        var previous = new int[b.Length + 1];
        var current = new int[b.Length + 1];
        for (var j = 0; j <= b.Length; j++) previous[j] = j;
        for (var i = 1; i <= a.Length; i++)
        {
            current[0] = i;
            for (var j = 1; j <= b.Length; j++)
            {
                var cost = a[i - 1] == b[j - 1] ? 0 : 1;
                current[j] = Math.Min(Math.Min(current[j - 1] + 1, previous[j] + 1), previous[j - 1] + cost);
            }
            (previous, current) = (current, previous);
        }
        return previous[b.Length];
    }
}
