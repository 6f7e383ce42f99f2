using System.Diagnostics.CodeAnalysis;
using System.Threading.RateLimiting;

namespace Bureau.Resilience;

/// <summary>
/// A token bucket (a <see cref="RateLimiter"/> of System.Threading.RateLimiting) that refills on a
/// <see cref="TimeProvider"/>: the framework's replenishing limiters measure time with the machine's clock, even
/// when refilled by hand, so their waits could not follow the host's clock (nor a test's). Requests queue in order.
/// </summary>
internal sealed class ClockTokenBucket : RateLimiter
{
    private readonly TimeProvider _time;
    private readonly int _limit;
    private readonly double _perTick;          // tokens per TimeProvider timestamp tick
    private readonly LinkedList<Waiter> _queue = new();
    private readonly ITimer _timer;
    private double _tokens;
    private long _last;
    private bool _disposed;

    public ClockTokenBucket(TimeProvider time, int limit, TimeSpan refillEvery)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(limit, 1);
        _time = time;
        _limit = limit;
        // `limit` tokens back over `refillEvery`.
        _perTick = limit / (refillEvery.TotalSeconds * time.TimestampFrequency);
        _tokens = limit;
        _last = time.GetTimestamp();
        _timer = time.CreateTimer(static s => ((ClockTokenBucket)s!).Serve(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    public int Limit => _limit;

    public override TimeSpan? IdleDuration => null;

    public override RateLimiterStatistics? GetStatistics()
    {
        lock (_queue)
        {
            Refill();
            return new RateLimiterStatistics { CurrentAvailablePermits = (long)_tokens, CurrentQueuedCount = _queue.Sum(w => w.Permits) };
        }
    }

    protected override RateLimitLease AttemptAcquireCore(int permitCount)
    {
        lock (_queue)
        {
            Refill();
            if (_queue.Count == 0 && _tokens >= permitCount)
            {
                _tokens -= permitCount;
                return Lease.Acquired;
            }
            return new Lease(false, WaitFor(permitCount + _queue.Sum(w => w.Permits)));
        }
    }

    protected override ValueTask<RateLimitLease> AcquireAsyncCore(int permitCount, CancellationToken cancellationToken)
    {
        lock (_queue)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            Refill();
            if (_queue.Count == 0 && _tokens >= permitCount)
            {
                _tokens -= permitCount;
                return new ValueTask<RateLimitLease>(Lease.Acquired);
            }
            var waiter = new Waiter(permitCount);
            var node = _queue.AddLast(waiter);
            if (cancellationToken.CanBeCanceled)
            {
                waiter.Registration = cancellationToken.Register(() =>
                {
                    lock (_queue)
                    {
                        if (node.List is not null) _queue.Remove(node);
                        Schedule();
                    }
                    waiter.Completion.TrySetCanceled(cancellationToken);
                });
            }
            Schedule();
            return new ValueTask<RateLimitLease>(waiter.Completion.Task);
        }
    }

    /// <summary>Hands tokens to the waiters at the head of the queue that they now cover.</summary>
    private void Serve()
    {
        var served = new List<Waiter>();
        lock (_queue)
        {
            if (_disposed) return;
            Refill();
            while (_queue.First is { } head && _tokens >= head.Value.Permits)
            {
                _tokens -= head.Value.Permits;
                _queue.RemoveFirst();
                served.Add(head.Value);
            }
            Schedule();
        }
        foreach (var w in served)
        {
            w.Registration.Dispose();
            if (!w.Completion.TrySetResult(Lease.Acquired))
                lock (_queue) _tokens = Math.Min(_limit, _tokens + w.Permits);   // canceled meanwhile: give the tokens back
        }
    }

    private void Schedule()
    {
        if (_queue.First is { } head) _timer.Change(WaitFor(head.Value.Permits), Timeout.InfiniteTimeSpan);
        else _timer.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    private TimeSpan WaitFor(int permits)
    {
        var missing = permits - _tokens;
        if (missing <= 0) return TimeSpan.Zero;
        var ticks = Math.Ceiling(missing / _perTick);
        return TimeSpan.FromSeconds(ticks / _time.TimestampFrequency);
    }

    private void Refill()
    {
        var now = _time.GetTimestamp();
        _tokens = Math.Min(_limit, _tokens + (now - _last) * _perTick);
        _last = now;
    }

    protected override void Dispose(bool disposing)
    {
        if (!disposing) return;
        List<Waiter> waiting;
        lock (_queue)
        {
            if (_disposed) return;
            _disposed = true;
            waiting = [.. _queue];
            _queue.Clear();
        }
        _timer.Dispose();
        foreach (var w in waiting)
        {
            w.Registration.Dispose();
            w.Completion.TrySetResult(new Lease(false, null));
        }
    }

    private sealed class Waiter(int permits)
    {
        public int Permits { get; } = permits;
        public TaskCompletionSource<RateLimitLease> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public CancellationTokenRegistration Registration { get; set; }
    }

    private sealed class Lease(bool acquired, TimeSpan? retryAfter) : RateLimitLease
    {
        public static readonly Lease Acquired = new(true, null);

        public override bool IsAcquired { get; } = acquired;

        public override IEnumerable<string> MetadataNames => retryAfter is null ? [] : [MetadataName.RetryAfter.Name];

        public override bool TryGetMetadata(string metadataName, out object? metadata)
        {
            if (retryAfter is { } r && metadataName == MetadataName.RetryAfter.Name)
            {
                metadata = r;
                return true;
            }
            metadata = null;
            return false;
        }
    }
}
