using System.Collections.Concurrent;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;

namespace Bureau.Engine;

/// <summary>
/// The scheduler of one node: a queue of runs to execute, a concurrency limit, and the store-side
/// claims (leases) that say which node executes which unfinished run. It claims runs in batches as
/// its queue drains (never every unfinished run at once), renews its leases, and picks up the runs of
/// a node whose lease ran out. New runs are claimed by the node that accepts them.
/// </summary>
internal sealed partial class RunScheduler
{
    private readonly ReadyQueue _ready;
    // Striped wider than the default (one lock per core): every execution adds and removes here.
    private readonly ConcurrentDictionary<string, byte> _scheduled = new(concurrencyLevel: 64, capacity: 1024, StringComparer.Ordinal);
    private int _scheduledCount; // _scheduled.Count takes every lock of the dictionary: kept here instead
    private readonly CancellationTokenSource _stopping = new();
    private readonly SemaphoreSlim _slots;
    private readonly IRunStore _store;
    private readonly BureauOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly int _backlog;
    private readonly SemaphoreSlim _wakeClaimer = new(0, 1);
    private readonly ConcurrentDictionary<string, int> _failures = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, byte> _again = new(StringComparer.Ordinal);
    private CancellationTokenSource _retrySoon = new();
    private Func<string, Task>? _execute;
    private Func<string, Exception, Task>? _giveUp;
    private Task? _dispatcher;
    private Task? _claimer;
    private Task? _slotPoller;
    private readonly IAgentSlots? _clusterSlots;
    // The runs holding a cluster slot of their agent on this node (their leases are renewed with the claims), run -> agent.
    private readonly ConcurrentDictionary<string, string> _clusterHeld = new(StringComparer.Ordinal);
    private int _active;
    private TaskCompletionSource? _idle;

    /// <param name="store">The store of runs and claims.</param>
    /// <param name="options">The runtime's options.</param>
    /// <param name="time">The clock.</param>
    /// <param name="logger">Where it logs.</param>
    /// <param name="agentLimitOf">The concurrency limit of an agent or team (null: none); null when no agent has one.</param>
    /// <param name="clusterSlots">
    /// The slots of limited agents across the nodes sharing the store (decision 0056); null for a store of one process, where
    /// the count here is the deployment's. Consulted only while <paramref name="agentLimitOf"/> is set.
    /// </param>
    public RunScheduler(IRunStore store, BureauOptions options, TimeProvider time, ILogger logger, Func<string, int?>? agentLimitOf = null, IAgentSlots? clusterSlots = null)
    {
        _ready = new ReadyQueue(agentLimitOf);
        _clusterSlots = agentLimitOf is null ? null : clusterSlots;
        _store = store;
        _options = options;
        _time = time;
        _logger = logger;
        _slots = new SemaphoreSlim(options.MaxConcurrentRuns);
        _backlog = Math.Max(256, options.MaxConcurrentRuns * 4);
    }

    public int ActiveRuns => Volatile.Read(ref _active);

    /// <summary>Runs queued here for a free slot (scheduled, not executing): the <c>bureau.queue.depth</c> gauge.</summary>
    public int QueuedRuns => Math.Max(0, Volatile.Read(ref _scheduledCount) - ActiveRuns);
    public bool IsStopping => _stopping.IsCancellationRequested;

    /// <summary>A claim for runs this node accepts or requeues now.</summary>
    public RunClaim NewClaim() => new(_options.NodeId, _time.GetUtcNow() + _options.ClaimLease);

    /// <summary>
    /// An execution that threw (not one that ended the run or left it waiting) is tried again after a
    /// backoff: the run stays claimed here and resumes from its journal. A storage fault (disk full,
    /// read-only) is tried again until the store writes again; any other error at most this many
    /// times, then the run fails with the error.
    /// </summary>
    public const int MaxExecutorErrors = 5;

    /// <summary>The first wait before an execution that threw is tried again; it doubles up to <see cref="MaxRetryDelay"/>.</summary>
    public static readonly TimeSpan FirstRetryDelay = TimeSpan.FromMilliseconds(500);

    /// <summary>The longest wait before an execution that threw is tried again.</summary>
    public static readonly TimeSpan MaxRetryDelay = TimeSpan.FromSeconds(30);

    /// <summary>Runs whose last execution threw and that wait to be tried again.</summary>
    public int RetryingRuns => _failures.Count;

