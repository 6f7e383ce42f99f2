using System.Text;
using System.Text.RegularExpressions;

namespace Bureau.Teams;

/// <summary>A child the team starts: who, with what input, as which stage of its plan.</summary>
internal sealed record ChildPlan(string Target, string Input, string Label);

/// <summary>What a team does next.</summary>
internal abstract record TeamMove;

/// <summary>Start these children (at once).</summary>
internal sealed record StartChildren(IReadOnlyList<ChildPlan> Children) : TeamMove;

/// <summary>Wait for the children running now.</summary>
internal sealed record WaitForChildren : TeamMove
{
    public static WaitForChildren Instance { get; } = new();
}

/// <summary>The team succeeded with this output.</summary>
internal sealed record FinishTeam(string Output) : TeamMove;

/// <summary>The team failed; <paramref name="Child"/> is the member run at fault, when one is.</summary>
internal sealed record FailTeam(string Error, string Outcome, TeamChild? Child = null) : TeamMove;

/// <summary>
/// The patterns: each a pure function from the team's definition and state (the children it started
/// and how they ended) to its next move. Nothing here reads a clock or a store.
/// </summary>
internal static partial class TeamPatterns
{
    /// <summary>A reviewer's answer that accepts the draft starts with this word.</summary>
    public const string Approved = "APPROVED";

    public static TeamMove Next(TeamDefinition team, TeamState state) => team.Pattern switch
    {
        TeamPattern.Sequential => Sequential(team, state),
        TeamPattern.Parallel => ThenMerge(team, state, FanOut(team, state, team.Members.Select((m, i) => new ChildPlan(m, state.Input, $"member:{i}:{m}")).ToList())),
        TeamPattern.Router => Router(team, state),
        TeamPattern.Supervisor => Supervisor(team, state),
        TeamPattern.Handoff => Handoff(team, state),
        TeamPattern.Graph => Graph(team, state),
        _ => new FailTeam($"team '{team.Name}': pattern {team.Pattern} is not supported", "error"),
    };

    // ---- one stage of a plan, with the member-failure policy ----

    private enum Stage { NotStarted, Running, Succeeded, Skipped, Failed }

    private readonly record struct StageResult(Stage Stage, TeamChild? Child, TeamMove? Move);

    /// <summary>Where <paramref name="plan"/> stands: not started, running, done, skipped (failed, policy continue), retried, or failed the team.</summary>
    private static StageResult Resolve(TeamDefinition team, TeamState state, ChildPlan plan)
    {
        var latest = state.Latest(plan.Label);
        if (latest is null) return new(Stage.NotStarted, null, new StartChildren([plan]));
        if (!latest.Finished) return new(Stage.Running, latest, WaitForChildren.Instance);
        if (latest.Succeeded) return new(Stage.Succeeded, latest, null);
        switch (team.OnMemberFailure)
        {
            case ChildFailurePolicy.Retry when state.Attempts(plan.Label) <= team.Retries:
                return new(Stage.NotStarted, latest, new StartChildren([plan]));
            case ChildFailurePolicy.Continue:
                return new(Stage.Skipped, latest, null);
            default:
                var tries = state.Attempts(plan.Label);
                return new(Stage.Failed, latest, new FailTeam(
                    $"team '{team.Name}': member '{latest.Target}' ({plan.Label}, run {latest.Id}) {latest.Status!.Value.ToWireName()}"
                    + (tries > 1 ? $" after {tries} attempts" : "") + $": {latest.Error ?? "no error given"}",
                    "member-failed", latest));
        }
    }

    // ---- sequential ----

    private static TeamMove Sequential(TeamDefinition team, TeamState state)
    {
        var current = state.Input;
        for (var i = 0; i < team.Members.Count; i++)
        {
            var r = Resolve(team, state, new ChildPlan(team.Members[i], current, $"step:{i}:{team.Members[i]}"));
            switch (r.Stage)
            {
                case Stage.Succeeded: current = r.Child!.Output ?? ""; break;
                case Stage.Skipped: break; // the next member gets the last output there was
                default: return r.Move!;
            }
        }
        return new FinishTeam(current);
    }

    // ---- parallel fan-out / fan-in ----

    /// <summary>The fan-out's outcome: a move to make, or the succeeded children (in plan order) once the join is met.</summary>
    private readonly record struct FanOutResult(TeamMove? Move, IReadOnlyList<TeamChild> Succeeded);

