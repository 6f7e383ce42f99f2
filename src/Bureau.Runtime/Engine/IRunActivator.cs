namespace Bureau;

/// <summary>
/// Where a run's executor lives. The default keeps one executor per run in this process;
/// Bureau.Orleans puts it in the run's grain (one activation cluster-wide).
/// </summary>
public interface IRunActivator
{
    /// <summary>Executes the run until it ends or waits, and returns its status then. A second call while one is active joins it.</summary>
    Task<RunStatus> ExecuteAsync(string runId, CancellationToken cancellationToken = default);

    /// <summary>Cancels the run: stops its executor if active (killing a running tool), else journals the cancellation.</summary>
    Task<RunStatus> CancelAsync(string runId, string? actor, string? reason, CancellationToken cancellationToken = default);
}
