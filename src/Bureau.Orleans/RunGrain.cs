using Bureau.Engine;
using Orleans.Concurrency;
using Orleans.Placement;
using Orleans.Runtime;

namespace Bureau.Orleans;

/// <summary>One grain per run: Orleans keeps a single activation cluster-wide, so one executor per run.</summary>
internal interface IRunGrain : IGrainWithStringKey
{
    /// <summary>Executes the run in this activation until it ends or waits; returns its status then. A call while one executes waits for it.</summary>
    [ResponseTimeout("30.00:00:00")]
    Task<RunStatus> ExecuteAsync();

    /// <summary>Cancels the run: stops the executor if active, else journals the cancellation. Who and why travel with the call.</summary>
    [AlwaysInterleave]
    [ResponseTimeout("00:10:00")]
    Task<RunStatus> CancelAsync(string? actor, string? reason);
}

/// <summary>
/// Hosts a run's executor. The agent loop runs inside the activation (its continuations are grain
/// turns) without a grain call per step; state lives in the executor while the run is active and the
/// activation goes away when the run ends or waits. Completion is the grain call's answer and the
/// journal's, never a dictionary of one node.
/// </summary>
[PreferLocalPlacement]
internal sealed class RunGrain(BureauEngine engine) : Grain, IRunGrain
{
    private RunExecution? _execution;

    public async Task<RunStatus> ExecuteAsync()
    {
        var execution = _execution = new RunExecution(this.GetPrimaryKeyString());
        try
        {
            DelayDeactivation(TimeSpan.FromDays(1));
            execution.Task = engine.ExecuteHereAsync(execution);
            return await execution.Task;
        }
        finally
        {
            _execution = null;
            execution.Dispose();
            DeactivateOnIdle();
        }
    }

    public async Task<RunStatus> CancelAsync(string? actor, string? reason)
    {
        if (_execution is { } execution)
        {
            await execution.RequestCancelAsync(actor, reason);
            var status = await execution.Task;
            if (status.IsTerminal()) return status;
        }
        return await engine.CancelIdleAsync(this.GetPrimaryKeyString(), actor, reason);
    }
}

/// <summary>
/// Executes runs in their grains. The grain is placed on the calling silo (<see cref="PreferLocalPlacementAttribute"/>):
/// the node whose scheduler claimed the run executes it, unless an activation of it lives elsewhere already (then that
/// one finishes it; Orleans keeps one activation cluster-wide, so a run never executes on two nodes at once).
/// </summary>
internal sealed partial class OrleansRunActivator(IGrainFactory grains, Microsoft.Extensions.Logging.ILogger<OrleansRunActivator> logger) : IRunActivator
{
    /// <summary>How long a call whose silo is gone is tried again: until the membership declares the silo dead (its activations then move).</summary>
    internal static readonly TimeSpan UnavailableFor = TimeSpan.FromMinutes(2);

    public Task<RunStatus> ExecuteAsync(string runId, CancellationToken cancellationToken = default) =>
        RetryUnavailableAsync(runId, () => grains.GetGrain<IRunGrain>(runId).ExecuteAsync(), cancellationToken);

    public Task<RunStatus> CancelAsync(string runId, string? actor, string? reason, CancellationToken cancellationToken = default) =>
        RetryUnavailableAsync(runId, () => grains.GetGrain<IRunGrain>(runId).CancelAsync(actor, reason), cancellationToken);

    /// <summary>
    /// A call to an activation on a silo that died (killed, not yet declared dead) fails with a rejection: it is tried
    /// again each second until the membership declares that silo dead and the grain activates anew (here), at most
    /// <see cref="UnavailableFor"/>. Not counted as an executor error: nothing of the run executed.
    /// </summary>
    private async Task<RunStatus> RetryUnavailableAsync(string runId, Func<Task<RunStatus>> call, CancellationToken cancellationToken)
    {
        var until = DateTime.UtcNow + UnavailableFor;
        var logged = false;
        while (true)
        {
            try
            {
                return await call().WaitAsync(cancellationToken);
            }
            catch (Exception ex) when (ex is OrleansMessageRejectionException or global::Orleans.Runtime.Messaging.ConnectionFailedException && DateTime.UtcNow < until && !cancellationToken.IsCancellationRequested)
            {
                if (!logged) Log.SiloUnavailable(logger, runId, ex.Message);
                logged = true;
                await Task.Delay(TimeSpan.FromSeconds(1), cancellationToken);
            }
        }
    }

    private static partial class Log
    {
        [Microsoft.Extensions.Logging.LoggerMessage(163, Microsoft.Extensions.Logging.LogLevel.Information, "Run {RunId}: its grain's silo is unavailable ({Error}); calling again until the cluster declares that silo dead")]
        public static partial void SiloUnavailable(Microsoft.Extensions.Logging.ILogger logger, string runId, string error);
    }
}
