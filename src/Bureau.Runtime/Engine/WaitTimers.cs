using Microsoft.Extensions.Logging;

namespace Bureau.Engine;

/// <summary>
/// The durable timer service: fires the deadline of every wait that passed with no answer, once,
/// including deadlines that passed while the host was down. Deadlines live with the waiting runs in
/// the store (nothing in memory to lose); firing is a run command whose append expects the run's
/// version, so two firings (two nodes, a restart) cannot both land.
/// </summary>
internal sealed partial class WaitTimers(IRunStore store, TimeProvider time, ILogger<WaitTimers> logger)
{
    /// <summary>How long the service sleeps at most without a known deadline (to see deadlines other nodes set).</summary>
    internal static readonly TimeSpan MaxSleep = TimeSpan.FromMinutes(1);

    private readonly Lock _gate = new();
    private TaskCompletionSource _wake = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private DateTimeOffset _sleepingUntil = DateTimeOffset.MaxValue;
    private Func<RunRecord, Task>? _fire;
    private CancellationTokenSource? _stop;
    private Task? _loop;

    /// <summary>Fires the deadlines that passed while the host was down, then keeps firing them as they come.</summary>
    public async Task StartAsync(Func<RunRecord, Task> fire, CancellationToken cancellationToken)
    {
        _fire = fire;
        var stop = new CancellationTokenSource();
        _stop = stop;
        var token = stop.Token; // StopAsync may run meanwhile (a host whose start fails stops at once)
        using (var starting = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, token))
        {
            try
            {
                await FireDueAsync(starting.Token);
            }
            catch (OperationCanceledException) when (token.IsCancellationRequested)
            {
                return;
            }
        }
        _loop = Task.Run(() => LoopAsync(token), CancellationToken.None);
    }

    public async Task StopAsync()
    {
        if (Interlocked.Exchange(ref _stop, null) is not { } stop) return;
        await stop.CancelAsync();
        if (_loop is not null) await _loop;
    }

    /// <summary>A wait with <paramref name="deadline"/> was journaled: wake up earlier if needed.</summary>
    public void Nudge(DateTimeOffset deadline)
    {
        lock (_gate)
        {
            if (deadline >= _sleepingUntil) return;
            _sleepingUntil = deadline;
            _wake.TrySetResult();
        }
    }

    private async Task LoopAsync(CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            Task wake;
            lock (_gate)
            {
                if (_wake.Task.IsCompleted) _wake = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                wake = _wake.Task;
                _sleepingUntil = DateTimeOffset.MaxValue;
            }
            TimeSpan sleep;
            try
            {
                sleep = await FireDueAsync(stop);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                Log.FireFailed(logger, ex);
                sleep = TimeSpan.FromSeconds(5);
            }
            lock (_gate)
            {
                var until = time.GetUtcNow() + sleep;
                if (until < _sleepingUntil) _sleepingUntil = until;
            }
            try
            {
                using var delay = CancellationTokenSource.CreateLinkedTokenSource(stop);
                var timer = Task.Delay(sleep, time, delay.Token);
                await Task.WhenAny(timer, wake);
                await delay.CancelAsync();
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
        }
    }

    /// <summary>Fires every due wait; returns how long to sleep until the next deadline.</summary>
    private async Task<TimeSpan> FireDueAsync(CancellationToken stop)
    {
        while (true)
        {
            var now = time.GetUtcNow();
            var due = await store.ListDueWaitsAsync(now, 100, stop);
            foreach (var run in due)
            {
                try
                {
                    await _fire!(run);
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    Log.FireRunFailed(logger, run.Id, run.WaitingFor?.Step ?? 0, ex);
                }
            }
            if (due.Count == 100) continue;
            var next = await store.NextWaitDeadlineAsync(stop);
            if (next is null) return MaxSleep;
            var wait = next.Value - time.GetUtcNow();
            if (wait <= TimeSpan.Zero) continue;
            return wait < MaxSleep ? wait : MaxSleep;
        }
    }

    private static partial class Log
    {
        [LoggerMessage(40, LogLevel.Error, "The timer service could not read due waits; trying again in 5 s")]
        public static partial void FireFailed(ILogger logger, Exception ex);

        [LoggerMessage(41, LogLevel.Error, "Run {RunId} step {Step}: firing the wait's deadline failed")]
        public static partial void FireRunFailed(ILogger logger, string runId, long step, Exception ex);
    }
}
