using System.Text.Json.Serialization;

namespace Bureau;

/// <summary>How a team's members work together. Each member runs as a child run with its own journal.</summary>
public enum TeamPattern
{
    /// <summary>A pipeline: each member gets the previous member's output; the last output is the team's.</summary>
    [JsonStringEnumMemberName("sequential")] Sequential,

    /// <summary>Fan-out, fan-in: every member gets the input at once; the join decides when it is done; an optional merge agent combines the outputs.</summary>
    [JsonStringEnumMemberName("parallel")] Parallel,

    /// <summary>A planner reads the input and names the members to run (in parallel); then as <see cref="Parallel"/>.</summary>
    [JsonStringEnumMemberName("router")] Router,

    /// <summary>A supervisor plans and delegates sub-tasks to the members; a reviewer accepts the result or sends it back with feedback, up to a round limit.</summary>
    [JsonStringEnumMemberName("supervisor")] Supervisor,

    /// <summary>The first member answers, or hands the conversation to another member with a reason (<c>HANDOFF: member: reason</c>), up to a limit.</summary>
    [JsonStringEnumMemberName("handoff")] Handoff,

    /// <summary>Explicit nodes and conditional edges; cycles run at most <see cref="TeamDefinition.MaxSteps"/> nodes.</summary>
    [JsonStringEnumMemberName("graph")] Graph,
}

/// <summary>When a parallel step is done.</summary>
/// <param name="Quorum">Null for every member (<c>all</c>); 1 for the first success (<c>any</c>); n for n successes.</param>
public sealed record TeamJoin(int? Quorum)
{
    /// <summary>Every member must finish.</summary>
    public static TeamJoin All { get; } = new((int?)null);

    /// <summary>The first member to succeed is enough; the others are canceled.</summary>
    public static TeamJoin Any { get; } = new(1);

    /// <summary>As written in a manifest: <c>all</c>, <c>any</c>, <c>quorum: n</c>.</summary>
    public override string ToString() => Quorum switch { null => "all", 1 => "any", { } n => $"quorum {n}" };
}

/// <summary>What a team does when a member's run fails.</summary>
public enum ChildFailurePolicy
{
    /// <summary>The team fails, naming the member, its run and its error. The default.</summary>
    [JsonStringEnumMemberName("fail")] Fail,

    /// <summary>The team goes on without that member's output (the failure is in the journal).</summary>
    [JsonStringEnumMemberName("continue")] Continue,

    /// <summary>The member runs again (a new child run) up to <see cref="TeamDefinition.Retries"/> times, then the team fails.</summary>
    [JsonStringEnumMemberName("retry")] Retry,
}

/// <summary>An edge of a <see cref="TeamPattern.Graph"/> team: after <see cref="From"/>, go to <see cref="To"/> when its output contains <see cref="WhenContains"/> (always when null). The first matching edge wins; <c>end</c> ends the team.</summary>
public sealed record TeamEdge(string From, string To, string? WhenContains = null);

/// <summary>Limits on a team's tree of runs, so a plan cannot fan out without bound.</summary>
public sealed class TeamLimits
{
    /// <summary>
    /// How many levels of runs may sit below this team: its members are level 1, a member team's
    /// members (or an agent a member calls as a tool, <see cref="AgentDefinition.Delegates"/>) level 2,
    /// and so on. It bounds the whole tree below the team, so a root team's limit holds for every team
    /// nested in it whatever their own limits; a team starts no child, and an agent calls no delegate,
    /// that would sit deeper than any team above allows (the team fails with outcome <c>limit</c>; the
    /// delegation call is refused back to the model). No tree is deeper than 16 levels. Default 4.
    /// </summary>
    public int MaxDepth { get; init; } = 4;

    /// <summary>Most child runs one step may start at once. Default 16.</summary>
    public int MaxFanOut { get; init; } = 16;