    /// <summary>Runs in the ready queue now, waiting for a run slot (tests: a run requeued in the background has been written).</summary>
    internal int ReadyRuns => _ready.Count;

    /// <summary>Takes back this node's claims, claims a first batch of unfinished runs, and starts dispatching.</summary>
    /// <param name="execute">Executes a run until it ends or waits.</param>
    /// <param name="giveUp">Ends a run whose executor threw <see cref="MaxExecutorErrors"/> times (not for storage faults).</param>
    /// <param name="cancellationToken">Cancels the start.</param>
    public async Task StartAsync(Func<string, Task> execute, Func<string, Exception, Task> giveUp, CancellationToken cancellationToken)
    {
        _execute = execute;
        _giveUp = giveUp;
        await _store.ReleaseClaimsAsync(_options.NodeId, cancellationToken);
        if (_clusterSlots is not null) await _clusterSlots.ReleaseAllAsync(_options.NodeId, cancellationToken);
        var resumed = await ClaimAsync(cancellationToken);
        if (resumed > 0) Log.ResumingRuns(_logger, resumed);
        _dispatcher = Task.Run(DispatchAsync, CancellationToken.None);
        _claimer = Task.Run(ClaimLoopAsync, CancellationToken.None);
        if (_clusterSlots is not null) _slotPoller = Task.Run(SlotPollLoopAsync, CancellationToken.None);
    }

    /// <summary>
    /// How often runs set aside for their agent's limit are tried again while the agent has free slots here: slots freed on
    /// other nodes are learnt this way (decision 0056). Only with cluster slots; a poll with no run set aside does nothing.
    /// </summary>
    internal static readonly TimeSpan SlotPollInterval = TimeSpan.FromSeconds(1);

