using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Bureau.Engine;
using Bureau.Tools;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Bureau;

/// <summary>Options of the run engine.</summary>
public sealed class BureauEngineOptions
{
    /// <summary>Most runs executing at once in this process; further runs wait in the queue. Default 64.</summary>
    public int MaxConcurrentRuns { get; set; } = 64;

    /// <summary>On shutdown, how long in-flight steps get to reach the journal. Default 10 s.</summary>
    public TimeSpan ShutdownGrace { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Makes run ids; default: time-ordered, 18 characters (<see cref="RunIds.New"/>).</summary>
    public Func<string>? RunIdGenerator { get; set; }

    /// <summary>Throws if an option is out of range; the message names the option.</summary>
    public void Validate()
    {
        if (MaxConcurrentRuns < 1) throw new ArgumentOutOfRangeException(nameof(MaxConcurrentRuns), MaxConcurrentRuns, "Bureau:MaxConcurrentRuns must be at least 1");
        if (ShutdownGrace < TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(ShutdownGrace), ShutdownGrace, "Bureau:ShutdownGrace must not be negative");
    }
}

/// <summary>A request to start a run.</summary>
/// <param name="Agent">The agent's name.</param>
/// <param name="Input">The input text.</param>
/// <param name="IdempotencyKey">Optional: a second request with the same key returns the first run and starts nothing.</param>
/// <param name="Actor">Who or what asks (recorded in the journal).</param>
public sealed record RunRequest(string Agent, string Input, string? IdempotencyKey = null, string? Actor = null);

/// <summary>The named agent is not deployed.</summary>
public sealed class UnknownAgentException(string agent, IEnumerable<string> known)
    : Exception($"agent '{agent}' is not deployed; deployed agents: {string.Join(", ", known.Order(StringComparer.Ordinal))}")
{
    /// <summary>The name asked for.</summary>
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
/// Bureau's run engine for one process: accepts runs durably, schedules them under a concurrency
/// limit, executes them through an <see cref="IRunActivator"/>, and resumes unfinished runs on start.
/// </summary>
public sealed partial class BureauEngine : IAsyncDisposable
{
    private readonly Channel<string> _ready = Channel.CreateUnbounded<string>(new UnboundedChannelOptions { SingleReader = true });
    private readonly ConcurrentDictionary<string, byte> _scheduled = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, (string? Actor, string? Reason)> _cancelReasons = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _slots;
    private readonly CancellationTokenSource _stopping = new();
    private readonly Func<string> _newId;
    private readonly BureauEngineOptions _options;
    private Task? _dispatcher;
    private int _active;

    /// <summary>Builds the engine: checks every agent's model and tools and prepares them.</summary>
    /// <exception cref="ArgumentException">An agent names a model or tool that is not defined.</exception>
    public BureauEngine(
        BureauDefinitions definitions,
        IRunStore store,
        Func<ModelDefinition, IChatClient> chatClients,
        BureauEngineOptions? options = null,
        ToolFactory? toolFactory = null,
        TimeProvider? timeProvider = null,
        ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(definitions);
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(chatClients);
        _options = options ?? new BureauEngineOptions();
        _options.Validate();
        Definitions = definitions;
        Store = store;
        TimeProvider = timeProvider ?? TimeProvider.System;
        Logger = (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger("Bureau.Engine");
        _newId = _options.RunIdGenerator ?? (() => RunIds.New(TimeProvider));
        _slots = new SemaphoreSlim(_options.MaxConcurrentRuns);
        Activator = new LocalRunActivator(this);

        var factory = toolFactory ?? new ToolFactory();
        var tools = new Dictionary<string, BureauTool>(StringComparer.Ordinal);
        foreach (var t in definitions.Tools.Values) tools[t.Name] = factory.Create(t);
        ToolsByName = tools;
        var validator = new ToolCallValidator(tools);
        var clients = new Dictionary<string, IChatClient>(StringComparer.Ordinal);
        var agents = new Dictionary<string, AgentRuntime>(StringComparer.Ordinal);
        foreach (var a in definitions.Agents.Values)
        {
            if (!definitions.Models.TryGetValue(a.Model, out var model))
                throw new ArgumentException($"agent '{a.Name}': model '{a.Model}' is not defined", nameof(definitions));
            var agentTools = new List<BureauTool>();
            foreach (var name in a.Tools)
            {
                if (!tools.TryGetValue(name, out var tool))
                    throw new ArgumentException($"agent '{a.Name}': tool '{name}' is not defined", nameof(definitions));
                agentTools.Add(tool);
            }
            if (!clients.TryGetValue(model.Name, out var client)) clients[model.Name] = client = chatClients(model);
            agents[a.Name] = new AgentRuntime(a, model, client, agentTools, validator);
        }
        Agents = agents;
    }

    /// <summary>What is deployed.</summary>
    public BureauDefinitions Definitions { get; }

    /// <summary>The store.</summary>
    public IRunStore Store { get; }

    /// <summary>Live events of runs executing in this process.</summary>
    public RunEventHub Hub { get; } = new();

    /// <summary>Where executors live; replace before <see cref="StartAsync"/> (Bureau.Orleans does).</summary>
    public IRunActivator Activator { get; set; }

    /// <summary>Runs executing now in this process.</summary>
    public int ActiveRuns => Volatile.Read(ref _active);

    /// <summary>True once the engine has resumed its unfinished runs (they are scheduled).</summary>
    public bool IsReady { get; private set; }

    internal TimeProvider TimeProvider { get; }
    internal ILogger Logger { get; }
    internal IReadOnlyDictionary<string, AgentRuntime> Agents { get; }
    internal IReadOnlyDictionary<string, BureauTool> ToolsByName { get; }
    internal bool IsStopping => _stopping.IsCancellationRequested;

    /// <summary>Starts dispatching, and schedules every run found queued or running (they resume from their journals).</summary>
    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        if (_dispatcher is not null) return;
        var unfinished = await Store.ListUnfinishedAsync(int.MaxValue, cancellationToken);
        foreach (var run in unfinished) Schedule(run.Id);
        if (unfinished.Count > 0) Log.ResumingRuns(Logger, unfinished.Count);
        _dispatcher = Task.Run(DispatchAsync, CancellationToken.None);
        IsReady = true;
    }

    /// <summary>
    /// Stops gracefully: no new run starts, executing runs stop at their next step boundary (what they
    /// finished is journaled), waiting at most <see cref="BureauEngineOptions.ShutdownGrace"/>. The next
    /// start resumes them.
    /// </summary>
    public async Task StopAsync(CancellationToken cancellationToken = default)
    {
        if (_stopping.IsCancellationRequested) return;
        IsReady = false;
        await _stopping.CancelAsync();
        _ready.Writer.TryComplete();
        if (_dispatcher is not null) await _dispatcher;
        var deadline = TimeProvider.GetUtcNow() + _options.ShutdownGrace;
        while (ActiveRuns > 0 && TimeProvider.GetUtcNow() < deadline && !cancellationToken.IsCancellationRequested)
        {
            await Task.Delay(TimeSpan.FromMilliseconds(20), TimeProvider, cancellationToken);
        }
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        _stopping.Dispose();
    }

    /// <summary>
    /// Accepts a run: durable before this returns. With an idempotency key that was seen before,
    /// returns that run (<see cref="SubmitResult.Created"/> false) and starts nothing.
    /// </summary>
    /// <exception cref="UnknownAgentException">The agent is not deployed; nothing was written.</exception>
    public async Task<SubmitResult> SubmitAsync(RunRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (!Agents.ContainsKey(request.Agent)) throw new UnknownAgentException(request.Agent, Agents.Keys);
        ArgumentNullException.ThrowIfNull(request.Input);
        var result = await Store.SubmitAsync(new NewRun
        {
            Id = _newId(),
            Agent = request.Agent,
            Input = request.Input,
            CreatedAt = TimeProvider.GetUtcNow(),
            IdempotencyKey = request.IdempotencyKey,
            Actor = request.Actor,
        }, cancellationToken);
        if (result.Run.Status is RunStatus.Queued or RunStatus.Running) Schedule(result.Run.Id);
        return result;
    }

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
    public async Task<RunRecord> ResolveAsync(string runId, long step, StepResolution resolution, string? content = null, string? actor = null, CancellationToken cancellationToken = default)
    {
        var run = await Store.GetRunAsync(runId, cancellationToken) ?? throw new RunNotFoundException(runId);
        if (run.Status != RunStatus.Waiting || run.WaitingFor is null)
            throw new RunStateConflictException(runId, run.Status, $"run {runId} is {run.Status.ToWireName()}, not waiting; there is nothing to resolve", step);
        if (run.WaitingFor.Step != step)
            throw new RunStateConflictException(runId, run.Status, $"run {runId} waits on step {run.WaitingFor.Step}, not step {step}", step);
        try
        {
            await Store.AppendAsync(new AppendRequest
            {
                RunId = runId,
                ExpectedVersion = run.Version,
                Entries = [new StepResolved(step, resolution, content, actor)],
                At = TimeProvider.GetUtcNow(),
                Update = new RunUpdate { Status = RunStatus.Queued },
            }, cancellationToken);
        }
        catch (JournalConflictException)
        {
            throw new RunStateConflictException(runId, run.Status, $"run {runId} changed while resolving step {step} (someone else resolved or canceled it); read it again", step);
        }
        Hub.Publish(runId, [new JournalRecord(run.Version + 1, TimeProvider.GetUtcNow(), new StepResolved(step, resolution, content, actor))]);
        Schedule(runId);
        return (await Store.GetRunAsync(runId, cancellationToken))!;
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
        using var sub = Hub.Subscribe(runId, e => live.Writer.TryWrite(e));
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

        // A call already in flight when we subscribed: its activity was published before we listened.
        var current = includeActivity ? Hub.CurrentActivity(runId) : null;
        if (current is not null) yield return current;

        await foreach (var e in live.Reader.ReadAllAsync(cancellationToken))
        {
            if (e.Record is null)
            {
                if (includeActivity && !ReferenceEquals(e, current)) yield return e;
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

    /// <summary>Waits until the run ends or waits for a person, and returns it then.</summary>
    public async Task<RunRecord> WaitAsync(string runId, CancellationToken cancellationToken = default)
    {
        await foreach (var _ in WatchAsync(runId, long.MaxValue - 1, untilWaiting: true, cancellationToken: cancellationToken))
        {
        }
        return await Store.GetRunAsync(runId, cancellationToken) ?? throw new RunNotFoundException(runId);
    }

    /// <summary>Runs the executor of <paramref name="runId"/> here (activators call this).</summary>
    public async Task<RunStatus> ExecuteHereAsync(string runId, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _active);
        try
        {
            return await new RunExecutor(this, runId, cancellationToken).ExecuteAsync();
        }
        catch (JournalConflictException ex)
        {
            Log.StaleWriter(Logger, runId, ex.ExpectedVersion, ex);
            return (await Store.GetRunAsync(runId, CancellationToken.None))?.Status ?? RunStatus.Failed;
        }
        finally
        {
            Interlocked.Decrement(ref _active);
        }
    }

    /// <summary>Journals the cancellation of a run that no executor is running (activators call this).</summary>
    public async Task<RunStatus> CancelIdleAsync(string runId, string? actor, string? reason, CancellationToken cancellationToken = default)
    {
        for (var attempt = 0; ; attempt++)
        {
            var run = await Store.GetRunAsync(runId, cancellationToken) ?? throw new RunNotFoundException(runId);
            if (run.Status.IsTerminal()) return run.Status;
            var error = $"canceled{(actor is null ? "" : " by " + actor)}{(reason is null ? "" : ": " + reason)}";
            JournalEntry[] entries = [new RunCanceled(reason, actor, []), new RunFinished(RunStatus.Canceled, null, error, "canceled")];
            try
            {
                var at = TimeProvider.GetUtcNow();
                await Store.AppendAsync(new AppendRequest
                {
                    RunId = runId,
                    ExpectedVersion = run.Version,
                    Entries = entries,
                    At = at,
                    Update = new RunUpdate { Status = RunStatus.Canceled, Error = error, Outcome = "canceled" },
                }, cancellationToken);
                Hub.Publish(runId, [new JournalRecord(run.Version + 1, at, entries[0]), new JournalRecord(run.Version + 2, at, entries[1])]);
                return RunStatus.Canceled;
            }
            catch (JournalConflictException) when (attempt < 5)
            {
                // Something appended meanwhile; read again.
            }
        }
    }

    /// <summary>Records who cancels a run and why, for its executor to journal (activators call this before canceling it).</summary>
    public void SetCancelReason(string runId, string? actor, string? reason) => _cancelReasons[runId] = (actor, reason);

    internal (string? Actor, string? Reason) TakeCancelReason(string runId) => _cancelReasons.TryRemove(runId, out var r) ? r : default;

    /// <summary>Queues a run for execution unless it is already queued or executing here.</summary>
    internal void Schedule(string runId)
    {
        if (_scheduled.TryAdd(runId, 0) && !_ready.Writer.TryWrite(runId)) _scheduled.TryRemove(runId, out _);
    }

    private async Task DispatchAsync()
    {
        var reader = _ready.Reader;
        try
        {
            while (await reader.WaitToReadAsync(_stopping.Token))
            {
                while (reader.TryRead(out var runId))
                {
                    await _slots.WaitAsync(_stopping.Token);
                    _ = RunSlotAsync(runId);
                }
            }
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
        {
        }
    }

    private async Task RunSlotAsync(string runId)
    {
        try
        {
            await Activator.ExecuteAsync(runId, CancellationToken.None);
        }
        catch (Exception ex)
        {
            Log.ExecutorFailed(Logger, runId, ex);
        }
        finally
        {
            _scheduled.TryRemove(runId, out _);
            _slots.Release();
        }
    }

    private static partial class Log
    {
        [LoggerMessage(20, LogLevel.Information, "Resuming {Count} unfinished runs from their journals")]
        public static partial void ResumingRuns(ILogger logger, int count);

        [LoggerMessage(21, LogLevel.Warning, "Run {RunId}: another executor appended first (expected version {Step}); this one stops")]
        public static partial void StaleWriter(ILogger logger, string runId, long step, Exception ex);

        [LoggerMessage(22, LogLevel.Error, "Run {RunId}: the executor failed")]
        public static partial void ExecutorFailed(ILogger logger, string runId, Exception ex);
    }
}

/// <summary>Keeps one executor per run in this process.</summary>
internal sealed class LocalRunActivator(BureauEngine engine) : IRunActivator
{
    private readonly ConcurrentDictionary<string, Active> _active = new(StringComparer.Ordinal);

    private sealed class Active
    {
        public readonly CancellationTokenSource Cancel = new();
        public Task<RunStatus> Task = null!;
    }

    public Task<RunStatus> ExecuteAsync(string runId, CancellationToken cancellationToken = default)
    {
        var created = new Active();
        var active = _active.GetOrAdd(runId, created);
        if (active != created) return active.Task;
        created.Task = RunAsync(runId, created);
        return created.Task;
    }

    private async Task<RunStatus> RunAsync(string runId, Active a)
    {
        await Task.Yield();
        try
        {
            return await engine.ExecuteHereAsync(runId, a.Cancel.Token);
        }
        finally
        {
            _active.TryRemove(new KeyValuePair<string, Active>(runId, a));
            a.Cancel.Dispose();
        }
    }

    public async Task<RunStatus> CancelAsync(string runId, string? actor, string? reason, CancellationToken cancellationToken = default)
    {
        engine.SetCancelReason(runId, actor, reason);
        if (_active.TryGetValue(runId, out var a))
        {
            try { await a.Cancel.CancelAsync(); } catch (ObjectDisposedException) { }
            await a.Task.WaitAsync(cancellationToken);
            var run = await engine.Store.GetRunAsync(runId, cancellationToken);
            if (run is not null && run.Status.IsTerminal()) return run.Status;
        }
        return await engine.CancelIdleAsync(runId, actor, reason, cancellationToken);
    }
}
