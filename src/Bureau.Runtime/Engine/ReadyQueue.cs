using System.Collections.Concurrent;

namespace Bureau.Engine;

/// <summary>
/// The scheduler's queue of runs ready to execute: higher <see cref="RunRequest.Priority"/> first, then arrival
/// order; runs with the same <see cref="RunRequest.OrderingKey"/> execute one at a time, in arrival order (a run whose
/// key is held by an executing run is parked until that execution ends). A run's priority and key are known to the
/// node that accepted it, for its first execution: runs resumed after a restart, or requeued after a wait, have
/// priority 0 and no key.
/// </summary>
internal sealed class ReadyQueue
{
    private readonly Lock _gate = new();
    private readonly PriorityQueue<string, (int NegPriority, long Seq)> _queue = new();
    private readonly ConcurrentDictionary<string, Order> _orders = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _holders = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Queue<string>> _parked = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _available = new(0);
    private long _seq;
    private bool _completed;

    private sealed record Order(int Priority, string? Key, long Seq);

    /// <summary>Gives a run accepted here its priority and ordering key (before it is first written).</summary>
    public void SetOrder(string runId, int priority, string? orderingKey)
    {
        if (priority == 0 && orderingKey is null) return;
        _orders[runId] = new Order(priority, orderingKey, Interlocked.Increment(ref _seq));
    }

    public bool TryWrite(string runId)
    {
        lock (_gate)
        {
            if (_completed) return false;
            Enqueue(runId);
        }
        _available.Release();
        return true;
    }

    private void Enqueue(string runId)
    {
        var order = _orders.GetValueOrDefault(runId);
        _queue.Enqueue(runId, (-(order?.Priority ?? 0), order?.Seq ?? Interlocked.Increment(ref _seq)));
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
                while (_queue.TryDequeue(out var runId, out _))
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
                    return runId;
                }
            }
        }
    }

    /// <summary>The run's execution ended for good (not to be retried): its key goes to the next run parked on it.</summary>
    public void Released(string runId)
    {
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
                    Enqueue(following);
                    next = true;
                }
                if (waiting.Count == 0) _parked.Remove(key);
            }
        }
        if (next) _available.Release();
    }
}
