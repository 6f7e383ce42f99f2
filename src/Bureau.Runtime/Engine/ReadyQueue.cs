using System.Collections.Concurrent;

namespace Bureau.Engine;

/// <summary>
/// The scheduler's queue of runs ready to execute: higher <see cref="RunRequest.Priority"/> first, then arrival
/// order; runs with the same <see cref="RunRequest.OrderingKey"/> execute one at a time, in arrival order (a run whose
/// key is held by an executing run is parked until that execution ends). A run's priority and key are known to the
/// node that accepted it, for its first execution: runs resumed after a restart, or requeued after a wait, have
/// priority 0 and no key.
/// Work already started goes first at its priority (decision 0057): a run written as continuing (woken after a wait,
/// retried after an executor error, a child of a running run) is read before every run of the same priority that is
/// not, in the order they were written.
/// With per-agent concurrency limits (<see cref="ReadyQueue(Func{string, int?}?)"/>), a run whose agent already has its
/// limit of executions is set aside (in its queue order) and the next eligible run is read instead; the agent's next run
/// goes back into the queue when one of its executions ends (<see cref="Ended"/>). Where the store counts the agents'
/// slots across nodes (decision 0056), a run read with a slot here that the cluster refuses is set aside the same way
/// (<see cref="Refused"/>), and <see cref="RetrySetAside"/> tries the set-aside runs again while their agents have free slots here.
/// </summary>
internal sealed class ReadyQueue
{
    private readonly Lock _gate = new();
    private readonly PriorityQueue<string, (int NegPriority, long Seq)> _queue = new();
    private readonly Func<string, int?>? _limitOf;
    // Known only while limits exist: the agent of each run scheduled here (until its execution ends for good).
    private readonly ConcurrentDictionary<string, string> _agentOf = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _executing = new(StringComparer.Ordinal); // per limited agent, under _gate
    private readonly Dictionary<string, (string Agent, (int, long) Priority)> _slotHolders = new(StringComparer.Ordinal); // run -> its agent, under _gate
    // Per agent, its runs set aside in queue order (by their queue priority: a run refused a cluster slot goes back to its place).
    private readonly Dictionary<string, PriorityQueue<string, (int, long)>> _saturated = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Order> _orders = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _holders = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Queue<string>> _parked = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _available = new(0);
    private long _seq;
    // Continuing runs sort before every run written with _seq (which counts up from 0), in their own arrival order.
    private long _continuingSeq = long.MinValue / 2;
    private bool _completed;

    private sealed record Order(int Priority, string? Key, long Seq);

    /// <param name="limitOf">The concurrency limit of an agent (or team), null for none; null when no agent has one.</param>
    public ReadyQueue(Func<string, int?>? limitOf = null) => _limitOf = limitOf;

    /// <summary>Whether per-agent limits exist: then the scheduler tells the queue each run's agent (<see cref="SetAgent"/>).</summary>
    public bool Limited => _limitOf is not null;

    /// <summary>Tells the queue the agent of a run about to be written (only while <see cref="Limited"/>).</summary>
    public void SetAgent(string runId, string agent)
    {
        if (_limitOf is not null) _agentOf[runId] = agent;
    }

    /// <summary>The agent of a run scheduled here, if known.</summary>
    public string? AgentOf(string runId) => _limitOf is not null && _agentOf.TryGetValue(runId, out var agent) ? agent : null;

    /// <summary>Gives a run accepted here its priority and ordering key (before it is first written).</summary>
    public void SetOrder(string runId, int priority, string? orderingKey)
    {
        if (priority == 0 && orderingKey is null) return;
        _orders[runId] = new Order(priority, orderingKey, Interlocked.Increment(ref _seq));
    }

    /// <summary>Runs written and not read yet (parked and set-aside runs not counted).</summary>
    public int Count
    {
        get
        {
            lock (_gate) return _queue.Count;
        }
    }

    /// <summary>Queues a run, or answers false once the queue is completed.</summary>
    /// <param name="runId">The run.</param>
    /// <param name="continuing">It continues work already started (woken after a wait, retried, a running run's child): it goes before runs of its priority that do not.</param>
    public bool TryWrite(string runId, bool continuing = false)
    {
        lock (_gate)
        {
            if (_completed) return false;
            Enqueue(runId, continuing);
        }
        _available.Release();
        return true;
    }

    private void Enqueue(string runId, bool continuing)
    {
        var order = _orders.GetValueOrDefault(runId);
        var seq = continuing ? ++_continuingSeq : order?.Seq ?? Interlocked.Increment(ref _seq);
        _queue.Enqueue(runId, (-(order?.Priority ?? 0), seq));
    }

    public void Complete()
    {
        lock (_gate) _completed = true;
        _available.Release();
    }

