namespace Bureau;

/// <summary>
/// Where runs and their journals live. Every implementation passes the store conformance suite
/// (tests/Bureau.TestKit, StoreConformanceTests and the suites beside it).
/// </summary>
/// <remarks>
/// Durability: when <see cref="SubmitAsync"/> or <see cref="AppendAsync"/> completes, what it wrote
/// survives a crash (and a power loss, at the default durability).
/// </remarks>
public interface IRunStore : IAsyncDisposable
{
    /// <summary>Creates or migrates the schema. Called once before anything else.</summary>
    Task InitializeAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// Creates a queued run with journal entry 1 (<see cref="NewRun.Started"/>, as given), durably, in one transaction.
    /// If <see cref="NewRun.IdempotencyKey"/> names an existing run, returns that run and creates nothing.
    /// </summary>
    Task<SubmitResult> SubmitAsync(NewRun run, CancellationToken cancellationToken = default);

    /// <summary>
    /// Appends entries and applies the row update in one transaction, durably.
    /// Throws <see cref="JournalConflictException"/> if the run's version is not <see cref="AppendRequest.ExpectedVersion"/>.
    /// </summary>
    ValueTask AppendAsync(AppendRequest request, CancellationToken cancellationToken = default);

    /// <summary>
    /// Marks a queued run as running (a row change, no journal entry). Durable like an append, but
    /// callers need not await it: a run found queued or running after a crash resumes the same way.
    /// </summary>
    ValueTask MarkRunningAsync(string runId, DateTimeOffset at, CancellationToken cancellationToken = default);

    /// <summary>The run's row, or null.</summary>
    Task<RunRecord?> GetRunAsync(string runId, CancellationToken cancellationToken = default);

    /// <summary>The run's journal entries numbered above <paramref name="afterStep"/>, in order.</summary>
    Task<IReadOnlyList<JournalRecord>> ReadJournalAsync(string runId, long afterStep = 0, CancellationToken cancellationToken = default);

    /// <summary>Runs newest first, filtered, with a stable cursor.</summary>
    Task<RunPage> ListRunsAsync(RunQuery query, CancellationToken cancellationToken = default);

    /// <summary>
    /// Claims up to <paramref name="limit"/> unfinished runs (queued or running) that no live lease
    /// holds (none, or one that ended before <paramref name="now"/>), oldest first, for
    /// <paramref name="claim"/>'s owner; returns their ids. Two schedulers never get the same run
    /// while a lease holds.
    /// </summary>
    Task<IReadOnlyList<string>> ClaimAsync(RunClaim claim, DateTimeOffset now, int limit, CancellationToken cancellationToken = default);

    /// <summary>Extends every lease <paramref name="claim"/>'s owner holds on unfinished runs to <see cref="RunClaim.Until"/>; returns how many.</summary>
    Task<int> RenewClaimsAsync(RunClaim claim, CancellationToken cancellationToken = default);

    /// <summary>Drops every lease of <paramref name="owner"/> (a scheduler starting again under the same id takes them anew).</summary>
    Task ReleaseClaimsAsync(string owner, CancellationToken cancellationToken = default);

    /// <summary>Waiting runs whose wait's deadline is at or before <paramref name="now"/>, earliest first.</summary>
    Task<IReadOnlyList<RunRecord>> ListDueWaitsAsync(DateTimeOffset now, int limit, CancellationToken cancellationToken = default);

    /// <summary>
    /// Tokens and cost grouped per agent or per UTC day of the runs created in <see cref="CostQuery.Since"/> (inclusive)
    /// to <see cref="CostQuery.Until"/> (exclusive); team runs are left out (their members are counted), see
    /// <see cref="CostReport"/>. The default reads every run; a store should answer it with an indexed query.
    /// </summary>
    Task<IReadOnlyList<CostRow>> ReadCostsAsync(CostQuery query, CancellationToken cancellationToken = default) =>
        CostReport.ReadByListingAsync(this, query, cancellationToken);

    /// <summary>
    /// Deletes finished runs and their journal entries, in one transaction serialized with appends, and writes one
    /// audit entry (<c>retention.deleted</c>, with the count and the ids) in the same transaction when any went.
    /// A run that is not finished (queued, running, waiting), whose root run is not finished, or that is the root of
    /// an unfinished run is left, checked inside the transaction. Audit entries are never deleted. Returns the ids deleted.
    /// </summary>
    Task<IReadOnlyList<string>> DeleteRunsAsync(RunDeletion deletion, CancellationToken cancellationToken = default) =>
        throw new NotSupportedException($"{GetType().Name} does not delete runs (retention needs a store that does, such as SQLite)");

    /// <summary>The earliest deadline of any waiting run, or null when no wait has one.</summary>
    Task<DateTimeOffset?> NextWaitDeadlineAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// Whether the store could write the last time it tried. A write that fails for a reason outside
    /// Bureau (disk full, read-only file, I/O error) throws <see cref="StorageUnavailableException"/>
    /// and sets this; the next write that works clears it.
    /// </summary>
    StorageHealth Health => StorageHealth.Ok;

    /// <summary>
    /// Tries a small durable write (that changes no run) and returns <see cref="Health"/> after it; the
    /// engine calls it while the store cannot write, to find out when it can again.
    /// </summary>
    ValueTask<StorageHealth> ProbeWriteAsync(CancellationToken cancellationToken = default) => ValueTask.FromResult(Health);
}
