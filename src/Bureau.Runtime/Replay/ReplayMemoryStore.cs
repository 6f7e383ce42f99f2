namespace Bureau.Replay;

/// <summary>
/// The replay's long-term memory: answers every read and write with what the recorded run journaled at that point
/// (its next <see cref="MemoryRead"/>, or the <see cref="MemoryWritten"/> of the same intent step), so a replay never
/// reads or writes the real store and sees the values the recorded run saw. A read or write the recording does not
/// have throws, which the replay reports as a divergence.
/// </summary>
internal sealed class ReplayMemoryStore(ReplaySession session) : IMemoryStore
{
    public Task InitializeAsync(CancellationToken cancellationToken = default) => Task.CompletedTask;

    public Task<MemoryWriteResult> WriteAsync(MemoryWrite write, CancellationToken cancellationToken = default)
    {
        foreach (var r in session.Recorded)
        {
            if (r.N > session.Version && r.Entry is MemoryWritten w && w.IntentStep == write.Provenance.Step && w.Key == write.Key && w.Scope == write.Scope)
                return Task.FromResult(new MemoryWriteResult(w.Outcome, w.Fact, w.Current, w.Repeated));
        }
        throw new InvalidOperationException($"replay of run {session.RunId}: the journal has no memory write of {write.Scope}/{write.Key} at step {write.Provenance.Step}; the recorded run never made it");
    }

    public Task<IReadOnlyList<MemoryHit>> RecallAsync(MemoryRecall recall, CancellationToken cancellationToken = default)
    {
        if (session.Next?.Entry is MemoryRead read) return Task.FromResult(read.Hits);
        throw new InvalidOperationException($"replay of run {session.RunId}: the journal has no memory read at step {session.Version + 1}; the recorded run never made it");
    }

    public Task<MemoryFact?> GetAsync(string scope, string key, CancellationToken cancellationToken = default) => throw NotInReplay();

    public Task<IReadOnlyList<MemoryFact>> HistoryAsync(string scope, string key, CancellationToken cancellationToken = default) => throw NotInReplay();

    public Task<IReadOnlyList<MemoryFact>> ListAsync(string scope, string? afterKey = null, int limit = 100, CancellationToken cancellationToken = default) => throw NotInReplay();

    private InvalidOperationException NotInReplay() => new($"replay of run {session.RunId}: a run reads memory only through recall, which the journal answers");
}
