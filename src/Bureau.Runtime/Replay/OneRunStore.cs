namespace Bureau.Replay;

/// <summary>
/// A throwaway in-memory store that holds one run and its journal: what a replay and a what-if fork execute against.
/// Subclasses decide what an append may write (a replay checks each entry against the recording; a fork takes them);
/// everything else (reads, the run row's update, no claims and no timers: the caller starts each execution itself) is
/// here once.
/// </summary>
internal abstract class OneRunStore : IRunStore
{
    /// <summary>Guards <see cref="Current"/> and <see cref="Journal"/>.</summary>
    protected readonly object Gate = new();

    /// <summary>The run's journal, step 1 first.</summary>
    protected readonly List<JournalRecord> Journal = [];

    /// <summary>The run's row.</summary>
    protected RunRecord Current;

    protected OneRunStore(RunRecord run) => Current = run;

    /// <summary>The run's row as it is now.</summary>
    public RunRecord Run
    {
        get { lock (Gate) return Current; }
    }

    /// <summary>Why the run may not start another run (a child run): the store holds one run only.</summary>
    protected abstract string ChildRunRefused(NewRun run);

    public abstract ValueTask AppendAsync(AppendRequest request, CancellationToken cancellationToken = default);

    public Task InitializeAsync(CancellationToken cancellationToken = default) => Task.CompletedTask;

    public Task<SubmitResult> SubmitAsync(NewRun run, CancellationToken cancellationToken = default) =>
        throw new InvalidOperationException(ChildRunRefused(run));

    /// <summary>Refuses an append to another run, or at a version that is not the run's.</summary>
    protected void CheckVersion(AppendRequest request)
    {
        if (request.RunId != Current.Id || request.ExpectedVersion != Current.Version)
            throw new JournalConflictException(request.RunId, request.ExpectedVersion, request.RunId == Current.Id ? Current.Version : null);
    }

    /// <summary>The run's row after an append that brought it to <paramref name="version"/>, as a store's row update does.</summary>
    protected static RunRecord Updated(RunRecord run, long version, DateTimeOffset at, RunUpdate? update) => update is null
        ? run with { Version = version, UpdatedAt = at }
        : run with
        {
            Version = version,
            UpdatedAt = at,
            Status = update.Status,
            Output = update.Output,
            Error = update.Error,
            Outcome = update.Outcome,
            Usage = update.Usage ?? run.Usage,
            Cost = update.Cost ?? run.Cost,
            WaitingFor = update.Status == RunStatus.Waiting ? update.WaitingFor : null,
        };

    public ValueTask MarkRunningAsync(string runId, DateTimeOffset at, CancellationToken cancellationToken = default)
    {
        lock (Gate)
        {
            if (runId == Current.Id && Current.Status == RunStatus.Queued) Current = Current with { Status = RunStatus.Running };
        }
        return ValueTask.CompletedTask;
    }

    public Task<RunRecord?> GetRunAsync(string runId, CancellationToken cancellationToken = default)
    {
        lock (Gate) return Task.FromResult(runId == Current.Id ? Current : null);
    }

    public Task<IReadOnlyList<JournalRecord>> ReadJournalAsync(string runId, long afterStep = 0, CancellationToken cancellationToken = default)
    {
        lock (Gate)
        {
            IReadOnlyList<JournalRecord> records = runId == Current.Id ? [.. Journal.Where(r => r.N > afterStep)] : [];
            return Task.FromResult(records);
        }
    }

    public Task<RunPage> ListRunsAsync(RunQuery query, CancellationToken cancellationToken = default)
    {
        lock (Gate)
        {
            var match = (query.Status is null || query.Status == Current.Status) && (query.Agent is null || query.Agent == Current.Agent) && query.Cursor is null
                && (query.IdempotencyKey is null || query.IdempotencyKey == Current.IdempotencyKey);
            return Task.FromResult(new RunPage(match ? [Current] : [], null));
        }
    }

    // The caller starts each execution itself: no scheduler claims, no timer service.
    public Task<IReadOnlyList<string>> ClaimAsync(RunClaim claim, DateTimeOffset now, int limit, CancellationToken cancellationToken = default) =>
        Task.FromResult<IReadOnlyList<string>>([]);

    public Task<int> RenewClaimsAsync(RunClaim claim, CancellationToken cancellationToken = default) => Task.FromResult(0);

    public Task ReleaseClaimsAsync(string owner, CancellationToken cancellationToken = default) => Task.CompletedTask;

    public Task<IReadOnlyList<RunRecord>> ListDueWaitsAsync(DateTimeOffset now, int limit, CancellationToken cancellationToken = default) =>
        Task.FromResult<IReadOnlyList<RunRecord>>([]);

    public Task<DateTimeOffset?> NextWaitDeadlineAsync(CancellationToken cancellationToken = default) => Task.FromResult<DateTimeOffset?>(null);

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
