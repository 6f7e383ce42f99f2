using Bureau.Engine;
using Microsoft.Extensions.Logging;

namespace Bureau.Teams;

/// <summary>
/// The run kind <c>team</c>: a durable orchestration whose members run as child runs, each with its
/// own journal. The team's journal records each child it started (<see cref="ChildRunStarted"/>, with
/// its stage label) and how each ended (<see cref="ChildRunFinished"/>); the pattern decides the next
/// move from that alone (<see cref="TeamPatterns"/>). Children are submitted with an idempotency key
/// made of the team's run id and the child's index, so a team that crashed between submitting a
/// child and journaling it finds the same child again, and a finished child is never run again.
/// While children run, the team waits (<see cref="ChildRunsWait"/>); a child that ends wakes it, and
/// the wait's deadline re-checks the children as a safety net.
/// </summary>
internal sealed partial class TeamRunExecutor : IRunExecutor
{
    /// <summary>How often a waiting team re-checks its children if no child woke it.</summary>
    public static readonly TimeSpan RecheckEvery = TimeSpan.FromSeconds(30);

    private readonly BureauDefinitions _definitions;
    private readonly ILogger _logger;

    public TeamRunExecutor(BureauDeployment deployment, ILoggerFactory loggerFactory)
    {
        _definitions = deployment.Definitions;
        _logger = loggerFactory.CreateLogger("Bureau.Teams");
        foreach (var team in _definitions.Teams.Values) Check(team, _definitions);
        Targets = _definitions.Teams.Keys;
    }

    /// <summary>What a manifest's reader checks, for teams defined in C#: refused at start, not at the first run.</summary>
    private static void Check(TeamDefinition team, BureauDefinitions definitions)
    {
        string Problem(string message) => throw new ArgumentException($"team '{team.Name}': {message}", nameof(definitions));
        if (definitions.Agents.ContainsKey(team.Name)) Problem("an agent has the same name (agents and teams share one namespace)");
        foreach (var used in team.Uses())
        {
            if (!definitions.Agents.ContainsKey(used) && !definitions.Teams.ContainsKey(used))
                Problem($"'{used}' is neither an agent nor a team");
        }
        switch (team.Pattern)
        {
            case TeamPattern.Router when team.Planner is null: Problem("a router needs a Planner"); break;
            case TeamPattern.Supervisor when team.Supervisor is null: Problem("a supervisor team needs a Supervisor"); break;
            case TeamPattern.Graph when team.Start is null || !team.Nodes.ContainsKey(team.Start): Problem("a graph needs a Start that is one of its Nodes"); break;
            case TeamPattern.Graph when team.Edges.FirstOrDefault(e => !team.Nodes.ContainsKey(e.From) || (e.To != "end" && !team.Nodes.ContainsKey(e.To))) is { } bad:
                Problem($"the edge {bad.From} -> {bad.To} names a node it does not have"); break;
            case TeamPattern.Sequential or TeamPattern.Parallel or TeamPattern.Handoff or TeamPattern.Router when team.Members.Count == 0:
                Problem("it has no members"); break;
        }
    }

    public string Kind => RunKinds.Team;
    public IReadOnlyCollection<string> Targets { get; }

    public async Task<RunStatus> ExecuteAsync(RunContext run)
    {
        var team = _definitions.Teams[run.Run.Agent];
        var state = new TeamState(run.Run.Input);
        foreach (var r in run.Journal) state.Apply(r);
        run.Fold = state.Apply;
        var engine = run.Engine;

        // The runs above this team: read once per execution, when needed (a root team has none).
        IReadOnlyList<RunRecord>? ancestors = run.Run.ParentRunId is null ? [] : null;
        async Task<IReadOnlyList<RunRecord>> AncestorsAsync() => ancestors ??= await RunTree.AncestorsAsync(engine.Store, run.Run);
        var countSteps = team.Budgets.MaxSteps is not null || (run.Run.ParentRunId is not null && RunTree.CountsSteps(run.Run, await AncestorsAsync(), _definitions.Teams));

        while (true)
        {
            if (run.IsStopping) return RunStatus.Running;
            run.CancellationToken.ThrowIfCancellationRequested();
            await CollectFinishedAsync(run, state, countSteps);

            var move = TeamPatterns.Next(team, state);
            if (move is StartChildren start && (Limit(team, state, start) ?? await TreeLimitAsync(run, start) ?? DepthLimit(run, await AncestorsAsync())) is { } over) move = over;
            if (move is StartChildren or WaitForChildren && Budget(team, state, run.Time.GetUtcNow()) is { } spent) move = spent;

            switch (move)
            {
                case StartChildren s:
                    await StartAsync(run, team, state, s.Children);
                    break;
                case WaitForChildren:
                    if (await WaitAsync(run, state) is { } waiting) return waiting;
                    break;
                default:
                    return await FinishAsync(run, state, move);
            }
        }
    }

