namespace Bureau;

/// <summary>
/// The execution slots of agents with a concurrency limit, counted across every node that shares the store (decision 0056).
/// A store whose nodes can run side by side (PostgreSQL) registers one; without one (SQLite: one process by construction),
/// the scheduler's in-process count is the deployment-wide count and nothing here is consulted.
/// </summary>
/// <remarks>
/// A slot is held by one execution of one run, for one node (its owner), until a lease time: the owner renews its leases
/// while the executions run (<see cref="RenewAsync"/>) and frees the slot when the execution ends. A slot whose lease
/// lapsed (its node died or lost the store) counts as free. Every method may throw
/// <see cref="StorageUnavailableException"/> when the store cannot be reached.
/// </remarks>
internal interface IAgentSlots
{
    /// <summary>
    /// Takes a slot of <paramref name="agent"/> for <paramref name="runId"/>, leased until <paramref name="until"/>, when the
    /// live slots held by other runs and the runs waiting ahead of this one are fewer than <paramref name="limit"/>;
    /// atomically across nodes. A slot the run already holds is taken over (its lease renewed, for this owner). A run
    /// refused waits, in the order of its first refusal, until <paramref name="waitUntil"/> (each try extends it): runs
    /// that ask later leave a freed slot to it, so a node with a backlog cannot starve the others.
    /// </summary>
    /// <returns>True when the run holds a slot now; false when the agent has its limit of executions in the cluster.</returns>
    Task<bool> TryAcquireAsync(string agent, string runId, int limit, string owner, DateTimeOffset now, DateTimeOffset until, DateTimeOffset waitUntil, CancellationToken cancellationToken);

    /// <summary>Frees the run's slot, if <paramref name="owner"/> holds it.</summary>
    Task ReleaseAsync(string agent, string runId, string owner, CancellationToken cancellationToken);

    /// <summary>
    /// Extends the leases of the slots <paramref name="owner"/> holds for <paramref name="runIds"/> to <paramref name="until"/>.
    /// The owner's other slots (those whose release failed) are not renewed: they free themselves when their leases lapse.
    /// </summary>
    Task RenewAsync(string owner, IReadOnlyCollection<string> runIds, DateTimeOffset until, CancellationToken cancellationToken);

    /// <summary>Frees every slot of <paramref name="owner"/> (a node starting again under its id holds none).</summary>
    Task ReleaseAllAsync(string owner, CancellationToken cancellationToken);
}
