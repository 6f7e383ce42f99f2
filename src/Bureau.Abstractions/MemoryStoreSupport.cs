using System.Text;

namespace Bureau;

/// <summary>
/// What every memory store does the same way, whatever its database: the checks on a write, the names of write outcomes
/// in a row, the words of a recall query, cosine similarity, and the fusion of the full-text and vector rankings. The
/// stores keep only their SQL, so a fact ranks and a write is refused alike on SQLite and PostgreSQL.
/// </summary>
internal static class MemoryStoreSupport
{
    /// <summary>The constant of reciprocal rank fusion (a hit at rank r adds 1 / (k + r)).</summary>
    internal const int FusionK = 60;

    /// <summary>At most this many words of a recall query are searched for.</summary>
    internal const int MaxQueryWords = 64;

    /// <summary>Refuses a write the store must not keep, saying which fact and why.</summary>
    internal static void Check(MemoryWrite write)
    {
        if (MemoryScopes.Problem(write.Scope) is { } scopeProblem) throw new ArgumentException($"memory write: {scopeProblem}", nameof(write));
        if (MemoryScopes.KeyProblem(write.Key) is { } keyProblem) throw new ArgumentException($"memory write to {write.Scope}: {keyProblem}", nameof(write));
        if (write.Value is { Length: > MemoryScopes.MaxValueLength })
            throw new ArgumentException($"memory write to {write.Scope}/{write.Key}: the value is longer than {MemoryScopes.MaxValueLength} characters", nameof(write));
        if (write.ExpectedVersion is < 0) throw new ArgumentException($"memory write to {write.Scope}/{write.Key}: expectedVersion must be 0 or more", nameof(write));
    }

    /// <summary>
    /// The compare-and-set rule, applied to a write and the fact's live head as the store read it in the write's
    /// transaction: either an <see cref="MemoryWriteDecision.Answer"/> to return at once (nothing to forget, or a
    /// conflict without a merge rule, carrying the current fact), or the value to store as the next version and its
    /// outcome. A conflict with <see cref="MemoryConflictRule.Append"/> appends to the live value; with
    /// <see cref="MemoryConflictRule.LastWriterWins"/> the write takes.
    /// </summary>
    internal static MemoryWriteDecision Decide(MemoryWrite write, MemoryFact? head)
    {
        var version = head?.Version ?? 0;
        var live = head?.Value;
        if (write.Value is null && live is null) return new(new MemoryWriteResult(MemoryWriteOutcome.Absent, null, head), null, MemoryWriteOutcome.Absent, version);
        var holds = write.ExpectedVersion switch
        {
            null => true,
            0 => live is null,
            var expected => expected == version,
        };
        var value = write.Value;
        var outcome = value is null ? MemoryWriteOutcome.Forgotten : MemoryWriteOutcome.Written;
        if (!holds)
        {
            switch (write.OnConflict)
            {
                case MemoryConflictRule.LastWriterWins:
                    break;
                case MemoryConflictRule.Append when value is not null:
                    if (live is not null)
                    {
                        value = live + "\n" + value;
                        outcome = MemoryWriteOutcome.Merged;
                    }
                    break;
                default:
                    return new(new MemoryWriteResult(MemoryWriteOutcome.Conflict, null, head), null, MemoryWriteOutcome.Conflict, version);
            }
        }
        if (value is not null && value.Length > MemoryScopes.MaxValueLength)
            throw new ArgumentException($"memory {write.Scope}/{write.Key}: the merged value would be longer than {MemoryScopes.MaxValueLength} characters", nameof(write));
        return new(null, value, outcome, version);
    }

    /// <summary>An outcome as a row stores it.</summary>
    internal static string OutcomeName(MemoryWriteOutcome outcome) => outcome switch
    {
        MemoryWriteOutcome.Merged => "merged",
        MemoryWriteOutcome.Forgotten => "forgotten",
        _ => "written",
    };

    /// <summary>An outcome read back from a row.</summary>
    internal static MemoryWriteOutcome OutcomeOf(string name) => name switch
    {
        "merged" => MemoryWriteOutcome.Merged,
        "forgotten" => MemoryWriteOutcome.Forgotten,
        _ => MemoryWriteOutcome.Written,
    };

