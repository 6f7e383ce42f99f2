using System.Threading.RateLimiting;
using Bureau.Resilience;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace Bureau.Tests.Resilience;

/// <summary>The token bucket behind requestsPerMinute and tokensPerMinute, on a fake clock.</summary>
public sealed class ClockTokenBucketTests
{
    [Fact]
    public async Task Acquire_BucketEmpty_WaitsForTheRefillOnTheClockAndSaysHowLong()
    {
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        using var bucket = new ClockTokenBucket(clock, 600, TimeSpan.FromMinutes(1));   // 600 tokens a minute: 10 a second

        Assert.True(bucket.AttemptAcquire(600).IsAcquired);
        using var refused = bucket.AttemptAcquire(50);
        Assert.False(refused.IsAcquired);
        Assert.True(refused.TryGetMetadata(MetadataName.RetryAfter, out var retryAfter));
        Assert.Equal(TimeSpan.FromSeconds(5), retryAfter);

        var waiting = bucket.AcquireAsync(50).AsTask();
        clock.Advance(TimeSpan.FromSeconds(4));
        Assert.False(waiting.IsCompleted);
        clock.Advance(TimeSpan.FromSeconds(1));
        using var lease = await waiting.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);

        Assert.True(lease.IsAcquired);
    }

    [Fact]
    public async Task Acquire_Canceled_LeavesTheQueueAndTheTokensForTheNext()
    {
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        using var bucket = new ClockTokenBucket(clock, 60, TimeSpan.FromMinutes(1));
        Assert.True(bucket.AttemptAcquire(60).IsAcquired);
        using var cancel = new CancellationTokenSource();

        var first = bucket.AcquireAsync(30, cancel.Token).AsTask();
        var second = bucket.AcquireAsync(1).AsTask();
        await cancel.CancelAsync();
        clock.Advance(TimeSpan.FromSeconds(1));

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => first);
        using var lease = await second.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
        Assert.True(lease.IsAcquired);
    }
}
