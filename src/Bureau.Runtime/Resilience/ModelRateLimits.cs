using System.Threading.RateLimiting;

namespace Bureau.Resilience;

/// <summary>
/// A model's requests-per-minute and tokens-per-minute limits (token buckets, <see cref="RateLimiter"/>s of
/// System.Threading.RateLimiting refilled on the host's <see cref="TimeProvider"/>: <see cref="ClockTokenBucket"/>). A call waits for its permits when the wait
/// is within <c>maxRateLimitWait</c> (and the run's journal says it waited); otherwise it fails as rate limited.
/// Tokens are estimated before the call (characters / 4) and corrected by the usage the model reports.
/// </summary>
internal sealed class ModelRateLimits : IDisposable
{
    private readonly string _dependency;
    private readonly TimeProvider _time;
    private readonly TimeSpan _maxWait;
    private readonly ClockTokenBucket? _requests;
    private readonly ClockTokenBucket? _tokens;
    private readonly int _tokenLimit;
    private readonly DependencyMonitor _monitor;

    public ModelRateLimits(DependencyMonitor monitor, ModelDefinition model, TimeProvider time)
    {
        _monitor = monitor;
        _dependency = monitor.Name;
        _time = time;
        _maxWait = model.MaxRateLimitWait ?? ModelDefinition.DefaultMaxRateLimitWait;
        // A minute's worth at most, refilled evenly over the minute.
        if (model.RequestsPerMinute is { } rpm and > 0) _requests = new ClockTokenBucket(time, rpm, TimeSpan.FromMinutes(1));
        if (model.TokensPerMinute is { } tpm and > 0)
        {
            _tokenLimit = (int)Math.Min(tpm, int.MaxValue);
            _tokens = new ClockTokenBucket(time, _tokenLimit, TimeSpan.FromMinutes(1));
        }
    }

    public bool Any => _requests is not null || _tokens is not null;

    /// <summary>Takes the permits of one attempt; waits (and journals the wait) or throws <see cref="RateLimitWaitTooLongException"/>.</summary>
    public async ValueTask AcquireAsync(IEnumerable<Microsoft.Extensions.AI.ChatMessage> messages, CancellationToken cancellationToken)
    {
        if (_requests is not null) await TakeAsync(_requests, 1, "requests-per-minute", cancellationToken);
        if (_tokens is not null)
        {
            long chars = 0;
            foreach (var m in messages) chars += m.Text?.Length ?? 0;
            var estimate = (int)Math.Clamp(chars / 4, 1, _tokenLimit);
            await TakeAsync(_tokens, estimate, "tokens-per-minute", cancellationToken);
        }
    }

    /// <summary>Charges what the model reported beyond the estimate (best effort: never waits).</summary>
    public void Charge(IEnumerable<Microsoft.Extensions.AI.ChatMessage> messages, Microsoft.Extensions.AI.UsageDetails? usage)
    {
        if (_tokens is null || usage is null) return;
        long chars = 0;
        foreach (var m in messages) chars += m.Text?.Length ?? 0;
        var estimate = Math.Clamp(chars / 4, 1, _tokenLimit);
        var actual = (usage.InputTokenCount ?? 0) + (usage.OutputTokenCount ?? 0);
        var extra = (int)Math.Min(actual - estimate, _tokenLimit);
        if (extra > 0) _tokens.AttemptAcquire(extra).Dispose();
    }

    private async ValueTask TakeAsync(ClockTokenBucket bucket, int permits, string reason, CancellationToken cancellationToken)
    {
        using (var lease = bucket.AttemptAcquire(permits))
        {
            if (lease.IsAcquired) return;
            if (lease.TryGetMetadata(MetadataName.RetryAfter, out var retryAfter) && retryAfter > _maxWait)
                throw TooLong(reason, retryAfter);
        }
        var started = _time.GetTimestamp();
        using var limit = new CancellationTokenSource(_maxWait, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, limit.Token);
        _monitor.WaitStarted();
        try
        {
            using var lease = await bucket.AcquireAsync(permits, linked.Token);
            if (!lease.IsAcquired) throw TooLong(reason, null);
        }
        catch (OperationCanceledException) when (limit.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            throw TooLong(reason, null);
        }
        finally
        {
            _monitor.WaitEnded();
        }
        var waited = _time.GetElapsedTime(started);
        await ResilienceScope.RecordAsync(new DependencyWaited(_dependency, reason, Math.Round(waited.TotalMilliseconds, 3)));
    }

    private RateLimitWaitTooLongException TooLong(string reason, TimeSpan? retryAfter) =>
        new($"{_dependency}: rate limited by its own {reason} limit; the wait{(retryAfter is { } r ? $" ({Backoff.Format(r)})" : "")} would pass maxRateLimitWait ({Backoff.Format(_maxWait)})");

    public void Dispose()
    {
        _requests?.Dispose();
        _tokens?.Dispose();
    }
}
