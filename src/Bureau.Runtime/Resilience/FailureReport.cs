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
public sealed record FailureGroup(string Cause, string? Kind, string? Dependency, int Count, DateTimeOffset FirstSeen, DateTimeOffset LastSeen, string ExampleRun, string Hint);

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
            .GroupBy(f => (f.Failure.Cause, f.Failure.Kind, f.Failure.Dependency))
            .Select(g =>
            {
                var newest = g.MaxBy(f => f.Run.UpdatedAt);
                return new FailureGroup(g.Key.Cause, g.Key.Kind, g.Key.Dependency, g.Count(),
                    g.Min(f => f.Run.UpdatedAt), newest.Run.UpdatedAt, newest.Run.Id, newest.Failure.Hint);
            })
            .OrderByDescending(g => g.Count).ThenByDescending(g => g.LastSeen)];
    }

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

    /// <summary>The groups as JSON: <c>{"groups":[{cause, kind, dependency, count, firstSeen, lastSeen, exampleRun, hint}]}</c>.</summary>
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
                ["hint"] = g.Hint,
            });
        }
        return new JsonObject { ["groups"] = items };
    }
}