    /// <summary>Most child runs this team starts in all (retries and rounds included). Default 100.</summary>
    public int MaxChildren { get; init; } = 100;
}

/// <summary>A team: members (agents or teams) working in a pattern, runnable wherever an agent is.</summary>
public sealed class TeamDefinition
{
    /// <summary>The team's name (unique among agents and teams).</summary>
    public required string Name { get; init; }

    /// <summary>The pattern.</summary>
    public required TeamPattern Pattern { get; init; }

    /// <summary>The members (agent or team names): the pipeline, the fan-out, the specialists, the workers, or the handoff candidates (the first answers first).</summary>
    public IReadOnlyList<string> Members { get; init; } = [];

    /// <summary>What the team is for (shown in listings, and to a router's planner).</summary>
    public string? Description { get; init; }

    /// <summary>Parallel and router: when the fan-out is done. Default <see cref="TeamJoin.All"/>.</summary>
    public TeamJoin Join { get; init; } = TeamJoin.All;

    /// <summary>Parallel and router: an agent (or team) that combines the outputs into the team's output; without one the outputs are joined, one section per member.</summary>
    public string? Merge { get; init; }

    /// <summary>Router: the agent that names the members to run.</summary>
    public string? Planner { get; init; }

    /// <summary>Supervisor: the agent that plans and delegates (<c>member: sub-task</c> lines), or drafts itself when it delegates nothing.</summary>
    public string? Supervisor { get; init; }

    /// <summary>Supervisor: the agent that accepts (an answer starting with <c>APPROVED</c>) or sends back with feedback.</summary>
    public string? Reviewer { get; init; }

    /// <summary>Supervisor: most rounds of plan, work and review. Default 3.</summary>
    public int MaxRounds { get; init; } = 3;

    /// <summary>Supervisor: at the round limit without approval, fail (false, the default) or return the last draft (true); the journal keeps every review that did not approve it.</summary>
    public bool AcceptAtRoundLimit { get; init; }

    /// <summary>Handoff: most handoffs before the team fails. Default 5.</summary>
    public int MaxHandoffs { get; init; } = 5;

    /// <summary>Graph: node name to member.</summary>
    public IReadOnlyDictionary<string, string> Nodes { get; init; } = new Dictionary<string, string>();

    /// <summary>Graph: the edges, in order.</summary>
    public IReadOnlyList<TeamEdge> Edges { get; init; } = [];

    /// <summary>Graph: the first node.</summary>
    public string? Start { get; init; }

    /// <summary>Graph: most nodes run (cycles included) before the team fails. Default 20.</summary>
    public int MaxSteps { get; init; } = 20;

    /// <summary>What a failed member does to the team. Default <see cref="ChildFailurePolicy.Fail"/>.</summary>
    public ChildFailurePolicy OnMemberFailure { get; init; } = ChildFailurePolicy.Fail;

    /// <summary>With <see cref="ChildFailurePolicy.Retry"/>: how many times a member runs again. Default 1.</summary>
    public int Retries { get; init; } = 1;

    /// <summary>Limits on the tree.</summary>
    public TeamLimits Limits { get; init; } = new();

    /// <summary>
    /// Budgets of the whole tree: tokens, cost and steps (model calls and tool calls) are summed over
    /// every member's run (and their children), wall time counts from the team's first step; a member
    /// starts with at most what every team above it has left, and no new member starts once one is spent.
    /// </summary>
    public AgentBudgets Budgets { get; init; } = new();

    /// <summary>Every agent or team this team starts (members, planner, merge, supervisor, reviewer, graph nodes).</summary>
    public IEnumerable<string> Uses()
    {
        foreach (var m in Members) yield return m;
        foreach (var n in Nodes.Values) yield return n;
        if (Merge is not null) yield return Merge;
        if (Planner is not null) yield return Planner;
        if (Supervisor is not null) yield return Supervisor;
        if (Reviewer is not null) yield return Reviewer;
    }
}
