using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Bureau.Engine;
using Microsoft.Extensions.Logging;

namespace Bureau;

/// <summary>A request to start a run.</summary>
/// <param name="Agent">The agent's name.</param>
/// <param name="Input">The input text.</param>
/// <param name="IdempotencyKey">Optional: a second request with the same key returns the first run and starts nothing.</param>
/// <param name="Actor">Who or what asks (recorded in the journal).</param>
/// <param name="Kind">The run kind (<see cref="RunKinds.Agent"/> by default); <paramref name="Agent"/> names its target.</param>
/// <param name="ParentRunId">The parent, for a child run (its root is the parent's root).</param>
public sealed record RunRequest(string Agent, string Input, string? IdempotencyKey = null, string? Actor = null, string Kind = RunKinds.Agent, string? ParentRunId = null)
{
    /// <summary>Among runs ready to execute in this process, higher first (default 0; negative is allowed). Applies to the run's first execution on the node that accepts it.</summary>
    public int Priority { get; init; }

    /// <summary>Runs with the same ordering key execute one at a time, in the order they were accepted (e.g. <c>github:issue:42</c>); null: no ordering.</summary>
    public string? OrderingKey { get; init; }
}

/// <summary>The named agent is not deployed.</summary>
public sealed class UnknownAgentException(string agent, IEnumerable<string> known, string kind = RunKinds.Agent)
    : Exception(Describe(agent, [.. known.Order(StringComparer.Ordinal)], kind))
{
    /// <summary>The name asked for.</summary>
    public string Agent { get; } = agent;

    private static string Describe(string agent, IReadOnlyList<string> known, string kind)
    {
        var closest = Suggestions.Closest(agent, known) is { } c ? $" (did you mean '{c}'?)" : "";
        return kind == RunKinds.Agent
            ? $"agent '{agent}' is not deployed{closest}; deployed agents: {string.Join(", ", known)}"
            : $"{kind} '{agent}' is not deployed{closest}; deployed: {string.Join(", ", known)}";
    }
}

/// <summary>The input is empty (or blank) and the agent does not allow that (<see cref="AgentDefinition.AllowEmptyInput"/>); nothing was written.</summary>
public sealed class EmptyInputException(string agent)
    : ArgumentException($"input is empty: agent '{agent}' needs an input (set allowEmptyInput: true on the agent to allow empty inputs)", "input")
{
    /// <summary>The agent.</summary>
    public string Agent { get; } = agent;
}

/// <summary>The run does not exist.</summary>
public sealed class RunNotFoundException(string runId) : Exception($"run {runId} does not exist")
{
    /// <summary>The id asked for.</summary>
    public string RunId { get; } = runId;
}

/// <summary>The run is not in a state that allows the operation (for example canceling a finished run).</summary>
public sealed class RunStateConflictException(string runId, RunStatus status, string message, long? step = null) : Exception(message)
{
    /// <summary>The run.</summary>
    public string RunId { get; } = runId;
    /// <summary>Its status.</summary>
    public RunStatus Status { get; } = status;
    /// <summary>The step concerned, if any.</summary>
    public long? Step { get; } = step;
}

/// <summary>
/// Bureau's run engine for one process, as the rest of the application sees it: run commands
/// (submit, cancel, resolve, answer a wait), reads and live watching. Behind it: the scheduler (queue,
/// concurrency, claims), one journal writer (the only way anything appends), the run executors (one
/// per run kind) and the durable timer service. Built by <c>AddBureau()</c>; started by its host.
/// </summary>
public sealed partial class BureauEngine : IAsyncDisposable
{
    private readonly Func<string> _newId;
    private readonly Dictionary<string, IRunExecutor> _executors;
    private readonly RunScheduler _scheduler;
    private readonly WaitTimers _timers;
    private readonly StorageWatch _storageWatch;
    private readonly BureauOptions _options;
    private readonly QueueCounts _queued = new();
    private int _started;
    private Task? _stopped;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, string?> _traceHandOff = new(StringComparer.Ordinal);

    // The hand-off's size, kept beside it: ConcurrentDictionary.Count takes every lock of the dictionary, and reading it
    // on each submission serialised the submitting threads (measured: most of telemetry's cost at L=0, performance.md).
    private int _traceHandOffCount;

    internal BureauEngine(
        BureauOptions options,
        BureauDeployment deployment,
        IRunStore store,
        IRunEventBus events,
        IEnumerable<IRunExecutor> executors,
        TimeProvider timeProvider,
        ILoggerFactory loggerFactory,
        IServiceProvider services,
        ICrashPoints? crashPoints = null)
    {
        _options = options;
        _deployment = deployment;
        Options = options;
        Store = store;
        Tallies = new Teams.JournalTallies(store);
        Events = events;
        TimeProvider = timeProvider;
        Services = services;
        CrashPoints = crashPoints ?? NoCrashPoints.Instance;
        Logger = loggerFactory.CreateLogger("Bureau.Engine");
        _newId = options.RunIdGenerator ?? (() => RunIds.New(TimeProvider));
        _executors = new Dictionary<string, IRunExecutor>(StringComparer.Ordinal);
        foreach (var e in executors) _executors[e.Kind] = e;
        _timers = new WaitTimers(store, timeProvider, loggerFactory.CreateLogger<WaitTimers>());
        Writer = new JournalWriter(store, events, timeProvider, _timers);
        _scheduler = new RunScheduler(store, options, timeProvider, Logger, HasAgentConcurrencyLimits() ? ConcurrencyLimitOf : null,
            services.GetService(typeof(IAgentSlots)) as IAgentSlots); // the store's, when its nodes share it (decision 0056)
        _storageWatch = new StorageWatch(store, timeProvider, Logger, _scheduler.RetryNow);
        Activator = new LocalRunActivator(this);
    }

    private readonly BureauDeployment _deployment;

    /// <summary>What is deployed (the tools of an MCP server that could be listed only after start included, once it was).</summary>
    public BureauDefinitions Definitions => _deployment.Definitions;

    /// <summary>The runtime's options.</summary>
    internal BureauOptions Options { get; }