    /// <summary>Journals how each unfinished child ended, for those that did.</summary>
    private static async Task CollectFinishedAsync(RunContext run, TeamState state, bool countSteps)
    {
        var unfinished = state.Unfinished.ToList();
        if (unfinished.Count == 0) return;
        List<JournalEntry>? finished = null;
        foreach (var record in await ReadChildrenAsync(run, unfinished))
        {
            if (!record.Status.IsTerminal()) continue;
            var (usage, cost, steps) = await RunTree.FinishedChildAsync(run.Engine.Store, record, countSteps, run.Engine.Definitions);
            (finished ??= []).Add(new ChildRunFinished(record.Id, record.Status, record.Output, record.Error, usage, cost == 0 ? null : cost, steps));
        }
        if (finished is not null)
            await run.AppendAsync([.. finished], new RunUpdate { Status = RunStatus.Running, Usage = UsageAfter(state, finished), Cost = CostAfter(state, finished) });
    }

    /// <summary>The rows of <paramref name="children"/>, in their order: point reads for a few, one query by parent for many.</summary>
    private static async Task<List<RunRecord>> ReadChildrenAsync(RunContext run, List<TeamChild> children)
    {
        var store = run.Engine.Store;
        var rows = new List<RunRecord>(children.Count);
        if (children.Count <= 8)
        {
            foreach (var child in children)
                if (await store.GetRunAsync(child.Id, CancellationToken.None) is { } r) rows.Add(r);
            return rows;
        }
        var wanted = children.ToDictionary(c => c.Id, c => c.Index, StringComparer.Ordinal);
        string? cursor = null;
        do
        {
            var page = await store.ListRunsAsync(new RunQuery { ParentRunId = run.RunId, Limit = 1000, Cursor = cursor }, CancellationToken.None);
            rows.AddRange(page.Items.Where(r => wanted.ContainsKey(r.Id)));
            cursor = page.Next;
        }
        while (cursor is not null);
        rows.Sort((a, b) => wanted[a.Id].CompareTo(wanted[b.Id]));
        return rows;
    }

    private static UsageRecord UsageAfter(TeamState state, List<JournalEntry> finished)
    {
        var total = state.Usage;
        foreach (var f in finished) total += ((ChildRunFinished)f).Usage ?? UsageRecord.Zero;
        return total;
    }

    private static double CostAfter(TeamState state, List<JournalEntry> finished)
    {
        var total = state.Cost;
        foreach (var f in finished) total += ((ChildRunFinished)f).Cost ?? 0;
        return Math.Round(total, 9);
    }

    /// <summary>The most child submissions in flight at once: they are committed together, not one fsync each.</summary>
    private const int SubmitBatch = 256;

    private async Task StartAsync(RunContext run, TeamDefinition team, TeamState state, IReadOnlyList<ChildPlan> plans)
    {
        var entries = new JournalEntry[plans.Count];
        var submits = new Task<SubmitResult>[Math.Min(plans.Count, SubmitBatch)];
        for (var first = 0; first < plans.Count; first += SubmitBatch)
        {
            // Submitted together (each child is found again by its key after a crash, as one by one), then journaled in order.
            var count = Math.Min(SubmitBatch, plans.Count - first);
            for (var j = 0; j < count; j++)
            {
                var (plan, i) = (plans[first + j], first + j);
                var kind = KindOf(plan);
                var key = $"{run.RunId}:child:{state.Children.Count + i}";
                submits[j] = run.Engine.SubmitAsync(new RunRequest(plan.Target, InputOf(plan), key, $"team:{team.Name}", kind, run.RunId));
            }
            await Task.WhenAll(submits.AsSpan(0, count));
            for (var j = 0; j < count; j++)
            {
                var (plan, child) = (plans[first + j], submits[j].Result.Run);
                entries[first + j] = new ChildRunStarted(child.Id, plan.Target, KindOf(plan), InputOf(plan), plan.Label);
                Log.ChildStarted(_logger, run.RunId, plan.Label, plan.Target, child.Id);
            }
        }
        run.CrashPoints.Hit("after-children-submitted");
        run.PublishActivity("team.children", string.Join(", ", plans.Select(p => $"{p.Label} -> {p.Target}")));
        await run.AppendAsync(entries, new RunUpdate { Status = RunStatus.Running, Usage = state.Usage, Cost = state.Cost });

        string KindOf(ChildPlan plan) => _definitions.Teams.ContainsKey(plan.Target) ? RunKinds.Team : RunKinds.Agent;
        static string InputOf(ChildPlan plan) => plan.Input.Length == 0 ? "(empty)" : plan.Input;
    }

