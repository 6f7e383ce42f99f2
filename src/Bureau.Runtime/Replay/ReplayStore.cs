namespace Bureau.Replay;

/// <summary>
/// The throwaway in-memory store of one replay: it holds the replayed run only, and checks each append
/// against the recorded journal before accepting it. A divergent append is refused (the engine sees a
/// stale-writer conflict and stops the execution) and recorded as the replay's divergence. An append
/// where the recorded run was interrupted (its next entry is a <c>run.resumed</c> written by a new
/// execution) is refused the same way, without a divergence: what the interrupted execution would have
/// written next is not in the journal.
/// </summary>
internal sealed class ReplayStore : OneRunStore
{
    private readonly ReplaySession _session;

    public ReplayStore(ReplaySession session, RunStarted started, DateTimeOffset createdAt) : base(new RunRecord
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
    })
    {
        _session = session;
        Journal.Add(new JournalRecord(1, createdAt, started));
    }

    protected override string ChildRunRefused(NewRun run) =>
        $"replay of run {_session.RunId}: the replayed run started another run ({run.Agent}); replaying runs with child runs is not supported yet";

    public override ValueTask AppendAsync(AppendRequest request, CancellationToken cancellationToken = default)
    {
        lock (Gate)
        {
            CheckVersion(request);
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
        lock (Gate)
        {
            if (record.N != Current.Version + 1) throw new InvalidOperationException($"replay of run {_session.RunId}: step {record.N} seeded after step {Current.Version}");
            Commit([record.Entry], record.At, new RunUpdate { Status = RunStatus.Queued });
        }
    }

    /// <summary>Sets the row's status as the recorded run's was when its next execution began.</summary>
    public void SetStatus(RunStatus status)
    {
        lock (Gate) Current = Current with { Status = status };
    }

    private void Commit(IReadOnlyList<JournalEntry> entries, DateTimeOffset at, RunUpdate? update)
    {
        var version = Current.Version;
        foreach (var e in entries)
        {
            // The recorded time (the clock may read a call's start): a later execution folds these times again.
            version++;
            Journal.Add(new JournalRecord(version, _session.At(version)?.At ?? at, e));
        }
        at = _session.At(version)?.At ?? at;
        Current = Updated(Current, version, at, update);
        _session.Version = version;
    }
}
