using System.Text.Json.Nodes;

namespace Bureau.Resilience;

/// <summary>Failed and canceled runs grouped by cause, detail and dependency: what <c>bureau runs failures</c> shows.</summary>
/// <param name="Cause">The cause class.</param>
/// <param name="Kind">Its detail, if any.</param>
/// <param name="Dependency">The model or tool at fault, if any.</param>
/// <param name="Count">Runs in the group.</param>
/// <param name="FirstSeen">When the oldest ended.</param>
/// <param name="LastSeen">When the newest ended.</param>
/// <param name="ExampleRun">The newest run of the group.</param>
/// <param name="Hint">The newest run's hint.</param>
/// <param name="Signature">The runs' error with what varies from run to run (ids, numbers, quoted text) taken out: one group per distinct error.</param>
/// <param name="ExampleStep">The step at which the newest run failed.</param>
/// <param name="ByDay">Runs per UTC day they ended (yyyy-MM-dd), oldest first: how the group moved over time.</param>
public sealed record FailureGroup(string Cause, string? Kind, string? Dependency, int Count, DateTimeOffset FirstSeen, DateTimeOffset LastSeen, string ExampleRun, string Hint,
    string? Signature = null, long? ExampleStep = null, IReadOnlyList<KeyValuePair<string, int>>? ByDay = null);

/// <summary>Reads runs' failures from their final journal entry and groups them.</summary>
public static class FailureReport
{
    /// <summary>
    /// The failure of a finished run: the <see cref="RunFinished.Failure"/> of its journal; for runs journaled before
    /// failures were classified, one inferred from the run's outcome.
    /// </summary>
    public static RunFailure? FailureOf(RunRecord run, IReadOnlyList<JournalRecord> journal)
    {
        ArgumentNullException.ThrowIfNull(run);
        ArgumentNullException.ThrowIfNull(journal);
        if (run.Status is not (RunStatus.Failed or RunStatus.Canceled)) return null;
        for (var i = journal.Count - 1; i >= 0; i--)
        {
            if (journal[i].Entry is RunFinished { Failure: { } f }) return f;
            if (journal[i].Entry is RunFinished) break;
        }
        var cause = run.Outcome switch
        {
            "budget" or "expired" => "budget",
            "loop" => "loop",
            "canceled" => "canceled",
            _ => run.Status == RunStatus.Canceled ? "canceled" : "internal",
        };
        return new RunFailure(cause, null, run.Version, null, null, "journaled before failures were classified: read the run's error and journal");
    }

