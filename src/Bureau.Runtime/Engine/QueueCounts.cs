using System.Collections.Concurrent;

namespace Bureau.Engine;

/// <summary>
/// Top-level runs this process accepted and has not started executing yet, per agent: what the edges' queue limits
/// count (<see cref="BureauEngine.EnsureQueueRoom"/>). A run counts from its acceptance to its first execution.
/// Runs found unfinished at start (resumed from their journals) are not counted: they were accepted before.
/// </summary>
internal sealed class QueueCounts
{
    // Striped wider than the default (one lock per core): every execution looks here.
    private readonly ConcurrentDictionary<string, string> _pending = new(concurrencyLevel: 64, capacity: 1024, StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, int> _byAgent = new(StringComparer.Ordinal);
    private int _total;

    public void Accepted(string runId, string agent)
    {
        if (!_pending.TryAdd(runId, agent)) return;
        _byAgent.AddOrUpdate(agent, 1, (_, n) => n + 1);
        Interlocked.Increment(ref _total);
    }

    public void Started(string runId)
    {
        // Most executions are of runs not pending here (resumed, or already started): the lookup takes no lock.
        if (!_pending.ContainsKey(runId) || !_pending.TryRemove(runId, out var agent)) return;
        _byAgent.AddOrUpdate(agent, 0, (_, n) => n - 1);
        Interlocked.Decrement(ref _total);
    }

    /// <summary>Whether the run was accepted here and has not started executing.</summary>
    public bool IsPending(string runId) => _pending.ContainsKey(runId);

    public int Count(string? agent) =>
        agent is null ? Volatile.Read(ref _total) : _byAgent.TryGetValue(agent, out var n) ? n : 0;
}
