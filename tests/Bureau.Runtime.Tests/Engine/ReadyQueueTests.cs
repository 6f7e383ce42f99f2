using Bureau.Engine;
using Xunit;

namespace Bureau.Tests.Engine;

/// <summary>
/// The scheduler's ready queue with per-agent concurrency limits: a saturated agent's runs are set aside (not blocking
/// others), go back in their priority order when one of its executions ends, and keep ordering keys intact.
/// </summary>
public sealed class ReadyQueueTests
{
    private static readonly Dictionary<string, int> Limits = new(StringComparer.Ordinal) { ["a"] = 1 };

    private static ReadyQueue NewQueue() => new(agent => Limits.TryGetValue(agent, out var l) ? l : null);

    private static void Write(ReadyQueue q, string runId, string agent, int priority = 0, string? key = null)
    {
        q.SetOrder(runId, priority, key);
        q.SetAgent(runId, agent);
        Assert.True(q.TryWrite(runId));
    }

    /// <summary>Reads the next run; a generous deadline turns a queue that never answers into a failure naming what was expected.</summary>
    private static async Task<string?> ReadAsync(ReadyQueue q, string expected)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        cts.CancelAfter(TimeSpan.FromSeconds(20));
        try
        {
            return await q.ReadAsync(cts.Token);
        }
        catch (OperationCanceledException) when (!TestContext.Current.CancellationToken.IsCancellationRequested)
        {
            throw new TimeoutException($"the queue gave no run within 20 s; expected {expected}");
        }
    }

    [Fact]
    public async Task SaturatedAgent_ItsNextRunSetAside_OtherAgentsRead_ItGoesWhenAnExecutionEnds()
    {
        var q = NewQueue();
        Write(q, "a1", "a");
        Write(q, "a2", "a");
        Write(q, "b1", "b");
        Assert.Equal("a1", await ReadAsync(q, "a1"));
        Assert.Equal("b1", await ReadAsync(q, "b1 (a2 waits for a1)"));
        Write(q, "b2", "b");
        Assert.Equal("b2", await ReadAsync(q, "b2 (a2 still waits)"));

        q.Ended("b1"); // another agent's execution ending frees nothing of "a"
        Write(q, "b3", "b");
        Assert.Equal("b3", await ReadAsync(q, "b3"));

        q.Ended("a1");
        Assert.Equal("a2", await ReadAsync(q, "a2 once a1 ended"));
    }

    [Fact]
    public async Task SetAsideRuns_GoBackInPriorityOrder()
    {
        var q = NewQueue();
        Write(q, "a1", "a");
        Assert.Equal("a1", await ReadAsync(q, "a1"));
        Write(q, "a-low", "a");
        Write(q, "a-high", "a", priority: 5);
        Write(q, "b1", "b");
        Assert.Equal("b1", await ReadAsync(q, "b1"));

        q.Ended("a1");
        Assert.Equal("a-high", await ReadAsync(q, "a-high"));
        q.Ended("a-high");
        Assert.Equal("a-low", await ReadAsync(q, "a-low"));
    }

    [Fact]
    public async Task RunSetAsideForItsAgent_KeepsItsOrderingKey_LaterRunsOfTheKeyStayBehindIt()
    {
        var q = NewQueue();
        Write(q, "a1", "a");
        Write(q, "a2", "a", key: "issue:7");
        Write(q, "b1", "b", key: "issue:7");
        Write(q, "b2", "b");
        Assert.Equal("a1", await ReadAsync(q, "a1"));
        Assert.Equal("b2", await ReadAsync(q, "b2 (a2 waits for its agent, b1 for a2's key)"));

        q.Ended("a1");
        Assert.Equal("a2", await ReadAsync(q, "a2"));
        q.Ended("a2");
        q.Released("a2"); // its key goes to b1
        Assert.Equal("b1", await ReadAsync(q, "b1 after a2 released the key"));
    }

    [Fact]
    public async Task RunRefusedAClusterSlot_GivesItsSlotHereBack_AndIsRetriedOnlyWhileItsAgentHasAFreeSlotHere()
    {
        var q = NewQueue();
        Write(q, "a1", "a");
        Assert.Equal("a1", await ReadAsync(q, "a1"));
        Assert.Equal(("a", 1), q.SlotOf("a1"));
        Write(q, "a2", "a", priority: 5);
        Write(q, "b1", "b");
        Assert.Equal("b1", await ReadAsync(q, "b1 (a2 set aside behind a1)"));
        Assert.Null(q.SlotOf("b1")); // "b" has no limit
        Assert.Equal(0, q.RetrySetAside()); // "a" has no free slot here: nothing goes back

        // The cluster's slots of "a" are taken on other nodes: a1 gives its slot here back and waits among the set-aside runs.
        q.Refused("a1");
        Assert.Null(q.SlotOf("a1"));
        Assert.Equal(1, q.RetrySetAside()); // one free slot of "a" here: the first set-aside run in queue order goes back
        Assert.Equal("a2", await ReadAsync(q, "a2 (priority 5)"));
        Assert.Equal(0, q.RetrySetAside());
        q.Ended("a2");
        Assert.Equal("a1", await ReadAsync(q, "a1 once a2 ended"));
    }

    [Fact]
    public async Task WithoutLimits_AgentsAreNotTracked()
    {
        var q = new ReadyQueue();
        Assert.False(q.Limited);
        q.SetAgent("a1", "a");
        Assert.Null(q.AgentOf("a1"));
        Assert.True(q.TryWrite("a1"));
        Assert.True(q.TryWrite("a2"));
        Assert.Equal("a1", await ReadAsync(q, "a1"));
        Assert.Equal("a2", await ReadAsync(q, "a2 (no limit)"));
    }

    [Fact]
    public async Task ContinuingRuns_GoBeforeRunsNotStarted_OfTheirPriority_InTheOrderTheyCame()
    {
        var q = new ReadyQueue();
        Assert.True(q.TryWrite("new1"));
        Assert.True(q.TryWrite("new2"));
        q.SetOrder("urgent", 5, null);
        Assert.True(q.TryWrite("urgent"));
        Assert.True(q.TryWrite("woken1", continuing: true));
        Assert.True(q.TryWrite("woken2", continuing: true));

        Assert.Equal("urgent", await ReadAsync(q, "urgent (a higher priority still goes first)"));
        Assert.Equal("woken1", await ReadAsync(q, "woken1 (continuing, before the runs not started)"));
        Assert.Equal("woken2", await ReadAsync(q, "woken2"));
        Assert.Equal("new1", await ReadAsync(q, "new1"));
        Assert.Equal("new2", await ReadAsync(q, "new2"));
    }

    [Fact]
    public async Task ContinuingRunSetAsideForItsAgent_GoesBackAheadOfRunsNotStarted()
    {
        var q = NewQueue();
        Write(q, "a1", "a");
        Assert.Equal("a1", await ReadAsync(q, "a1"));
        q.SetAgent("a-woken", "a");
        Assert.True(q.TryWrite("a-woken", continuing: true));
        Write(q, "b1", "b");
        Assert.Equal("b1", await ReadAsync(q, "b1 (a-woken waits for a1)"));
        Write(q, "b2", "b");

        q.Ended("a1");
        Assert.Equal("a-woken", await ReadAsync(q, "a-woken before b2, which has not started"));
        Assert.Equal("b2", await ReadAsync(q, "b2"));
    }
}
