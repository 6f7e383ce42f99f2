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
    /// The steps of a run and everything below it, from its journal: its own model calls and tool
    /// calls (answered or refused), plus the steps its finished children reported
    /// (<see cref="ChildRunFinished.Steps"/>).
    /// </summary>
    public static int StepsOf(IEnumerable<JournalRecord> journal)
    {
        var steps = 0;
        foreach (var r in journal)
        {
            steps += r.Entry switch
            {
                ModelResponded or ToolCompleted or ToolCallRejected => 1,
                ChildRunFinished f => f.Steps ?? 0,
                _ => 0,
            };
        }
        return steps;
    }

    /// <summary>The steps of the finished run <paramref name="childId"/> and its subtree (one journal read).</summary>
    public static async Task<int> StepsOfAsync(IRunStore store, string childId) =>
        StepsOf(await store.ReadJournalAsync(childId, 0, CancellationToken.None));
}
