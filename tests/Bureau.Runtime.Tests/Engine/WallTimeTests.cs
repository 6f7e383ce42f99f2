using Bureau.Engine;
using Xunit;

namespace Bureau.Tests.Engine;

/// <summary>
/// What <c>budgets.maxWallTime</c> counts (docs/concepts.md, docs/manifest.md): the time a run is active, from its first
/// step, less the time it waited for a person and the time it sat in the queue. An answer given while no executor holds the
/// run (the CLI's <c>bureau approvals approve</c>, a host whose run slots are all taken) leaves it queued until one resumes
/// it; that time is queue time too.
/// </summary>
public sealed class WallTimeTests
{
    private static readonly DateTimeOffset T0 = new(2026, 12, 7, 10, 0, 0, TimeSpan.Zero);

    private static RunState Fold(params (double Seconds, JournalEntry Entry)[] journal)
    {
        var state = new RunState("run1", null);
        var n = 0;
        foreach (var (seconds, entry) in journal) state.Apply(new JournalRecord(++n, T0.AddSeconds(seconds), entry));
        return state;
    }

    [Fact]
    public void TimeQueuedAfterAnAnswer_UntilTheRunResumes_IsNotActiveTime()
    {
        var state = Fold(
            (0, new RunStarted("a", "x")),
            (1, new RunWaiting(new TimerWait { Step = 2 })),        // first step: active from here
            (11, new WaitAnswered(2, TimerWait.ReasonName, "go", "cli:ops")), // waited 10 s for an answer
            (71, new RunResumed("answered")));                      // queued 60 s until an executor took it

        Assert.Equal(TimeSpan.FromSeconds(10 + 60), state.TimeWaiting);
        Assert.Equal(TimeSpan.FromSeconds(1), state.ActiveTime(T0.AddSeconds(72)));
    }

    [Fact]
    public void AnAnswerTheRunGoesOnFromWithoutAResume_CountsFromTheAnswer()
    {
        // The executor that waited is still there: the next entry is the run's own work, and the time after the answer is active.
        var state = Fold(
            (0, new RunStarted("a", "x")),
            (1, new RunWaiting(new TimerWait { Step = 2 })),
            (11, new WaitAnswered(2, TimerWait.ReasonName, "go", "cli:ops")),
            (20, new DependencyWaited("model:m", "rate limit", 500)), // the run's own work goes on
            (71, new RunResumed("restart")));                       // a later resume (after a crash) does not make that time waiting

        Assert.Equal(TimeSpan.FromSeconds(10), state.TimeWaiting);
        Assert.Equal(TimeSpan.FromSeconds(62), state.ActiveTime(T0.AddSeconds(73)));
    }
}
