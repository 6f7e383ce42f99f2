namespace Bureau.Replay;

/// <summary>
/// The replay's clock: it reads the recorded time of the step the replayed run writes next, so
/// appends carry the recorded times and time-based decisions (a <c>time</c> budget checked before a
/// model call, <c>maxQueueTime</c>) see the time the recorded run saw when it took them. Timers and
/// timestamps are the system's.
/// </summary>
internal sealed class ReplayClock(ReplaySession session) : TimeProvider
{
    public override DateTimeOffset GetUtcNow() =>
        (session.Next ?? session.At(session.Recorded.Count))!.At;
}
