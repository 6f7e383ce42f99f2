using Xunit;

namespace Bureau.TestKit;

/// <summary>
/// The contract every <see cref="IMemoryStore"/> passes (decision 0023): versions, compare-and-set, conflict rules,
/// provenance and supersession, idempotent writes, recall. A backend's test class derives from this and says how to
/// open a store on fresh data (and another one on the same data).
/// </summary>
public abstract class MemoryStoreConformanceTests
{
    private static readonly DateTimeOffset T0 = new(2026, 12, 6, 9, 0, 0, TimeSpan.Zero);

    /// <summary>Opens a store on this test's data; each call opens another instance on the same data (another process, as far as the store can tell).</summary>
    protected abstract IMemoryStore CreateStore();

    protected async Task<IMemoryStore> OpenAsync()
    {
        var s = CreateStore();
        await s.InitializeAsync(TestContext.Current.CancellationToken);
        return s;
    }

    private static MemoryWrite Write(string key, string? value, long? expected, string by = "writer", string scope = "team:desk", string? idem = null,
        MemoryConflictRule rule = MemoryConflictRule.Reject, int second = 0) => new()
    {
        Scope = scope, Key = key, Value = value, ExpectedVersion = expected, OnConflict = rule, IdempotencyKey = idem,
        Provenance = new MemoryProvenance("run-" + by, 3, by, T0.AddSeconds(second), "alice"),
    };

    [Fact]
    public async Task Write_NewFact_IsVersion1_WithItsProvenance()
    {
        var store = await OpenAsync();

        var result = await store.WriteAsync(Write("plan", "gold", 0, "billing"));

        Assert.Equal(MemoryWriteOutcome.Written, result.Outcome);
        var fact = await store.GetAsync("team:desk", "plan");
        Assert.NotNull(fact);
        Assert.Equal(("gold", 1L, (long?)null), (fact.Value, fact.Version, fact.Supersedes));
        Assert.Equal(new MemoryProvenance("run-billing", 3, "billing", T0, "alice"), fact.Provenance);
        Assert.Equal(result.Fact, fact);
    }

    [Fact]
    public async Task Write_AtTheExpectedVersion_SupersedesIt_AndTheHistoryKeepsBoth()
    {
        var store = await OpenAsync();
        await store.WriteAsync(Write("plan", "gold", 0, "billing"));

        var second = await store.WriteAsync(Write("plan", "platinum", 1, "triage", second: 5));

        Assert.Equal(MemoryWriteOutcome.Written, second.Outcome);
        var history = await store.HistoryAsync("team:desk", "plan");
        Assert.Equal(2, history.Count);
        Assert.Equal(("gold", 1L, (long?)2, "billing"), (history[0].Value, history[0].Version, history[0].SupersededBy, history[0].Provenance.Agent));
        Assert.Equal(("platinum", 2L, (long?)1, (long?)null, "triage"), (history[1].Value, history[1].Version, history[1].Supersedes, history[1].SupersededBy, history[1].Provenance.Agent));
        Assert.Equal("platinum", (await store.GetAsync("team:desk", "plan"))!.Value);
    }

    [Fact]
    public async Task Write_AtAStaleVersion_IsAConflictCarryingTheCurrentValue_AndWritesNothing()
    {
        var store = await OpenAsync();
        await store.WriteAsync(Write("plan", "gold", 0, "billing"));
        await store.WriteAsync(Write("plan", "platinum", 1, "triage"));

        var stale = await store.WriteAsync(Write("plan", "bronze", 1, "technical"));

        Assert.Equal(MemoryWriteOutcome.Conflict, stale.Outcome);
        Assert.Null(stale.Fact);
        Assert.Equal(("platinum", 2L, "triage"), (stale.Current!.Value, stale.Current.Version, stale.Current.Provenance.Agent));
        Assert.Equal(2, (await store.HistoryAsync("team:desk", "plan")).Count);
    }

    [Fact]
    public async Task Write_ExpectingNoFact_WhenOneExists_IsAConflict()
    {
        var store = await OpenAsync();
        await store.WriteAsync(Write("plan", "gold", 0));

        var again = await store.WriteAsync(Write("plan", "silver", 0));

        Assert.Equal(MemoryWriteOutcome.Conflict, again.Outcome);
        Assert.Equal("gold", again.Current!.Value);
    }

