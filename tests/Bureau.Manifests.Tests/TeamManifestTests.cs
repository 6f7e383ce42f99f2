using Xunit;
using static Bureau.Manifests.Tests.TestSupport;

namespace Bureau.Manifests.Tests;

/// <summary>The <c>teams:</c> section: every pattern's keys, references to agents and teams, and the errors, each at its line and column.</summary>
public sealed class TeamManifestTests
{
    private const string Agents = """
        models:
          m: { provider: scripted }
        agents:
          planner: { model: m }
          billing: { model: m }
          technical: { model: m }
          writer: { model: m }
          reviewer: { model: m }

        """;

    [Fact]
    public void Teams_EveryPattern_ReadsIntoDefinitions()
    {
        var result = Load(Agents + """
            teams:
              pipe: { pattern: sequential, members: [billing, writer], onMemberFailure: retry, retries: 2 }
              fan:
                pattern: parallel
                members: [billing, technical]
                join: { quorum: 1 }
                merge: writer
                limits: { maxFanOut: 4, maxChildren: 10, maxDepth: 2 }
                budgets: { maxTokens: 5000, maxWallTime: 1m, maxSteps: 8, maxCost: 2.5 }
              route: { pattern: router, planner: planner, members: [billing, technical], join: any }
              desk: { pattern: supervisor, supervisor: writer, reviewer: reviewer, members: [billing], maxRounds: 2, onRoundLimit: accept }
              hand: { pattern: handoff, members: [billing, technical], maxHandoffs: 1 }
              flow:
                pattern: graph
                start: w
                nodes: { w: writer, r: reviewer }
                edges:
                  - { from: w, to: r }
                  - { from: r, to: w, when: { contains: REVISE } }
                  - { from: r, to: end }
                maxSteps: 7
              outer: { pattern: sequential, members: [route, desk] }
            """);
        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        var teams = result.Definitions!.Teams;
        Assert.Equal(7, teams.Count);
        Assert.Equal((TeamPattern.Sequential, ChildFailurePolicy.Retry, 2), (teams["pipe"].Pattern, teams["pipe"].OnMemberFailure, teams["pipe"].Retries));
        Assert.Equal((1, "writer", 4, 10, 2, 5000L), (teams["fan"].Join.Quorum!.Value, teams["fan"].Merge, teams["fan"].Limits.MaxFanOut, teams["fan"].Limits.MaxChildren, teams["fan"].Limits.MaxDepth, teams["fan"].Budgets.MaxTokens!.Value));
        Assert.Equal(2.5, teams["fan"].Budgets.MaxCost);
        Assert.Equal(TeamJoin.Any, teams["route"].Join);
        Assert.Equal(("writer", "reviewer", 2, true), (teams["desk"].Supervisor, teams["desk"].Reviewer, teams["desk"].MaxRounds, teams["desk"].AcceptAtRoundLimit));
        Assert.Equal(1, teams["hand"].MaxHandoffs);
        Assert.Equal(("w", 3, "REVISE", 7), (teams["flow"].Start, teams["flow"].Edges.Count, teams["flow"].Edges[1].WhenContains, teams["flow"].MaxSteps));
        Assert.Equal(["route", "desk"], teams["outer"].Members);
    }

    [Fact]
    public void Teams_UnknownMember_ErrorAtTheItemWithADidYouMean()
    {
        var d = Single(Load(Agents + "teams:\n  t: { pattern: sequential, members: [billing, writr] }\n"), 10, 48, "member 'writr', which is neither an agent nor a team");
        Assert.Contains("did you mean 'writer'?", d.Message);
    }

    [Fact]
    public void Teams_KeyOfAnotherPattern_SaysWhichPatternItBelongsTo()
    {
        Single(Load(Agents + "teams:\n  t: { pattern: sequential, members: [billing], planner: planner }\n"), 10, 49, "key 'planner' does not apply to team 't' (it belongs to pattern router)");
    }

    [Fact]
    public void Teams_RouterWithoutPlanner_IsMissingARequiredKey()
    {
        Single(Load(Agents + "teams:\n  t: { pattern: router, members: [billing] }\n"), 10, 3, "team 't' is missing required key 'planner'");
    }

