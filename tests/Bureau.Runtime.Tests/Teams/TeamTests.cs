using System.Collections.Concurrent;
using Bureau.Tests.Support;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Bureau.Tests.Teams;

/// <summary>
/// Teams: each pattern, joins, reviewer loops, handoffs, graph cycles, member-failure policies,
/// limits, budgets, nesting and cancel propagation, on a real engine and SQLite store. Every member
/// is an agent whose fake model answers by a function of its input (its instructions name it).
/// </summary>
public sealed class TeamTests : IAsyncDisposable
{
    private readonly EngineFixture _f = new();
    private readonly ConcurrentDictionary<string, Func<string, string>> _answers = new();
    private readonly ConcurrentQueue<(string Agent, string Input)> _asked = new();

    public TeamTests()
    {
        var model = _f.UseModel((msgs, _) =>
        {
            var agent = msgs.First(m => m.Role == ChatRole.System).Text["agent:".Length..];
            var input = msgs.Last(m => m.Role == ChatRole.User).Text;
            _asked.Enqueue((agent, input));
            return FakeModel.Text(_answers[agent](input));
        });
        model.BeforeAnswer = async (msgs, _, ct) =>
        {
            if (msgs.First(m => m.Role == ChatRole.System).Text == "agent:slow") await Task.Delay(Timeout.Infinite, ct);
        };
    }

    public ValueTask DisposeAsync() => _f.DisposeAsync();

    private void Agent(string name, Func<string, string> answer)
    {
        _answers[name] = answer;
        _f.Definitions.Add(new AgentDefinition { Name = name, Model = "m", Instructions = "agent:" + name });
    }

