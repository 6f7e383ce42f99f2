namespace Bureau.Teams;

/// <summary>
/// What the limits of a tree of runs (teams, their members, delegates) need from the runs above a
/// run: how deep it sits, the depth every team above it allows, and the steps a subtree took.
/// </summary>
internal static class RunTree
{
    /// <summary>
    /// The deepest a run may sit below its root (its root's children are level 1), whatever the teams
    /// allow: a delegation chain (an agent calling an agent calling an agent...) without a team above
    /// it, or with teams whose <c>limits.maxDepth</c> is larger, ends here. The walks up the tree
    /// (permissions, budgets) read this many ancestors at most, so they always see the whole chain.
    /// </summary>
    public const int MaxLevels = 16;

    /// <summary>The runs above <paramref name="run"/>, its parent first, up to the root (at most one past <see cref="MaxLevels"/>).</summary>
    public static async Task<IReadOnlyList<RunRecord>> AncestorsAsync(IRunStore store, RunRecord run)
    {
        var ancestors = new List<RunRecord>();
        for (var parentId = run.ParentRunId; parentId is not null && ancestors.Count <= MaxLevels;)
        {
            var parent = await store.GetRunAsync(parentId, CancellationToken.None);
            if (parent is null) break;
            ancestors.Add(parent);
            parentId = parent.ParentRunId;
        }
        return ancestors;
    }

    /// <summary>
    /// Why <paramref name="run"/> may not start a child run, or null when it may: the child would sit
    /// more levels below some team (<paramref name="run"/> itself or one above it) than that team's
    /// <see cref="TeamLimits.MaxDepth"/>, or more than <see cref="MaxLevels"/> below its root.
    /// </summary>
    /// <param name="run">The run that would start the child (a team, or an agent delegating).</param>
    /// <param name="ancestors">Its ancestors, parent first (<see cref="AncestorsAsync"/>).</param>
    /// <param name="teams">The deployed teams.</param>
    public static string? DepthProblem(RunRecord run, IReadOnlyList<RunRecord> ancestors, IReadOnlyDictionary<string, TeamDefinition> teams)
    {
        var childDepth = ancestors.Count + 1; // the root is at depth 0
        var who = run.Kind == RunKinds.Team ? $"team '{run.Agent}'" : $"{run.Kind} '{run.Agent}' (run {run.Id})";
        // The highest team first: the root's limit is the one a user set for the whole tree.
        for (var i = ancestors.Count - 1; i >= -1; i--)
        {
            var above = i >= 0 ? ancestors[i] : run;
            if (above.Kind != RunKinds.Team || !teams.TryGetValue(above.Agent, out var team)) continue;
            var levels = childDepth - (ancestors.Count - 1 - i);
            if (levels > team.Limits.MaxDepth)
            {
                var where = ReferenceEquals(above, run) ? "" : $" (run {above.Id})";
                return $"{who} would start a run {levels} level{(levels == 1 ? "" : "s")} below team '{team.Name}'{where}; its limits.maxDepth is {team.Limits.MaxDepth}";
            }
        }
        if (childDepth > MaxLevels)
            return $"{who} would start a run {childDepth} levels below its root run {run.RootRunId ?? run.Id}; a tree of runs (teams, members, delegates) may be at most {MaxLevels} levels deep";
        return null;
    }

    /// <summary>
    /// Whether steps are counted for runs below <paramref name="run"/>: some team at or above it has a
    /// <c>budgets.maxSteps</c>. Counting reads each finished child's journal, so only trees that need it pay.
    /// </summary>
    public static bool CountsSteps(RunRecord run, IReadOnlyList<RunRecord> ancestors, IReadOnlyDictionary<string, TeamDefinition> teams)
    {
        if (run.Kind == RunKinds.Team && teams.TryGetValue(run.Agent, out var own) && own.Budgets.MaxSteps is not null) return true;
        foreach (var a in ancestors)
        {
            if (a.Kind == RunKinds.Team && teams.TryGetValue(a.Agent, out var team) && team.Budgets.MaxSteps is not null) return true;
        }
        return false;
    }