    private static FanOutResult FanOut(TeamDefinition team, TeamState state, IReadOnlyList<ChildPlan> plans)
    {
        var start = new List<ChildPlan>();
        var succeeded = new List<TeamChild>();
        int running = 0, skipped = 0;
        TeamMove? failure = null;
        TeamChild? firstFailed = null;
        foreach (var plan in plans)
        {
            var r = Resolve(team, state, plan);
            switch (r.Stage)
            {
                case Stage.NotStarted: start.Add(plan); break;
                case Stage.Running: running++; break;
                case Stage.Succeeded: succeeded.Add(r.Child!); break;
                case Stage.Skipped: skipped++; firstFailed ??= r.Child; break;
                case Stage.Failed: failure ??= r.Move; firstFailed ??= r.Child; break;
            }
        }
        var required = team.Join.Quorum is { } q ? Math.Min(q, plans.Count) : plans.Count - skipped;
        if (succeeded.Count >= required) return new(null, succeeded);
        if (team.Join.Quorum is null && failure is not null) return new(failure, []); // all: one hard failure fails the join
        if (succeeded.Count + running + start.Count < required)
        {
            return new(failure ?? new FailTeam(
                $"team '{team.Name}': the join ({team.Join}) cannot be met: {succeeded.Count} of {plans.Count} members succeeded, {required} needed", "join-failed", firstFailed), []);
        }
        if (start.Count > 0) return new(new StartChildren(start), []);
        return new(WaitForChildren.Instance, []);
    }

    private static TeamMove ThenMerge(TeamDefinition team, TeamState state, FanOutResult fanOut)
    {
        if (fanOut.Move is not null) return fanOut.Move;
        var combined = Combine(fanOut.Succeeded);
        if (team.Merge is null) return new FinishTeam(combined);
        var merge = Resolve(team, state, new ChildPlan(team.Merge, combined, "merge"));
        return merge.Stage switch
        {
            Stage.Succeeded => new FinishTeam(merge.Child!.Output ?? ""),
            Stage.Skipped => new FinishTeam(combined),
            _ => merge.Move!,
        };
    }

    /// <summary>The outputs of several members, one section each, in plan order.</summary>
    internal static string Combine(IEnumerable<TeamChild> children)
    {
        var sb = new StringBuilder();
        foreach (var c in children)
        {
            if (sb.Length > 0) sb.Append("\n\n");
            sb.Append("## ").Append(c.Target).Append('\n').Append(c.Output);
        }
        return sb.ToString();
    }

    // ---- router ----

    private static TeamMove Router(TeamDefinition team, TeamState state)
    {
        var plan = Resolve(team, state, new ChildPlan(team.Planner!, $"{state.Input}\n\n(route to one or more of: {string.Join(", ", team.Members)})", "plan"));
        if (plan.Stage != Stage.Succeeded) return plan.Stage == Stage.Skipped ? new FailTeam($"team '{team.Name}': the planner failed", "member-failed") : plan.Move!;
        var chosen = team.Members.Where(m => Mentions(plan.Child!.Output, m)).ToList();
        if (chosen.Count == 0)
        {
            return new FailTeam(
                $"team '{team.Name}': the planner '{team.Planner}' (run {plan.Child!.Id}) named none of the members {string.Join(", ", team.Members)}: \"{Clip(plan.Child.Output)}\"",
                "routing-failed", plan.Child);
        }
        return ThenMerge(team, state, FanOut(team, state, chosen.Select(m => new ChildPlan(m, state.Input, $"member:{m}")).ToList()));
    }