    /// <summary>Waits for the running children; returns null when one had already ended (go on now).</summary>
    private static async Task<RunStatus?> WaitAsync(RunContext run, TeamState state)
    {
        var ids = state.Unfinished.Select(c => c.Id).ToList();
        var wait = new ChildRunsWait { Step = run.Version + 1, RunIds = ids, Deadline = run.Time.GetUtcNow() + RecheckEvery };
        await run.AppendAsync([new RunWaiting(wait)], new RunUpdate { Status = RunStatus.Waiting, WaitingFor = wait, Usage = state.Usage, Cost = state.Cost });
        // A child that ended just before the wait was journaled found the team running and woke nobody: look once more
        // (point reads for a few children, pages of the team's children for many).
        if ((await ReadChildrenAsync(run, [.. state.Unfinished])).FirstOrDefault(c => c.Status.IsTerminal()) is { } ended)
        {
            try
            {
                await run.AppendAsync([new WaitAnswered(wait.Step, ChildRunsWait.ReasonName, ended.Id, "team")], new RunUpdate { Status = RunStatus.Running, Usage = state.Usage, Cost = state.Cost });
            }
            catch (JournalConflictException)
            {
                // A child that ended after the wait was journaled answered it first and requeued the team: the team's
                // next execution goes on from there. Not a stale writer to warn about.
                return RunStatus.Waiting;
            }
            return null;
        }
        return RunStatus.Waiting;
    }

    private static async Task<RunStatus> FinishAsync(RunContext run, TeamState state, TeamMove move)
    {
        // Children the team no longer needs (a join met by a quorum, a failure) stop now.
        foreach (var child in state.Unfinished.ToList())
        {
            try
            {
                await run.Engine.CancelAsync(child.Id, $"team:{run.Run.Agent}", "the team no longer needs it");
            }
            catch (RunStateConflictException)
            {
                // Ended meanwhile.
            }
        }
        if (move is FinishTeam ok)
        {
            await run.AppendAsync([new RunFinished(RunStatus.Succeeded, ok.Output, null, null)],
                new RunUpdate { Status = RunStatus.Succeeded, Output = ok.Output, Usage = state.Usage, Cost = state.Cost });
            return RunStatus.Succeeded;
        }
        var fail = (FailTeam)move;
        var error = $"run {run.RunId} step {run.Version + 1}: {fail.Error}";
        var failure = await FailureAsync(run, fail, run.Version + 1);
        // A member stopped by the tree's shared budget or limits.
        var outcome = fail.Outcome == "member-failed" && failure.Cause == "budget" ? (failure.Kind == "team-limit" ? "limit" : "budget") : fail.Outcome;
        await run.AppendAsync([new RunFinished(RunStatus.Failed, null, error, outcome, failure)],
            new RunUpdate { Status = RunStatus.Failed, Error = error, Outcome = outcome, Usage = state.Usage, Cost = state.Cost });
        return RunStatus.Failed;
    }

    /// <summary>
    /// The team's failure in the run taxonomy: a member's failure is that member's cause (its
    /// dependency named as the member's); a planner or handoff answer outside the protocol is the
    /// model's invalid output; limits and budgets are a budget; round, handoff and step limits a loop.
    /// </summary>
    private static async Task<RunFailure> FailureAsync(RunContext run, FailTeam fail, long step)
    {
        var member = fail.Child is { } c ? $"agent:{c.Target}" : null;
        switch (fail.Outcome)
        {
            case "budget" or "limit":
                return new RunFailure("budget", fail.Outcome == "limit" ? "team-limit" : null, step, null, null, "raise the team's limits or budgets, or give it less to do");
            case "round-limit" or "handoff-limit" or "step-limit":
                return new RunFailure("loop", fail.Outcome, step, member, null, "the members did not converge: check the reviewer's checklist or the graph's edges, or raise the limit");
            case "routing-failed" or "handoff-failed":
                return new RunFailure("model", "invalid-output", step, member, null, "the member's answer did not follow the team's protocol; see docs/teams.md for what each pattern reads");
        }
        if (fail.Child is { } child)
        {
            var journal = await run.Engine.Store.ReadJournalAsync(child.Id, 0, CancellationToken.None);
            if (journal.Count > 0 && journal[^1].Entry is RunFinished { Failure: { } inner })
                return inner with { Step = step, Hint = $"member run {child.Id}: {inner.Hint}" };
            if (child.Status == RunStatus.Canceled)
                return new RunFailure("canceled", null, step, member, null, $"member run {child.Id} was canceled");
        }
        return new RunFailure("internal", null, step, member, null, "see the member runs' journals (bureau runs show ID --tree)");
    }

