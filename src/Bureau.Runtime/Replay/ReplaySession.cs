namespace Bureau.Replay;

/// <summary>
/// The state one replay shares between its parts: the recorded journal, how far the replayed run has
/// come (the replay store's version), the first divergence, and the engine (to cancel the run where
/// the recorded one was canceled).
/// </summary>
internal sealed class ReplaySession
{
    private readonly object _gate = new();
    private ReplayDivergence? _divergence;

    public ReplaySession(string runId, IReadOnlyList<JournalRecord> recorded)
    {
        RunId = runId;
        Recorded = recorded;
    }

    public string RunId { get; }
    public IReadOnlyList<JournalRecord> Recorded { get; }

    /// <summary>The number of the replayed run's last entry.</summary>
    public long Version { get; set; } = 1;

    public BureauEngine? Engine { get; set; }

    public ReplayDivergence? Divergence
    {
        get { lock (_gate) return _divergence; }
    }

    /// <summary>The recorded entry number <paramref name="n"/>, or null past the end.</summary>
    public JournalRecord? At(long n) => n >= 1 && n <= Recorded.Count ? Recorded[(int)(n - 1)] : null;

    /// <summary>The recorded entry the replayed run should write next.</summary>
    public JournalRecord? Next => At(Version + 1);

    public void Diverged(ReplayDivergence divergence)
    {
        lock (_gate) _divergence ??= divergence;
    }

    /// <summary>
    /// Called as the replayed run starts a model or tool call: where the recorded run was canceled
    /// next, cancels the replayed one now (as its canceler did, while the call was in flight) and
    /// waits for the cancellation.
    /// </summary>
    public async Task CancelHereIfRecordedAsync(CancellationToken cancellationToken)
    {
        if (Next?.Entry is not RunCanceled canceled || Engine is not { } engine) return;
        _ = CancelAsync(engine, canceled);
        await Task.Delay(Timeout.Infinite, cancellationToken);
    }

    private async Task CancelAsync(BureauEngine engine, RunCanceled canceled)
    {
        await Task.Yield();
        try
        {
            await engine.CancelAsync(RunId, canceled.Actor, canceled.Reason);
        }
        catch (Exception ex) when (ex is RunStateConflictException or JournalConflictException or RunNotFoundException)
        {
            // A divergence stopped the run first; it is reported as such.
        }
    }
}