    private static async Task<RunRecord> FinishedAsync(BureauEngine engine, string id)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            var run = await EngineFixture.WaitAsync(engine, id, 30);
            if (run.Status.IsTerminal()) return run;
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"team {id} is still {run.Status}");
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }
    }

    private BureauEngine? _engine;

    /// <summary>The cause the team's last journal entry gives.</summary>
    private async Task<RunFailure> FailureAsync(string runId)
    {
        var journal = await _engine!.ReadJournalAsync(runId);
        return Assert.IsType<RunFinished>(journal[^1].Entry).Failure!;
    }

    private async Task<(RunRecord Run, List<ChildRunStarted> Started, BureauEngine Engine)> RunTeamAsync(TeamDefinition team, string input)
    {
        _f.Definitions.Add(team);
        var engine = _engine = await _f.StartAsync();
        var submitted = await engine.SubmitAsync(new RunRequest(team.Name, input));
        Assert.Equal(RunKinds.Team, submitted.Run.Kind); // a team runs wherever an agent does
        var run = await FinishedAsync(engine, submitted.Run.Id);
        var started = (await engine.ReadJournalAsync(run.Id)).Select(r => r.Entry).OfType<ChildRunStarted>().ToList();
        return (run, started, engine);
    }

    [Fact]
    public async Task Sequential_EachOutputFeedsTheNext_ChildrenAreRunsOfTheTree()
    {
        Agent("a", i => i + "|a");
        Agent("b", i => i + "|b");
        Agent("c", i => i + "|c");
        var (run, started, engine) = await RunTeamAsync(new TeamDefinition { Name = "pipe", Pattern = TeamPattern.Sequential, Members = ["a", "b", "c"] }, "x");

        Assert.Equal((RunStatus.Succeeded, "x|a|b|c"), (run.Status, run.Output));
        Assert.Equal(["a", "b", "c"], started.Select(s => s.Target));
        foreach (var s in started)
        {
            var child = (await engine.GetRunAsync(s.ChildRunId))!;
            Assert.Equal((run.Id, run.Id, RunStatus.Succeeded), (child.ParentRunId, child.RootRunId, child.Status));
        }
        var children = await engine.ListRunsAsync(new RunQuery { ParentRunId = run.Id });
        Assert.Equal(3, children.Items.Count);
        Assert.Equal(30 + 15, run.Usage.TotalTokens); // the members' tokens add up in the team
    }

    [Fact]
    public async Task Parallel_JoinAll_MergeAgentCombinesEveryOutput()
    {
        Agent("billing", i => "refund 10");
        Agent("technical", i => "reset the router");
        Agent("writer", i => "Dear customer: " + i.Replace("\n", " "));
        var (run, started, _) = await RunTeamAsync(new TeamDefinition
        {
            Name = "fan", Pattern = TeamPattern.Parallel, Members = ["billing", "technical"], Merge = "writer",
        }, "ticket");

        Assert.Equal(RunStatus.Succeeded, run.Status);
        Assert.Equal(["billing", "technical", "writer"], started.Select(s => s.Target));
        Assert.Contains("## billing refund 10", run.Output);
        Assert.Contains("## technical reset the router", run.Output);
        Assert.StartsWith("Dear customer", run.Output);
    }

    [Fact]
    public async Task Parallel_ACrashAfterTheMembersAreSubmittedBeforeTheyAreJournaled_TheRetryFindsTheSameMembers()
    {
        Agent("a", i => i + "|a");
        var crash = new CrashOnce("after-children-submitted");
        _f.Configure = b => b.Services.AddSingleton<Bureau.Engine.ICrashPoints>(crash);
        var (run, started, engine) = await RunTeamAsync(new TeamDefinition
        {
            Name = "wide", Pattern = TeamPattern.Parallel, Members = ["a", "a", "a", "a", "a", "a"], Limits = new TeamLimits { MaxFanOut = 6 },
        }, "x");

        Assert.True(crash.Crashed); // all six were submitted (together), then the team's executor died before journaling them
        Assert.Equal(RunStatus.Succeeded, run.Status);
        Assert.Equal(6, started.Select(s => s.ChildRunId).Distinct().Count());
        var children = (await engine.ListRunsAsync(new RunQuery { ParentRunId = run.Id })).Items;
        Assert.Equal(started.Select(s => s.ChildRunId).Order(), children.Select(c => c.Id).Order()); // the same six, not twelve
        Assert.All(children, c => Assert.Equal(RunStatus.Succeeded, c.Status));
    }

    [Fact]
    public async Task Parallel_JoinAny_FirstSuccessWins_TheSlowMemberIsCanceled()
    {
        Agent("fast", _ => "quick answer");
        Agent("slow", _ => "never");
        var (run, started, engine) = await RunTeamAsync(new TeamDefinition
        {
            Name = "race", Pattern = TeamPattern.Parallel, Members = ["slow", "fast"], Join = TeamJoin.Any,
        }, "q");

        Assert.Equal((RunStatus.Succeeded, "## fast\nquick answer"), (run.Status, run.Output));
        var slow = started.Single(s => s.Target == "slow");
        var slowRun = await FinishedAsync(engine, slow.ChildRunId);
        Assert.Equal(RunStatus.Canceled, slowRun.Status);
        Assert.Contains("no longer needs it", slowRun.Error);
    }

    [Fact]
    public async Task Parallel_QuorumThatCannotBeMet_FailsNamingTheJoin()
    {
        Agent("ok", _ => "yes");
        Agent("bad", _ => throw new InvalidOperationException("model down"));
        var (run, _, _) = await RunTeamAsync(new TeamDefinition
        {
            Name = "vote", Pattern = TeamPattern.Parallel, Members = ["ok", "bad"], Join = new TeamJoin(2), OnMemberFailure = ChildFailurePolicy.Continue,
        }, "q");

        Assert.Equal((RunStatus.Failed, "join-failed"), (run.Status, run.Outcome));
        Assert.Contains("quorum 2", run.Error);
        // The team decides as soon as the failure makes the quorum impossible: "ok" may or may not have answered by then.
        Assert.Matches("[01] of 2 members succeeded, 2 needed", run.Error);
    }

    [Fact]
    public async Task Parallel_QuorumMet_TwoOfThreeSucceed_TheSlowThirdIsCanceled()
    {
        Agent("legal", _ => "fine by legal");
        Agent("finance", _ => "fine by finance");
        Agent("slow", _ => "never");
        var (run, started, engine) = await RunTeamAsync(new TeamDefinition
        {
            Name = "vote", Pattern = TeamPattern.Parallel, Members = ["legal", "slow", "finance"], Join = new TeamJoin(2),
        }, "q");

        Assert.Equal((RunStatus.Succeeded, "## legal\nfine by legal\n\n## finance\nfine by finance"), (run.Status, run.Output));
        Assert.Equal(3, started.Count);
        var slowRun = await FinishedAsync(engine, started.Single(s => s.Target == "slow").ChildRunId);
        Assert.Equal(RunStatus.Canceled, slowRun.Status);
        Assert.Contains("no longer needs it", slowRun.Error);
    }

    [Fact]
    public async Task Parallel_QuorumMet_TwoOfThreeSucceed_TheFailingThirdIsLeftOut()
    {
        Agent("legal", _ => "fine by legal");
        Agent("finance", _ => "fine by finance");
        Agent("bad", _ => throw new InvalidOperationException("model down"));
        var (run, started, engine) = await RunTeamAsync(new TeamDefinition
        {
            Name = "vote", Pattern = TeamPattern.Parallel, Members = ["bad", "legal", "finance"], Join = new TeamJoin(2), OnMemberFailure = ChildFailurePolicy.Continue,
        }, "q");

        Assert.Equal(RunStatus.Succeeded, run.Status);
        Assert.Contains("## legal\nfine by legal", run.Output);
        Assert.Contains("## finance\nfine by finance", run.Output);
        Assert.DoesNotContain("## bad", run.Output);
        var bad = (await engine.GetRunAsync(started.Single(s => s.Target == "bad").ChildRunId))!;
        Assert.Equal(RunStatus.Failed, bad.Status); // never silent: the failure stays in the member's journal
        // The team's journal has it too when it ended before the quorum was met (which member ends first is a race):
        // as a failure, never as an answer.
        Assert.All((await engine.ReadJournalAsync(run.Id)).Select(r => r.Entry).OfType<ChildRunFinished>().Where(f => f.ChildRunId == bad.Id),
            f => Assert.Equal(RunStatus.Failed, f.Status));
    }

    [Fact]
    public async Task Router_PlannerChoosesTheSpecialists_OnlyThoseRun()
    {
        Agent("planner", i => i.Contains("invoice", StringComparison.Ordinal) ? "billing" : "technical");
        Agent("billing", _ => "billing handled it");
        Agent("technical", _ => "technical handled it");
        var (run, started, _) = await RunTeamAsync(new TeamDefinition
        {
            Name = "route", Pattern = TeamPattern.Router, Planner = "planner", Members = ["billing", "technical"],
        }, "my invoice is wrong");

        Assert.Equal(RunStatus.Succeeded, run.Status);
        Assert.Equal(["planner", "billing"], started.Select(s => s.Target));
        Assert.Equal("## billing\nbilling handled it", run.Output);
        Assert.Contains(_asked, a => a.Agent == "planner" && a.Input.Contains("billing, technical", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Supervisor_ReviewerSendsBackTwice_ApprovesTheThirdDraft()
    {
        var round = 0;
        Agent("lead", i => "worker: draft v" + Interlocked.Increment(ref round));
        Agent("worker", i => "text of " + i);
        Agent("checker", i => i.Contains("v3", StringComparison.Ordinal) ? "APPROVED, ship it" : "too short, add details");
        var (run, started, _) = await RunTeamAsync(new TeamDefinition
        {
            Name = "desk", Pattern = TeamPattern.Supervisor, Supervisor = "lead", Reviewer = "checker", Members = ["worker"], MaxRounds = 3,
        }, "write a reply");

        Assert.Equal(RunStatus.Succeeded, run.Status);
        Assert.Equal("## worker\ntext of draft v3", run.Output);
        Assert.Equal(9, started.Count); // 3 rounds of plan, work, review
        Assert.Contains(_asked, a => a.Agent == "lead" && a.Input.Contains("too short, add details", StringComparison.Ordinal)); // the feedback went back
    }

    [Fact]
    public async Task Supervisor_NoApprovalWithinTheRoundLimit_FailsWithTheLastFeedback()
    {
        Agent("lead", i => "my draft");
        Agent("checker", _ => "still wrong");
        var (run, started, _) = await RunTeamAsync(new TeamDefinition
        {
            Name = "stuck", Pattern = TeamPattern.Supervisor, Supervisor = "lead", Reviewer = "checker", MaxRounds = 2,
        }, "task");

        Assert.Equal((RunStatus.Failed, "round-limit"), (run.Status, run.Outcome));
        Assert.Contains("within 2 rounds", run.Error);
        Assert.Contains("still wrong", run.Error);
        Assert.Equal(("loop", "round-limit"), ((await FailureAsync(run.Id)).Cause, (await FailureAsync(run.Id)).Kind));
        Assert.Equal(4, started.Count);
    }

    [Fact]
    public async Task Supervisor_RoundLimitWithAccept_ReturnsTheLastDraft()
    {
        var round = 0;
        Agent("lead", _ => "draft v" + Interlocked.Increment(ref round));
        Agent("checker", _ => "still wrong");
        var (run, started, _) = await RunTeamAsync(new TeamDefinition
        {
            Name = "lenient", Pattern = TeamPattern.Supervisor, Supervisor = "lead", Reviewer = "checker", MaxRounds = 2, AcceptAtRoundLimit = true,
        }, "task");

        Assert.Equal((RunStatus.Succeeded, "draft v2"), (run.Status, run.Output));
        Assert.Equal(["lead", "checker", "lead", "checker"], started.Select(s => s.Target)); // two rounds, no third
    }

    [Fact]
    public async Task Handoff_MoreThanMaxHandoffs_FailsWithHandoffLimit()
    {
        Agent("front", _ => "HANDOFF: billing: yours");
        Agent("billing", _ => "HANDOFF: front: no, yours");
        var (run, started, _) = await RunTeamAsync(new TeamDefinition
        {
            Name = "pingpong", Pattern = TeamPattern.Handoff, Members = ["front", "billing"], MaxHandoffs = 2,
        }, "help");

        Assert.Equal((RunStatus.Failed, "handoff-limit"), (run.Status, run.Outcome));
        Assert.Contains("more than 2 handoffs (last: 'front' to 'billing': yours)", run.Error);
        Assert.Equal(["front", "billing", "front"], started.Select(s => s.Target)); // two handoffs allowed, the third refused
        Assert.Equal(("loop", "handoff-limit"), ((await FailureAsync(run.Id)).Cause, (await FailureAsync(run.Id)).Kind));
    }

    [Fact]
    public async Task Handoff_PassesTheConversationWithTheReason_AndRefusesAnUnknownMember()
    {
        Agent("front", _ => "I cannot do refunds.\nHANDOFF: billing: refund requested");
        Agent("billing", i => "refunded; context was: " + i);
        var (run, started, _) = await RunTeamAsync(new TeamDefinition { Name = "desk", Pattern = TeamPattern.Handoff, Members = ["front", "billing"] }, "refund me");

        Assert.Equal(RunStatus.Succeeded, run.Status);
        Assert.Equal(["front", "billing"], started.Select(s => s.Target));
        Assert.Contains("handed off to you by front: refund requested", run.Output);
        Assert.Contains("[front] I cannot do refunds.", run.Output);
    }

    [Fact]
    public async Task Handoff_ToANonMember_FailsNamingIt()
    {
        Agent("front", _ => "HANDOFF: legal: not mine");
        var (run, _, _) = await RunTeamAsync(new TeamDefinition { Name = "desk", Pattern = TeamPattern.Handoff, Members = ["front"] }, "sue them");
        Assert.Equal((RunStatus.Failed, "handoff-failed"), (run.Status, run.Outcome));
        Assert.Contains("'legal', which is not a member", run.Error);
    }

    [Fact]
    public async Task Graph_ConditionalEdgesAndACycle_EndAtTheStepLimit()
    {
        Agent("write", i => "draft");
        Agent("check", _ => "REVISE");
        var (run, started, _) = await RunTeamAsync(new TeamDefinition
        {
            Name = "loop", Pattern = TeamPattern.Graph, Start = "w", MaxSteps = 5,
            Nodes = new Dictionary<string, string> { ["w"] = "write", ["c"] = "check" },
            Edges = [new("w", "c"), new("c", "w", "REVISE"), new("c", "end")],
        }, "go");

        Assert.Equal((RunStatus.Failed, "step-limit"), (run.Status, run.Outcome));
        Assert.Equal(["write", "check", "write", "check", "write"], started.Select(s => s.Target));
    }

    [Fact]
    public async Task Graph_EdgeConditionRoutesToTheEnd()
    {
        Agent("write", i => "draft");
        Agent("check", _ => "looks good");
        var (run, started, _) = await RunTeamAsync(new TeamDefinition
        {
            Name = "flow", Pattern = TeamPattern.Graph, Start = "w",
            Nodes = new Dictionary<string, string> { ["w"] = "write", ["c"] = "check" },
            Edges = [new("w", "c"), new("c", "w", "REVISE"), new("c", "end")],
        }, "go");
        Assert.Equal((RunStatus.Succeeded, "looks good"), (run.Status, run.Output));
        Assert.Equal(2, started.Count);
    }

    [Fact]
    public async Task MemberFails_DefaultPolicyFailsTheTeamNamingMemberRunAndError()
    {
        Agent("a", _ => throw new InvalidOperationException("model down"));
        var (run, started, _) = await RunTeamAsync(new TeamDefinition { Name = "t", Pattern = TeamPattern.Sequential, Members = ["a"] }, "x");
        Assert.Equal((RunStatus.Failed, "member-failed"), (run.Status, run.Outcome));
        Assert.Contains($"member 'a' (step:0:a, run {started[0].ChildRunId}) failed", run.Error);
        Assert.Contains("model down", run.Error);
        var failure = await FailureAsync(run.Id);
        Assert.Equal(("model", "model:m"), (failure.Cause, failure.Dependency)); // the member's own cause
        Assert.Contains(started[0].ChildRunId, failure.Hint);
    }

    [Fact]
    public async Task MemberFails_RetryPolicyRunsItAgainAsANewChild()
    {
        var calls = 0;
        Agent("flaky", i => Interlocked.Increment(ref calls) == 1 ? throw new InvalidOperationException("blip") : "ok " + i);
        var (run, started, _) = await RunTeamAsync(new TeamDefinition
        {
            Name = "t", Pattern = TeamPattern.Sequential, Members = ["flaky"], OnMemberFailure = ChildFailurePolicy.Retry, Retries = 1,
        }, "x");
        Assert.Equal((RunStatus.Succeeded, "ok x"), (run.Status, run.Output));
        Assert.Equal(2, started.Count);
        Assert.NotEqual(started[0].ChildRunId, started[1].ChildRunId);
    }

    [Fact]
    public async Task MemberFails_ContinuePolicyGoesOnWithoutItsOutput()
    {
        Agent("a", _ => throw new InvalidOperationException("down"));
        Agent("b", i => i + "|b");
        var (run, _, _) = await RunTeamAsync(new TeamDefinition
        {
            Name = "t", Pattern = TeamPattern.Sequential, Members = ["a", "b"], OnMemberFailure = ChildFailurePolicy.Continue,
        }, "x");
        Assert.Equal((RunStatus.Succeeded, "x|b"), (run.Status, run.Output));
    }

    [Fact]
    public async Task Nesting_ATeamIsAMemberOfATeam_TheTreeSharesOneRoot()
    {
        Agent("a", i => i + "|a");
        Agent("b", i => i + "|b");
        _f.Definitions.Add(new TeamDefinition { Name = "inner", Pattern = TeamPattern.Sequential, Members = ["a", "b"] });
        var (run, started, engine) = await RunTeamAsync(new TeamDefinition { Name = "outer", Pattern = TeamPattern.Sequential, Members = ["inner", "a"] }, "x");

        Assert.Equal((RunStatus.Succeeded, "x|a|b|a"), (run.Status, run.Output));
        Assert.Equal((RunKinds.Team, "inner"), (started[0].RunKind, started[0].Target));
        var innerChildren = await engine.ListRunsAsync(new RunQuery { ParentRunId = started[0].ChildRunId });
        Assert.All(innerChildren.Items, c => Assert.Equal(run.Id, c.RootRunId));
        Assert.Equal(2, innerChildren.Items.Count);
    }

    [Fact]
    public async Task Limits_FanOutAboveTheLimit_FailsBeforeStartingAny()
    {
        Agent("a", _ => "x");
        var (run, started, _) = await RunTeamAsync(new TeamDefinition
        {
            Name = "wide", Pattern = TeamPattern.Parallel, Members = ["a", "a", "a"], Limits = new TeamLimits { MaxFanOut = 2 },
        }, "x");
        Assert.Equal((RunStatus.Failed, "limit"), (run.Status, run.Outcome));
        Assert.Contains("maxFanOut is 2", run.Error);
        Assert.Empty(started);
    }

    [Fact]
    public async Task Limits_Depth_TheRootTeamsMaxDepthBoundsEveryTeamNestedBelowIt()
    {
        Agent("a", i => i + "|a");
        _f.Definitions.Add(new TeamDefinition { Name = "inner", Pattern = TeamPattern.Sequential, Members = ["a"] }); // its own limit (4) would allow it
        _f.Definitions.Add(new TeamDefinition { Name = "mid", Pattern = TeamPattern.Sequential, Members = ["inner"] });
        _f.Definitions.Add(new TeamDefinition { Name = "roomy", Pattern = TeamPattern.Sequential, Members = ["mid"], Limits = new TeamLimits { MaxDepth = 3 } });
        var (run, started, engine) = await RunTeamAsync(new TeamDefinition
        {
            Name = "shallow", Pattern = TeamPattern.Sequential, Members = ["mid"], Limits = new TeamLimits { MaxDepth = 2 },
        }, "x");

        // shallow -> mid (level 1) -> inner (level 2) -> a (level 3): inner may not start its member.
        Assert.Equal((RunStatus.Failed, "limit"), (run.Status, run.Outcome));
        var inner = (await engine.ListRunsAsync(new RunQuery { ParentRunId = started[0].ChildRunId })).Items.Single();
        Assert.Equal((RunStatus.Failed, "limit"), (inner.Status, inner.Outcome));
        Assert.Contains($"team 'inner' would start a run 3 levels below team 'shallow' (run {run.Id}); its limits.maxDepth is 2", inner.Error);
        Assert.Empty((await engine.ListRunsAsync(new RunQuery { ParentRunId = inner.Id })).Items);
        Assert.Equal(2, (await engine.ListRunsAsync(new RunQuery { RootRunId = run.Id })).Items.Count);

        // Three levels are allowed where the root says so.
        var roomy = await FinishedAsync(engine, (await engine.SubmitAsync(new RunRequest("roomy", "x"))).Run.Id);
        Assert.Equal((RunStatus.Succeeded, "x|a"), (roomy.Status, roomy.Output));
    }

    [Fact]
    public async Task Limits_Depth_ANestedTeamsOwnLimitHoldsBelowIt()
    {
        Agent("a", i => i + "|a");
        _f.Definitions.Add(new TeamDefinition { Name = "inner", Pattern = TeamPattern.Sequential, Members = ["a"] });
        _f.Definitions.Add(new TeamDefinition { Name = "mid", Pattern = TeamPattern.Sequential, Members = ["inner"], Limits = new TeamLimits { MaxDepth = 1 } });
        var (run, started, engine) = await RunTeamAsync(new TeamDefinition { Name = "top", Pattern = TeamPattern.Sequential, Members = ["mid"] }, "x");

        Assert.Equal((RunStatus.Failed, "limit"), (run.Status, run.Outcome));
        var inner = (await engine.ListRunsAsync(new RunQuery { ParentRunId = started[0].ChildRunId })).Items.Single();
        Assert.Contains($"team 'inner' would start a run 2 levels below team 'mid' (run {started[0].ChildRunId})", inner.Error);
        Assert.Contains("limits.maxDepth is 1", inner.Error);
    }

    [Fact]
    public async Task Budgets_Steps_TheMembersStepsAddUp_NoMemberStartsOnceSpent()
    {
        Agent("a", i => i + "|a"); // one model call: one step
        var (run, started, _) = await RunTeamAsync(new TeamDefinition
        {
            Name = "brief", Pattern = TeamPattern.Sequential, Members = ["a", "a", "a", "a"], Budgets = new AgentBudgets { MaxSteps = 2 },
        }, "x");
        Assert.Equal((RunStatus.Failed, "budget"), (run.Status, run.Outcome));
        Assert.Contains("budget exceeded: steps (2 taken by the team's members, budgets.maxSteps is 2)", run.Error);
        Assert.Equal(2, started.Count);
    }

    [Fact]
    public async Task Budgets_Steps_AreHandedDownTheTree_AMemberOfANestedTeamGetsOnlyWhatTheRootHasLeft()
    {
        _f.AddTool("t", ToolEffect.Read);
        _f.Definitions.Add(new AgentDefinition { Name = "worker", Model = "m", Instructions = "agent:worker", Tools = ["t"] });
        // A worker asks for a tool, then answers: three steps (two model calls, one tool call).
        _f.UseModel((msgs, turn) => turn == 1 ? FakeModel.Call("t", """{"key":"k"}""") : FakeModel.Text("done"));
        _f.Definitions.Add(new TeamDefinition { Name = "crew", Pattern = TeamPattern.Sequential, Members = ["worker", "worker", "worker"] }); // no budget of its own
        var (run, started, engine) = await RunTeamAsync(new TeamDefinition
        {
            Name = "lean", Pattern = TeamPattern.Sequential, Members = ["crew"], Budgets = new AgentBudgets { MaxSteps = 5 },
        }, "x");

        Assert.Equal((RunStatus.Failed, "budget"), (run.Status, run.Outcome));
        var crew = (await engine.GetRunAsync(started[0].ChildRunId))!;
        Assert.Equal((RunStatus.Failed, "budget"), (crew.Status, crew.Outcome));
        var workers = (await engine.ReadJournalAsync(crew.Id)).Select(r => r.Entry).OfType<ChildRunStarted>().ToList();
        Assert.Equal(2, workers.Count); // the third never started
        var second = (await engine.GetRunAsync(workers[1].ChildRunId))!;
        Assert.Equal((RunStatus.Failed, "budget"), (second.Status, second.Outcome)); // started with 5 - 3 = 2 steps left
        Assert.Contains("budget exceeded: steps", second.Error);

        // The tree took the root's 5 steps, no more, as each level's journal tells.
        var crewFinished = (await engine.ReadJournalAsync(crew.Id)).Select(r => r.Entry).OfType<ChildRunFinished>().ToList();
        Assert.Equal([3, 2], crewFinished.Select(f => f.Steps ?? -1));
        Assert.Equal(5, (await engine.ReadJournalAsync(run.Id)).Select(r => r.Entry).OfType<ChildRunFinished>().Single().Steps);
    }

    [Fact]
    public async Task Budgets_TheTeamsWallTimeIsHandedDown_AMemberIsStoppedWhenTheTeamsTimeIsUp()
    {
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);
        _f.Time = time;
        _f.AddTool("t", ToolEffect.Read);
        _f.Definitions.Add(new AgentDefinition { Name = "worker", Model = "m", Instructions = "agent:worker", Tools = ["t"] });
        _f.Definitions.Add(new TeamDefinition { Name = "hurry", Pattern = TeamPattern.Sequential, Members = ["worker"], Budgets = new AgentBudgets { MaxWallTime = TimeSpan.FromSeconds(10) } });
        var model = _f.UseModel((msgs, turn) => turn == 1 ? FakeModel.Call("t", """{"key":"k"}""") : FakeModel.Text("done"));
        var engine = await _f.StartAsync();
        var teamId = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        model.BeforeAnswer = async (_, _, ct) =>
        {
            // The member's model call takes 15 s, once its team waits for it (the team's own 30 s re-check is not due).
            var id = await teamId.Task;
            while ((await engine.GetRunAsync(id, ct))!.Status != RunStatus.Waiting) await Task.Delay(5, ct);
            time.Advance(TimeSpan.FromSeconds(15));
        };
        var team = (await engine.SubmitAsync(new RunRequest("hurry", "x"))).Run.Id;
        teamId.SetResult(team);
        var run = await FinishedAsync(engine, team);

        var member = (await engine.ListRunsAsync(new RunQuery { ParentRunId = team })).Items.Single();
        Assert.Equal((RunStatus.Failed, "budget"), (member.Status, member.Outcome)); // no time budget of its own: the team's 10 s
        Assert.Contains("budget exceeded: time", member.Error);
        Assert.Equal((RunStatus.Failed, "budget"), (run.Status, run.Outcome));
    }

    [Fact]
    public async Task Limits_TheRootTeamsMaxChildrenCountsTheWholeTree()
    {
        Agent("a", i => i + "|a");
        _f.Definitions.Add(new TeamDefinition { Name = "inner", Pattern = TeamPattern.Parallel, Members = ["a", "a", "a"] });
        var (run, started, engine) = await RunTeamAsync(new TeamDefinition
        {
            Name = "outer", Pattern = TeamPattern.Sequential, Members = ["inner", "inner"], Limits = new TeamLimits { MaxChildren = 5 },
        }, "x");

        // outer -> inner (1) -> 3 agents (4 in the tree); the second inner (5) could not start its 3 members.
        Assert.Equal(RunStatus.Failed, run.Status);
        var second = (await engine.GetRunAsync(started[1].ChildRunId))!;
        Assert.Equal((RunStatus.Failed, "limit"), (second.Status, second.Outcome));
        Assert.Contains("limits.maxChildren is 5", second.Error);
        Assert.Equal(5, (await engine.ListRunsAsync(new RunQuery { RootRunId = run.Id })).Items.Count);
    }

    [Fact]
    public async Task Budgets_TokensOfTheMembersAddUp_NoMemberStartsOnceSpent()
    {
        Agent("a", i => i + "|a");
        var (run, started, _) = await RunTeamAsync(new TeamDefinition
        {
            Name = "thrifty", Pattern = TeamPattern.Sequential, Members = ["a", "a", "a", "a"], Budgets = new AgentBudgets { MaxTokens = 20 },
        }, "x");
        Assert.Equal((RunStatus.Failed, "budget"), (run.Status, run.Outcome));
        Assert.Contains("budget exceeded: tokens", run.Error);
        Assert.Equal("budget", (await FailureAsync(run.Id)).Cause);
        Assert.Equal(2, started.Count); // 15 tokens each: the third never started
    }

    [Fact]
    public async Task Budgets_AMemberGetsOnlyWhatTheTeamHasLeft_AndIsStoppedByIt()
    {
        _f.AddTool("t", ToolEffect.Read);
        _f.Definitions.Add(new AgentDefinition { Name = "worker", Model = "m", Instructions = "agent:worker", Tools = ["t"] });
        // This test's model: the worker asks for a tool first (15 tokens), then answers (15 more): 30 a run.
        _f.UseModel((msgs, turn) => turn == 1 ? FakeModel.Call("t", """{"key":"k"}""") : FakeModel.Text("done"));
        var (run, started, engine) = await RunTeamAsync(new TeamDefinition
        {
            Name = "pair", Pattern = TeamPattern.Sequential, Members = ["worker", "worker"], Budgets = new AgentBudgets { MaxTokens = 40 },
        }, "x");

        Assert.Equal((RunStatus.Failed, "budget"), (run.Status, run.Outcome));
        var first = (await engine.GetRunAsync(started[0].ChildRunId))!;
        var second = (await engine.GetRunAsync(started[1].ChildRunId))!;
        Assert.Equal(RunStatus.Succeeded, first.Status); // 30 of the team's 40
        Assert.Equal((RunStatus.Failed, "budget"), (second.Status, second.Outcome)); // started with 10 left: stopped after its first call
        Assert.Contains("budget exceeded: tokens", second.Error);
        Assert.Equal(15, second.Usage.TotalTokens);
    }

    [Fact]
    public async Task Budgets_Tokens_AMemberOfANestedTeamGetsOnlyWhatTheRootHasLeft_ItsSiblingsSpendingIncluded()
    {
        _f.AddTool("t", ToolEffect.Read);
        _f.Definitions.Add(new AgentDefinition { Name = "worker", Model = "m", Instructions = "agent:worker", Tools = ["t"] });
        // A worker asks for a tool (15 tokens), then answers (15 more): 30 a run.
        _f.UseModel((msgs, turn) => turn == 1 ? FakeModel.Call("t", """{"key":"k"}""") : FakeModel.Text("done"));
        _f.Definitions.Add(new TeamDefinition { Name = "crew", Pattern = TeamPattern.Sequential, Members = ["worker", "worker"] }); // no budget of its own
        var (run, started, engine) = await RunTeamAsync(new TeamDefinition
        {
            Name = "lean", Pattern = TeamPattern.Sequential, Members = ["crew"], Budgets = new AgentBudgets { MaxTokens = 40 },
        }, "x");

        Assert.Equal((RunStatus.Failed, "budget"), (run.Status, run.Outcome));
        var workers = (await engine.ListRunsAsync(new RunQuery { ParentRunId = started[0].ChildRunId })).Items.OrderBy(w => w.CreatedAt).ToList();
        Assert.Equal(2, workers.Count);
        Assert.Equal(RunStatus.Succeeded, workers[0].Status);
        Assert.Equal((RunStatus.Failed, "budget"), (workers[1].Status, workers[1].Outcome)); // started with 40 - 30 = 10 left, not the root's whole 40
        Assert.Equal(15, workers[1].Usage.TotalTokens);
    }

    [Fact]
    public async Task Budgets_TheTeamsCostIsHandedDown_NoMemberSpendsMoreThanWasLeft_AndTheTeamStopsWithBudget()
    {
        _f.AddTool("t", ToolEffect.Read);
        _f.Definitions.Add(new AgentDefinition { Name = "worker", Model = "m", Instructions = "agent:worker", Tools = ["t"] });
        // 10 input and 5 output tokens a call at these prices: 0.02 a call. A worker asks for a tool, then answers: 0.04 a run,
        // so the three members would together cost 0.12, twice the team's 0.06.
        _f.UseModel((msgs, turn) => turn == 1 ? FakeModel.Call("t", """{"key":"k"}""") : FakeModel.Text("done"), price: new ModelPrice(1000, 2000));
        var (run, started, engine) = await RunTeamAsync(new TeamDefinition
        {
            Name = "frugal", Pattern = TeamPattern.Sequential, Members = ["worker", "worker", "worker"], Budgets = new AgentBudgets { MaxCost = 0.06 },
        }, "x");

        Assert.Equal((RunStatus.Failed, "budget"), (run.Status, run.Outcome));
        Assert.Equal(("budget", "cost"), ((await FailureAsync(run.Id)).Cause, (await FailureAsync(run.Id)).Kind));
        Assert.Equal(2, started.Count); // the third never started
        var members = new List<RunRecord>();
        foreach (var s in started) members.Add((await engine.GetRunAsync(s.ChildRunId))!);
        Assert.Equal((RunStatus.Succeeded, 0.04), (members[0].Status, members[0].Cost));
        Assert.Equal((RunStatus.Failed, "budget"), (members[1].Status, members[1].Outcome)); // started with 0.02 left: stopped before its second call
        var exceeded = (await engine.ReadJournalAsync(members[1].Id)).Select(r => r.Entry).OfType<BudgetExceeded>().Single();
        Assert.Equal(("cost", 0.02, 0.02), (exceeded.Budget, exceeded.Limit, exceeded.Used));

        // No member spent more than the team had left when it started; the team's cost is its members', as its journal tells.
        var left = 0.06;
        foreach (var m in members)
        {
            Assert.True(m.Cost <= left + 1e-9, $"member {m.Id} spent {m.Cost} with {left} left");
            left -= m.Cost;
        }
        var finished = (await engine.ReadJournalAsync(run.Id)).Select(r => r.Entry).OfType<ChildRunFinished>().ToList();
        Assert.Equal([0.04, 0.02], finished.Select(f => f.Cost ?? 0));
        Assert.Equal(0.06, run.Cost, 9);
        Assert.Equal(members.Sum(m => m.Usage.TotalTokens), run.Usage.TotalTokens);
    }

    [Fact]
    public async Task DocsSnippet_ARouterTeamInCSharp_RunsByItsName()
    {
        var builder = new { Services = new ServiceCollection() };
        var gpt = new FakeModel((msgs, _) =>
        {
            var who = msgs.First(m => m.Role == ChatRole.System).Text;
            return FakeModel.Text(who.StartsWith("Name the specialists", StringComparison.Ordinal) ? "technical" : "fixed by: " + who);
        });

        // docs/teams.md begin (the page shows these lines: DocsCSharpSnippetTests)
        builder.Services.AddBureau()
            .AddAgent(new AgentDefinition { Name = "billing", Model = "gpt", Instructions = "You handle billing questions." })
            .AddAgent(new AgentDefinition { Name = "technical", Model = "gpt", Instructions = "You handle technical questions." })
            .AddAgent(new AgentDefinition { Name = "planner", Model = "gpt", Instructions = "Name the specialists the ticket needs." })
            .AddTeam(new TeamDefinition
            {
                Name = "specialists",
                Pattern = TeamPattern.Router,
                Planner = "planner",
                Members = ["billing", "technical"],
                Join = TeamJoin.All,
                OnMemberFailure = ChildFailurePolicy.Retry,
            });
        // docs/teams.md end

        builder.Services.AddBureau().AddChatClient("gpt", gpt).UseSqliteStorage(_f.DbPath);
        await using var provider = builder.Services.BuildServiceProvider();
        await provider.GetRequiredService<IRunStore>().InitializeAsync();
        var engine = provider.GetRequiredService<BureauEngine>();
        await engine.StartAsync();
        var run = await FinishedAsync(engine, (await engine.SubmitAsync(new RunRequest("specialists", "the app crashes"))).Run.Id);
        Assert.Equal((RunStatus.Succeeded, "## technical\nfixed by: You handle technical questions."), (run.Status, run.Output));
        await engine.StopAsync();
    }

    [Fact]
    public async Task Cancel_TheTeamWhileAMemberRuns_CancelsTheMemberToo()
    {
        Agent("slow", _ => "never");
        _f.Definitions.Add(new TeamDefinition { Name = "t", Pattern = TeamPattern.Sequential, Members = ["slow"] });
        var engine = await _f.StartAsync();
        var team = (await engine.SubmitAsync(new RunRequest("t", "x"))).Run.Id;
        var waiting = await EngineFixture.WaitAsync(engine, team);
        Assert.Equal(RunStatus.Waiting, waiting.Status);
        var child = Assert.IsType<ChildRunsWait>(waiting.WaitingFor).RunIds.Single();

        await engine.CancelAsync(team, "ops", "no longer needed");

        Assert.Equal(RunStatus.Canceled, (await engine.GetRunAsync(team))!.Status);
        var childRun = await FinishedAsync(engine, child);
        Assert.Equal(RunStatus.Canceled, childRun.Status);
        Assert.Contains($"its parent run {team} was canceled", childRun.Error);
    }

    [Fact]
    public async Task Cancel_ACrashAfterTheTeamsCancelLeftItsMemberRunning_TheNextStartCancelsIt()
    {
        Agent("slow", _ => "never");
        _f.Definitions.Add(new TeamDefinition { Name = "t", Pattern = TeamPattern.Sequential, Members = ["slow"] });
        var crash = new CrashOnce("before-cancel-children");
        _f.Configure = b => b.Services.AddSingleton<Bureau.Engine.ICrashPoints>(crash);
        var engine = await _f.StartAsync();
        var team = (await engine.SubmitAsync(new RunRequest("t", "x"))).Run.Id;
        var waiting = await EngineFixture.WaitAsync(engine, team);
        var child = Assert.IsType<ChildRunsWait>(waiting.WaitingFor).RunIds.Single();

        // The team's cancel is committed; the process "dies" before canceling its member.
        await engine.CancelAsync(team, "ops", "no longer needed");
        Assert.True(crash.Crashed);
        Assert.Equal(RunStatus.Canceled, (await engine.GetRunAsync(team))!.Status);
        Assert.False((await engine.GetRunAsync(child))!.Status.IsTerminal());
        await _f.DisposeEnginesAsync();

        // The next start finds the member of a canceled team and cancels it.
        var restarted = await _f.StartAsync();
        var childRun = await FinishedAsync(restarted, child);
        Assert.Equal(RunStatus.Canceled, childRun.Status);
        Assert.Contains($"its parent run {team} was canceled", childRun.Error);
        Assert.Contains("bureau:orphan-sweep", childRun.Error);
    }


    [Fact]
    public async Task Trace_EveryRunOfTheTreeIsInOneTrace_MembersUnderTheirTeam()
    {
        var spans = new ConcurrentBag<System.Diagnostics.Activity>();
        using var listener = new System.Diagnostics.ActivityListener
        {
            ShouldListenTo = s => s.Name == "Bureau",
            Sample = (ref System.Diagnostics.ActivityCreationOptions<System.Diagnostics.ActivityContext> _) => System.Diagnostics.ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = spans.Add,
        };
        System.Diagnostics.ActivitySource.AddActivityListener(listener);
        Agent("a", i => i + "|a");
        Agent("b", i => i + "|b");
        var (run, started, _) = await RunTeamAsync(new TeamDefinition { Name = "pipe", Pattern = TeamPattern.Sequential, Members = ["a", "b"] }, "x");

        var ids = started.Select(s => s.ChildRunId).Append(run.Id).ToHashSet();
        var ours = spans.Where(s => s.GetTagItem("bureau.run.id") is string id && ids.Contains(id)).ToList();
        Assert.All(ours, s => Assert.Equal(BureauEngine.TraceIdOf(run.Id), s.TraceId));
        Assert.Contains(ours, s => s.OperationName == "invoke_workflow pipe");
        var members = ours.Where(s => (string?)s.GetTagItem("bureau.run.id") != run.Id).ToList();
        Assert.Equal(2, members.Select(s => s.GetTagItem("bureau.run.id")).Distinct().Count());
        // Each member was submitted inside an execution of its team: its spans are children of that execution's span.
        var team = ours.Where(s => s.OperationName == "invoke_workflow pipe").Select(s => s.SpanId).ToHashSet();
        Assert.All(members.Where(s => s.OperationName.StartsWith("invoke_agent", StringComparison.Ordinal)), s => Assert.Contains(s.ParentSpanId, team));
    }
}
