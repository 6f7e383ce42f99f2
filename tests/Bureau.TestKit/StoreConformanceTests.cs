using Xunit;

namespace Bureau.TestKit;

/// <summary>
/// The contract every <see cref="IRunStore"/> passes. A backend's test class derives from this and
/// says how to open a fresh store (and reopen the same one): SQLite in Bureau.Runtime.Tests,
/// PostgreSQL in Bureau.Storage.PostgreSql.Tests.
/// </summary>
public abstract class StoreConformanceTests : IAsyncLifetime
{
    private readonly List<IRunStore> _opened = [];
    private static readonly DateTimeOffset T0 = new(2026, 1, 2, 3, 4, 5, TimeSpan.Zero);

    /// <summary>Opens (creating if needed) the store this test instance uses; a second call opens the same data anew.</summary>
    protected abstract IRunStore CreateStore();

    protected async Task<IRunStore> OpenAsync()
    {
        var s = CreateStore();
        await s.InitializeAsync(TestContext.Current.CancellationToken);
        _opened.Add(s);
        return s;
    }

    public virtual ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public virtual async ValueTask DisposeAsync()
    {
        foreach (var s in _opened) await s.DisposeAsync();
    }

    private static NewRun Run(string id, string agent = "a", string? key = null, int minute = 0) =>
        new() { Id = id, Agent = agent, Input = "input of " + id, Started = new RunStarted(agent, "input of " + id, "test"), CreatedAt = T0.AddMinutes(minute), IdempotencyKey = key, Actor = "test" };

    private static AppendRequest Append(string id, long expected, params JournalEntry[] entries) =>
        new() { RunId = id, ExpectedVersion = expected, Entries = entries, At = T0.AddSeconds(expected) };

    private static ModelResponded Answer(string text) => new(1, "m", "scripted", text, [], new UsageRecord(3, 4), "stop", 2, 1.5);

    /// <summary>Submits a run created <paramref name="at"/> and finishes it with this usage and cost (a team: its members' sums).</summary>
    protected static async Task AddCostedRunAsync(IRunStore store, string id, string agent, DateTimeOffset at, long input, long output, double cost,
        string kind = RunKinds.Agent, string? parent = null)
    {
        await store.SubmitAsync(new NewRun
        {
            Id = id, Agent = agent, Kind = kind, ParentRunId = parent, RootRunId = parent, Input = "i", Started = new RunStarted(agent, "i"), CreatedAt = at,
        });
        await store.AppendAsync(new AppendRequest
        {
            RunId = id, ExpectedVersion = 1, At = at.AddSeconds(1),
            Entries = [new RunFinished(RunStatus.Succeeded, "ok", null, null)],
            Update = new RunUpdate { Status = RunStatus.Succeeded, Output = "ok", Usage = new UsageRecord(input, output), Cost = cost },
        });
    }

    [Fact]
    public async Task Append_UpdateWithCost_TheRowKeepsIt_AndAnUpdateWithoutCostLeavesItAsIs()
    {
        var store = await OpenAsync();
        await AddCostedRunAsync(store, "c1", "a", T0, 10, 5, 0.25);
        Assert.Equal((0.25, 15L), ((await store.GetRunAsync("c1"))!.Cost, (await store.GetRunAsync("c1"))!.Usage.TotalTokens));
        await store.AppendAsync(new AppendRequest { RunId = "c1", ExpectedVersion = 2, At = T0, Entries = [new RunResumed("test")], Update = new RunUpdate { Status = RunStatus.Succeeded } });
        Assert.Equal(0.25, (await store.GetRunAsync("c1"))!.Cost);
        Assert.Equal(0.25, (await store.ListRunsAsync(new RunQuery())).Items.Single().Cost);
    }