    /// <summary>The next run to execute (its ordering key, if any, is now held by it), or null once completed.</summary>
    public async ValueTask<string?> ReadAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            await _available.WaitAsync(cancellationToken);
            lock (_gate)
            {
                if (_completed) return null;
                while (_queue.TryDequeue(out var runId, out var priority))
                {
                    if (_orders.TryGetValue(runId, out var order) && order.Key is { } key)
                    {
                        if (_holders.TryGetValue(key, out var holder) && holder != runId)
                        {
                            if (!_parked.TryGetValue(key, out var waiting)) _parked[key] = waiting = new Queue<string>();
                            waiting.Enqueue(runId);
                            continue;
                        }
                        _holders[key] = runId;
                    }
                    if (_limitOf is not null && _agentOf.TryGetValue(runId, out var agent) && _limitOf(agent) is { } limit)
                    {
                        // The key (if any) stays held: later runs of the key stay behind this one.
                        var executing = _executing.GetValueOrDefault(agent);
                        if (executing >= limit)
                        {
                            if (!_saturated.TryGetValue(agent, out var aside)) _saturated[agent] = aside = new();
                            aside.Enqueue(runId, priority);
                            continue;
                        }
                        _executing[agent] = executing + 1;
                        _slotHolders[runId] = (agent, priority);
                    }
                    return runId;
                }
            }
        }
    }

    /// <summary>
    /// An execution of the run ended (it finished, waits, or threw and will be retried later): its agent's slot goes to the
    /// agent's next run set aside, if any.
    /// </summary>
    public void Ended(string runId)
    {
        if (_limitOf is null) return;
        var next = false;
        lock (_gate)
        {
            if (!_slotHolders.Remove(runId, out var slot)) return;
            var agent = slot.Agent;
            Free(agent);
            if (_saturated.TryGetValue(agent, out var aside))
            {
                if (aside.TryDequeue(out var following, out var priority))
                {
                    _queue.Enqueue(following, priority);
                    next = true;
                }
                if (aside.Count == 0) _saturated.Remove(agent);
            }
        }
        if (next) _available.Release();
    }

    private void Free(string agent)
    {
        var executing = _executing.GetValueOrDefault(agent) - 1;
        if (executing > 0) _executing[agent] = executing;
        else _executing.Remove(agent);
    }

    /// <summary>The agent and limit of the slot the run took when it was read (<see cref="ReadAsync"/>), if its agent has a limit.</summary>
    public (string Agent, int Limit)? SlotOf(string runId)
    {
        if (_limitOf is null) return null;
        lock (_gate)
        {
            return _slotHolders.TryGetValue(runId, out var slot) && _limitOf(slot.Agent) is { } limit ? (slot.Agent, limit) : null;
        }
    }

    /// <summary>
    /// The run read with a slot of its agent cannot execute now after all (the cluster's slots of the agent are taken, or
    /// the store could not say): its slot here is given back without waking the agent's next run, and the run is set aside
    /// at its place in queue order, until one of the agent's executions here ends or <see cref="RetrySetAside"/>.
    /// </summary>
    public void Refused(string runId)
    {
        lock (_gate)
        {
            if (!_slotHolders.Remove(runId, out var slot)) return;
            Free(slot.Agent);
            if (!_saturated.TryGetValue(slot.Agent, out var aside)) _saturated[slot.Agent] = aside = new();
            aside.Enqueue(runId, slot.Priority);
        }
    }

    /// <summary>
    /// Puts back into the queue, for each agent with runs set aside, as many of them as the agent has free slots here
    /// (slots of the cluster may have freed on other nodes, which tell this node nothing). Nothing to do, nothing done.
    /// </summary>
    /// <returns>How many runs went back into the queue.</returns>
    public int RetrySetAside()
    {
        if (_limitOf is null) return 0;
        var requeued = 0;
        lock (_gate)
        {
            if (_saturated.Count == 0) return 0;
            foreach (var (agent, aside) in _saturated)
            {
                var free = (_limitOf(agent) ?? int.MaxValue) - _executing.GetValueOrDefault(agent);
                while (free-- > 0 && aside.TryDequeue(out var runId, out var priority))
                {
                    _queue.Enqueue(runId, priority);
                    requeued++;
                }
            }
            foreach (var agent in _saturated.Where(p => p.Value.Count == 0).Select(p => p.Key).ToList()) _saturated.Remove(agent);
        }
        if (requeued > 0) _available.Release(requeued);
        return requeued;
    }

    /// <summary>The run's execution ended for good (not to be retried): its key goes to the next run parked on it.</summary>
    public void Released(string runId)
    {
        if (_limitOf is not null) _agentOf.TryRemove(runId, out _);
        if (!_orders.TryRemove(runId, out var order) || order.Key is not { } key) return;
        var next = false;
        lock (_gate)
        {
            if (!_holders.TryGetValue(key, out var holder) || holder != runId) return;
            _holders.Remove(key);
            if (_parked.TryGetValue(key, out var waiting))
            {
                if (waiting.TryDequeue(out var following))
                {
                    Enqueue(following, continuing: false);
                    next = true;
                }
                if (waiting.Count == 0) _parked.Remove(key);
            }
        }
        if (next) _available.Release();
    }
}
