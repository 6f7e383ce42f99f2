using System.Globalization;
using System.Text;

namespace Bureau.Storage.PostgreSql;

/// <summary>
/// The payload of an event notice: what one writer transaction appended, as run id and step range, small enough for
/// PostgreSQL's 8000-byte NOTIFY limit (a big batch is split into several notices of the same transaction). Text:
/// the writer's origin on the first line, then one line per run, <c>from to flag id</c> (flag <c>l</c> when the range
/// holds a lifecycle entry: started, waiting, resumed, finished, canceled; <c>-</c> otherwise; the id last, with
/// backslash and newline escaped). The journal rows themselves are read from the store by whoever needs them.
/// </summary>
internal static class PgEventNotices
{
    /// <summary>Bytes a payload may take (PostgreSQL refuses 8000 and more).</summary>
    internal const int MaxPayloadBytes = 7900;

    /// <summary>One run's range in a notice.</summary>
    internal readonly record struct Range(string RunId, long From, long To, bool Lifecycle);

    /// <summary>Whether watchers of every run (lists, followers, recorders) care about the entry on other nodes.</summary>
    internal static bool IsLifecycle(JournalEntry entry) => entry is RunStarted or RunWaiting or RunResumed or RunFinished or RunCanceled;

    /// <summary>The payloads for the entries of a transaction (run ids and step numbers in append order).</summary>
    internal static List<string> Build(string origin, List<string> runIds, List<long> ns, List<bool> lifecycle)
    {
        var payloads = new List<string>(1);
        var sb = new StringBuilder(origin.Length + 64 * Math.Min(runIds.Count, 100));
        var bytes = 0;
        void Start()
        {
            sb.Clear().Append(origin);
            bytes = Encoding.UTF8.GetByteCount(origin);
        }
        Start();
        var i = 0;
        while (i < runIds.Count)
        {
            var run = runIds[i];
            var from = ns[i];
            var to = from;
            var life = lifecycle[i];
            var j = i + 1;
            while (j < runIds.Count && string.Equals(runIds[j], run, StringComparison.Ordinal) && ns[j] == to + 1)
            {
                to = ns[j];
                life |= lifecycle[j];
                j++;
            }
            var line = string.Create(CultureInfo.InvariantCulture, $"\n{from} {to} {(life ? 'l' : '-')} {Escape(run)}");
            var lineBytes = Encoding.UTF8.GetByteCount(line);
            if (bytes + lineBytes > MaxPayloadBytes && sb.Length > origin.Length)
            {
                payloads.Add(sb.ToString());
                Start();
            }
            sb.Append(line);
            bytes += lineBytes;
            i = j;
        }
        if (sb.Length > origin.Length) payloads.Add(sb.ToString());
        return payloads;
    }

    /// <summary>The origin of a payload (its first line).</summary>
    internal static ReadOnlySpan<char> Origin(string payload)
    {
        var nl = payload.IndexOf('\n', StringComparison.Ordinal);
        return nl < 0 ? payload : payload.AsSpan(0, nl);
    }

    /// <summary>The ranges of a payload; a malformed line is skipped.</summary>
    internal static List<Range> Parse(string payload)
    {
        var ranges = new List<Range>();
        var lines = payload.Split('\n');
        for (var k = 1; k < lines.Length; k++)
        {
            var parts = lines[k].Split(' ', 4);
            if (parts.Length == 4
                && long.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var from)
                && long.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var to))
            {
                ranges.Add(new Range(Unescape(parts[3]), from, to, parts[2] == "l"));
            }
        }
        return ranges;
    }

    private static string Escape(string id) =>
        id.AsSpan().IndexOfAny('\\', '\n') < 0 ? id : id.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);

    private static string Unescape(string id)
    {
        if (!id.Contains('\\', StringComparison.Ordinal)) return id;
        var sb = new StringBuilder(id.Length);
        for (var i = 0; i < id.Length; i++)
        {
            if (id[i] == '\\' && i + 1 < id.Length)
            {
                sb.Append(id[i + 1] == 'n' ? '\n' : id[i + 1]);
                i++;
            }
            else sb.Append(id[i]);
        }
        return sb.ToString();
    }
}
