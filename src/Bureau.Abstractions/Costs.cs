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