    /// <summary>The store.</summary>
    public IRunStore Store { get; }

    /// <summary>The journals of the runs above starting members, read incrementally (team budgets).</summary>
    internal Teams.JournalTallies Tallies { get; }

    /// <summary>Live events of runs (what the journal writer appended, and activities).</summary>
    public IRunEventBus Events { get; }

    /// <summary>Where executors live; replaced before start by <c>UseOrleans</c>.</summary>
    public IRunActivator Activator { get; set; }

    /// <summary>Runs executing now in this process.</summary>
    public int ActiveRuns => _scheduler.ActiveRuns;

    /// <summary>True once the engine has claimed its unfinished runs (they are scheduled) and until it stops.</summary>
    public bool IsReady { get; private set; }

    /// <summary>
    /// Whether the store could write the last time it tried. While it cannot, requests that write
    /// fail with <see cref="StorageUnavailableException"/> (nothing of them is stored), runs whose
    /// appends failed wait and resume from their journals once it can, and the host reports not ready.
    /// </summary>
    public StorageHealth StorageHealth => Store.Health;

    /// <summary>Runs whose last execution threw (a storage fault, an error) and that will be tried again.</summary>
    public int RetryingRuns => _scheduler.RetryingRuns;

    /// <summary>Runs in this process's ready queue, waiting for a run slot.</summary>
    internal int ReadyRuns => _scheduler.ReadyRuns;

    /// <summary>The run kinds this engine executes.</summary>
    public IReadOnlyCollection<string> Kinds => _executors.Keys;

    internal TimeProvider TimeProvider { get; }
    internal IServiceProvider Services { get; }
    internal ILogger Logger { get; }
    internal ICrashPoints CrashPoints { get; }
    internal JournalWriter Writer { get; }
    internal bool IsStopping => _scheduler.IsStopping;

    /// <summary>
    /// Drops the claims of a node known to be gone (a cluster's membership declared it dead) and claims unfinished runs
    /// at once: its runs resume here or on another survivor without waiting for its leases to run out. Returns whether
    /// anything was released. Never the claims of this node.
    /// </summary>
    internal async Task<bool> TakeOverAsync(string deadNode, CancellationToken cancellationToken)
    {
        if (string.Equals(deadNode, _options.NodeId, StringComparison.Ordinal) || IsStopping) return false;
        await Store.ReleaseClaimsAsync(deadNode, cancellationToken);
        _scheduler.ClaimSoon();
        return true;
    }

