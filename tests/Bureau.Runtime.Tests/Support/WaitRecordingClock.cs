using System.Collections.Concurrent;
using Microsoft.Extensions.Time.Testing;

namespace Bureau.Tests.Support;

/// <summary>
/// A fake clock (it moves only when the test advances it) that records the due time of every timer created on it,
/// so that a test can advance it once the code under test is waiting (a retry's backoff), not before.
/// Only for the resilience links' clock.
/// </summary>
public sealed class WaitRecordingClock() : FakeTimeProvider(new DateTimeOffset(2026, 12, 6, 12, 0, 0, TimeSpan.Zero))
{
    private readonly ConcurrentQueue<TimeSpan> _waits = new();

    /// <summary>The due times of the timers created, in order.</summary>
    public IReadOnlyList<TimeSpan> Waits => [.. _waits];

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        if (dueTime != Timeout.InfiniteTimeSpan) _waits.Enqueue(dueTime);
        return base.CreateTimer(callback, state, dueTime, period);
    }

    /// <summary>Waits (real time, generously) until a timer of <paramref name="due"/> was created, then advances the clock by <paramref name="advance"/>.</summary>
    public async Task AdvanceOnceWaitingAsync(TimeSpan due, TimeSpan advance, int seconds = 20)
    {
        await Bureau.Tests.Tools.ToolTestSupport.WaitUntilAsync(() => _waits.Contains(due), $"a wait of {due} on the resilience clock", seconds);
        Advance(advance);
    }
}