    [Fact]
    public async Task ReadCosts_PerAgentAndPerDay_CountTeamMembersOnceAndHonourTheRange()
    {
        var store = await OpenAsync();
        var day1 = new DateTimeOffset(2026, 12, 5, 23, 0, 0, TimeSpan.Zero);
        var day2 = new DateTimeOffset(2026, 12, 6, 1, 0, 0, TimeSpan.Zero);
        await AddCostedRunAsync(store, "w1", "writer", day1, 100, 10, 0.5);
        await AddCostedRunAsync(store, "w2", "writer", day2, 200, 20, 1.0);
        await AddCostedRunAsync(store, "team", "desk", day2, 300, 30, 1.25, RunKinds.Team);   // its members' sums: not counted again
        await AddCostedRunAsync(store, "m1", "writer", day2, 100, 10, 0.5, parent: "team");
        await AddCostedRunAsync(store, "m2", "checker", day2, 200, 20, 0.75, parent: "team");

        var byAgent = await store.ReadCostsAsync(new CostQuery { By = CostGrouping.Agent });
        Assert.Equal([new CostRow("checker", 1, 200, 20, 0.75), new CostRow("writer", 3, 400, 40, 2.0)], byAgent);

        var byDay = await store.ReadCostsAsync(new CostQuery { By = CostGrouping.Day });
        Assert.Equal([new CostRow("2026-12-05", 1, 100, 10, 0.5), new CostRow("2026-12-06", 3, 500, 50, 2.25)], byDay);

        // since inclusive, until exclusive, on the creation time.
        var secondDay = await store.ReadCostsAsync(new CostQuery { By = CostGrouping.Agent, Since = day2, Until = day2.AddHours(1) });
        Assert.Equal([new CostRow("checker", 1, 200, 20, 0.75), new CostRow("writer", 2, 300, 30, 1.5)], secondDay);
        Assert.Empty(await store.ReadCostsAsync(new CostQuery { Until = day1 }));
    }

    [Fact]
    public async Task Submit_NewRun_IsQueuedWithRunStartedAsStepOne()
    {
        var store = await OpenAsync();
        var result = await store.SubmitAsync(Run("r1"));
        Assert.True(result.Created);
        Assert.Equal(RunStatus.Queued, result.Run.Status);

        var run = await store.GetRunAsync("r1");
        Assert.NotNull(run);
        Assert.Equal(("a", "input of r1", 1L, "test"), (run.Agent, run.Input, run.Version, run.Actor));
        Assert.Equal(T0, run.CreatedAt);
        var journal = await store.ReadJournalAsync("r1");
        var only = Assert.Single(journal);
        Assert.Equal(1, only.N);
        Assert.Equal(new RunStarted("a", "input of r1", "test"), only.Entry);
    }

    [Fact]
    public async Task Submit_SameIdempotencyKeyConcurrently_CreatesExactlyOneRun()
    {
        var store = await OpenAsync();
        var results = await Task.WhenAll(Enumerable.Range(0, 10).Select(i => store.SubmitAsync(Run("k" + i, key: "same-key"))));
        Assert.Single(results, r => r.Created);
        Assert.Single(results.Select(r => r.Run.Id).Distinct());
        var page = await store.ListRunsAsync(new RunQuery { Limit = 100 });
        Assert.Single(page.Items);
    }

    [Fact]
    public async Task Append_AtExpectedVersion_NumbersEntriesAndAppliesUpdate()
    {
        var store = await OpenAsync();
        await store.SubmitAsync(Run("r1"));
        await store.AppendAsync(Append("r1", 1, Answer("hi"), new RunFinished(RunStatus.Succeeded, "hi", null, null)) with
        {
            Update = new RunUpdate { Status = RunStatus.Succeeded, Output = "hi", Usage = new UsageRecord(3, 4) },
        });
        var run = await store.GetRunAsync("r1");
        Assert.Equal((RunStatus.Succeeded, "hi", 3L, new UsageRecord(3, 4)), (run!.Status, run.Output, run.Version, run.Usage));
        var journal = await store.ReadJournalAsync("r1");
        Assert.Equal([1L, 2L, 3L], journal.Select(j => j.N));
        Assert.IsType<ModelResponded>(journal[1].Entry);
        Assert.Equal([3L], (await store.ReadJournalAsync("r1", afterStep: 2)).Select(j => j.N));
    }

    [Fact]
    public async Task Append_StaleVersion_ThrowsConflictAndWritesNothing()
    {
        var store = await OpenAsync();
        await store.SubmitAsync(Run("r1"));
        await store.AppendAsync(Append("r1", 1, Answer("first")));
        var ex = await Assert.ThrowsAsync<JournalConflictException>(async () => await store.AppendAsync(Append("r1", 1, Answer("stale"))));
        Assert.Equal((1L, 2L), (ex.ExpectedVersion, ex.ActualVersion));
        Assert.Contains("r1", ex.Message);
        var journal = await store.ReadJournalAsync("r1");
        Assert.Equal(2, journal.Count);
        Assert.Equal("first", ((ModelResponded)journal[1].Entry).Text);
    }

