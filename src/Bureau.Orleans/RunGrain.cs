using Orleans.Placement;

namespace Bureau.Orleans;

/// <summary>One grain per run: Orleans keeps a single activation cluster-wide, so one executor per run.</summary>
internal interface IRunGrain : IGrainWithStringKey
{
    /// <summary>Starts executing the run in this activation if it is not already; returns at once.</summary>
    Task StartAsync();

    /// <summary>Cancels the run: stops the executor if active, else journals the cancellation.</summary>
    Task<RunStatus> CancelAsync(string? actor, string? reason);
}

/// <summary>
/// Hosts a run's executor. The agent loop runs inside the activation (its continuations are grain
/// turns) without a grain call per step; state lives in the executor while the run is active and the
/// activation goes away when the run ends or waits.
/// </summary>
[PreferLocalPlacement]
internal sealed class RunGrain(BureauEngine engine, RunCompletions completions) : Grain, IRunGrain
{
    private Task<RunStatus>? _loop;
    private CancellationTokenSource? _cancel;

    public Task StartAsync()
    {
        if (_loop is { IsCompleted: false }) return Task.CompletedTask;
        _cancel?.Dispose();
        _cancel = new CancellationTokenSource();
        DelayDeactivation(TimeSpan.FromDays(1));
        _loop = RunAsync(_cancel.Token);
        return Task.CompletedTask;
    }

    private async Task<RunStatus> RunAsync(CancellationToken cancel)
    {
        var runId = this.GetPrimaryKeyString();
        try
        {
            var status = await engine.ExecuteHereAsync(runId, cancel);
            completions.Complete(runId, status);
            return status;
        }
        catch (Exception ex)
        {
            completions.Fail(runId, ex);
            throw;
        }
        finally
        {
            DeactivateOnIdle();
        }
    }

    public async Task<RunStatus> CancelAsync(string? actor, string? reason)
    {
        var runId = this.GetPrimaryKeyString();
        engine.SetCancelReason(runId, actor, reason);
        if (_loop is { IsCompleted: false } loop)
        {
            await _cancel!.CancelAsync();
            var status = await loop;
            if (status.IsTerminal()) return status;
        }
        return await engine.CancelIdleAsync(runId, actor, reason);
    }
}