    [Fact]
    public void Teams_ATeamThatContainsItself_IsAnErrorShowingTheCycle()
    {
        var result = Load(Agents + "teams:\n  a: { pattern: sequential, members: [billing, b] }\n  b: { pattern: parallel, members: [a] }\n");
        Assert.False(result.Success);
        Assert.Contains(result.Diagnostics, d => d.Line == 10 && d.Message.Contains("team 'a' contains itself: a -> b -> a", StringComparison.Ordinal));
    }

    [Fact]
    public void Teams_GraphEdgeToAnUnknownNode_ErrorAtTheEdge()
    {
        Single(Load(Agents + """
            teams:
              g:
                pattern: graph
                start: w
                nodes: { w: writer }
                edges: [ { from: w, to: x } ]
            """), 14, 29, "edge to 'x', which is neither one of its nodes nor 'end'");
    }

    [Fact]
    public void Teams_SameNameAsAnAgent_IsRefused()
    {
        Single(Load(Agents + "teams:\n  writer: { pattern: sequential, members: [billing] }\n"), 10, 3, "team 'writer' has the name of an agent");
    }

    [Fact]
    public void Teams_QuorumAboveTheMembers_IsOutOfRange()
    {
        Single(Load(Agents + "teams:\n  t: { pattern: parallel, members: [billing], join: { quorum: 3 } }\n"), 10, 63, "'quorum' must be between 1 and 1, not 3");
    }

    [Fact]
    public void SupportDeskSample_HasTheResolutionTeam()
    {
        var result = Bureau.Manifests.ManifestLoader.LoadFile(Path.Combine(RepoRoot, "samples", "support-desk", "bureau.yaml"));
        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        var resolution = result.Definitions!.Teams["resolution"];
        Assert.Equal(["specialists", "reply"], resolution.Members);
        Assert.Equal(TeamPattern.Router, result.Definitions.Teams["specialists"].Pattern);
        Assert.Equal(("writer", "reviewer"), (result.Definitions.Teams["reply"].Supervisor, result.Definitions.Teams["reply"].Reviewer));
    }

    [Fact]
    public void Delegates_NameAgents_AnUnknownOneOrItselfIsAnError()
    {
        var ok = Load(Agents.Replace("planner: { model: m }", "planner: { model: m, delegates: [billing, technical] }"));
        Assert.True(ok.Success, string.Join("\n", ok.Diagnostics));
        Assert.Equal(["billing", "technical"], ok.Definitions!.Agents["planner"].Delegates);

        var bad = Load(Agents.Replace("planner: { model: m }", "planner: { model: m, delegates: [biling, planner] }"));
        Assert.False(bad.Success);
        Assert.Contains(bad.Diagnostics, d => d.Message.Contains("delegates to 'biling', which is not an agent; did you mean 'billing'?", StringComparison.Ordinal));
        Assert.Contains(bad.Diagnostics, d => d.Message.Contains("cannot delegate to itself", StringComparison.Ordinal));
    }
    [Fact]
    public void Delegates_AgentsThatDelegateToEachOther_AreRefusedNamingTheLoopAndWhere()
    {
        var mutual = Load(Agents
            .Replace("billing: { model: m }", "billing: { model: m, delegates: [technical] }")
            .Replace("technical: { model: m }", "technical: { model: m, delegates: [billing] }"));
        Single(mutual, 5, 35, "agents 'billing' and 'technical' delegate to each other (billing -> technical -> billing)");

        var loop = Load(Agents
            .Replace("planner: { model: m }", "planner: { model: m, delegates: [writer] }")
            .Replace("writer: { model: m }", "writer: { model: m, delegates: [reviewer] }")
            .Replace("reviewer: { model: m }", "reviewer: { model: m, delegates: [planner, billing] }"));
        Single(loop, 4, 35, "agents 'planner', 'writer', 'reviewer' delegate round a loop (planner -> writer -> reviewer -> planner)");

        // A chain without a loop (and two agents delegating to the same one) is fine.
        var chain = Load(Agents
            .Replace("planner: { model: m }", "planner: { model: m, delegates: [writer, billing] }")
            .Replace("writer: { model: m }", "writer: { model: m, delegates: [billing] }"));
        Assert.True(chain.Success, string.Join("\n", chain.Diagnostics));
    }
}
