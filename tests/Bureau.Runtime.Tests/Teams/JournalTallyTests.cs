using Bureau.Teams;
using Bureau.Tests.Engine;
using Bureau.Tests.Support;
using Xunit;

namespace Bureau.Tests.Teams;

/// <summary>
/// What a member's start reads of the runs above it (steps, spending, the first step's time for team budgets): only
/// the entries journaled since the last start read them, so a wide team under a budget costs linear reads, not quadratic.
/// </summary>
public sealed class JournalTallyTests : IAsyncDisposable
{
    private readonly EngineFixture _f = new();

    public ValueTask DisposeAsync() => _f.DisposeAsync();

    private static Task AppendAsync(IRunStore store, string runId, long version, DateTimeOffset at, params JournalEntry[] entries) =>
        store.AppendAsync(new AppendRequest { RunId = runId, ExpectedVersion = version, At = at, Entries = entries, Update = new RunUpdate { Status = RunStatus.Running } }).AsTask();

    [Fact]
    public async Task ATally_ReadsOnlyTheEntriesAppendedSinceItsLastRead_AndAddsThemUp()
    {
        var store = new CountingStore(await _f.OpenStoreAsync());
        var t0 = DateTimeOffset.FromUnixTimeMilliseconds(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
        await store.SubmitAsync(new NewRun { Id = "team1", Agent = "crew", Kind = RunKinds.Team, Input = "x", Started = new RunStarted("crew", "x"), CreatedAt = t0 });
        await AppendAsync(store, "team1", 1, t0.AddSeconds(1),
            new ChildRunStarted("m1", "a", RunKinds.Agent, "x"), new ChildRunFinished("m1", RunStatus.Succeeded, "ok", null, new UsageRecord(10, 5), 0.02, 3));
        var tallies = new JournalTallies(store);

        var first = await tallies.GetAsync("team1");
        Assert.Equal((3L, 3, 15L, 0.02, (DateTimeOffset?)t0.AddSeconds(1)), (first.Version, first.Steps, first.ChildUsage.TotalTokens, first.ChildCost, first.FirstStepAt));
        Assert.Equal(3, store.EntriesRead("team1"));

        await AppendAsync(store, "team1", 3, t0.AddSeconds(2),
            new ChildRunStarted("m2", "a", RunKinds.Agent, "x"), new ChildRunFinished("m2", RunStatus.Succeeded, "ok", null, new UsageRecord(20, 10), 0.04, 5));
        var second = await tallies.GetAsync("team1");
        Assert.Equal((5L, 8, 45L, 0.06, (DateTimeOffset?)t0.AddSeconds(1)), (second.Version, second.Steps, second.ChildUsage.TotalTokens, second.ChildCost, second.FirstStepAt));
        Assert.Equal(5, store.EntriesRead("team1")); // the two new entries, not the journal again

        Assert.Same(second, await tallies.GetAsync("team1")); // nothing new: nothing read
        Assert.Equal(5, store.EntriesRead("team1"));

        // Another process keeps no tally yet: it reads the journal once and comes to the same totals.
        Assert.Equal(second, await new JournalTallies(store).GetAsync("team1"));
    }

    [Fact]
    public async Task AnAgentsTally_CountsItsOwnStepsAndWhatItsDelegatesReported()
    {
        var store = await _f.OpenStoreAsync();
        var t0 = DateTimeOffset.UtcNow;
        await store.SubmitAsync(new NewRun { Id = "lead1", Agent = "lead", Input = "x", Started = new RunStarted("lead", "x"), CreatedAt = t0 });
        await AppendAsync(store, "lead1", 1, t0,
            new ModelResponded(1, "m", "custom", null, [new ToolCallRecord("c1", "researcher", """{"task":"t"}""")], new UsageRecord(10, 5), null, 2, 1),
            new ChildRunStarted("r1", "researcher", RunKinds.Agent, "t", "delegate:c1"),
            new ChildRunFinished("r1", RunStatus.Succeeded, "found", null, new UsageRecord(100, 50), null, 4),
            new ToolCompleted("c1", "researcher", "found", false, 0));

        var tally = await new JournalTallies(store).GetAsync("lead1");

        // Its own model call and tool result, and the delegate's 4; the delegate's tokens (its own are on its row).
        Assert.Equal((6, 150L, 0.0), (tally.Steps, tally.ChildUsage.TotalTokens, tally.ChildCost));
    }

    /// <summary>
    /// The engine's own wiring: with one run slot, a parallel team of 40 under a step budget starts its members one by one
    /// after journaling all 40 starts. Reading the team's journal whole at each member's start reads about 1,850 entries
    /// (measured); reading what is new reads each entry about once, plus the team's own executions (about 170).
    /// </summary>
    [Fact]
    public async Task AWideTeamUnderAStepBudget_ItsMembersStartsReadItsJournalAboutOnce_NotOncePerMember()
    {
        const int members = 40;
        _f.Definitions.Add(new AgentDefinition { Name = "member", Model = "m", Instructions = "member" });
        _f.Definitions.Add(new TeamDefinition
        {
            Name = "crew", Pattern = TeamPattern.Parallel, Members = Enumerable.Repeat("member", members).ToList(),
            Budgets = new AgentBudgets { MaxSteps = 10_000 }, Limits = new TeamLimits { MaxFanOut = members, MaxChildren = members },
        });
        _f.UseModel((_, _) => FakeModel.Text("done"));
        var store = new CountingStore(new Bureau.Storage.Sqlite.SqliteRunStore(new Bureau.Storage.Sqlite.SqliteStoreOptions { Path = _f.DbPath }));
        _f.Configure = b => b.UseCountingStorage(store);
        _f.MaxConcurrentRuns = 1;
        var engine = await _f.StartAsync();

        var team = (await engine.SubmitAsync(new RunRequest("crew", "x"))).Run.Id;
        RunRecord run;
        var until = DateTime.UtcNow.AddSeconds(60);
        while (!(run = (await engine.GetRunAsync(team))!).Status.IsTerminal() && DateTime.UtcNow < until) await Task.Delay(20, TestContext.Current.CancellationToken);

        Assert.Equal((RunStatus.Succeeded, (string?)null), (run.Status, run.Error));
        var journal = await engine.ReadJournalAsync(team);
        Assert.Equal(members, journal.Count(r => r.Entry is ChildRunFinished));
        Assert.InRange(store.EntriesRead(team), journal.Count, 5 * journal.Count);
    }
}