    /// <summary>
    /// What the finished run <paramref name="child"/> reports up to its parent (its <see cref="ChildRunFinished"/>): the
    /// tokens and cost of its subtree, and its subtree's steps when <paramref name="countSteps"/>. A team's row already
    /// sums its members; an agent's row holds its own model calls only, so for an agent that may delegate the tokens and
    /// cost its delegates reported are added. At most one journal read, and none for an agent that cannot delegate when
    /// steps are not counted (the fan-out of a plain team pays nothing).
    /// </summary>
    public static async Task<(UsageRecord Usage, double Cost, int? Steps)> FinishedChildAsync(IRunStore store, RunRecord child, bool countSteps, BureauDefinitions definitions)
    {
        var delegates = child.Kind == RunKinds.Agent && definitions.Agents.TryGetValue(child.Agent, out var agent) && agent.Delegates.Count > 0;
        if (!countSteps && !delegates) return (child.Usage, child.Cost, null);
        var tally = JournalTally.Empty.With(await store.ReadJournalAsync(child.Id, 0, CancellationToken.None));
        return delegates
            ? (child.Usage + tally.ChildUsage, JournalTally.SumCost(child.Cost, tally.ChildCost), countSteps ? tally.Steps : null)
            : (child.Usage, child.Cost, tally.Steps);
    }
}

/// <summary>
/// What a run's journal says about the tree below it, up to entry <see cref="Version"/>: the steps (its own model and
/// tool calls, plus what its finished children reported), the tokens and cost its finished children reported, and
/// when its first step after the start was journaled. Folded from journal entries, so it can be extended with the
/// entries after <see cref="Version"/> alone.
/// </summary>
internal sealed record JournalTally(long Version, int Steps, UsageRecord ChildUsage, double ChildCost, DateTimeOffset? FirstStepAt)
{
    /// <summary>Nothing read yet.</summary>
    public static readonly JournalTally Empty = new(0, 0, UsageRecord.Zero, 0, null);

    /// <summary>This tally extended with <paramref name="records"/> (the entries after <see cref="Version"/>, in order).</summary>
    public JournalTally With(IReadOnlyList<JournalRecord> records)
    {
        if (records.Count == 0) return this;
        var steps = Steps;
        var usage = ChildUsage;
        var cost = ChildCost;
        var first = FirstStepAt;
        foreach (var r in records)
        {
            if (first is null && r.N > 1) first = r.At;
            switch (r.Entry)
            {
                case ModelResponded or ToolCompleted or ToolCallRejected:
                    steps++;
                    break;
                case ChildRunFinished f:
                    steps += f.Steps ?? 0;
                    usage += f.Usage ?? UsageRecord.Zero;
                    cost = SumCost(cost, f.Cost ?? 0);
                    break;
            }
        }
        return new JournalTally(Math.Max(Version, records[^1].N), steps, usage, cost, first);
    }

    /// <summary>Costs are kept to 9 decimals, so 0.06 - 0.04 leaves 0.02, not 0.019999...</summary>
    public static double SumCost(double a, double b) => Math.Round(a + b, 9);
}

/// <summary>
/// The <see cref="JournalTally"/> of the runs above starting members, kept per process so each start reads only the
/// entries journaled since the last one: a team's journal grows by two entries per member, and reading it whole at
/// every member's start made a wide fan-out under a step or time budget quadratic. A journal's entries never change
/// once written, so a kept tally is extended, never wrong; another node's appends are read like local ones. At most
/// <see cref="Capacity"/> runs are kept; past that the cache starts over (the next starts read those journals once).
/// </summary>
internal sealed class JournalTallies(IRunStore store)
{
    /// <summary>The most runs whose tallies are kept.</summary>
    public const int Capacity = 4096;

    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, JournalTally> _tallies = new(StringComparer.Ordinal);

    /// <summary>The tally of <paramref name="runId"/>'s journal as the store has it now.</summary>
    public async Task<JournalTally> GetAsync(string runId)
    {
        var known = _tallies.TryGetValue(runId, out var kept) ? kept : JournalTally.Empty;
        var now = known.With(await store.ReadJournalAsync(runId, known.Version, CancellationToken.None));
        if (ReferenceEquals(now, known)) return now;
        if (_tallies.Count >= Capacity) _tallies.Clear();
        _tallies.AddOrUpdate(runId, now, (_, other) => other.Version >= now.Version ? other : now);
        return now;
    }
}
