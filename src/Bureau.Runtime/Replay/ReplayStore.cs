namespace Bureau.Replay;

/// <summary>
/// The throwaway in-memory store of one replay: it holds the replayed run only, and checks each append
/// against the recorded journal before accepting it. A divergent append is refused (the engine sees a
/// stale-writer conflict and stops the execution) and recorded as the replay's divergence. An append
/// where the recorded run was interrupted (its next entry is a <c>run.resumed</c> written by a new
/// execution) is refused the same way, without a divergence: what the interrupted execution would have
/// written next is not in the journal.
/// </summary>
internal sealed class ReplayStore : IRunStore
{
    private readonly object _gate = new();
    private readonly ReplaySession _session;
    private readonly List<JournalRecord> _journal = [];
    private RunRecord _run;

    public ReplayStore(ReplaySession session, RunStarted started, DateTimeOffset createdAt)
    {
        _session = session;
        _run = new RunRecord
        {
            Id = session.RunId,
            Agent = started.Agent,
            Kind = started.RunKind ?? RunKinds.Agent,
            ParentRunId = started.ParentRunId,
            RootRunId = started.RootRunId ?? session.RunId,
            Status = RunStatus.Queued,
            Input = started.Input,
            Actor = started.Actor,
            CreatedAt = createdAt,
            UpdatedAt = createdAt,
            Version = 1,
        };
        _journal.Add(new JournalRecord(1, createdAt, started));
    }

    public RunRecord Run
    {
        get { lock (_gate) return _run; }
    }

    public Task InitializeAsync(CancellationToken cancellationToken = default) => Task.CompletedTask;

    public Task<SubmitResult> SubmitAsync(NewRun run, CancellationToken cancellationToken = default) =>
        throw new InvalidOperationException($"replay of run {_session.RunId}: the replayed run started another run ({run.Agent}); replaying runs with child runs is not supported yet");

    public ValueTask AppendAsync(AppendRequest request, CancellationToken cancellationToken = default)
    {
        lock (_gate)
        {
            if (request.RunId != _run.Id || request.ExpectedVersion != _run.Version)
                throw new JournalConflictException(request.RunId, request.ExpectedVersion, request.RunId == _run.Id ? _run.Version : null);
            for (var i = 0; i < request.Entries.Count; i++)
            {
                var n = request.ExpectedVersion + 1 + i;
                var actual = request.Entries[i];
                var expected = _session.At(n);
                if (expected?.Entry is RunResumed && actual is not RunResumed)
                    throw new JournalConflictException(request.RunId, request.ExpectedVersion, request.ExpectedVersion); // the recorded execution was interrupted here
                if (expected is null || !StepComparison.Same(expected.Entry, actual))
                {
                    _session.Diverged(new ReplayDivergence(_session.RunId, n, expected?.Entry, actual,
                        expected is null ? $"the recorded run ended at step {_session.Recorded.Count}; the replayed run went on" : null));
                    throw new JournalConflictException(request.RunId, request.ExpectedVersion, request.ExpectedVersion);
                }
            }
            Commit(request.Entries, request.At, request.Update);
        }
        return ValueTask.CompletedTask;
    }

    /// <summary>Writes entries the replayer takes from the recording as they are (what a person or the timer service did), and queues the run as the engine's command did.</summary>
    public void Seed(JournalRecord record)
    {
        lock (_gate)
        {
            if (record.N != _run.Version + 1) throw new InvalidOperationException($"replay of run {_session.RunId}: step {record.N} seeded after step {_run.Version}");
            Commit([record.Entry], record.At, new RunUpdate { Status = RunStatus.Queued });
        }
    }

    /// <summary>Sets the row's status as the recorded run's was when its next execution began.</summary>
    public void SetStatus(RunStatus status)
    {
        lock (_gate) _run = _run with { Status = status };
    }

    private void Commit(IReadOnlyList<JournalEntry> entries, DateTimeOffset at, RunUpdate? update)
    {
        var version = _run.Version;
        foreach (var e in entries)
        {
            // The recorded time (the clock may read a call's start): a later execution folds these times again.
            version++;
            _journal.Add(new JournalRecord(version, _session.At(version)?.At ?? at, e));
        }
        at = _session.At(version)?.At ?? at;
        _run = update is null
            ? _run with { Version = version, UpdatedAt = at }
            : _run with
            {
                Version = version,
                UpdatedAt = at,
                Status = update.Status,
                Output = update.Output,
                Error = update.Error,
                Outcome = update.Outcome,
                Usage = update.Usage ?? _run.Usage,
                Cost = update.Cost ?? _run.Cost,
                WaitingFor = update.Status == RunStatus.Waiting ? update.WaitingFor : null,
            };
        _session.Version = version;
    }

    public ValueTask MarkRunningAsync(string runId, DateTimeOffset at, CancellationToken cancellationToken = default)
    {
        lock (_gate)
        {
            if (runId == _run.Id && _run.Status == RunStatus.Queued) _run = _run with { Status = RunStatus.Running };
        }
        return ValueTask.CompletedTask;
    }

    public Task<RunRecord?> GetRunAsync(string runId, CancellationToken cancellationToken = default)
    {
        lock (_gate) return Task.FromResult(runId == _run.Id ? _run : null);
    }

    public Task<IReadOnlyList<JournalRecord>> ReadJournalAsync(string runId, long afterStep = 0, CancellationToken cancellationToken = default)
    {
        lock (_gate)
        {
            IReadOnlyList<JournalRecord> records = runId == _run.Id ? [.. _journal.Where(r => r.N > afterStep)] : [];
            return Task.FromResult(records);
        }
    }

    public Task<RunPage> ListRunsAsync(RunQuery query, CancellationToken cancellationToken = default)
    {
        lock (_gate)
        {
            var match = (query.Status is null || query.Status == _run.Status) && (query.Agent is null || query.Agent == _run.Agent) && query.Cursor is null;
            return Task.FromResult(new RunPage(match ? [_run] : [], null));
        }
    }

    // The replayer starts each execution itself: no scheduler claims, no timer service.
    public Task<IReadOnlyList<string>> ClaimAsync(RunClaim claim, DateTimeOffset now, int limit, CancellationToken cancellationToken = default) =>
        Task.FromResult<IReadOnlyList<string>>([]);

    public Task<int> RenewClaimsAsync(RunClaim claim, CancellationToken cancellationToken = default) => Task.FromResult(0);

    public Task ReleaseClaimsAsync(string owner, CancellationToken cancellationToken = default) => Task.CompletedTask;

    public Task<IReadOnlyList<RunRecord>> ListDueWaitsAsync(DateTimeOffset now, int limit, CancellationToken cancellationToken = default) =>
        Task.FromResult<IReadOnlyList<RunRecord>>([]);

    public Task<DateTimeOffset?> NextWaitDeadlineAsync(CancellationToken cancellationToken = default) => Task.FromResult<DateTimeOffset?>(null);

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