    /// <summary>Starts dispatching: claims unfinished runs (they resume from their journals) and starts the timer service.</summary>
    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        if (Interlocked.Exchange(ref _started, 1) == 1) return;
        await _scheduler.StartAsync(id =>
        {
            _queued.Started(id);
            return Activator.ExecuteAsync(id, CancellationToken.None);
        }, FailAfterErrorsAsync, cancellationToken);
        await _timers.StartAsync(ExpireWaitAsync, cancellationToken); // deadlines that passed while down fire before the engine is ready
        _storageWatch.Start();
        CommandRelay = Services.GetService(typeof(IRunCommandRelay)) as IRunCommandRelay;
        _relayed = CommandRelay?.OnCancelRequested((id, actor, reason) => Activator is LocalRunActivator local && local.CancelActive(id, actor, reason));
        IsReady = true;
        TrackStarted();
        _rollbackSweep = Task.Run(() => SweepRollbacksAsync(CancellationToken.None));
        _orphanSweep = Task.Run(() => SweepOrphansAsync(CancellationToken.None));
    }

    private const string OrphanSweepActor = "bureau:orphan-sweep";

    private Task? _orphanSweep;

    /// <summary>The start-up sweep for children of canceled runs (tests wait on it).</summary>
    internal Task OrphanSweep => _orphanSweep ?? Task.CompletedTask;

    /// <summary>
    /// Canceling a run commits its cancellation, then cancels its unfinished children; a crash in
    /// between leaves them running for a parent that no longer waits for them (their writes, their
    /// tokens). At start, every unfinished run whose parent was canceled is canceled in turn (its own
    /// children follow, as for any cancel). In the background: start is not delayed. Each parent is
    /// read once, however many children it has.
    /// </summary>
    private async Task SweepOrphansAsync(CancellationToken cancellationToken)
    {
        var parents = new Dictionary<string, RunStatus?>(StringComparer.Ordinal);
        try
        {
            foreach (var status in new[] { RunStatus.Queued, RunStatus.Running, RunStatus.Waiting })
            {
                string? cursor = null;
                do
                {
                    var page = await Store.ListRunsAsync(new RunQuery { Status = status, Limit = 1000, Cursor = cursor }, cancellationToken);
                    foreach (var run in page.Items)
                    {
                        if (run.ParentRunId is not { } parentId) continue;
                        if (!parents.TryGetValue(parentId, out var parentStatus))
                            parents[parentId] = parentStatus = (await Store.GetRunAsync(parentId, cancellationToken))?.Status;
                        if (parentStatus != RunStatus.Canceled) continue;
                        Log.OrphanSwept(Logger, run.Id, parentId);
                        try
                        {
                            await Activator.CancelAsync(run.Id, OrphanSweepActor, $"its parent run {parentId} was canceled");
                        }
                        catch (Exception ex) when (ex is RunStateConflictException or RunNotFoundException)
                        {
                            // Ended meanwhile.
                        }
                    }
                    cursor = page.Next;
                }
                while (cursor is not null && !IsStopping);
            }
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            Log.OrphanSweepFailed(Logger, ex);
        }
    }

    private const string RollbackOnFailureActor = "bureau:rollback-on-failure";

    /// <summary>How far back the start-up sweep looks for failed runs whose rollback was never started.</summary>
    internal static readonly TimeSpan RollbackSweepWindow = TimeSpan.FromHours(24);

    private Task? _rollbackSweep;

    /// <summary>The start-up sweep for rollbacks (tests wait on it).</summary>
    internal Task RollbackSweep => _rollbackSweep ?? Task.CompletedTask;

    /// <summary>
    /// A run of an agent with <c>rollbackOnFailure</c> starts its rollback right after its failure is
    /// journaled; a crash in between would lose it. At start, the failed and canceled runs of such
    /// agents from the last <see cref="RollbackSweepWindow"/> that have no rollback run get one (the
    /// rollback's idempotency key makes a repeat start nothing new). In the background: start is not delayed.
    /// </summary>
    private async Task SweepRollbacksAsync(CancellationToken cancellationToken)
    {
        if (!_executors.ContainsKey(RunKinds.Rollback)) return;
        var since = TimeProvider.GetUtcNow() - RollbackSweepWindow;
        try
        {
            foreach (var agent in Definitions.Agents.Values.Where(a => a.RollbackOnFailure))
            {
                foreach (var status in new[] { RunStatus.Failed, RunStatus.Canceled })
                {
                    string? cursor = null;
                    do
                    {
                        var page = await Store.ListRunsAsync(new RunQuery { Agent = agent.Name, Status = status, Limit = 200, Cursor = cursor }, cancellationToken);
                        foreach (var run in page.Items)
                        {
                            if (run.CreatedAt < since) { cursor = null; goto nextStatus; }
                            if (run.Kind != RunKinds.Agent) continue;
                            var children = await Store.ListRunsAsync(new RunQuery { ParentRunId = run.Id, Limit = 1000 }, cancellationToken);
                            if (children.Items.Any(c => c.Kind == RunKinds.Rollback)) continue;
                            Log.RollbackSwept(Logger, run.Id);
                            await RollbackAsync(run.Id, RollbackOnFailureActor, cancellationToken);
                        }
                        cursor = page.Next;
                    }
                    while (cursor is not null && !IsStopping);
                nextStatus:;
                }
            }
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            Log.RollbackSweepFailed(Logger, ex);
        }
    }

    /// <summary>
    /// Stops gracefully: no new run starts, executing runs stop at their next step boundary (what they
    /// finished is journaled), waiting at most <see cref="BureauOptions.ShutdownGrace"/>. The next
    /// start resumes them.
    /// </summary>
    public Task StopAsync(CancellationToken cancellationToken = default)
    {
        IsReady = false;
        lock (_executors) return _stopped ??= StopCoreAsync(cancellationToken);
    }

    private async Task StopCoreAsync(CancellationToken cancellationToken)
    {
        UntrackStarted();
        _relayed?.Dispose();
        await _timers.StopAsync();
        await _storageWatch.StopAsync();
        await _scheduler.StopAsync(cancellationToken);
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync() => await StopAsync();

    /// <summary>
    /// Accepts a run: durable before this returns. With an idempotency key that was seen before,
    /// returns that run (<see cref="SubmitResult.Created"/> false) and starts nothing.
    /// </summary>
    /// <exception cref="UnknownAgentException">The agent (or the kind's target) is not deployed; nothing was written.</exception>
    public async Task<SubmitResult> SubmitAsync(RunRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(request.Input);
        if (request.Kind == RunKinds.Agent && !Definitions.Agents.ContainsKey(request.Agent) && Definitions.Teams.ContainsKey(request.Agent))
            request = request with { Kind = RunKinds.Team }; // a team runs wherever an agent does
        if (!_executors.TryGetValue(request.Kind, out var executor))
            throw new ArgumentException($"run kind '{request.Kind}' is not registered; registered kinds: {string.Join(", ", _executors.Keys.Order(StringComparer.Ordinal))}", nameof(request));
        if (!executor.Targets.Contains(request.Agent))
        {
            // An agent's name may also name a team (run as one above): both are offered.
            throw new UnknownAgentException(request.Agent,
                request.Kind == RunKinds.Agent ? Definitions.Agents.Keys.Concat(Definitions.Teams.Keys) : executor.Targets, request.Kind);
        }
        if (string.IsNullOrWhiteSpace(request.Input) && request.Kind == RunKinds.Agent
            && Definitions.Agents.TryGetValue(request.Agent, out var agent) && !agent.AllowEmptyInput)
            throw new EmptyInputException(request.Agent);
        string? root = null;
        if (request.ParentRunId is not null)
        {
            var parent = await Store.GetRunAsync(request.ParentRunId, cancellationToken) ?? throw new RunNotFoundException(request.ParentRunId);
            root = parent.RootRunId ?? parent.Id;
        }
        return await AcceptAsync(request, root, cancellationToken);
    }

    /// <summary>Writes a checked request as a new run (durably) and queues it here.</summary>
    private async Task<SubmitResult> AcceptAsync(RunRequest request, string? root, CancellationToken cancellationToken)
    {
        var id = _newId();
        // The caller's span (an HTTP request, a parent run, the application's own) is journaled: every execution of
        // the run, here or after a restart, is its child.
        var traced = BureauTelemetry.ActivitySource.HasListeners();
        var traceParent = traced ? RunTelemetry.CallerTraceParent() : null;
        var result = await Writer.SubmitAsync(new NewRun
        {
            Id = id,
            Agent = request.Agent,
            Input = request.Input,
            Kind = request.Kind,
            ParentRunId = request.ParentRunId,
            RootRunId = root,
            CreatedAt = TimeProvider.GetUtcNow(),
            IdempotencyKey = request.IdempotencyKey,
            Actor = request.Actor,
            Claim = _scheduler.NewClaim(),
            Started = new RunStarted(request.Agent, request.Input, request.Actor,
                request.Kind == RunKinds.Agent ? null : request.Kind, request.ParentRunId, root, traceParent),
        }, cancellationToken);
        if (result.Created && request.ParentRunId is null) _queued.Accepted(id, request.Agent);
        if (result.Created) _scheduler.SetOrder(id, request.Priority, request.OrderingKey); // claimed here at submit: scheduled only below
        if (traced && result.Created && Volatile.Read(ref _traceHandOffCount) < 10_000 && _traceHandOff.TryAdd(id, traceParent))
            Interlocked.Increment(ref _traceHandOffCount); // bounded; a miss reads the journal
        // A member or a delegate continues its parent's work (decision 0057); a rollback, a child of an ended run, is new work.
        if (result.Run.Status is RunStatus.Queued or RunStatus.Running)
            _scheduler.Schedule(result.Run.Id, result.Run.Agent, continuing: request.ParentRunId is not null && request.Kind != RunKinds.Rollback);
        return result;
    }

    /// <summary>Whether this process accepted the (top-level) run and has not started executing it yet.</summary>
    internal bool IsQueuedHere(string runId) => _queued.IsPending(runId);

    /// <summary>Top-level runs this process accepted that have not started executing yet: of <paramref name="agent"/>, or of every agent when null.</summary>
    public int QueuedRuns(string? agent = null) => _queued.Count(agent);

    /// <summary>
    /// <see cref="EnsureQueueRoom"/> for one run, except for a request sent again: when <paramref name="idempotencyKey"/>
    /// already names a run, the submission will answer with that run, full queue or not, so no room is needed.
    /// </summary>
    /// <exception cref="QueueFullException">The queue is full and the key names no run.</exception>
    internal async Task EnsureQueueRoomAsync(string agent, string? idempotencyKey, CancellationToken cancellationToken)
    {
        try
        {
            EnsureQueueRoom(agent);
        }
        catch (QueueFullException) when (idempotencyKey is { Length: > 0 })
        {
            if ((await Store.ListRunsAsync(new RunQuery { IdempotencyKey = idempotencyKey, Limit = 1 }, cancellationToken)).Items.Count == 0) throw;
        }
    }

    /// <summary>
    /// Throws <see cref="QueueFullException"/> when a new run of <paramref name="agent"/> would go beyond
    /// <see cref="BureauOptions.MaxQueuedRuns"/>, the agent's entry in <see cref="BureauOptions.AgentQueueLimits"/> or
    /// <see cref="BureauOptions.MaxQueuedRunsPerAgent"/>. The edges (triggers, <c>POST /v1/runs</c>) call it before they
    /// write anything; runs started inside runs (children, delegations) are never refused.
    /// </summary>
    /// <param name="agent">The agent or team.</param>
    /// <param name="count">How many runs of it the request would start.</param>
    public void EnsureQueueRoom(string agent, int count = 1)
    {
        if (_options.MaxQueuedRuns is { } global && _queued.Count(null) + count > global)
            throw new QueueFullException(agent, _queued.Count(null), global, global: true, _options.QueueFullRetryAfter);
        var limit = _options.AgentQueueLimits.TryGetValue(agent, out var own) ? own : _options.MaxQueuedRunsPerAgent;
        if (limit is { } l && _queued.Count(agent) + count > l)
            throw new QueueFullException(agent, _queued.Count(agent), l, global: false, _options.QueueFullRetryAfter);
    }

    /// <summary>
    /// The most runs of <paramref name="agent"/> (an agent or team) executing at once in this process: its entry in
    /// <see cref="BureauOptions.AgentConcurrencyLimits"/>, else its manifest's <c>maxConcurrentRuns</c>, else
    /// <see cref="BureauOptions.MaxConcurrentRunsPerAgent"/>; null: no limit but the global one.
    /// </summary>
    internal int? ConcurrencyLimitOf(string agent) =>
        _options.AgentConcurrencyLimits.TryGetValue(agent, out var own) ? own
        : _deployment.Definitions.Agents.TryGetValue(agent, out var a) && a.MaxConcurrentRuns is { } declared ? declared
        : _options.MaxConcurrentRunsPerAgent;

    private bool HasAgentConcurrencyLimits() =>
        _options.MaxConcurrentRunsPerAgent is not null || _options.AgentConcurrencyLimits.Count > 0
        || _deployment.Definitions.Agents.Values.Any(a => a.MaxConcurrentRuns is not null);

    /// <summary>The run's row, or null.</summary>
    public Task<RunRecord?> GetRunAsync(string runId, CancellationToken cancellationToken = default) =>
        Store.GetRunAsync(runId, cancellationToken);

    /// <summary>Runs, newest first.</summary>
    public Task<RunPage> ListRunsAsync(RunQuery query, CancellationToken cancellationToken = default) =>
        Store.ListRunsAsync(query, cancellationToken);

    /// <summary>The run's journal.</summary>
    public Task<IReadOnlyList<JournalRecord>> ReadJournalAsync(string runId, long afterStep = 0, CancellationToken cancellationToken = default) =>
        Store.ReadJournalAsync(runId, afterStep, cancellationToken);

    /// <summary>Cancels a run that has not finished; a running tool's process tree is killed.</summary>
    /// <exception cref="RunNotFoundException">No such run.</exception>
    /// <exception cref="RunStateConflictException">The run had already finished.</exception>
    public async Task<RunStatus> CancelAsync(string runId, string? actor = null, string? reason = null, CancellationToken cancellationToken = default)
    {
        var run = await Store.GetRunAsync(runId, cancellationToken) ?? throw new RunNotFoundException(runId);
        if (run.Status.IsTerminal())
            throw new RunStateConflictException(runId, run.Status, $"run {runId} is already {run.Status.ToWireName()}; only an unfinished run can be canceled");
        return await Activator.CancelAsync(runId, actor, reason, cancellationToken);
    }

    /// <summary>Decides an in-doubt step of a waiting run, and lets the run go on.</summary>
    /// <exception cref="RunNotFoundException">No such run.</exception>
    /// <exception cref="RunStateConflictException">The run is not waiting on that step.</exception>
    public Task<RunRecord> ResolveAsync(string runId, long step, StepResolution resolution, string? content = null, string? actor = null, CancellationToken cancellationToken = default) =>
        AnswerAsync(runId, step, InDoubtWait.ReasonName, new StepResolved(step, resolution, content, actor), cancellationToken);

    /// <summary>Answers the wait of a waiting run (an approval, an external event), and lets the run go on.</summary>
    /// <exception cref="RunNotFoundException">No such run.</exception>
    /// <exception cref="RunStateConflictException">The run is not waiting on that step, or waits for something else (in-doubt steps are resolved with <see cref="ResolveAsync"/>).</exception>
    public Task<RunRecord> AnswerWaitAsync(string runId, long step, string? answer, string? actor = null, CancellationToken cancellationToken = default) =>
        AnswerAsync(runId, step, null, null, cancellationToken, answer, actor);

    private async Task<RunRecord> AnswerAsync(string runId, long step, string? reason, JournalEntry? entry, CancellationToken cancellationToken, string? answer = null, string? actor = null)
    {
        var run = await Store.GetRunAsync(runId, cancellationToken) ?? throw new RunNotFoundException(runId);
        if (run.Status != RunStatus.Waiting || run.WaitingFor is null)
            throw new RunStateConflictException(runId, run.Status, $"run {runId} is {run.Status.ToWireName()}, not waiting; there is nothing to answer", step);
        if (run.WaitingFor.Step != step)
            throw new RunStateConflictException(runId, run.Status, $"run {runId} waits on step {run.WaitingFor.Step}, not step {step}", step);
        if (reason is not null && run.WaitingFor.Reason != reason)
            throw new RunStateConflictException(runId, run.Status, $"run {runId} waits for {run.WaitingFor.Reason} on step {step}, not for a resolution of an in-doubt step", step);
        if (reason is null && run.WaitingFor is InDoubtWait)
            throw new RunStateConflictException(runId, run.Status, $"run {runId} waits on an in-doubt step {step}: resolve it as done, retry or failed", step);
        if (reason is null && run.WaitingFor is ApprovalWait)
            throw new RunStateConflictException(runId, run.Status, $"run {runId} waits for an approval ({runId}:{step}): approve or reject it (POST /v1/approvals/{runId}:{step}/decision, bureau approvals)", step);
        entry ??= new WaitAnswered(step, run.WaitingFor.Reason, answer, actor);
        try
        {
            await Writer.AppendAsync(runId, run.Version, [entry], new RunUpdate { Status = RunStatus.Queued, Claim = _scheduler.NewClaim() }, null);
        }
        catch (JournalConflictException)
        {
            throw new RunStateConflictException(runId, run.Status, $"run {runId} changed while answering step {step} (someone else answered, it expired, or it was canceled); read it again", step);
        }
        _scheduler.Schedule(runId, run.Agent, continuing: true);
        return (await Store.GetRunAsync(runId, cancellationToken))!;
    }

    /// <summary>The timer service fires a due wait: journals its expiry (once: the append expects the run's version) and requeues the run.</summary>
    private async Task ExpireWaitAsync(RunRecord run)
    {
        if (run.WaitingFor is not { Deadline: { } deadline } wait) return;
        try
        {
            await Writer.AppendAsync(run.Id, run.Version, [new WaitExpired(wait.Step, wait.Reason, deadline)],
                new RunUpdate { Status = RunStatus.Queued, Claim = _scheduler.NewClaim() }, null);
        }
        catch (JournalConflictException)
        {
            return; // answered, canceled or fired elsewhere meanwhile
        }
        BureauTelemetry.WaitsExpired.Add(1);
        Log.WaitExpired(Logger, run.Id, wait.Step, wait.Reason);
        _scheduler.Schedule(run.Id, run.Agent, continuing: true);
    }

    /// <summary>
    /// The run's journal from <paramref name="afterStep"/> on, then its new entries live, without
    /// gaps or repeats, until the run ends (or <paramref name="cancellationToken"/> fires).
    /// With <paramref name="untilWaiting"/>, also stops when the run waits.
    /// </summary>
    public async IAsyncEnumerable<RunEvent> WatchAsync(string runId, long afterStep = 0, bool includeActivity = false, bool untilWaiting = false,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var live = Channel.CreateUnbounded<RunEvent>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = false });
        var published = new int[1]; // events written to the channel so far (an unbounded single-reader channel has no Count)
        using var sub = Events.Subscribe(runId, e => { Interlocked.Increment(ref published[0]); live.Writer.TryWrite(e); });
        var run = await Store.GetRunAsync(runId, cancellationToken) ?? throw new RunNotFoundException(runId);
        var last = afterStep;
        foreach (var r in await Store.ReadJournalAsync(runId, afterStep, cancellationToken))
        {
            last = r.N;
            yield return new RunEvent(runId, r);
        }
        if (run.Status.IsTerminal() && last >= run.Version) yield break;
        var refreshed = await Store.GetRunAsync(runId, cancellationToken);
        if (refreshed is not null && refreshed.Status.IsTerminal() && last >= refreshed.Version) yield break;
        if (untilWaiting && refreshed?.Status == RunStatus.Waiting && last >= refreshed.Version) yield break;

        // A call already in flight when we subscribed: its activity was published before we listened. The run may have
        // moved on since our read: the entries before the activity come first, so the stream stays in order, and the
        // activities the channel held before it (older ones) are not sent after it.
        RunEvent? current = null;
        var olderActivities = 0;
        if (includeActivity)
        {
            var before = Volatile.Read(ref published[0]); // nothing was read from the channel yet
            current = Events.CurrentActivity(runId);
            if (current is not null)
            {
                olderActivities = before;
                foreach (var r in await Store.ReadJournalAsync(runId, last, cancellationToken))
                {
                    last = r.N;
                    yield return new RunEvent(runId, r);
                    if (r.Entry is RunFinished || (untilWaiting && r.Entry is RunWaiting)) yield break;
                }
                if (ReferenceEquals(Events.CurrentActivity(runId), current)) yield return current;
            }
        }

        await foreach (var e in live.Reader.ReadAllAsync(cancellationToken))
        {
            var older = olderActivities > 0;
            if (older) olderActivities--;
            if (e.Record is null)
            {
                if (includeActivity && !older && !ReferenceEquals(e, current)) yield return e;
                continue;
            }
            if (e.Record.N <= last) { if (e.Record.Entry is RunFinished || (untilWaiting && e.Record.Entry is RunWaiting)) yield break; continue; }
            if (e.Record.N > last + 1)
            {
                // Missed entries (published before we subscribed but committed after our read): read them.
                foreach (var r in await Store.ReadJournalAsync(runId, last, cancellationToken))
                {
                    if (r.N >= e.Record.N) break;
                    last = r.N;
                    yield return new RunEvent(runId, r);
                }
            }
            last = e.Record.N;
            yield return e;
            if (e.Record.Entry is RunFinished) yield break;
            if (untilWaiting && e.Record.Entry is RunWaiting) yield break;
        }
    }

    /// <summary>Waits until the run ends or waits, and returns it then.</summary>
    public async Task<RunRecord> WaitAsync(string runId, CancellationToken cancellationToken = default)
    {
        await foreach (var _ in WatchAsync(runId, long.MaxValue - 1, untilWaiting: true, cancellationToken: cancellationToken))
        {
        }
        return await Store.GetRunAsync(runId, cancellationToken) ?? throw new RunNotFoundException(runId);
    }

    /// <summary>Runs one execution of a run here (activators call this): loads it, picks its kind's executor, journals a cancellation.</summary>
    internal async Task<RunStatus> ExecuteHereAsync(RunExecution execution)
    {
        var runId = execution.RunId;
        RunContext? context = null;
        try
        {
            var run = Writer.TakeFresh(runId) ?? await Store.GetRunAsync(runId, CancellationToken.None)
                ?? throw new InvalidOperationException($"run {runId} does not exist");
            if (run.Status.IsTerminal()) return run.Status;
            if (run.Status == RunStatus.Waiting) return RunStatus.Waiting;
            var journal = run.Version == 1 && run.Status == RunStatus.Queued
                ? FreshJournal(run)
                : await Store.ReadJournalAsync(runId, 0, CancellationToken.None);
            context = new RunContext(this, run, journal, execution);
            if (!_executors.TryGetValue(run.Kind, out var executor))
            {
                return await FinishUnrunnableAsync(context, $"run kind '{run.Kind}' is not registered in this host");
            }
            var fresh = run.Status == RunStatus.Queued && run.Version == 1;
            if (fresh) _ = MarkRunningAsync(runId);
            RunStatus status;
            if (BureauTelemetry.ActivitySource.HasListeners())
            {
                // Records written during the execution (by Bureau, tools, model clients) carry the run and step; only
                // with telemetry on or debug logging: a scope costs about 1 KB per execution.
                using var scope = Logger.BeginScope(new RunLogScope(context));
                using var span = RunTelemetry.StartExecution(run, journal, await TraceParentAsync(run, journal, fresh), fresh, TimeProvider.GetUtcNow());
                status = await executor.ExecuteAsync(context);
                RunTelemetry.EndExecution(span, status);
            }
            else if (Logger.IsEnabled(LogLevel.Debug))
            {
                using var scope = Logger.BeginScope(new RunLogScope(context));
                status = await executor.ExecuteAsync(context);
            }
            else status = await executor.ExecuteAsync(context);
            if (status.IsTerminal()) await RunEndedAsync(run, failed: status == RunStatus.Failed);
            return status;
        }
        catch (OperationCanceledException) when (execution.Cancel.IsCancellationRequested && context is not null)
        {
            RunStatus status;
            try
            {
                status = await FinishCanceledAsync(context, execution);
            }
            catch (JournalConflictException ex)
            {
                Log.StaleWriter(Logger, runId, ex.ExpectedVersion, ex);
                return (await Store.GetRunAsync(runId, CancellationToken.None))?.Status ?? RunStatus.Failed;
            }
            await RunEndedAsync(context.Run, execution.CancelActor, canceled: true);
            return status;
        }
        catch (JournalConflictException ex)
        {
            Log.StaleWriter(Logger, runId, ex.ExpectedVersion, ex);
            return (await Store.GetRunAsync(runId, CancellationToken.None))?.Status ?? RunStatus.Failed;
        }
    }

    /// <summary>
    /// The journaled caller's trace context of a run executing now. A fresh run accepted here takes it from the
    /// hand-off <see cref="AcceptAsync"/> left (no journal read); one accepted elsewhere or before a restart reads it.
    /// </summary>
    private async Task<string?> TraceParentAsync(RunRecord run, IReadOnlyList<JournalRecord> journal, bool fresh)
    {
        if (!fresh) return journal.Count > 0 && journal[0].Entry is RunStarted s ? s.TraceParent : null;
        if (_traceHandOff.TryRemove(run.Id, out var handed))
        {
            Interlocked.Decrement(ref _traceHandOffCount);
            return handed;
        }
        var stored = await Store.ReadJournalAsync(run.Id, 0, CancellationToken.None);
        return stored.Count > 0 && stored[0].Entry is RunStarted started ? started.TraceParent : null;
    }

    /// <summary>The trace id of a tree of runs submitted with no caller's context.</summary>
    internal static System.Diagnostics.ActivityTraceId TraceIdOf(string rootRunId) => RunTelemetry.TraceIdOf(rootRunId);

    /// <summary>The span id standing for a run with no caller's context.</summary>
    internal static System.Diagnostics.ActivitySpanId SpanIdOf(string runId) => RunTelemetry.SpanIdOf(runId);

    /// <summary>A run just accepted has exactly one entry, made from its row: no journal read.</summary>
    private static JournalRecord[] FreshJournal(RunRecord run) =>
        [new JournalRecord(1, run.CreatedAt, new RunStarted(run.Agent, run.Input, run.Actor,
            run.Kind == RunKinds.Agent ? null : run.Kind, run.ParentRunId, run.RootRunId == run.Id ? null : run.RootRunId))];

    private async Task MarkRunningAsync(string runId)
    {
        try
        {
            await Store.MarkRunningAsync(runId, TimeProvider.GetUtcNow(), CancellationToken.None);
        }
        catch (Exception ex)
        {
            Log.MarkRunningFailed(Logger, runId, ex);
        }
    }

    private static async Task<RunStatus> FinishUnrunnableAsync(RunContext context, string error)
    {
        await context.AppendAsync([new RunFinished(RunStatus.Failed, null, error, "error",
                new RunFailure("internal", null, context.Version + 1, null, null, "the run cannot execute in this host (its agent or kind is not deployed); deploy it, or cancel the run"))],
            new RunUpdate { Status = RunStatus.Failed, Error = error, Outcome = "error" });
        return RunStatus.Failed;
    }

    private async Task<RunStatus> FinishCanceledAsync(RunContext context, RunExecution execution)
    {
        var inFlight = context.InFlight is null ? Array.Empty<string>() : [context.InFlight];
        var (actor, reason) = (execution.CancelActor, execution.CancelReason);
        var error = CancelError(actor, reason);
        await context.AppendAsync(
            [new RunCanceled(reason, actor, inFlight), new RunFinished(RunStatus.Canceled, null, error, "canceled",
                new RunFailure("canceled", null, context.Version + 1, null, null, error))],
            new RunUpdate { Status = RunStatus.Canceled, Error = error, Outcome = "canceled" });
        Log.Canceled(Logger, context.RunId, context.Version);
        return RunStatus.Canceled;
    }

    /// <summary>A canceled run's failure: <c>in-doubt</c> when it was waiting for a person to say whether a write took effect.</summary>
    private static RunFailure CanceledFailure(RunRecord run, string error) => run.WaitingFor is InDoubtWait d
        ? new RunFailure("in-doubt", null, d.Step, d.Tool is null ? null : "tool:" + d.Tool, null,
            $"canceled while the outcome of '{d.Tool}' (step {d.Step}, key {d.Key}) was unknown: check with the tool's owner whether it took effect")
        : new RunFailure("canceled", null, run.Version + 1, null, null, error);

    private static string CancelError(string? actor, string? reason) =>
        $"canceled{(actor is null ? "" : " by " + actor)}{(reason is null ? "" : ": " + reason)}";

    /// <summary>Ends a run whose executor threw <see cref="RunScheduler.MaxExecutorErrors"/> times in a row (a bug, not the store): failed, with the error.</summary>
    private async Task FailAfterErrorsAsync(string runId, Exception error)
    {
        var run = await Store.GetRunAsync(runId, CancellationToken.None);
        if (run is null || run.Status.IsTerminal() || run.Status == RunStatus.Waiting) return;
        var message = $"run {runId} step {run.Version + 1}: the executor failed {RunScheduler.MaxExecutorErrors} times in a row ({error.GetType().Name}: {error.Message}); see the host's log";
        try
        {
            await Writer.AppendAsync(runId, run.Version, [new RunFinished(RunStatus.Failed, null, message, "error",
                    new RunFailure("internal", null, run.Version + 1, null, RunScheduler.MaxExecutorErrors, "the host's log has each error with its stack trace; after a fix, submit the work again"))],
                new RunUpdate { Status = RunStatus.Failed, Error = message, Outcome = "error" }, null);
        }
        catch (JournalConflictException)
        {
            return; // moved on meanwhile (canceled, or another executor); nothing to end
        }
        await RunEndedAsync(run, failed: true);
    }

    /// <summary>
    /// A run ended: its parent (a team waiting on its children) is woken, and when it was canceled,
    /// its unfinished children are canceled too. Best effort: a parent's wait re-checks its children
    /// on its own deadline, so a crash here loses nothing.
    /// </summary>
    private async Task RunEndedAsync(RunRecord run, string? canceledBy = null, bool canceled = false, bool failed = false)
    {
        try
        {
            if (canceled)
            {
                CrashPoints.Hit("before-cancel-children");
                await CancelChildrenAsync(run.Id, canceledBy);
            }
            if (run.ParentRunId is not null) await WakeParentAsync(run.ParentRunId, run.Id);
            if ((canceled || failed) && run.Kind == RunKinds.Agent && Definitions.Agents.TryGetValue(run.Agent, out var agent) && agent.RollbackOnFailure
                && _executors.ContainsKey(RunKinds.Rollback))
            {
                CrashPoints.Hit("before-rollback");
                await RollbackAsync(run.Id, RollbackOnFailureActor);
            }
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            Log.RunEndedHookFailed(Logger, run.Id, ex);
        }
    }

    /// <summary>Answers the parent's wait for its children (once: the append expects its version) and requeues it.</summary>
    private async Task WakeParentAsync(string parentId, string childId)
    {
        for (var attempt = 0; attempt < 8; attempt++)
        {
            var parent = await Store.GetRunAsync(parentId, CancellationToken.None);
            if (parent is null || parent.Status != RunStatus.Waiting || parent.WaitingFor is not ChildRunsWait wait || !wait.RunIds.Contains(childId)) return;
            try
            {
                await Writer.AppendAsync(parentId, parent.Version, [new WaitAnswered(wait.Step, wait.Reason, childId, "child run")],
                    new RunUpdate { Status = RunStatus.Queued, Claim = _scheduler.NewClaim() }, null);
                _scheduler.Schedule(parentId, parent.Agent, continuing: true);
                return;
            }
            catch (JournalConflictException)
            {
                // A sibling woke it, or it moved on: read again.
            }
        }
    }

    /// <summary>
    /// Rolls a finished run back: starts a <c>rollback</c> run (a child of it) that compensates its
    /// completed writes, newest first, with each write tool's declared compensation. Once per run:
    /// asking again returns the same rollback run.
    /// </summary>
    /// <exception cref="RunNotFoundException">No such run.</exception>
    /// <exception cref="RunStateConflictException">The run has not finished (cancel it first), or is itself a rollback.</exception>
    public async Task<SubmitResult> RollbackAsync(string runId, string? actor = null, CancellationToken cancellationToken = default)
    {
        var run = await Store.GetRunAsync(runId, cancellationToken) ?? throw new RunNotFoundException(runId);
        if (!run.Status.IsTerminal())
            throw new RunStateConflictException(runId, run.Status, $"run {runId} is {run.Status.ToWireName()}: only a finished run can be rolled back (cancel it first)");
        if (run.Kind != RunKinds.Agent)
            throw new RunStateConflictException(runId, run.Status, $"run {runId} is a {run.Kind} run; roll back the agent runs that made the writes");
        // One rollback at a time; after a failed one, a new one (it skips what the earlier ones compensated).
        var earlier = (await Store.ListRunsAsync(new RunQuery { ParentRunId = runId, Limit = 1000 }, cancellationToken)).Items.Where(r => r.Kind == RunKinds.Rollback).ToList();
        if (earlier.FirstOrDefault(r => r.Status != RunStatus.Failed) is { } current) return new SubmitResult(current, Created: false);
        var key = earlier.Count == 0 ? "rollback:" + runId : $"rollback:{runId}:{earlier.Count + 1}";
        // Not through SubmitAsync: the rollback names a run, not a target this process must deploy (a
        // CLI without the manifest queues it for the host serving the database, which runs it).
        return await AcceptAsync(new RunRequest(run.Agent, runId, key, actor, RunKinds.Rollback, runId), run.RootRunId ?? run.Id, cancellationToken);
    }

    /// <summary>Cancels every unfinished child of a canceled run (their children follow in turn).</summary>
    private async Task CancelChildrenAsync(string runId, string? actor)
    {
        string? cursor = null;
        do
        {
            var page = await Store.ListRunsAsync(new RunQuery { ParentRunId = runId, Limit = 200, Cursor = cursor }, CancellationToken.None);
            foreach (var child in page.Items)
            {
                if (child.Status.IsTerminal()) continue;
                try
                {
                    await Activator.CancelAsync(child.Id, actor, $"its parent run {runId} was canceled");
                }
                catch (Exception ex) when (ex is RunStateConflictException or RunNotFoundException)
                {
                    // Ended meanwhile.
                }
            }
            cursor = page.Next;
        }
        while (cursor is not null);
    }

    private IDisposable? _relayed;

    /// <summary>How long a node waits for another to say it executes a run it was asked to cancel.</summary>
    internal TimeSpan RemoteCancelAnswerWait { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>How long a node waits for the node that executes a run to journal its cancellation, before journaling it itself.</summary>
    internal TimeSpan RemoteCancelWait { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Carries cancels to the node that executes a run (a cluster without Orleans); null: none, set at start.</summary>
    internal IRunCommandRelay? CommandRelay { get; private set; }

    /// <summary>
    /// Cancels a running run that another node executes: asks the nodes, and when one says it has the run, waits for it
    /// to journal the cancellation. Null when no node has it or it took longer than <see cref="RemoteCancelWait"/>:
    /// the caller journals the cancellation itself (the other executor's next append then conflicts and it stops).
    /// </summary>
    internal async Task<RunStatus?> CancelElsewhereAsync(IRunCommandRelay relay, string runId, string? actor, string? reason, CancellationToken cancellationToken)
    {
        var run = await Store.GetRunAsync(runId, cancellationToken);
        if (run is not { Status: RunStatus.Running }) return null;
        if (!await relay.RequestCancelAsync(runId, actor, reason, RemoteCancelAnswerWait, cancellationToken)) return null;
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(RemoteCancelWait);
        try
        {
            await foreach (var _ in WatchAsync(runId, run.Version, untilWaiting: true, cancellationToken: deadline.Token))
            {
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return null;
        }
        var after = await Store.GetRunAsync(runId, cancellationToken);
        return after is not null && after.Status.IsTerminal() ? after.Status : null;
    }

    /// <summary>Journals the cancellation of a run that no executor is running (activators call this).</summary>
    internal async Task<RunStatus> CancelIdleAsync(string runId, string? actor, string? reason, CancellationToken cancellationToken = default)
    {
        for (var attempt = 0; ; attempt++)
        {
            var run = await Store.GetRunAsync(runId, cancellationToken) ?? throw new RunNotFoundException(runId);
            if (run.Status.IsTerminal()) return run.Status;
            var error = CancelError(actor, reason);
            try
            {
                await Writer.AppendAsync(runId, run.Version,
                    [new RunCanceled(reason, actor, []), new RunFinished(RunStatus.Canceled, null, error, "canceled", CanceledFailure(run, error))],
                    new RunUpdate { Status = RunStatus.Canceled, Error = error, Outcome = "canceled" }, null);
                await RunEndedAsync(run, actor, canceled: true);
                return RunStatus.Canceled;
            }
            catch (JournalConflictException) when (attempt < 5)
            {
                // Something appended meanwhile; read again.
            }
        }
    }

    private static partial class Log
    {
        [LoggerMessage(21, LogLevel.Warning, "Run {RunId}: another executor appended first (expected version {Step}); this one stops")]
        public static partial void StaleWriter(ILogger logger, string runId, long step, Exception ex);

        [LoggerMessage(9, LogLevel.Information, "Run {RunId} step {Step}: canceled")]
        public static partial void Canceled(ILogger logger, string runId, long step);

        [LoggerMessage(10, LogLevel.Debug, "Run {RunId}: marking it running failed")]
        public static partial void MarkRunningFailed(ILogger logger, string runId, Exception ex);

        [LoggerMessage(28, LogLevel.Warning, "Run {RunId} failed without the rollback its agent asks for (the host stopped in between); starting it now")]
        public static partial void RollbackSwept(ILogger logger, string runId);

        [LoggerMessage(46, LogLevel.Warning, "Run {RunId} was still unfinished although its parent run {ParentRunId} was canceled (the host stopped in between); canceling it now")]
        public static partial void OrphanSwept(ILogger logger, string runId, string parentRunId);

        [LoggerMessage(47, LogLevel.Error, "The start-up sweep for children of canceled runs stopped; POST /v1/runs/ID/cancel cancels one by hand")]
        public static partial void OrphanSweepFailed(ILogger logger, Exception ex);

        [LoggerMessage(29, LogLevel.Error, "The start-up sweep for rollbacks of failed runs stopped; `bureau runs rollback ID` starts one by hand")]
        public static partial void RollbackSweepFailed(ILogger logger, Exception ex);

        [LoggerMessage(27, LogLevel.Warning, "Run {RunId}: waking its parent or canceling its children failed (the parent re-checks on its own)")]
        public static partial void RunEndedHookFailed(ILogger logger, string runId, Exception ex);

        [LoggerMessage(24, LogLevel.Information, "Run {RunId} step {Step}: the {Reason} wait's deadline passed with no answer")]
        public static partial void WaitExpired(ILogger logger, string runId, long step, string reason);
    }
}
