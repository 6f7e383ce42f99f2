using Microsoft.Extensions.Logging;

namespace Bureau.Engine;

/// <summary>
/// Watches whether the store can write. While it cannot (a full disk, a read-only file), it probes
/// with a small write, backing off to every few seconds; when a write works again it says so and
/// lets the runs that were waiting for the store go on at once. A latched store (an fsync failed)
/// is not probed: it refuses writes until the process restarts.
/// </summary>
internal sealed partial class StorageWatch(IRunStore store, TimeProvider time, ILogger logger, Action recovered)
{
    private static readonly TimeSpan Every = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan MaxProbeDelay = TimeSpan.FromSeconds(5);
    private readonly CancellationTokenSource _stop = new();
    private Task? _loop;

    public void Start() => _loop = Task.Run(LoopAsync, CancellationToken.None);

    public async Task StopAsync()
    {
        if (_stop.IsCancellationRequested) return;
        await _stop.CancelAsync();
        if (_loop is not null) await _loop;
    }

    private async Task LoopAsync()
    {
        var faulted = false;
        var delay = Every;
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(faulted ? delay : Every, time, _stop.Token);
                var health = store.Health;
                if (!health.CanWrite && !faulted)
                {
                    faulted = true;
                    delay = Every;
                    Log.CannotWrite(logger, health.Fault is { } f ? WireNames.Of(f) : "", health.Detail ?? "");
                }
                if (faulted && !health.CanWrite && !health.Latched)
                {
                    health = await store.ProbeWriteAsync(_stop.Token);
                    if (!health.CanWrite) delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, MaxProbeDelay.Ticks));
                }
                if (faulted && health.CanWrite)
                {
                    faulted = false;
                    Log.WritesAgain(logger);
                    recovered();
                }
            }
            catch (OperationCanceledException) when (_stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                Log.ProbeFailed(logger, ex);
            }
        }
    }

    private static partial class Log
    {
        [LoggerMessage(30, LogLevel.Error, "The store cannot write ({Fault}): {Detail}. Requests that write are refused with 503 and /readyz reports not ready; runs resume by themselves once it can write again")]
        public static partial void CannotWrite(ILogger logger, string fault, string detail);

        [LoggerMessage(31, LogLevel.Information, "The store writes again; runs that waited for it resume now")]
        public static partial void WritesAgain(ILogger logger);

        [LoggerMessage(32, LogLevel.Warning, "Probing the store failed")]
        public static partial void ProbeFailed(ILogger logger, Exception ex);
    }
}
