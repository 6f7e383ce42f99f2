using Xunit;

namespace Bureau.TestKit;

/// <summary>The contract every <see cref="IBoardStore"/> passes: tasks claimed exactly once under a race, state changes only by the right worker, decisions, CAS keys.</summary>
public abstract class BoardStoreConformanceTests
{
    private static readonly DateTimeOffset T0 = new(2026, 12, 6, 9, 0, 0, TimeSpan.Zero);

    protected abstract IBoardStore CreateStore();

    protected async Task<IBoardStore> OpenAsync()
    {
        var s = CreateStore();
        await s.InitializeAsync(TestContext.Current.CancellationToken);
        return s;
    }

    [Fact]
    public async Task Claim_TwentyWorkersRacingOnEachOfFiveTasks_EachTaskIsClaimedExactlyOnce_LosersSeeTheWinner()
    {
        var stores = new[] { await OpenAsync(), await OpenAsync() };
        for (var t = 0; t < 5; t++) await stores[0].AddTaskAsync("desk", "t" + t, "task " + t, null, "triage", T0);

        foreach (var id in Enumerable.Range(0, 5).Select(t => "t" + t))
        {
            var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var claims = Enumerable.Range(0, 20).Select(w => Task.Run(async () =>
            {
                await gate.Task;
                return (Worker: "w" + w, Result: await stores[w % 2].ClaimAsync("desk", id, "w" + w, T0.AddSeconds(1)));
            })).ToArray();
            gate.SetResult();
            var results = await Task.WhenAll(claims);

            var winner = Assert.Single(results, r => r.Result.Outcome == BoardChange.Applied);
            Assert.Equal((BoardTaskStatus.Claimed, winner.Worker, 2L), (winner.Result.Task!.Status, winner.Result.Task.ClaimedBy, winner.Result.Task.Version));
            Assert.All(results.Where(r => r != winner), r =>
            {
                Assert.Equal(BoardChange.Conflict, r.Result.Outcome);
                Assert.Equal(winner.Worker, r.Result.Task!.ClaimedBy);
            });
        }
        var board = await stores[1].ReadAsync("desk");
        Assert.All(board.Tasks, t => Assert.Equal((BoardTaskStatus.Claimed, 2L), (t.Status, t.Version)));
    }

    [Fact]
    public async Task Task_OnlyItsClaimerCompletesIt_AndAddingItAgainChangesNothing()
    {
        var store = await OpenAsync();
        await store.AddTaskAsync("desk", "refund-42", "Refund customer 42", "duplicate charge", "triage", T0);
        await store.ClaimAsync("desk", "refund-42", "billing", T0.AddMinutes(1));

        var other = await store.CompleteAsync("desk", "refund-42", "technical", "done?", T0.AddMinutes(2));
        var done = await store.CompleteAsync("desk", "refund-42", "billing", "refunded 30 EUR", T0.AddMinutes(3));
        var again = await store.AddTaskAsync("desk", "refund-42", "another title", null, "triage", T0.AddMinutes(4));

        Assert.Equal((BoardChange.Conflict, BoardTaskStatus.Claimed), (other.Outcome, other.Task!.Status));
        Assert.Equal((BoardChange.Applied, BoardTaskStatus.Done, "refunded 30 EUR"), (done.Outcome, done.Task!.Status, done.Task.Note));
        Assert.Equal(("Refund customer 42", BoardTaskStatus.Done), (again.Title, again.Status));
        Assert.Equal(BoardChange.NotFound, (await store.ClaimAsync("desk", "nope", "billing", T0)).Outcome);
        Assert.Equal(BoardChange.Conflict, (await store.ClaimAsync("desk", "refund-42", "technical", T0)).Outcome);
    }

    [Fact]
    public async Task Block_AnOpenTaskOrOnesOwn_WithTheReason_NotSomeoneElses()
    {
        var store = await OpenAsync();
        await store.AddTaskAsync("desk", "a", "A", null, "triage", T0);
        await store.AddTaskAsync("desk", "b", "B", null, "triage", T0);
        await store.ClaimAsync("desk", "b", "billing", T0);

        var blocked = await store.BlockAsync("desk", "a", "technical", "waiting for the customer", T0);
        var notTheirs = await store.BlockAsync("desk", "b", "technical", "no", T0);

        Assert.Equal((BoardChange.Applied, BoardTaskStatus.Blocked, "waiting for the customer"), (blocked.Outcome, blocked.Task!.Status, blocked.Task.Note));
        Assert.Equal((BoardChange.Conflict, "billing"), (notTheirs.Outcome, notTheirs.Task!.ClaimedBy));
    }

    [Fact]
    public async Task Keys_AreCompareAndSet_AndDecisionsAppendInOrder()
    {
        var store = await OpenAsync();
        var first = await store.SetKeyAsync("desk", "oncall", "tom", 0, "lead", T0);
        var stale = await store.SetKeyAsync("desk", "oncall", "ann", 0, "other", T0);
        var second = await store.SetKeyAsync("desk", "oncall", "ann", 1, "lead", T0);
        await store.AddDecisionAsync("desk", "refunds", "refunds over 100 EUR need a supervisor", "lead", T0);
        await store.AddDecisionAsync("desk", "tone", "answer in the customer's language", "lead", T0);

        Assert.Equal((BoardChange.Applied, 1L), (first.Outcome, first.Key!.Version));
        Assert.Equal((BoardChange.Conflict, "tom"), (stale.Outcome, stale.Key!.Value));
        Assert.Equal((BoardChange.Applied, 2L, "ann"), (second.Outcome, second.Key!.Version, second.Key.Value));
        var board = await store.ReadAsync("desk");
        Assert.Equal(["refunds", "tone"], board.Decisions.Select(d => d.Title));
        Assert.Equal(("oncall", "ann"), (board.Keys.Single().Key, board.Keys.Single().Value));
        Assert.Empty((await store.ReadAsync("other")).Tasks);
    }
}