    [Fact]
    public async Task Append_UnknownRun_ThrowsConflictWithNoVersion()
    {
        var store = await OpenAsync();
        var ex = await Assert.ThrowsAsync<JournalConflictException>(async () => await store.AppendAsync(Append("nope", 1, Answer("x"))));
        Assert.Null(ex.ActualVersion);
    }

    [Fact]
    public async Task Append_TwentyWritersRaceOnOneVersion_ExactlyOneWins()
    {
        var store = await OpenAsync();
        await store.SubmitAsync(Run("r1"));
        using var go = new ManualResetEventSlim();
        var tasks = Enumerable.Range(0, 20).Select(i => Task.Run(async () =>
        {
            go.Wait();
            try
            {
                await store.AppendAsync(Append("r1", 1, Answer("writer " + i)));
                return true;
            }
            catch (JournalConflictException)
            {
                return false;
            }
        })).ToArray();
        go.Set();
        var won = await Task.WhenAll(tasks);
        Assert.Single(won, w => w);
        var journal = await store.ReadJournalAsync("r1");
        Assert.Equal(2, journal.Count);
    }

    [Fact]
    public async Task Append_ManyRunsConcurrently_EachJournalGapFree()
    {
        var store = await OpenAsync();
        const int runs = 40, steps = 10;
        await Task.WhenAll(Enumerable.Range(0, runs).Select(i => store.SubmitAsync(Run("c" + i))));
        await Task.WhenAll(Enumerable.Range(0, runs).Select(async i =>
        {
            for (var v = 1; v <= steps; v++) await store.AppendAsync(Append("c" + i, v, Answer($"{i}-{v}")));
        }));
        for (var i = 0; i < runs; i++)
        {
            var journal = await store.ReadJournalAsync("c" + i);
            Assert.Equal(Enumerable.Range(1, steps + 1).Select(n => (long)n), journal.Select(j => j.N));
            Assert.Equal($"{i}-{steps}", ((ModelResponded)journal[^1].Entry).Text);
        }
    }

    [Fact]
    public async Task ListRuns_PagesNewestFirst_WithoutGapsOrRepeatsWhileRunsArrive()
    {
        var store = await OpenAsync();
        for (var i = 0; i < 25; i++) await store.SubmitAsync(Run($"p{i:00}", minute: i));
        var seen = new List<string>();
        string? cursor = null;
        var pages = 0;
        do
        {
            var page = await store.ListRunsAsync(new RunQuery { Limit = 10, Cursor = cursor });
            seen.AddRange(page.Items.Select(r => r.Id));
            cursor = page.Next;
            if (pages++ == 0) await store.SubmitAsync(Run("late", minute: 99)); // arrives after page 1: not in this listing
        }
        while (cursor is not null);
        Assert.Equal(Enumerable.Range(0, 25).Reverse().Select(i => $"p{i:00}"), seen);
        Assert.Equal(3, pages);
    }

    [Fact]
    public async Task ListRuns_FiltersByStatusAndAgent()
    {
        var store = await OpenAsync();
        await store.SubmitAsync(Run("x1", agent: "x"));
        await store.SubmitAsync(Run("y1", agent: "y"));
        await store.SubmitAsync(Run("y2", agent: "y"));
        await store.AppendAsync(Append("y2", 1, new RunFinished(RunStatus.Failed, null, "boom", "error")) with { Update = new RunUpdate { Status = RunStatus.Failed, Error = "boom" } });

        Assert.Equal(["y2", "y1"], (await store.ListRunsAsync(new RunQuery { Agent = "y" })).Items.Select(r => r.Id));
        Assert.Equal(["y2"], (await store.ListRunsAsync(new RunQuery { Status = RunStatus.Failed })).Items.Select(r => r.Id));
        Assert.Equal(["y1"], (await store.ListRunsAsync(new RunQuery { Status = RunStatus.Queued, Agent = "y" })).Items.Select(r => r.Id));
    }