    /// <summary>True when <paramref name="text"/> names <paramref name="member"/> as a whole word (case-insensitive).</summary>
    internal static bool Mentions(string? text, string member) =>
        text is not null && Regex.IsMatch(text, $@"(?<![\w-]){Regex.Escape(member)}(?![\w-])", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));

    // ---- supervisor and reviewer ----

    private static TeamMove Supervisor(TeamDefinition team, TeamState state)
    {
        string? feedback = null, draft = null;
        for (var round = 1; round <= team.MaxRounds; round++)
        {
            var planInput = feedback is null
                ? state.Input
                : $"{state.Input}\n\nYour previous draft:\n{draft}\n\nThe reviewer sent it back (round {round - 1}):\n{feedback}";
            var plan = Resolve(team, state, new ChildPlan(team.Supervisor!, planInput, $"plan:{round}"));
            if (plan.Stage == Stage.Skipped) return new FailTeam($"team '{team.Name}': the supervisor failed in round {round}", "member-failed");
            if (plan.Stage != Stage.Succeeded) return plan.Move!;

            var delegations = Delegations(plan.Child!.Output, team.Members);
            if (delegations.Count > 0)
            {
                var work = FanOut(team, state, delegations.Select((d, k) => new ChildPlan(d.Member, d.Task, $"work:{round}:{k}:{d.Member}")).ToList());
                if (work.Move is not null) return work.Move;
                draft = Combine(work.Succeeded);
            }
            else
            {
                draft = plan.Child.Output ?? "";
            }

            if (team.Reviewer is null) return new FinishTeam(draft);
            var review = Resolve(team, state, new ChildPlan(team.Reviewer, $"{state.Input}\n\nDraft (round {round}):\n{draft}", $"review:{round}"));
            if (review.Stage == Stage.Skipped) return new FinishTeam(draft);
            if (review.Stage != Stage.Succeeded) return review.Move!;
            var verdict = review.Child!.Output ?? "";
            if (verdict.TrimStart().StartsWith(Approved, StringComparison.OrdinalIgnoreCase)) return new FinishTeam(draft);
            feedback = verdict;
        }
        if (team.AcceptAtRoundLimit) return new FinishTeam(draft ?? "");
        return new FailTeam(
            $"team '{team.Name}': the reviewer '{team.Reviewer}' did not approve within {team.MaxRounds} rounds; last feedback: \"{Clip(feedback)}\"",
            "round-limit");
    }

    /// <summary><c>member: task</c> lines of a supervisor's plan, for members of the team.</summary>
    internal static List<(string Member, string Task)> Delegations(string? plan, IReadOnlyList<string> members)
    {
        var list = new List<(string, string)>();
        if (plan is null) return list;
        foreach (var raw in plan.Split('\n'))
        {
            var line = raw.Trim().TrimStart('-', '*', ' ');
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0) continue;
            var name = line[..colon].Trim();
            var member = members.FirstOrDefault(m => string.Equals(m, name, StringComparison.OrdinalIgnoreCase));
            var task = line[(colon + 1)..].Trim();
            if (member is not null && task.Length > 0) list.Add((member, task));
        }
        return list;
    }

    // ---- handoff ----

    [GeneratedRegex(@"^\s*HANDOFF:\s*(?<to>[A-Za-z0-9_.-]+)\s*(?::\s*(?<why>.*))?$", RegexOptions.Multiline | RegexOptions.CultureInvariant, 1000)]
    private static partial Regex HandoffLine();

    private static TeamMove Handoff(TeamDefinition team, TeamState state)
    {
        var target = team.Members[0];
        var input = state.Input;
        var transcript = new StringBuilder();
        for (var turn = 0; ; turn++)
        {
            var r = Resolve(team, state, new ChildPlan(target, input, $"turn:{turn}:{target}"));
            if (r.Stage == Stage.Skipped) return new FailTeam($"team '{team.Name}': '{target}' failed at turn {turn + 1}", "member-failed");
            if (r.Stage != Stage.Succeeded) return r.Move!;
            var output = r.Child!.Output ?? "";
            var handoff = HandoffLine().Match(output);
            if (!handoff.Success) return new FinishTeam(output);
            var to = handoff.Groups["to"].Value;
            var why = handoff.Groups["why"].Success ? handoff.Groups["why"].Value.Trim() : "no reason given";
            var member = team.Members.FirstOrDefault(m => string.Equals(m, to, StringComparison.OrdinalIgnoreCase));
            if (member is null)
                return new FailTeam($"team '{team.Name}': '{target}' (run {r.Child.Id}) handed off to '{to}', which is not a member ({string.Join(", ", team.Members)})", "handoff-failed", r.Child);
            if (turn + 1 > team.MaxHandoffs)
                return new FailTeam($"team '{team.Name}': more than {team.MaxHandoffs} handoffs (last: '{target}' to '{member}': {why})", "handoff-limit");
            var said = HandoffLine().Replace(output, "").Trim();
            transcript.Append('[').Append(target).Append("] ").Append(said).Append('\n');
            input = $"{state.Input}\n\n--- handed off to you by {target}: {why} ---\n{transcript}";
            target = member;
        }
    }

    // ---- graph ----

    private static TeamMove Graph(TeamDefinition team, TeamState state)
    {
        var node = team.Start!;
        var input = state.Input;
        for (var step = 0; ; step++)
        {
            if (step >= team.MaxSteps)
                return new FailTeam($"team '{team.Name}': the graph ran {team.MaxSteps} nodes without reaching the end (a cycle?); last node '{node}'", "step-limit");
            var r = Resolve(team, state, new ChildPlan(team.Nodes[node], input, $"node:{step}:{node}"));
            string output;
            if (r.Stage == Stage.Succeeded) output = r.Child!.Output ?? "";
            else if (r.Stage == Stage.Skipped) output = input;
            else return r.Move!;
            var edge = team.Edges.FirstOrDefault(e => e.From == node && (e.WhenContains is null || output.Contains(e.WhenContains, StringComparison.OrdinalIgnoreCase)));
            if (edge is null || edge.To == "end") return new FinishTeam(output);
            node = edge.To;
            input = output;
        }
    }

    private static string Clip(string? text) => text is null ? "" : text.Length <= 200 ? text : text[..200] + "…";
}
