namespace Bureau;

/// <summary>
/// Where runs and their journals live. Every implementation passes the store conformance suite
/// (tests/Bureau.Runtime.Tests, StoreConformanceTests).
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
    /// Creates a queued run with journal entry 1 (<see cref="RunStarted"/>), durably, in one transaction.
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

    /// <summary>Runs that an executor should pick up (queued or running), oldest first.</summary>
    Task<IReadOnlyList<RunRecord>> ListUnfinishedAsync(int limit, CancellationToken cancellationToken = default);
}