    /// <summary>
    /// The words of free text a full-text recall searches for: letters and digits only (so no character of the text is
    /// the database's query syntax), each once (case ignored), at most <see cref="MaxQueryWords"/>. Common English words
    /// (<c>the</c>, <c>what</c>, ...) are left out unless nothing else is left: they match nearly every fact and add
    /// nothing to the ranking. Empty when the text has no word.
    /// </summary>
    internal static IReadOnlyList<string> QueryWords(string? text)
    {
        if (string.IsNullOrWhiteSpace(text)) return [];
        var words = new List<string>();
        var current = new StringBuilder();
        foreach (var ch in text)
        {
            if (char.IsLetterOrDigit(ch)) current.Append(ch);
            else if (current.Length > 0)
            {
                words.Add(current.ToString());
                current.Clear();
            }
        }
        if (current.Length > 0) words.Add(current.ToString());
        var distinct = words.Distinct(StringComparer.OrdinalIgnoreCase).ToList();
        var meaningful = distinct.Where(w => !s_stopWords.Contains(w)).ToList();
        if (meaningful.Count > 0) distinct = meaningful;
        return distinct.Count > MaxQueryWords ? distinct.GetRange(0, MaxQueryWords) : distinct;
    }

    /// <summary>The Euclidean norm of an embedding.</summary>
    internal static double Norm(ReadOnlySpan<float> a) => Math.Sqrt(Dot(a, a));

    /// <summary>The cosine similarity of a query (its norm computed once, <see cref="Norm"/>) and a stored embedding.</summary>
    internal static double Cosine(ReadOnlySpan<float> query, double queryNorm, ReadOnlySpan<float> vector) =>
        Dot(query, vector) / (queryNorm * Norm(vector) + 1e-12);

    /// <summary>Reciprocal rank fusion of the full-text and the vector rankings; the score is the fused one.</summary>
    internal static List<MemoryHit> Fuse(IReadOnlyList<MemoryHit> text, IReadOnlyList<MemoryHit> vectors, int limit)
    {
        var scores = new Dictionary<(string, string), (MemoryFact Fact, double Score)>();
        void Add(IReadOnlyList<MemoryHit> ranking)
        {
            for (var i = 0; i < ranking.Count; i++)
            {
                var f = ranking[i].Fact;
                var key = (f.Scope, f.Key);
                var add = 1.0 / (FusionK + i + 1);
                scores[key] = scores.TryGetValue(key, out var s) ? (s.Fact, s.Score + add) : (f, add);
            }
        }
        Add(text);
        Add(vectors);
        return [.. scores.Values.OrderByDescending(s => s.Score).ThenBy(s => s.Fact.Key, StringComparer.Ordinal).Take(limit)
            .Select(s => new MemoryHit(s.Fact, Math.Round(s.Score, 6)))];
    }

    private static double Dot(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        var sum = 0f;
        var i = 0;
        if (System.Numerics.Vector.IsHardwareAccelerated)
        {
            var acc = System.Numerics.Vector<float>.Zero;
            var width = System.Numerics.Vector<float>.Count;
            for (; i <= a.Length - width; i += width) acc += new System.Numerics.Vector<float>(a[i..]) * new System.Numerics.Vector<float>(b[i..]);
            sum = System.Numerics.Vector.Sum(acc);
        }
        for (; i < a.Length; i++) sum += a[i] * b[i];
        return sum;
    }

    private static readonly HashSet<string> s_stopWords = new(StringComparer.OrdinalIgnoreCase)
    {
        "a", "about", "all", "am", "an", "and", "any", "are", "as", "at", "be", "been", "but", "by", "can", "could", "did", "do", "does", "for",
        "from", "get", "got", "had", "has", "have", "he", "her", "him", "his", "how", "i", "if", "in", "into", "is", "it", "its", "me", "my",
        "no", "not", "now", "of", "on", "or", "our", "she", "should", "so", "some", "that", "the", "their", "them", "then", "there", "these",
        "they", "this", "those", "to", "too", "up", "us", "was", "we", "were", "what", "when", "where", "which", "who", "whom", "why", "will",
        "with", "would", "you", "your",
    };
}

/// <summary>What <see cref="MemoryStoreSupport.Decide"/> concluded: an answer to return now, or the value (null: forget) to store as version <c>Version + 1</c>.</summary>
internal readonly record struct MemoryWriteDecision(MemoryWriteResult? Answer, string? Value, MemoryWriteOutcome Outcome, long Version);
