using Bureau.Engine;
using Orleans.Concurrency;
using Orleans.Placement;

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

/// <summary>Executes runs in their grains.</summary>
internal sealed class OrleansRunActivator(IGrainFactory grains) : IRunActivator
{
    public Task<RunStatus> ExecuteAsync(string runId, CancellationToken cancellationToken = default) =>
        grains.GetGrain<IRunGrain>(runId).ExecuteAsync().WaitAsync(cancellationToken);

    public Task<RunStatus> CancelAsync(string runId, string? actor, string? reason, CancellationToken cancellationToken = default) =>
        grains.GetGrain<IRunGrain>(runId).CancelAsync(actor, reason).WaitAsync(cancellationToken);
}
