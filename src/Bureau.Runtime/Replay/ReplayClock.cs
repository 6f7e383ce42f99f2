namespace Bureau.Replay;

/// <summary>
/// The replay's clock: it reads the time at which the recorded run began the step the replayed run
/// takes next: for a model answer or a tool result, the entry's time less its duration (when the call
/// started); for anything else, the entry's time. So time-based decisions (the start a <c>time</c>
/// budget counts from, that budget checked before a model call, <c>maxQueueTime</c>, deadlines) see
/// the time the recorded run saw when it took them. Timers and timestamps are the system's; the replay
/// store keeps the recorded entry times whatever the clock says.
/// </summary>
internal sealed class ReplayClock(ReplaySession session) : TimeProvider
{
    public override DateTimeOffset GetUtcNow()
    {
        if (session.Next is not { } next) return session.At(session.Recorded.Count)!.At;
        var duration = next.Entry switch
        {
            ModelResponded m => m.DurationMs,
            ToolCompleted t => t.DurationMs,
            _ => 0,
        };
        var began = next.At - TimeSpan.FromMilliseconds(duration);
        // Never before the step the replayed run wrote last.
        var last = session.At(session.Version)?.At ?? began;
        return began < last ? last : began;
    }
}
