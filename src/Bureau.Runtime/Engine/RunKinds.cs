using System.Collections.Concurrent;
using Bureau.Engine;

namespace Bureau;

/// <summary>
/// Executes runs of one kind. The agent loop is the kind <c>agent</c>; a team orchestration is
/// another. Register one with <c>AddRunExecutor</c>; the engine picks it by the run's
/// <see cref="RunRecord.Kind"/> and gives it the run's journal to resume from.
/// </summary>
public interface IRunExecutor
{
    /// <summary>The kind it executes (stored with each run).</summary>
    string Kind { get; }

    /// <summary>The names runs of this kind may target (agents, teams); a submission naming another is refused.</summary>
    IReadOnlyCollection<string> Targets { get; }

    /// <summary>
    /// Runs until the run ends or waits, appending every step through <see cref="RunContext.AppendAsync"/>;
    /// returns the run's status then. Called again after a crash, an answer to a wait or a restart:
    /// it must resume from <see cref="RunContext.Journal"/>, never redo a journaled step.
    /// </summary>
    Task<RunStatus> ExecuteAsync(RunContext run);
}

/// <summary>
/// One execution of one run, as an <see cref="IRunExecutor"/> sees it: the run, its journal as
/// loaded, and the only way to append to it.
/// </summary>
public sealed class RunContext
{
    private readonly BureauEngine _engine;
    private readonly RunExecution _execution;

    internal RunContext(BureauEngine engine, RunRecord run, IReadOnlyList<JournalRecord> journal, RunExecution execution)
    {
        _engine = engine;
        _execution = execution;
        Run = run;
        Journal = journal;
        Version = journal.Count == 0 ? run.Version : journal[^1].N;
    }

    /// <summary>The run's id.</summary>
    public string RunId => Run.Id;

    /// <summary>The run's row as it was when the execution started.</summary>
    public RunRecord Run { get; }

    /// <summary>The journal as it was when the execution started.</summary>
    public IReadOnlyList<JournalRecord> Journal { get; }

    /// <summary>The number of the run's last entry (grows with each append).</summary>
    public long Version { get; internal set; }

    /// <summary>Fires when the run is canceled; the engine then journals the cancellation.</summary>
    public CancellationToken CancellationToken => _execution.Cancel.Token;

    /// <summary>True while the host stops: return at the next step boundary (the run resumes at the next start).</summary>
    public bool IsStopping => _engine.IsStopping;

    /// <summary>The engine's clock.</summary>
    public TimeProvider Time => _engine.TimeProvider;

    /// <summary>The application's services.</summary>
    public IServiceProvider Services => _engine.Services;

    /// <summary>What is running now (a model or a tool call), for the journal of a cancellation; the executor keeps it current.</summary>
    public string? InFlight { get; set; }

    /// <summary>Applies each appended record to the executor's own state (its fold), in order, before <see cref="AppendAsync"/> returns.</summary>
    public Action<JournalRecord>? Fold { get; set; }

    /// <summary>
    /// Appends entries after <see cref="Version"/> (and changes the run's row with them, in one
    /// transaction), durably; then folds and publishes them. Never canceled midway.
    /// </summary>
    /// <exception cref="JournalConflictException">Another executor appended first: stop.</exception>
    public ValueTask AppendAsync(JournalEntry[] entries, RunUpdate? update = null) => _engine.Writer.AppendAsync(this, entries, update);

    /// <summary>Tells watchers what starts now (not journaled).</summary>
    public void PublishActivity(string activity, string detail) => _engine.Events.PublishActivity(RunId, activity, detail);

    internal ICrashPoints CrashPoints => _engine.CrashPoints;
    internal BureauEngine Engine => _engine;
}

/// <summary>
/// Where a run's executor lives. The default keeps one executor per run in this process;
/// Bureau.Orleans puts it in the run's grain (one activation cluster-wide).
/// </summary>
public interface IRunActivator
{
    /// <summary>Executes the run until it ends or waits, and returns its status then. A second call while one is active joins it.</summary>
    Task<RunStatus> ExecuteAsync(string runId, CancellationToken cancellationToken = default);

    /// <summary>Cancels the run: stops its executor if active (killing a running tool), else journals the cancellation. Who and why travel with the call.</summary>
    Task<RunStatus> CancelAsync(string runId, string? actor, string? reason, CancellationToken cancellationToken = default);
}

/// <summary>One execution of a run: its cancellation, and who asked for it and why.</summary>
internal sealed class RunExecution(string runId) : IDisposable
{
    public string RunId { get; } = runId;
    public CancellationTokenSource Cancel { get; } = new();
    public string? CancelActor { get; private set; }
    public string? CancelReason { get; private set; }
    public Task<RunStatus> Task { get; set; } = null!;

    public Task RequestCancelAsync(string? actor, string? reason)
    {
        CancelActor = actor;
        CancelReason = reason;
        try
        {
            return Cancel.CancelAsync();
        }
        catch (ObjectDisposedException)
        {
            return System.Threading.Tasks.Task.CompletedTask;
        }
    }

    public void Dispose() => Cancel.Dispose();
}

/// <summary>Keeps one executor per run in this process.</summary>
internal sealed class LocalRunActivator(BureauEngine engine) : IRunActivator
{
    private readonly ConcurrentDictionary<string, RunExecution> _active = new(StringComparer.Ordinal);

    public Task<RunStatus> ExecuteAsync(string runId, CancellationToken cancellationToken = default)
    {
        var created = new RunExecution(runId);
        var active = _active.GetOrAdd(runId, created);
        if (active != created)
        {
            created.Dispose();
            return active.Task;
        }
        created.Task = RunAsync(created);
        return created.Task;
    }

    private async Task<RunStatus> RunAsync(RunExecution execution)
    {
        await Task.Yield();
        try
        {
            return await engine.ExecuteHereAsync(execution);
        }
        finally
        {
            _active.TryRemove(new KeyValuePair<string, RunExecution>(execution.RunId, execution));
            execution.Dispose();
        }
    }

    public async Task<RunStatus> CancelAsync(string runId, string? actor, string? reason, CancellationToken cancellationToken = default)
    {
        if (_active.TryGetValue(runId, out var execution))
        {
            await execution.RequestCancelAsync(actor, reason);
            var status = await execution.Task.WaitAsync(cancellationToken);
            if (status.IsTerminal()) return status;
        }
        else if (engine.CommandRelay is { } relay && await engine.CancelElsewhereAsync(relay, runId, actor, reason, cancellationToken) is { } done)
        {
            return done;
        }
        return await engine.CancelIdleAsync(runId, actor, reason, cancellationToken);
    }

    /// <summary>A cancel another node asked for: stops the execution here, if there is one (in the background); true when there was.</summary>
    public bool CancelActive(string runId, string? actor, string? reason)
    {
        if (!_active.TryGetValue(runId, out var execution)) return false;
        _ = execution.RequestCancelAsync(actor, reason);
        return true;
    }
}