    private static FailTeam? Limit(TeamDefinition team, TeamState state, StartChildren start)
    {
        if (start.Children.Count > team.Limits.MaxFanOut)
            return new FailTeam($"team '{team.Name}' would start {start.Children.Count} members at once; its limits.maxFanOut is {team.Limits.MaxFanOut}", "limit");
        if (state.Children.Count + start.Children.Count > team.Limits.MaxChildren)
            return new FailTeam($"team '{team.Name}' would start its child run number {state.Children.Count + start.Children.Count}; its limits.maxChildren is {team.Limits.MaxChildren}", "limit");
        return null;
    }

    /// <summary>The <c>limits.maxDepth</c> of this team and of every team above it bound how deep its children may sit.</summary>
    private FailTeam? DepthLimit(RunContext run, IReadOnlyList<RunRecord> ancestors) =>
        RunTree.DepthProblem(run.Run, ancestors, _definitions.Teams) is { } problem ? new FailTeam(problem, "limit") : null;

    /// <summary>The root team's <c>limits.maxChildren</c> counts every run of the tree (children of nested teams and delegates too).</summary>
    private async Task<FailTeam?> TreeLimitAsync(RunContext run, StartChildren start)
    {
        var rootId = run.Run.RootRunId ?? run.RunId;
        if (rootId == run.RunId) return null; // this team is the root: its own limit already counted its children
        var root = await run.Engine.Store.GetRunAsync(rootId, CancellationToken.None);
        if (root is null || root.Kind != RunKinds.Team || !_definitions.Teams.TryGetValue(root.Agent, out var rootTeam)) return null;
        var max = rootTeam.Limits.MaxChildren;
        var below = (await run.Engine.Store.ListRunsAsync(new RunQuery { RootRunId = rootId, Limit = Math.Min(max + 1, 1000) }, CancellationToken.None)).Items.Count;
        return below + start.Children.Count > max
            ? new FailTeam($"the tree of team '{rootTeam.Name}' (run {rootId}) would have {below + start.Children.Count} runs below it; its limits.maxChildren is {max}", "limit")
            : null;
    }

    private static FailTeam? Budget(TeamDefinition team, TeamState state, DateTimeOffset now)
    {
        if (team.Budgets.MaxTokens is { } tokens && state.Usage.TotalTokens > tokens)
            return new FailTeam($"budget exceeded: tokens ({state.Usage.TotalTokens} used by the team's members, budgets.maxTokens is {tokens})", "budget");
        if (team.Budgets.MaxCost is { } cost && state.Cost >= cost)
            return new FailTeam($"budget exceeded: cost ({state.Cost.ToString("0.#########", System.Globalization.CultureInfo.InvariantCulture)} spent by the team's members, budgets.maxCost is {cost.ToString(System.Globalization.CultureInfo.InvariantCulture)})", "budget");
        if (team.Budgets.MaxSteps is { } maxSteps && state.Steps >= maxSteps)
            return new FailTeam($"budget exceeded: steps ({state.Steps} taken by the team's members, budgets.maxSteps is {maxSteps})", "budget");
        if (team.Budgets.MaxWallTime is { } wall && state.FirstChildAt is { } first && now - first > wall)
            return new FailTeam($"budget exceeded: time ({(now - first).TotalSeconds:0.###} s since the team's first step, budgets.maxWallTime is {wall.TotalSeconds:0.###} s)", "budget");
        return null;
    }

    private static partial class Log
    {
        [LoggerMessage(40, LogLevel.Debug, "Run {RunId}: started {Label} ({Target}) as run {ChildRunId}")]
        public static partial void ChildStarted(ILogger logger, string runId, string label, string target, string childRunId);
    }
}