    [Fact]
    public async Task ListRuns_ByIdempotencyKeyPrefix_OnlyThatPrefixNewestFirst()
    {
        var store = await OpenAsync();
        await store.SubmitAsync(Run("s1", key: "schedule:night:2026-12-01T02:00:00Z"));
        await store.SubmitAsync(Run("s2", key: "schedule:night:2026-12-02T02:00:00Z"));
        await store.SubmitAsync(Run("o1", key: "schedule:nightly:2026-12-03T02:00:00Z"));
        await store.SubmitAsync(Run("o2", key: "schedule:nigh;x"));
        await store.SubmitAsync(Run("n1"));

        Assert.Equal(["s2", "s1"], (await store.ListRunsAsync(new RunQuery { IdempotencyKeyPrefix = "schedule:night:" })).Items.Select(r => r.Id));
        Assert.Equal(["s2"], (await store.ListRunsAsync(new RunQuery { IdempotencyKeyPrefix = "schedule:night:", Limit = 1 })).Items.Select(r => r.Id));
        Assert.Empty((await store.ListRunsAsync(new RunQuery { IdempotencyKeyPrefix = "trigger:night:" })).Items);
    }

    [Fact]
    public async Task ListRuns_ByIdempotencyKeyPrefix_EndingInTheLastCharacters_FindsItsKeysOnly()
    {
        var store = await OpenAsync();
        await store.SubmitAsync(Run("f1", key: "k\uFFFF1"));
        await store.SubmitAsync(Run("f2", key: "k\uFFFF\uFFFF"));
        await store.SubmitAsync(Run("g1", key: "k\uD7FFx"));
        await store.SubmitAsync(Run("e1", key: "k\U0001F600x"));
        await store.SubmitAsync(Run("o1", key: "l1"));
        await store.SubmitAsync(Run("o2", key: "k1"));

        Assert.Equal(["f2", "f1"], (await store.ListRunsAsync(new RunQuery { IdempotencyKeyPrefix = "k\uFFFF" })).Items.Select(r => r.Id));
        Assert.Equal(["f2"], (await store.ListRunsAsync(new RunQuery { IdempotencyKeyPrefix = "k\uFFFF\uFFFF" })).Items.Select(r => r.Id));
        Assert.Equal(["g1"], (await store.ListRunsAsync(new RunQuery { IdempotencyKeyPrefix = "k\uD7FF" })).Items.Select(r => r.Id));
        Assert.Equal(["e1"], (await store.ListRunsAsync(new RunQuery { IdempotencyKeyPrefix = "k\U0001F600" })).Items.Select(r => r.Id));
    }

    [Fact]
    public async Task ListRuns_ByIdempotencyKey_OnlyTheRunWithExactlyThatKey()
    {
        var store = await OpenAsync();
        await store.SubmitAsync(Run("k1", key: "k-1"));
        await store.SubmitAsync(Run("k10", key: "k-10")); // newer, and its key starts with the other's

        Assert.Equal(["k1"], (await store.ListRunsAsync(new RunQuery { IdempotencyKey = "k-1", Limit = 1 })).Items.Select(r => r.Id));
        Assert.Equal(["k10"], (await store.ListRunsAsync(new RunQuery { IdempotencyKey = "k-10" })).Items.Select(r => r.Id));
        Assert.Empty((await store.ListRunsAsync(new RunQuery { IdempotencyKey = "k-" })).Items);
    }

    [Fact]
    public async Task ListRuns_ForeignCursor_IsRejected()
    {
        var store = await OpenAsync();
        await Assert.ThrowsAsync<ArgumentException>(() => store.ListRunsAsync(new RunQuery { Cursor = "not-a-cursor" }));
    }

    [Fact]
    public async Task Claim_TakesQueuedAndRunningOldestFirst_NeverWaiting()
    {
        var store = await OpenAsync();
        await store.SubmitAsync(Run("u1"));
        await store.SubmitAsync(Run("u2"));
        await store.SubmitAsync(Run("u3"));
        await store.MarkRunningAsync("u2", T0);
        await store.AppendAsync(Append("u3", 1, new RunWaiting(new InDoubtWait { Step = 1 })) with
        {
            Update = new RunUpdate { Status = RunStatus.Waiting, WaitingFor = new InDoubtWait { Step = 1, Tool = "t", Key = "u3:1", Arguments = "{}" } },
        });
        var claimed = await store.ClaimAsync(new RunClaim("node-a", T0.AddMinutes(1)), T0, 100);
        Assert.Equal(["u1", "u2"], claimed);
        var waiting = await store.GetRunAsync("u3");
        Assert.Equal(new InDoubtWait { Step = 1, Tool = "t", Key = "u3:1", Arguments = "{}" }, waiting!.WaitingFor);
    }

