using Bureau.Replay;
using Xunit;

namespace Bureau.Tests.Replay;

/// <summary>Decision 0013: what a replay compares, and what it leaves out (time, not behaviour).</summary>
public sealed class StepComparisonTests
{
    private static ModelResponded Answer(double ms = 12.5, string args = """{"n":"1"}""", long outputTokens = 7) =>
        new(2, "scripted:m", "scripted", null, [new ToolCallRecord("call_1", "charge", args)], new UsageRecord(40, outputTokens), "tool_calls", 2, ms);

    [Fact]
    public void Same_ModelAnswersDifferingOnlyInDuration_AreTheSameStep() =>
        Assert.True(StepComparison.Same(Answer(ms: 12.5), Answer(ms: 900)));

    [Fact]
    public void Same_ModelAnswersWithOtherArgumentsOrUsage_AreNot()
    {
        Assert.False(StepComparison.Same(Answer(), Answer(args: """{"n":"2"}""")));
        Assert.False(StepComparison.Same(Answer(), Answer(outputTokens: 8)));
    }

    [Fact]
    public void Same_ToolResultsDifferingOnlyInDuration_AreTheSame_ButNotInContentErrorOrIntentStep()
    {
        var result = new ToolCompleted("call_1", "charge", "ok", false, 3, IntentStep: 3);
        Assert.True(StepComparison.Same(result, result with { DurationMs = 3000 }));
        Assert.False(StepComparison.Same(result, result with { Content = "ok!" }));
        Assert.False(StepComparison.Same(result, result with { IsError = true }));
        Assert.False(StepComparison.Same(result, result with { IntentStep = 4 }));
    }

    [Fact]
    public void Same_IntentsWithAnotherKeyOrEffect_AreNot()
    {
        var intent = new ToolIntent("call_1", "ledger", """{"n":"1"}""", ToolEffect.Write, "run1:5");
        Assert.True(StepComparison.Same(intent, intent with { }));
        Assert.False(StepComparison.Same(intent, intent with { IdempotencyKey = "run1:6" }));
        Assert.False(StepComparison.Same(intent, intent with { Effect = ToolEffect.Idempotent }));
    }

    [Fact]
    public void Same_WaitsDifferingOnlyInDeadline_AreTheSame_ButNotInStep()
    {
        var wait = new RunWaiting(new InDoubtWait { Step = 6, Tool = "ledger", Key = "run1:6", Deadline = DateTimeOffset.UnixEpoch });
        Assert.True(StepComparison.Same(wait, new RunWaiting(new InDoubtWait { Step = 6, Tool = "ledger", Key = "run1:6", Deadline = DateTimeOffset.UnixEpoch.AddHours(1) })));
        Assert.False(StepComparison.Same(wait, new RunWaiting(new InDoubtWait { Step = 7, Tool = "ledger", Key = "run1:6", Deadline = DateTimeOffset.UnixEpoch })));
    }

    [Fact]
    public void Same_TimeBudgetStops_IgnoreTheSecondsUsed_StepBudgetStopsDoNot()
    {
        Assert.True(StepComparison.Same(new BudgetExceeded("time", 1, 1.002), new BudgetExceeded("time", 1, 1.5)));
        Assert.False(StepComparison.Same(new BudgetExceeded("time", 1, 1.002), new BudgetExceeded("time", 2, 1.002)));
        Assert.False(StepComparison.Same(new BudgetExceeded("steps", 4, 4), new BudgetExceeded("steps", 4, 5)));
        Assert.True(StepComparison.Same(
            new RunFinished(RunStatus.Failed, null, "budget exceeded: time (limit 1s, used 1.002s)", "budget"),
            new RunFinished(RunStatus.Failed, null, "budget exceeded: time (limit 1s, used 1.5s)", "budget")));
        Assert.False(StepComparison.Same(
            new RunFinished(RunStatus.Failed, null, "budget exceeded: steps (limit 4 steps, used 4 steps)", "budget"),
            new RunFinished(RunStatus.Failed, null, "budget exceeded: steps (limit 4 steps, used 5 steps)", "budget")));
    }

    [Fact]
    public void Same_Cancellations_IgnoreWhatWasInFlight_ButNotWhoOrWhy()
    {
        var canceled = new RunCanceled("withdrawn", "ops", ["model call 2 (m)"]);
        Assert.True(StepComparison.Same(canceled, canceled with { InFlight = [] }));
        Assert.False(StepComparison.Same(canceled, canceled with { Actor = "someone else" }));
        Assert.False(StepComparison.Same(canceled, canceled with { Reason = null }));
    }

    [Fact]
    public void Same_FinishedRuns_CompareStatusOutputAndOutcome()
    {
        var done = new RunFinished(RunStatus.Succeeded, "done 1", null, null);
        Assert.True(StepComparison.Same(done, done with { }));
        Assert.False(StepComparison.Same(done, done with { Output = "done 2" }));
        Assert.False(StepComparison.Same(done, new RunFinished(RunStatus.Failed, null, "done 1", "error")));
    }

    [Fact]
    public void Same_ResumptionsForAnotherReasonOrEntriesOfAnotherKind_AreNot()
    {
        Assert.False(StepComparison.Same(new RunResumed("restart"), new RunResumed("resolved")));
        Assert.False(StepComparison.Same(new RunResumed("restart"), new RunFinished(RunStatus.Succeeded, "", null, null)));
    }

    [Fact]
    public void Same_AFieldTheRecordingDoesNotHave_IsNotCompared_OneItHasIs()
    {
        var recorded = new RunFinished(RunStatus.Canceled, null, "canceled by ops", "canceled");
        var withCause = recorded with { Failure = new RunFailure("canceled", null, 4, null, null, "canceled by ops") };
        Assert.True(StepComparison.Same(recorded, withCause)); // recorded before failures were classified
        Assert.False(StepComparison.Same(withCause, withCause with { Failure = new RunFailure("internal", null, 4, null, null, "x") }));
        Assert.False(StepComparison.Same(recorded, withCause with { Outcome = "error" }));
    }
}