    /// <summary>
    /// How long a run refused a cluster slot keeps its place among the agent's waiting runs without trying again (its tries
    /// come with the polls): a run no longer tried, or whose node died, stops holding others back after this.
    /// </summary>
    internal static readonly TimeSpan SlotWaitLease = TimeSpan.FromSeconds(5);

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_stopping.IsCancellationRequested) return;
        await _stopping.CancelAsync();
        _ready.Complete();
        if (_dispatcher is not null) await _dispatcher;
        if (_claimer is not null) await _claimer;
        if (_slotPoller is not null) await _slotPoller;
        // Wait for the executing runs to reach a step boundary, at most the grace: woken by the last one ending
        // (not by polling the clock, which may be a test's fake clock that never moves).
        var idle = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Volatile.Write(ref _idle, idle);
        if (ActiveRuns == 0) idle.TrySetResult();
        if (!idle.Task.IsCompleted && _options.ShutdownGrace > TimeSpan.Zero && !cancellationToken.IsCancellationRequested)
        {
            using var grace = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            await Task.WhenAny(idle.Task, Task.Delay(_options.ShutdownGrace, _time, grace.Token));
            await grace.CancelAsync();
        }
    }

    /// <summary>
    /// Queues a run for execution here. A run already queued or executing here is not queued twice;
    /// one executing is executed once more after this execution ends (it was answered, woken by a
    /// child, or requeued while its executor was finishing: that execution may have missed it).
    /// </summary>
    /// <param name="runId">The run.</param>
    /// <param name="agent">Its agent or team, when the caller knows it (per-agent concurrency limits need it).</param>
    /// <param name="continuing">
    /// It continues work already started (a run woken after a wait, a child of a running run): it executes before the
    /// runs of its priority that have not started (decision 0057).
    /// </param>
    public void Schedule(string runId, string? agent = null, bool continuing = false)
    {
        while (true)
        {
            if (AddScheduled(runId))
            {
                // Only once it is ours to queue: Done forgets a run's agent before it unschedules the run.
                if (agent is not null) _ready.SetAgent(runId, agent);
                if (!_ready.TryWrite(runId, continuing)) RemoveScheduled(runId);
                return;
            }
            _again[runId] = 0;
            // The slot executing it sees the flag when it ends (Done)...
            if (_scheduled.ContainsKey(runId)) return;
            // ...unless it ended between our TryAdd and our flag: whoever takes the flag back schedules it.
            if (!_again.TryRemove(runId, out _)) return;
        }
    }

    /// <summary>
    /// The last claim found fewer unclaimed runs than it had room for: a run ending here then does not wake the claimer
    /// (each wake is a query in the store's writer, once per finished run while the backlog is low). Runs this node
    /// accepts are claimed as they are accepted; unclaimed ones appear only when another node's claims run out or are
    /// released, which the periodic claim (a third of the lease) and <see cref="ClaimSoon"/> pick up.
    /// </summary>
    private volatile bool _drained;

    private async Task<int> ClaimAsync(CancellationToken ct)
    {
        var total = 0;
        while (!_stopping.IsCancellationRequested)
        {
            var room = _backlog - Volatile.Read(ref _scheduledCount);
            if (room <= 0)
            {
                _drained = false;
                break;
            }
            var ids = await _store.ClaimAsync(NewClaim(), _time.GetUtcNow(), room, ct);
            foreach (var id in ids) Schedule(id, _ready.Limited ? await AgentOfAsync(id, ct) : null);
            total += ids.Count;
            _drained = ids.Count < room;
            if (_drained) break;
        }
        return total;
    }

    private async Task ClaimLoopAsync()
    {
        var renewEvery = _options.ClaimLease / 3;
        var lastRenew = _time.GetUtcNow();
        while (!_stopping.IsCancellationRequested)
        {
            try
            {
                // Woken when runs finish and the backlog ran low, else every renewal period.
                using (var round = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token))
                {
                    await Task.WhenAny(_wakeClaimer.WaitAsync(round.Token), Task.Delay(renewEvery, _time, round.Token));
                    await round.CancelAsync();
                }
                if (_stopping.IsCancellationRequested) return;
                if (_time.GetUtcNow() - lastRenew >= renewEvery)
                {
                    await _store.RenewClaimsAsync(NewClaim(), _stopping.Token);
                    lastRenew = _time.GetUtcNow();
                    await RenewSlotsAsync();
                }
                await ClaimAsync(_stopping.Token);
            }
            catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                Log.ClaimFailed(_logger, ex);
            }
        }
    }

    /// <summary>Extends the leases of the cluster slots held here (with the claims: the same lease).</summary>
    private async Task RenewSlotsAsync()
    {
        if (_clusterSlots is null || _clusterHeld.IsEmpty) return;
        try
        {
            await _clusterSlots.RenewAsync(_options.NodeId, _clusterHeld.Keys.ToArray(), NewClaim().Until, _stopping.Token);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !_stopping.IsCancellationRequested)
        {
            Log.SlotRenewFailed(_logger, _clusterHeld.Count, ex);
        }
    }

    private async Task SlotPollLoopAsync()
    {
        while (!_stopping.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(SlotPollInterval, _time, _stopping.Token);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            _ready.RetrySetAside();
        }
    }

    /// <summary>
    /// Takes a cluster slot of the run's agent. False when the agent has its limit of executions in the cluster, or when the
    /// store could not say (logged with the run): the run is then set aside here, still queued and claimed, and tried again
    /// when an execution of its agent ends here or at the next poll.
    /// </summary>
    private async Task<bool> TryAcquireSlotAsync(string runId, string agent, int limit)
    {
        _clusterHeld[runId] = agent; // before it is taken: a renewal meanwhile keeps it
        try
        {
            var now = _time.GetUtcNow();
            if (await _clusterSlots!.TryAcquireAsync(agent, runId, limit, _options.NodeId, now, NewClaim().Until, now + SlotWaitLease, _stopping.Token))
                return true;
            _clusterHeld.TryRemove(runId, out _);
            Log.AgentSlotsTaken(_logger, runId, agent, limit);
            return false;
        }
        catch (Exception ex)
        {
            // A slot the store took before the fault (the answer lost) is not renewed: its lease lapses.
            _clusterHeld.TryRemove(runId, out _);
            if (ex is not OperationCanceledException || !_stopping.IsCancellationRequested) Log.AgentSlotFailed(_logger, runId, agent, ex);
            return false;
        }
    }

    /// <summary>Frees the run's cluster slot; one that cannot be freed now is no longer renewed, and its lease lapses.</summary>
    private async Task ReleaseSlotAsync(string runId, string agent)
    {
        _clusterHeld.TryRemove(runId, out _);
        try
        {
            await _clusterSlots!.ReleaseAsync(agent, runId, _options.NodeId, CancellationToken.None);
        }
        catch (Exception ex)
        {
            Log.AgentSlotReleaseFailed(_logger, runId, agent, _options.ClaimLease, ex);
        }
    }

    /// <summary>
    /// The agent of a claimed run (read from the store: only while per-agent limits exist). A run that cannot be read now
    /// is scheduled without one (executing under the global limit only) rather than left claimed and never executed.
    /// </summary>
    private async Task<string?> AgentOfAsync(string runId, CancellationToken ct)
    {
        try
        {
            return (await _store.GetRunAsync(runId, ct))?.Agent;
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            Log.AgentUnknown(_logger, runId, ex);
            return null;
        }
    }

    /// <summary>Claims unfinished runs now rather than at the next renewal (another node's claims were just released).</summary>
    public void ClaimSoon()
    {
        _drained = false;
        Wake();
    }

    private void Wake()
    {
        try
        {
            if (_wakeClaimer.CurrentCount == 0) _wakeClaimer.Release();
        }
        catch (SemaphoreFullException)
        {
            // Another finishing run woke it first.
        }
    }

    private async Task DispatchAsync()
    {
        try
        {
            // A slot first, then the run: the run picked is the best one ready when a slot frees (priorities).
            while (true)
            {
                await _slots.WaitAsync(_stopping.Token);
                if (await _ready.ReadAsync(_stopping.Token) is not { } runId)
                {
                    _slots.Release();
                    return;
                }
                _ = RunSlotAsync(runId);
            }
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
        {
        }
    }

    /// <summary>Gives a run accepted here its priority and ordering key; call before <see cref="Schedule"/>.</summary>
    public void SetOrder(string runId, int priority, string? orderingKey) => _ready.SetOrder(runId, priority, orderingKey);

    /// <summary>Tries the runs waiting after an executor error now (the store writes again).</summary>
    public void RetryNow()
    {
        var previous = Interlocked.Exchange(ref _retrySoon, new CancellationTokenSource());
        previous.Cancel(); // not disposed: a retry may be linking to it right now
    }

    private async Task RunSlotAsync(string runId)
    {
        // With cluster slots, a run of a limited agent also needs one of its agent's slots in the store (decision 0056).
        string? clusterAgent = null;
        if (_clusterSlots is not null && _ready.SlotOf(runId) is { } slot)
        {
            if (!await TryAcquireSlotAsync(runId, slot.Agent, slot.Limit))
            {
                _ready.Refused(runId);
                _slots.Release();
                return;
            }
            clusterAgent = slot.Agent;
        }
        Interlocked.Increment(ref _active);
        Exception? failure = null;
        try
        {
            await _execute!(runId);
        }
        catch (Exception ex)
        {
            failure = ex;
        }
        finally
        {
            if (clusterAgent is not null) await ReleaseSlotAsync(runId, clusterAgent); // before the agent's next run here asks for it
            if (Interlocked.Decrement(ref _active) == 0) Volatile.Read(ref _idle)?.TrySetResult();
            _ready.Ended(runId); // its agent's slot first: the global slot below may go to the agent's next run
            _slots.Release();
        }
        if (failure is null)
        {
            _failures.TryRemove(runId, out _);
            Done(runId);
            return;
        }
        _again.TryRemove(runId, out _); // the retry below executes it again anyway
        var attempt = _failures.AddOrUpdate(runId, 1, (_, n) => n + 1);
        var storage = StorageFaultOf(failure);
        if (storage is null && attempt >= MaxExecutorErrors)
        {
            Log.ExecutorGaveUp(_logger, runId, attempt, failure);
            // Not retrying any more once the run's failure is journaled (and visible): taken out first, put back if that fails.
            _failures.TryRemove(runId, out _);
            try
            {
                await _giveUp!(runId, failure);
                Done(runId);
                return;
            }
            catch (Exception ex)
            {
                _failures[runId] = attempt;
                storage = StorageFaultOf(ex);
                Log.ExecutorFailed(_logger, runId, attempt, ex);
            }
        }
        else if (storage is not null)
        {
            Log.ExecutorStorageFault(_logger, runId, attempt, storage.Message);
        }
        else
        {
            Log.ExecutorFailed(_logger, runId, attempt, failure);
        }
        _ = RetryLaterAsync(runId, attempt);
    }

    private bool AddScheduled(string runId)
    {
        if (!_scheduled.TryAdd(runId, 0)) return false;
        Interlocked.Increment(ref _scheduledCount);
        return true;
    }

    private void RemoveScheduled(string runId)
    {
        if (_scheduled.TryRemove(runId, out _)) Interlocked.Decrement(ref _scheduledCount);
    }

    private void Done(string runId)
    {
        var agent = _ready.AgentOf(runId);
        _ready.Released(runId);
        RemoveScheduled(runId);
        if (_again.ContainsKey(runId) && _again.TryRemove(runId, out _) && !_stopping.IsCancellationRequested) Schedule(runId, agent, continuing: true); // asked for while it executed
        if (!_drained && Volatile.Read(ref _scheduledCount) < _backlog / 2) Wake();
    }

    /// <summary>Requeues the run (it stays scheduled here meanwhile) after a backoff with jitter, or at once on <see cref="RetryNow"/>.</summary>
    private async Task RetryLaterAsync(string runId, int attempt)
    {
        var delay = RetryDelay(attempt, Random.Shared.NextDouble());
        var soon = Volatile.Read(ref _retrySoon);
        try
        {
            using var wake = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token, soon.Token);
            await Task.Delay(delay, _time, wake.Token);
        }
        catch (OperationCanceledException)
        {
        }
        if (_stopping.IsCancellationRequested || !_ready.TryWrite(runId, continuing: true)) RemoveScheduled(runId);
    }

    /// <summary>The wait before try <paramref name="attempt"/>+1: doubling from <see cref="FirstRetryDelay"/>, capped, ±20% jitter.</summary>
    internal static TimeSpan RetryDelay(int attempt, double random)
    {
        var doubled = FirstRetryDelay.TotalMilliseconds * Math.Pow(2, Math.Min(attempt - 1, 16));
        return TimeSpan.FromMilliseconds(Math.Min(doubled, MaxRetryDelay.TotalMilliseconds) * (0.8 + 0.4 * random));
    }

    private static StorageUnavailableException? StorageFaultOf(Exception ex)
    {
        for (Exception? e = ex; e is not null; e = e.InnerException)
        {
            if (e is StorageUnavailableException s) return s;
        }
        return null;
    }

    private static partial class Log
    {
        [LoggerMessage(20, LogLevel.Information, "Resuming {Count} unfinished runs from their journals")]
        public static partial void ResumingRuns(ILogger logger, int count);

        [LoggerMessage(22, LogLevel.Error, "Run {RunId}: the executor failed (error {Attempt}); the run resumes from its journal after a backoff")]
        public static partial void ExecutorFailed(ILogger logger, string runId, int attempt, Exception ex);

        [LoggerMessage(25, LogLevel.Warning, "Run {RunId}: the store cannot write (try {Attempt}): {Error}; the run resumes from its journal once it can")]
        public static partial void ExecutorStorageFault(ILogger logger, string runId, int attempt, string error);

        [LoggerMessage(26, LogLevel.Error, "Run {RunId}: the executor failed {Attempt} times in a row; the run fails with the error")]
        public static partial void ExecutorGaveUp(ILogger logger, string runId, int attempt, Exception ex);

        [LoggerMessage(33, LogLevel.Warning, "Run {RunId}: its agent could not be read; it executes without its agent's concurrency limit this time")]
        public static partial void AgentUnknown(ILogger logger, string runId, Exception ex);

        [LoggerMessage(34, LogLevel.Debug, "Run {RunId}: agent {Agent} has its {Limit} executions across the cluster; the run waits for a slot")]
        public static partial void AgentSlotsTaken(ILogger logger, string runId, string agent, int limit);

        [LoggerMessage(35, LogLevel.Warning, "Run {RunId}: a slot of agent {Agent} could not be taken in the store; the run stays queued and is tried again")]
        public static partial void AgentSlotFailed(ILogger logger, string runId, string agent, Exception ex);

        [LoggerMessage(36, LogLevel.Warning, "Run {RunId}: the slot of agent {Agent} could not be freed in the store; it frees itself when its lease lapses (within {Lease})")]
        public static partial void AgentSlotReleaseFailed(ILogger logger, string runId, string agent, TimeSpan lease, Exception ex);

        [LoggerMessage(37, LogLevel.Warning, "Renewing the {Count} agent slots held here failed; trying again")]
        public static partial void SlotRenewFailed(ILogger logger, int count, Exception ex);

        [LoggerMessage(23, LogLevel.Warning, "Claiming or renewing runs in the store failed; trying again")]
        public static partial void ClaimFailed(ILogger logger, Exception ex);
    }
}