    [Fact]
    public async Task Claim_HeldLease_IsNotClaimedAgainUntilItLapses()
    {
        var store = await OpenAsync();
        for (var i = 0; i < 5; i++) await store.SubmitAsync(Run("c" + i, minute: i));
        Assert.Equal(["c0", "c1"], await store.ClaimAsync(new RunClaim("a", T0.AddSeconds(30)), T0, 2));
        Assert.Equal(["c2", "c3", "c4"], await store.ClaimAsync(new RunClaim("b", T0.AddSeconds(30)), T0, 10));
        Assert.Empty(await store.ClaimAsync(new RunClaim("c", T0.AddSeconds(30)), T0.AddSeconds(10), 10));

        // a renews, b does not: after b's lease lapses, c gets b's runs and only those.
        Assert.Equal(2, await store.RenewClaimsAsync(new RunClaim("a", T0.AddSeconds(90))));
        Assert.Equal(["c2", "c3", "c4"], await store.ClaimAsync(new RunClaim("c", T0.AddSeconds(120)), T0.AddSeconds(60), 10));

        // A finished run is never claimed; a released owner's runs are free at once.
        await store.AppendAsync(Append("c0", 1, new RunFinished(RunStatus.Succeeded, "x", null, null)) with { Update = new RunUpdate { Status = RunStatus.Succeeded, Output = "x" } });
        await store.ReleaseClaimsAsync("a");
        Assert.Equal(["c1"], await store.ClaimAsync(new RunClaim("d", T0.AddSeconds(200)), T0.AddSeconds(61), 10));
    }

    [Fact]
    public async Task DueWaits_ListsWaitsWhoseDeadlinePassed_AndClearsThemWhenTheRunMoves()
    {
        var store = await OpenAsync();
        await store.SubmitAsync(Run("w1"));
        await store.SubmitAsync(Run("w2"));
        Assert.Null(await store.NextWaitDeadlineAsync());
        var wait = new TimerWait { Step = 2, Deadline = T0.AddMinutes(5) };
        await store.AppendAsync(Append("w1", 1, new RunWaiting(wait)) with { Update = new RunUpdate { Status = RunStatus.Waiting, WaitingFor = wait } });
        await store.AppendAsync(Append("w2", 1, new RunWaiting(new TimerWait { Step = 2 })) with { Update = new RunUpdate { Status = RunStatus.Waiting, WaitingFor = new TimerWait { Step = 2 } } });

        Assert.Equal(T0.AddMinutes(5), await store.NextWaitDeadlineAsync());
        Assert.Empty(await store.ListDueWaitsAsync(T0.AddMinutes(4), 10));
        var due = Assert.Single(await store.ListDueWaitsAsync(T0.AddMinutes(5), 10));
        Assert.Equal(wait, due.WaitingFor);

        await store.AppendAsync(Append("w1", 2, new WaitExpired(2, "timer", T0.AddMinutes(5))) with { Update = new RunUpdate { Status = RunStatus.Queued } });
        Assert.Empty(await store.ListDueWaitsAsync(T0.AddMinutes(10), 10));
        Assert.Null(await store.NextWaitDeadlineAsync());
    }

    [Fact]
    public async Task Submit_ChildRun_KeepsKindParentAndRoot()
    {
        var store = await OpenAsync();
        await store.SubmitAsync(Run("p"));
        await store.SubmitAsync(Run("c") with { Kind = "team", ParentRunId = "p", RootRunId = "p" });
        var parent = await store.GetRunAsync("p");
        var child = await store.GetRunAsync("c");
        Assert.Equal((RunKinds.Agent, null, "p"), (parent!.Kind, parent.ParentRunId, parent.RootRunId));
        Assert.Equal(("team", "p", "p"), (child!.Kind, child.ParentRunId, child.RootRunId));
    }

    [Fact]
    public async Task Reopen_AfterDispose_KeepsEverythingAcknowledged()
    {
        var store = await OpenAsync();
        await store.SubmitAsync(Run("d1", key: "k-d1"));
        await store.AppendAsync(Append("d1", 1, new ToolIntent("c1", "ledger", "{\"n\":1}", ToolEffect.Write, "d1:2")));
        await store.DisposeAsync();
        _opened.Remove(store);

        var again = await OpenAsync();
        var journal = await again.ReadJournalAsync("d1");
        Assert.Equal(new ToolIntent("c1", "ledger", "{\"n\":1}", ToolEffect.Write, "d1:2"), journal[1].Entry);
        var resubmit = await again.SubmitAsync(Run("other", key: "k-d1"));
        Assert.False(resubmit.Created);
        Assert.Equal("d1", resubmit.Run.Id);
    }
}