    /// <summary>Groups failures by cause, detail and dependency, the most frequent first.</summary>
    public static IReadOnlyList<FailureGroup> Group(IEnumerable<(RunRecord Run, RunFailure Failure)> failures)
    {
        ArgumentNullException.ThrowIfNull(failures);
        return [.. failures
            .GroupBy(f => (f.Failure.Cause, f.Failure.Kind, f.Failure.Dependency, Signature: Signature(f.Run.Error)))
            .Select(g =>
            {
                var newest = g.MaxBy(f => f.Run.UpdatedAt);
                var byDay = g.GroupBy(f => f.Run.UpdatedAt.UtcDateTime.ToString("yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture))
                    .OrderBy(d => d.Key, StringComparer.Ordinal).Select(d => KeyValuePair.Create(d.Key, d.Count())).ToList();
                return new FailureGroup(g.Key.Cause, g.Key.Kind, g.Key.Dependency, g.Count(),
                    g.Min(f => f.Run.UpdatedAt), newest.Run.UpdatedAt, newest.Run.Id, newest.Failure.Hint, g.Key.Signature, newest.Failure.Step, byDay);
            })
            .OrderByDescending(g => g.Count).ThenByDescending(g => g.LastSeen)];
    }

    /// <summary>
    /// An error's signature: the message with what differs between runs of one fault taken out (run ids
    /// and other long tokens, numbers, quoted text, GUIDs and hex), so that "run 01m9… step 7: timeout
    /// after 30 s" and "run 01ma… step 4: timeout after 30 s" are one group. At most 200 characters.
    /// </summary>
    public static string? Signature(string? error)
    {
        if (string.IsNullOrWhiteSpace(error)) return null;
        var text = s_quoted.Replace(error, "'…'");
        text = s_guidOrHex.Replace(text, "#");
        text = s_idLike.Replace(text, "<id>");
        text = s_number.Replace(text, "N");
        text = s_space.Replace(text, " ").Trim();
        return text.Length <= 200 ? text : string.Concat(text.AsSpan(0, 199), "…");
    }

    private static readonly System.Text.RegularExpressions.Regex s_quoted = new(@"'[^']{0,200}'|""[^""]{0,200}""", System.Text.RegularExpressions.RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));
    private static readonly System.Text.RegularExpressions.Regex s_guidOrHex = new(@"\b[0-9a-fA-F]{8}-[0-9a-fA-F-]{27}\b|\b0x[0-9a-fA-F]+\b|\b[0-9a-f]{16,}\b", System.Text.RegularExpressions.RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));
    private static readonly System.Text.RegularExpressions.Regex s_idLike = new(@"\b(?=[a-z0-9]*[0-9])(?=[a-z0-9]*[a-z])[a-z0-9]{12,}\b", System.Text.RegularExpressions.RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));
    private static readonly System.Text.RegularExpressions.Regex s_number = new(@"\d+(\.\d+)?", System.Text.RegularExpressions.RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));
    private static readonly System.Text.RegularExpressions.Regex s_space = new(@"\s+", System.Text.RegularExpressions.RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));

    /// <summary>Reads the failed and canceled runs that ended at or after <paramref name="since"/> (all when null) and groups them.</summary>
    public static async Task<IReadOnlyList<FailureGroup>> ReadAsync(IRunStore store, DateTimeOffset? since, int maxRuns, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(store);
        var failures = new List<(RunRecord, RunFailure)>();
        foreach (var status in new[] { RunStatus.Failed, RunStatus.Canceled })
        {
            string? cursor = null;
            do
            {
                var page = await store.ListRunsAsync(new RunQuery { Status = status, Limit = 500, Cursor = cursor }, cancellationToken);
                foreach (var run in page.Items)
                {
                    if (since is { } s && run.UpdatedAt < s) continue;
                    var journal = await store.ReadJournalAsync(run.Id, Math.Max(0, run.Version - 2), cancellationToken);
                    if (FailureOf(run, journal) is { } f) failures.Add((run, f));
                    if (failures.Count >= maxRuns) break;
                }
                cursor = failures.Count >= maxRuns ? null : page.Next;
            }
            while (cursor is not null);
        }
        return Group(failures);
    }

    /// <summary>The groups as JSON: <c>{"groups":[{cause, kind, dependency, count, firstSeen, lastSeen, exampleRun, exampleStep, signature, hint, byDay}]}</c>.</summary>
    public static JsonObject ToJson(IReadOnlyList<FailureGroup> groups)
    {
        ArgumentNullException.ThrowIfNull(groups);
        var items = new JsonArray();
        foreach (var g in groups)
        {
            items.Add(new JsonObject
            {
                ["cause"] = g.Cause,
                ["kind"] = g.Kind,
                ["dependency"] = g.Dependency,
                ["count"] = g.Count,
                ["firstSeen"] = g.FirstSeen,
                ["lastSeen"] = g.LastSeen,
                ["exampleRun"] = g.ExampleRun,
                ["exampleStep"] = g.ExampleStep,
                ["signature"] = g.Signature,
                ["hint"] = g.Hint,
                ["byDay"] = new JsonObject([.. (g.ByDay ?? []).Select(d => KeyValuePair.Create(d.Key, (JsonNode?)d.Value))]),
            });
        }
        return new JsonObject { ["groups"] = items };
    }
}
