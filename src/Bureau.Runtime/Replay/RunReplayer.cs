using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Bureau.Replay;

/// <summary>The first step where a replayed run did not do what the recorded one did.</summary>
/// <param name="RunId">The run.</param>
/// <param name="Step">The step number.</param>
/// <param name="Expected">The recorded entry, or null when the recorded run had ended.</param>
/// <param name="Actual">What the replayed run wrote, or null when it stopped short.</param>
/// <param name="Note">Why, in words, when the two entries do not say it.</param>
public sealed record ReplayDivergence(string RunId, long Step, JournalEntry? Expected, JournalEntry? Actual, string? Note = null)
{
    /// <inheritdoc />
    public override string ToString() =>
        $"run {RunId}, step {Step}: expected {StepComparison.Describe(Expected)}, actual {StepComparison.Describe(Actual)}{(Note is null ? "" : " (" + Note + ")")}";
}

/// <summary>The outcome of replaying one run.</summary>
/// <param name="RunId">The run.</param>
/// <param name="Agent">Its agent.</param>
/// <param name="Steps">The recorded run's steps (journal entries).</param>
/// <param name="StepsReproduced">How many of them the replay reproduced, in order.</param>
/// <param name="Divergence">The first divergence, or null when every step was reproduced.</param>
public sealed record ReplayResult(string RunId, string Agent, int Steps, long StepsReproduced, ReplayDivergence? Divergence)
{
    /// <summary>True when the replay reproduced every step.</summary>
    public bool Reproduced => Divergence is null;
}

/// <summary>
/// Replays a finished run against its journal with the current engine and the given definitions, and
/// reports whether the engine takes the same steps (decision 0013). Model answers and tool results
/// are served from the journal (a replay <c>IChatClient</c> through <c>ConfigureChatClients</c>, and
/// the innermost tool filter through <c>AddToolFilter</c>), and so are memory reads and writes (a replay
/// <see cref="IMemoryStore"/>): no real model, tool or memory is called. The run
/// executes in a throwaway in-memory store, never the database it came from. What a person or the
/// timer service did (resolutions, answers, expiries, a cancellation of a waiting run) is done again
/// at the same point; an interrupted execution (a crash) is interrupted again where the next
/// execution's <c>run.resumed</c> was recorded.
/// </summary>
public sealed class RunReplayer
{
    private readonly BureauDefinitions _definitions;
    private readonly ILoggerFactory? _loggerFactory;

    /// <summary>Creates a replayer for runs of agents in <paramref name="definitions"/> (the current definitions: a changed agent may diverge).</summary>
    public RunReplayer(BureauDefinitions definitions, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(definitions);
        _definitions = definitions;
        _loggerFactory = loggerFactory;
    }

    /// <summary>Replays the run whose journal is <paramref name="journal"/> (from step 1 to its <c>run.finished</c>).</summary>
    /// <exception cref="ArgumentException">The journal is not one of a finished run (empty, not starting with <c>run.started</c>, with gaps, or without <c>run.finished</c>), or its agent is not defined; the message names the run.</exception>
    public async Task<ReplayResult> ReplayAsync(string runId, IReadOnlyList<JournalRecord> journal, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(runId);
        ArgumentNullException.ThrowIfNull(journal);
        Check(runId, journal);
        var started = (RunStarted)journal[0].Entry;
        if ((started.RunKind ?? RunKinds.Agent) != RunKinds.Agent)
            throw new ArgumentException($"run {runId} is a '{started.RunKind}' run; only agent runs can be replayed yet", nameof(journal));
        if (!_definitions.Agents.ContainsKey(started.Agent))
            throw new ArgumentException($"run {runId}: agent '{started.Agent}' is not defined; defined agents: {string.Join(", ", _definitions.Agents.Keys.Order(StringComparer.Ordinal))}", nameof(journal));

        var session = new ReplaySession(runId, journal);
        var store = new ReplayStore(session, started, journal[0].At);
        var services = new ServiceCollection();
        services.AddSingleton<TimeProvider>(new ReplayClock(session));
        if (_loggerFactory is not null) services.AddSingleton(_loggerFactory);
        services.AddSingleton(session);
        services.AddSingleton<IRunStore>(store);
        services.AddSingleton<IMemoryStore>(new ReplayMemoryStore(session));
        var client = new ReplayChatClient(session);
        services.AddBureau(o => o.NodeId = "replay")
            .AddDefinitions(_definitions)
            .ConfigureChatClients((_, b) => b.Use(_ => client))
            .AddToolFilter<ReplayToolFilter>();
        await using var provider = services.BuildServiceProvider();
        var engine = provider.GetRequiredService<BureauEngine>();
        session.Engine = engine;

        for (var executions = 0; session.Divergence is null && session.Version < journal.Count; )
        {
            cancellationToken.ThrowIfCancellationRequested();
            var next = session.Next!;
            switch (next.Entry)
            {
                case StepResolved or WaitAnswered or WaitExpired:
                    store.Seed(next);
                    continue;
                case RunCanceled canceled:
                    // Canceled while no execution was running (waiting, queued, or interrupted): as the command did.
                    await CancelAsync(engine, runId, canceled, cancellationToken);
                    if (session.Version < next.N && session.Divergence is null)
                        session.Diverged(new ReplayDivergence(runId, next.N, next.Entry, null, $"canceling the replayed run ({store.Run.Status.ToWireName()}) wrote nothing"));
                    continue;
                case RunResumed resumed:
                    store.SetStatus(resumed.Reason == "restart" ? RunStatus.Running : RunStatus.Queued);
                    break;
            }
            if (++executions > journal.Count) throw new InvalidOperationException($"replay of run {runId}: no progress after {executions} executions at step {session.Version}");
            var before = session.Version;
            var status = await engine.Activator.ExecuteAsync(runId, cancellationToken).WaitAsync(cancellationToken);
            if (session.Divergence is null && session.Version == before)
            {
                session.Diverged(new ReplayDivergence(runId, before + 1, next.Entry, null,
                    $"the replayed run stopped at step {before} ({status.ToWireName()}) where the recorded one went on"));
            }
        }
        return new ReplayResult(runId, started.Agent, journal.Count, session.Divergence is { } d ? d.Step - 1 : session.Version, session.Divergence);
    }

    private static async Task CancelAsync(BureauEngine engine, string runId, RunCanceled canceled, CancellationToken cancellationToken)
    {
        try
        {
            await engine.CancelAsync(runId, canceled.Actor, canceled.Reason, cancellationToken);
        }
        catch (RunStateConflictException)
        {
            // The replayed run had already finished: the comparison reports it.
        }
    }

    private static void Check(string runId, IReadOnlyList<JournalRecord> journal)
    {
        if (journal.Count == 0) throw new ArgumentException($"run {runId}: the journal is empty", nameof(journal));
        if (journal[0].Entry is not RunStarted) throw new ArgumentException($"run {runId}: step 1 is {journal[0].Entry.Kind}, not run.started", nameof(journal));
        for (var i = 0; i < journal.Count; i++)
        {
            if (journal[i].N != i + 1) throw new ArgumentException($"run {runId}: the journal has step {journal[i].N} where step {i + 1} belongs (a gap or a repeat)", nameof(journal));
        }
        if (journal[^1].Entry is not RunFinished)
            throw new ArgumentException($"run {runId} has not finished (its last step, {journal.Count}, is {journal[^1].Entry.Kind}); only finished runs can be replayed", nameof(journal));
    }
}
