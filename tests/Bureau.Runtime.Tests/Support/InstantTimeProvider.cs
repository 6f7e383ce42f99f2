using System.Collections.Concurrent;

namespace Bureau.Tests.Support;

/// <summary>
/// A clock whose timers fire at once, and which records every wait asked of it: retry waits can be checked
/// for what they asked (Retry-After, backoff) without the test waiting. Only for the resilience links' clock.
/// </summary>
public sealed class InstantTimeProvider : TimeProvider
{
    private readonly ConcurrentQueue<TimeSpan> _waits = new();

    /// <summary>The due times of the timers created, in order.</summary>
    public IReadOnlyList<TimeSpan> Waits => [.. _waits];

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        if (dueTime != Timeout.InfiniteTimeSpan) _waits.Enqueue(dueTime);
        return System.CreateTimer(callback, state, dueTime == Timeout.InfiniteTimeSpan ? dueTime : TimeSpan.Zero, Timeout.InfiniteTimeSpan);
    }
}
