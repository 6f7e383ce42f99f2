using System.Collections.Concurrent;

namespace Bureau.Orleans;

/// <summary>Silo-local rendezvous: the activator awaits a run's executor, which the run grain completes.</summary>
internal sealed class RunCompletions
{
    private readonly ConcurrentDictionary<string, TaskCompletionSource<RunStatus>> _waiting = new(StringComparer.Ordinal);

    public Task<RunStatus> Register(string runId) =>
        _waiting.GetOrAdd(runId, _ => new TaskCompletionSource<RunStatus>(TaskCreationOptions.RunContinuationsAsynchronously)).Task;

    public void Complete(string runId, RunStatus status)
    {
        if (_waiting.TryRemove(runId, out var tcs)) tcs.TrySetResult(status);
    }

    public void Fail(string runId, Exception ex)
    {
        if (_waiting.TryRemove(runId, out var tcs)) tcs.TrySetException(ex);
    }
}

/// <summary>Executes runs in their grains.</summary>
internal sealed class OrleansRunActivator(IGrainFactory grains, RunCompletions completions) : IRunActivator
{
    public async Task<RunStatus> ExecuteAsync(string runId, CancellationToken cancellationToken = default)
    {
        var done = completions.Register(runId);
        await grains.GetGrain<IRunGrain>(runId).StartAsync();
        return await done.WaitAsync(cancellationToken);
    }

    public Task<RunStatus> CancelAsync(string runId, string? actor, string? reason, CancellationToken cancellationToken = default) =>
        grains.GetGrain<IRunGrain>(runId).CancelAsync(actor, reason).WaitAsync(cancellationToken);
}
