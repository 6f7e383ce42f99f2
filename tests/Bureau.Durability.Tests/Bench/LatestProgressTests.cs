using Bureau.Cli.Bench;
using Xunit;

namespace Bureau.Durability.Tests.Bench;

/// <summary>The bench's progress keeps the highest count reported from any thread, and the display sees the last one.</summary>
public sealed class LatestProgressTests
{
    [Fact]
    public async Task ReportsRacingFromManyThreads_KeepTheHighest()
    {
        var progress = new LatestProgress();
        // Counts reported out of order, as runs finishing on several threads report theirs.
        await Parallel.ForEachAsync(Enumerable.Range(1, 20_000).Reverse(), new ParallelOptions { MaxDegreeOfParallelism = 8 },
            (n, _) =>
            {
                progress.Report(n);
                return ValueTask.CompletedTask;
            });
        Assert.Equal(20_000, progress.Value);
        progress.Report(5);
        Assert.Equal(20_000, progress.Value);
    }

    [Fact]
    public async Task ShowWhile_ShowsTheFinalCount_AfterTheMeasurementEnds()
    {
        var shown = new List<int>();
        var result = await LatestProgress.ShowWhileAsync(async p =>
        {
            for (var n = 1; n <= 3; n++) p.Report(n);
            await Task.Yield();
            return "measured";
        }, n => { lock (shown) shown.Add(n); }, TimeSpan.FromMinutes(1));

        Assert.Equal("measured", result);
        Assert.Equal([3], shown); // no tick within a minute: only the final count
    }

    [Fact]
    public async Task ShowWhile_AMeasurementThatThrows_StillStopsTheDisplay()
    {
        var shown = 0;
        await Assert.ThrowsAsync<InvalidOperationException>(() => LatestProgress.ShowWhileAsync<int>(
            _ => throw new InvalidOperationException("broken"), _ => Interlocked.Increment(ref shown), TimeSpan.FromMilliseconds(10)));
        var after = Volatile.Read(ref shown);
        await Task.Delay(100, TestContext.Current.CancellationToken);
        Assert.Equal(after, Volatile.Read(ref shown)); // nothing shown once it returned
    }
}
