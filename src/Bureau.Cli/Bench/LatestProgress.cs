namespace Bureau.Cli.Bench;

/// <summary>
/// The progress of a measurement: keeps the highest count reported, for a display that reads it every so often.
/// <see cref="Progress{T}"/> would queue a work item per report (one per finished run) and run its handler there,
/// work the measurement would then include; this costs a compare-and-swap.
/// </summary>
internal sealed class LatestProgress : IProgress<int>
{
    private int _value;

    /// <summary>The highest count reported so far.</summary>
    public int Value => Volatile.Read(ref _value);

    public void Report(int value)
    {
        var current = Volatile.Read(ref _value);
        while (value > current)
        {
            var seen = Interlocked.CompareExchange(ref _value, value, current);
            if (seen == current) return;
            current = seen;
        }
    }

    /// <summary>
    /// Runs <paramref name="measure"/> with a fresh progress, calling <paramref name="show"/> with its count every
    /// <paramref name="every"/> and once more at the end.
    /// </summary>
    public static async Task<T> ShowWhileAsync<T>(Func<IProgress<int>, Task<T>> measure, Action<int> show, TimeSpan every)
    {
        var progress = new LatestProgress();
        using var stop = new CancellationTokenSource();
        var display = Task.Run(async () =>
        {
            using var timer = new PeriodicTimer(every);
            try
            {
                while (await timer.WaitForNextTickAsync(stop.Token)) show(progress.Value);
            }
            catch (OperationCanceledException)
            {
            }
        });
        try
        {
            return await measure(progress);
        }
        finally
        {
            await stop.CancelAsync();
            await display;
            show(progress.Value);
        }
    }
}