    [Fact]
    public async Task TwentyWriters_RacingOnOneFact_ExactlyOneWinsEachVersion_AndTheLosersGetTheWinnersValue()
    {
        var stores = new[] { await OpenAsync(), await OpenAsync() };
        await stores[0].WriteAsync(Write("counter", "start", 0, "setup"));
        for (var round = 1; round <= 5; round++)
        {
            var expected = (long)round;
            var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var writers = Enumerable.Range(0, 20).Select(w => Task.Run(async () =>
            {
                await gate.Task;
                return await stores[w % 2].WriteAsync(Write("counter", $"round {round} by w{w}", expected, "w" + w));
            })).ToArray();
            gate.SetResult();
            var results = await Task.WhenAll(writers);

            var winners = results.Where(r => r.Outcome == MemoryWriteOutcome.Written).ToList();
            var winner = Assert.Single(winners);
            Assert.Equal(expected + 1, winner.Fact!.Version);
            var losers = results.Where(r => r.Outcome != MemoryWriteOutcome.Written).ToList();
            Assert.Equal(19, losers.Count);
            Assert.All(losers, l =>
            {
                Assert.Equal(MemoryWriteOutcome.Conflict, l.Outcome);
                Assert.Equal(winner.Fact.Version, l.Current!.Version);
                Assert.Equal(winner.Fact.Value, l.Current.Value);
            });
        }
        var history = await stores[1].HistoryAsync("team:desk", "counter");
        Assert.Equal([1L, 2, 3, 4, 5, 6], history.Select(f => f.Version));
        Assert.All(history.Skip(1), f => Assert.Equal(f.Version - 1, f.Supersedes));
    }

    [Fact]
    public async Task Write_TheSameIdempotencyKeyTwice_IsAppliedOnce_AndTheRepeatSaysSo()
    {
        var store = await OpenAsync();
        var first = await store.WriteAsync(Write("plan", "gold", 0, idem: "run1:4"));

        var repeat = await store.WriteAsync(Write("plan", "gold", 0, idem: "run1:4"));

        Assert.False(first.Repeated);
        Assert.True(repeat.Repeated);
        Assert.Equal(MemoryWriteOutcome.Written, repeat.Outcome);
        Assert.Equal(first.Fact, repeat.Fact);
        Assert.Single(await store.HistoryAsync("team:desk", "plan"));
    }

    [Fact]
    public async Task Forget_WritesATombstone_TheFactIsGone_AndItsHistoryStays()
    {
        var store = await OpenAsync();
        await store.WriteAsync(Write("plan", "gold", 0));

        var forgotten = await store.WriteAsync(Write("plan", null, 1, "gdpr"));
        var again = await store.WriteAsync(Write("plan", null, 2));

        Assert.Equal(MemoryWriteOutcome.Forgotten, forgotten.Outcome);
        Assert.Equal(MemoryWriteOutcome.Absent, again.Outcome);
        Assert.Null(await store.GetAsync("team:desk", "plan"));
        Assert.Empty(await store.ListAsync("team:desk"));
        Assert.Empty(await store.RecallAsync(new MemoryRecall { Scopes = ["team:desk"], Query = "gold" }));
        var history = await store.HistoryAsync("team:desk", "plan");
        Assert.Equal([("gold", 1L), (null, 2L)], history.Select(f => (f.Value, f.Version)));
        Assert.True(history[1].IsForgotten);
        // A forgotten fact may be written again by a writer that expects it absent.
        Assert.Equal(MemoryWriteOutcome.Written, (await store.WriteAsync(Write("plan", "silver", 0))).Outcome);
        Assert.Equal(3, (await store.GetAsync("team:desk", "plan"))!.Version);
    }

    [Fact]
    public async Task LastWriterWins_AStaleWriteSupersedesTheCurrentVersion()
    {
        var store = await OpenAsync();
        await store.WriteAsync(Write("plan", "gold", 0));
        await store.WriteAsync(Write("plan", "platinum", 1));

        var result = await store.WriteAsync(Write("plan", "bronze", 1, rule: MemoryConflictRule.LastWriterWins));

        Assert.Equal(MemoryWriteOutcome.Written, result.Outcome);
        Assert.Equal(("bronze", 3L, (long?)2), (result.Fact!.Value, result.Fact.Version, result.Fact.Supersedes));
    }

