using System.Diagnostics;

namespace Bureau.Engine;

/// <summary>
/// The only way anything appends to a journal: the executors (through <see cref="RunContext"/>) and
/// the run commands (submit, cancel, resolve, answer, expire). It appends durably, folds the records
/// into the caller's state, publishes them, counts them, and tells the timer service of a new deadline.
/// </summary>
internal sealed class JournalWriter(IRunStore store, IRunEventBus events, TimeProvider time, WaitTimers timers)
{
    /// <summary>The most runs kept as submitted for their first execution (a burst beyond it is read from the store).</summary>
    internal const int FreshRunsKept = 100_000;

    /// <summary>
    /// The most memory those rows may hold, by <see cref="Footprint"/>: 16 MiB keeps a burst of 60,000 small runs
    /// (ids and inputs of a few dozen characters) and stops at a few thousand runs with large inputs.
    /// </summary>
    internal const long FreshBytesKept = 16L << 20;

    // Runs this process just created and nothing has appended to since: the first execution takes the
    // row from here instead of reading it back. Any append through this writer drops the run first.
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, RunRecord> _fresh = new(concurrencyLevel: 64, capacity: 1024, StringComparer.Ordinal);
    private int _freshCount; // the dictionary's Count takes all its locks
    private long _freshBytes;

    /// <summary>Appends <paramref name="entries"/> after <paramref name="expectedVersion"/>; returns the new version.</summary>
    public async ValueTask<long> AppendAsync(string runId, long expectedVersion, JournalEntry[] entries, RunUpdate? update, Action<JournalRecord>? fold)
    {
        DropFresh(runId);
        var at = time.GetUtcNow();
        await store.AppendAsync(new AppendRequest { RunId = runId, ExpectedVersion = expectedVersion, Entries = entries, At = at, Update = update }, CancellationToken.None);
        return Appended(runId, expectedVersion, at, entries, update, fold);
    }

    /// <summary>Appends an executor's entries after its <see cref="RunContext.Version"/> and moves the version on (one await, not two nested).</summary>
    public async ValueTask AppendAsync(RunContext run, JournalEntry[] entries, RunUpdate? update)
    {
        DropFresh(run.RunId);
        var at = time.GetUtcNow();
        var expectedVersion = run.Version;
        await store.AppendAsync(new AppendRequest { RunId = run.RunId, ExpectedVersion = expectedVersion, Entries = entries, At = at, Update = update }, CancellationToken.None);
        run.Version = Appended(run.RunId, expectedVersion, at, entries, update, run.Fold);
    }

    private long Appended(string runId, long expectedVersion, DateTimeOffset at, JournalEntry[] entries, RunUpdate? update, Action<JournalRecord>? fold)
    {
        var records = new JournalRecord[entries.Length];
        for (var i = 0; i < entries.Length; i++)
        {
            records[i] = new JournalRecord(expectedVersion + 1 + i, at, entries[i]);
            fold?.Invoke(records[i]);
        }
        events.Publish(runId, records);
        BureauTelemetry.JournalEntriesAppended(entries.Length);
        if (update?.WaitingFor?.Deadline is { } deadline) timers.Nudge(deadline);
        if (update is not null) Count(update);
        return expectedVersion + entries.Length;
    }

    /// <summary>Creates a run with its first entry; publishes it when it is new.</summary>
    public async Task<SubmitResult> SubmitAsync(NewRun run, CancellationToken cancellationToken)
    {
        var result = await store.SubmitAsync(run, cancellationToken);
        if (result.Created)
        {
            if (Volatile.Read(ref _freshCount) < FreshRunsKept && Volatile.Read(ref _freshBytes) < FreshBytesKept && _fresh.TryAdd(run.Id, result.Run))
            {
                Interlocked.Increment(ref _freshCount);
                Interlocked.Add(ref _freshBytes, Footprint(result.Run));
            }
            events.Publish(run.Id, [new JournalRecord(1, run.CreatedAt, run.Started)]);
            BureauTelemetry.RunsStarted.Add(1, new KeyValuePair<string, object?>("bureau.run.kind", run.Kind));
            BureauTelemetry.JournalEntriesAppended(1);
        }
        return result;
    }

    /// <summary>How many submitted runs' rows are kept for their first execution now.</summary>
    internal int FreshKept => Volatile.Read(ref _freshCount);

    /// <summary>The row of a run this process created and nothing has appended to since, once; null otherwise (read the store).</summary>
    public RunRecord? TakeFresh(string runId)
    {
        if (!_fresh.ContainsKey(runId) || !_fresh.TryRemove(runId, out var run)) return null; // the lookup takes no lock
        Forgot(run);
        return run;
    }

    private void DropFresh(string runId)
    {
        if (_fresh.ContainsKey(runId) && _fresh.TryRemove(runId, out var run)) Forgot(run);
    }

    private void Forgot(RunRecord run)
    {
        Interlocked.Decrement(ref _freshCount);
        Interlocked.Add(ref _freshBytes, -Footprint(run));
    }

    /// <summary>About what a kept row holds: the record and its strings (UTF-16).</summary>
    private static long Footprint(RunRecord run) =>
        160 + 2L * (run.Id.Length + run.Input.Length + (run.IdempotencyKey?.Length ?? 0) + (run.Actor?.Length ?? 0));

    private static void Count(RunUpdate update)
    {
        if (update.Status.IsTerminal() && BureauTelemetry.RunsFinished.Enabled)
            BureauTelemetry.RunsFinished.Add(1, new KeyValuePair<string, object?>("bureau.run.status", update.Status.ToWireName()),
                new KeyValuePair<string, object?>("bureau.run.outcome", update.Outcome ?? (update.Status == RunStatus.Succeeded ? "succeeded" : update.Status.ToWireName())));
    }
}

