using System.Diagnostics;

namespace Bureau.Engine;

/// <summary>
/// Named crash points for durability tests. <c>BUREAU_CRASH_AT=after-intent</c> kills the process
/// (SIGKILL, no cleanup) the first time that point is reached; <c>after-intent:3</c> the third time.
/// Several points may be given, comma-separated. Unset in production: one static read per hit.
/// </summary>
internal static class CrashPoints
{
    private static readonly Dictionary<string, int>? Armed = Parse(Environment.GetEnvironmentVariable("BUREAU_CRASH_AT"));
    private static readonly Dictionary<string, int> Hits = new(StringComparer.Ordinal);

    /// <summary>The points the engine passes, in a run's order.</summary>
    public static readonly string[] Names =
        ["after-model", "after-model-journal", "before-intent", "after-intent", "after-tool", "after-result", "before-finish"];

    public static void Hit(string name)
    {
        if (Armed is null || !Armed.TryGetValue(name, out var at)) return;
        int count;
        lock (Hits)
        {
            count = Hits[name] = Hits.GetValueOrDefault(name) + 1;
        }
        if (count != at) return;
        Console.Error.WriteLine($"bureau: crash point '{name}' reached (hit {count}); killing the process");
        Console.Error.Flush();
        Process.GetCurrentProcess().Kill();
        Thread.Sleep(Timeout.Infinite);
    }

    private static Dictionary<string, int>? Parse(string? value)
    {
        if (string.IsNullOrWhiteSpace(value)) return null;
        var d = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var part in value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var i = part.IndexOf(':');
            d[i < 0 ? part : part[..i]] = i < 0 ? 1 : int.Parse(part[(i + 1)..], System.Globalization.CultureInfo.InvariantCulture);
        }
        return d;
    }
}
