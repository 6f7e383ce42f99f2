namespace Bureau;

/// <summary>
/// Carries run commands between the nodes of a cluster that share one store without Orleans (each node's engine
/// executes the runs it claimed): a cancel asked of one node must stop the executor on the node that runs it, which
/// then journals the cancellation itself (with the calls it stopped). Optional: an engine without one cancels what it
/// executes and journals the cancellation of anything else. The PostgreSQL store provides one (LISTEN/NOTIFY).
/// </summary>
public interface IRunCommandRelay
{
    /// <summary>
    /// Asks every other node to cancel its execution of <paramref name="runId"/>, if it has one. Completes with true as
    /// soon as a node answers that it executes the run and is stopping it; with false when none answered within
    /// <paramref name="wait"/> (no node executes it, or the command could not be sent).
    /// </summary>
    Task<bool> RequestCancelAsync(string runId, string? actor, string? reason, TimeSpan wait, CancellationToken cancellationToken = default);

    /// <summary>
    /// Listens for cancels other nodes ask for, until the returned handle is disposed. <paramref name="handler"/> gets
    /// the run, who asked and why, and returns true when this node executes the run and is stopping it (the relay then
    /// answers the asking node). It must return quickly: stopping happens in the background.
    /// </summary>
    IDisposable OnCancelRequested(Func<string, string?, string?, bool> handler);
}