    [Fact]
    public async Task Append_AStaleWriteIsMergedIntoTheCurrentValue()
    {
        var store = await OpenAsync();
        await store.WriteAsync(Write("notes", "called on monday", 0));
        await store.WriteAsync(Write("notes", "called on monday\nrefund promised", 1));

        var result = await store.WriteAsync(Write("notes", "prefers email", 1, rule: MemoryConflictRule.Append));

        Assert.Equal(MemoryWriteOutcome.Merged, result.Outcome);
        Assert.Equal("called on monday\nrefund promised\nprefers email", (await store.GetAsync("team:desk", "notes"))!.Value);
    }

    [Fact]
    public async Task Recall_ByKey_LooksInEachScope_AndByQuery_RanksMatchesWithScores_OnlyInTheScopesGiven()
    {
        var store = await OpenAsync();
        await store.WriteAsync(Write("plan", "customer 42 is on the gold plan", 0, scope: "team:desk"));
        await store.WriteAsync(Write("plan", "agent-only note about the plan", 0, scope: "agent:billing"));
        await store.WriteAsync(Write("refund", "customer 42 asked for a refund of the duplicate charge", 0, scope: "team:desk"));
        await store.WriteAsync(Write("secret", "customer 42 refund approved by finance", 0, scope: "team:other"));
        await store.WriteAsync(Write("old", "the duplicate charge was fixed", 0, scope: "team:desk"));
        await store.WriteAsync(Write("old", "nothing to see", 1, scope: "team:desk"));

        var byKey = await store.RecallAsync(new MemoryRecall { Scopes = ["agent:billing", "team:desk", "tenant:x"], Key = "plan" });
        Assert.Equal(["agent:billing", "team:desk"], byKey.Select(h => h.Fact.Scope));
        Assert.All(byKey, h => Assert.Null(h.Score));

        var search = await store.RecallAsync(new MemoryRecall { Scopes = ["team:desk"], Query = "refund for the duplicate charge?", Limit = 5 });
        Assert.Equal("refund", search[0].Fact.Key);
        Assert.All(search, h => Assert.True(h.Score > 0));
        Assert.DoesNotContain(search, h => h.Fact.Scope != "team:desk");
        Assert.DoesNotContain(search, h => h.Fact.Key == "old"); // its current value does not match; the superseded one is not searched
        Assert.Equal("run-writer", search[0].Fact.Provenance.RunId);
    }

    [Fact]
    public async Task List_GivesTheCurrentFactsOfAScope_ByKey_FromAKeyOn()
    {
        var store = await OpenAsync();
        foreach (var key in new[] { "c", "a", "b" }) await store.WriteAsync(Write(key, "value " + key, 0));
        await store.WriteAsync(Write("a", "value a2", 1));
        await store.WriteAsync(Write("x", "elsewhere", 0, scope: "team:other"));

        var all = await store.ListAsync("team:desk");
        var page = await store.ListAsync("team:desk", afterKey: "a", limit: 1);

        Assert.Equal([("a", "value a2"), ("b", "value b"), ("c", "value c")], all.Select(f => (f.Key, f.Value!)));
        Assert.Equal("b", Assert.Single(page).Key);
    }

    [Fact]
    public async Task Facts_AreDurable_AnotherStoreOnTheSameDataSeesThem()
    {
        var store = await OpenAsync();
        await store.WriteAsync(Write("plan", "gold", 0));

        var other = await OpenAsync();

        Assert.Equal("gold", (await other.GetAsync("team:desk", "plan"))!.Value);
    }

    [Theory]
    [InlineData("desk", "plan")]
    [InlineData("galaxy:desk", "plan")]
    [InlineData("team:desk", " ")]
    public async Task Write_AnInvalidScopeOrKey_IsRefusedWithWhatIsWrong(string scope, string key)
    {
        var store = await OpenAsync();

        var ex = await Assert.ThrowsAsync<ArgumentException>(() => store.WriteAsync(Write(key, "v", 0, scope: scope)));

        Assert.Contains(key.Trim().Length == 0 ? "key" : "scope", ex.Message);
    }
}
