using System.Globalization;
using System.Text.Json.Nodes;

namespace Bureau;

/// <summary>How <see cref="IRunStore.ReadCostsAsync"/> groups runs.</summary>
public enum CostGrouping
{
    /// <summary>One row per agent (the agent runs' own model calls).</summary>
    Agent,
    /// <summary>One row per UTC day the runs were created on.</summary>
    Day,
}

/// <summary>Which runs a cost report covers and how it groups them.</summary>
public sealed record CostQuery
{
    /// <summary>Per agent or per day.</summary>
    public CostGrouping By { get; init; } = CostGrouping.Agent;
    /// <summary>Only runs created at or after this; null: from the first.</summary>
    public DateTimeOffset? Since { get; init; }
    /// <summary>Only runs created before this; null: up to now.</summary>
    public DateTimeOffset? Until { get; init; }
}

/// <summary>One row of a cost report.</summary>
/// <param name="Key">The agent's name, or the day (<c>yyyy-MM-dd</c>, UTC).</param>
/// <param name="Runs">The runs counted (agent runs; team runs are not counted, their members are).</param>
/// <param name="InputTokens">Their input tokens.</param>
/// <param name="OutputTokens">Their output tokens.</param>
/// <param name="Cost">Their cost (priced models only).</param>
public sealed record CostRow(string Key, long Runs, long InputTokens, long OutputTokens, double Cost);

/// <summary>
/// Cost reports from run rows. Only runs that call models themselves are counted: a team run's row
/// is the sum of its members' rows, so counting it too would count its members twice. An agent
/// run's row holds its own model calls only (a delegate it called is a run of its own, counted
/// under the delegate's name), so summing agent runs counts every model call exactly once.
/// </summary>
public static class CostReport
{
    /// <summary>True for a run a cost report counts: every kind but <see cref="RunKinds.Team"/>.</summary>
    public static bool Counts(RunRecord run)
    {
        ArgumentNullException.ThrowIfNull(run);
        return run.Kind != RunKinds.Team;
    }

    /// <summary>The report's key of a run: its agent, or its creation day (UTC).</summary>
    public static string KeyOf(RunRecord run, CostGrouping by)
    {
        ArgumentNullException.ThrowIfNull(run);
        return by == CostGrouping.Day ? DayOf(run.CreatedAt) : run.Agent;
    }

    /// <summary>A time's UTC day as a report key (<c>yyyy-MM-dd</c>).</summary>
    public static string DayOf(DateTimeOffset at) => at.UtcDateTime.ToString("yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Groups runs as <paramref name="query"/> asks (filters included), ordered by key (agents) or by day.</summary>
    public static IReadOnlyList<CostRow> Group(IEnumerable<RunRecord> runs, CostQuery query)
    {
        ArgumentNullException.ThrowIfNull(runs);
        ArgumentNullException.ThrowIfNull(query);
        return [.. runs
            .Where(r => Counts(r) && (query.Since is not { } s || r.CreatedAt >= s) && (query.Until is not { } u || r.CreatedAt < u))
            .GroupBy(r => KeyOf(r, query.By), StringComparer.Ordinal)
            .Select(g => new CostRow(g.Key, g.LongCount(), g.Sum(r => r.Usage.InputTokens), g.Sum(r => r.Usage.OutputTokens), Math.Round(g.Sum(r => r.Cost), 9)))
            .OrderBy(r => r.Key, StringComparer.Ordinal)];
    }

    /// <summary>The wire name of a grouping: <c>agent</c> or <c>day</c>.</summary>
    public static string WireName(CostGrouping by) => by == CostGrouping.Day ? "day" : "agent";

    /// <summary>Parses <c>agent</c> or <c>day</c>; false for anything else.</summary>
    public static bool TryParseGrouping(string? text, out CostGrouping by)
    {
        by = text switch { "day" => CostGrouping.Day, _ => CostGrouping.Agent };
        return text is "agent" or "day";
    }

    /// <summary>
    /// Parses a report bound: a day (<c>2026-12-06</c>, its start in UTC) or a time (<c>2026-12-06T10:00Z</c>; UTC
    /// when it names no offset). False for anything else.
    /// </summary>
    public static bool TryParseTime(string? text, out DateTimeOffset at)
    {
        at = default;
        if (string.IsNullOrWhiteSpace(text)) return false;
        text = text.Trim();
        if (DateOnly.TryParseExact(text, "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.None, out var day))
        {
            at = new DateTimeOffset(day.ToDateTime(TimeOnly.MinValue), TimeSpan.Zero);
            return true;
        }
        // A time must have a date and a time of day: "12" or "tomorrow" is not one.
        return text.Contains('T', StringComparison.OrdinalIgnoreCase) || text.Contains(' ', StringComparison.Ordinal)
            ? DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out at)
            : false;
    }

    /// <summary>
    /// The report as JSON (<c>GET /v1/costs</c>, <c>bureau costs --json</c>): <c>by</c>, <c>since</c>, <c>until</c>,
    /// <c>rows</c> (each with <c>agent</c> or <c>day</c>, <c>runs</c>, <c>inputTokens</c>, <c>outputTokens</c>, <c>cost</c>) and their <c>total</c>.
    /// </summary>
    public static JsonObject ToJson(IReadOnlyList<CostRow> rows, CostQuery query)
    {
        ArgumentNullException.ThrowIfNull(rows);
        ArgumentNullException.ThrowIfNull(query);
        var key = WireName(query.By);
        var items = new JsonArray();
        foreach (var r in rows)
        {
            items.Add(new JsonObject
            {
                [key] = r.Key, ["runs"] = r.Runs, ["inputTokens"] = r.InputTokens, ["outputTokens"] = r.OutputTokens, ["cost"] = r.Cost,
            });
        }
        return new JsonObject
        {
            ["by"] = key,
            ["since"] = query.Since,
            ["until"] = query.Until,
            ["rows"] = items,
            ["total"] = new JsonObject
            {
                ["runs"] = rows.Sum(r => r.Runs),
                ["inputTokens"] = rows.Sum(r => r.InputTokens),
                ["outputTokens"] = rows.Sum(r => r.OutputTokens),
                ["cost"] = Math.Round(rows.Sum(r => r.Cost), 9),
            },
        };
    }

    /// <summary>Reads every run through <see cref="IRunStore.ListRunsAsync"/> and groups them: the fallback of stores without a query of their own.</summary>
    public static async Task<IReadOnlyList<CostRow>> ReadByListingAsync(IRunStore store, CostQuery query, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(store);
        var runs = new List<RunRecord>();
        string? cursor = null;
        do
        {
            var page = await store.ListRunsAsync(new RunQuery { Limit = 1000, Cursor = cursor }, cancellationToken);
            runs.AddRange(page.Items);
            cursor = page.Next;
        }
        while (cursor is not null);
        return Group(runs, query);
    }
}
