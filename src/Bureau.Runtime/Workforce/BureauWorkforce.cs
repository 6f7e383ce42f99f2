using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace Bureau;

/// <summary>A task for the workforce.</summary>
/// <param name="Skill">The skill it needs: a member that has it does it.</param>
/// <param name="Input">The input of the run that does it.</param>
/// <param name="Id">Its id; a second request with the same id returns the first task and adds nothing. Null: a new id.</param>
/// <param name="Source">Where it comes from (<c>api</c>, <c>trigger:NAME</c>, <c>agent:NAME</c>, <c>code</c>).</param>
/// <param name="Actor">Who asks (the run's actor: a user scope's id).</param>
public sealed record WorkforceTaskRequest(string Skill, string Input, string? Id = null, string Source = "code", string? Actor = null);

/// <summary>No member of the workforce has the skill a task asks for; nothing was written.</summary>
public sealed class UnknownSkillException(string skill, IReadOnlyList<string> known)
    : ArgumentException(known.Count == 0
        ? $"no workforce is deployed: skill '{skill}' has no member (define 'workforce:' in the manifest)"
        : $"no member of the workforce has skill '{skill}'{Suggestions.Hint(skill, known)}", "skill")
{
    /// <summary>The skill asked for.</summary>
    public string Skill { get; } = skill;
}

/// <summary>A member as <c>bureau workforce status</c> shows it.</summary>
/// <param name="Name">The agent.</param>
/// <param name="Skills">Its skills.</param>
/// <param name="Concurrency">The most tasks it works on at once.</param>
/// <param name="InProgress">Tasks assigned to it or running now.</param>
/// <param name="Finished">Tasks it finished.</param>
/// <param name="Inbox">Queued tasks that need one of its skills (waiting for it or a peer).</param>
/// <param name="MemoryFacts">Current facts in its own memory scope (<c>agent:NAME</c>), which persists across tasks; null when the host has no memory store.</param>
public sealed record WorkforceAgentStatus(string Name, IReadOnlyList<string> Skills, int Concurrency, int InProgress, long Finished, int Inbox, int? MemoryFacts);

/// <summary>The workforce at a glance.</summary>
/// <param name="Agents">Its members, by name.</param>
/// <param name="Queued">Tasks in the inbox that no member took yet.</param>
/// <param name="QueuedBySkill">The same per skill.</param>
/// <param name="InProgress">Tasks assigned or running.</param>
public sealed record WorkforceStatus(IReadOnlyList<WorkforceAgentStatus> Agents, int Queued, IReadOnlyDictionary<string, int> QueuedBySkill, int InProgress)
{
    /// <summary>
    /// The inbox's limit, all skills together (<c>Bureau:Workforce:MaxQueuedTasks</c>): a new task is refused while
    /// <see cref="Queued"/> is at it. Null only for a status read without the options.
    /// </summary>
    public int? MaxQueuedTasks { get; init; }

    /// <summary>
    /// Each skill that has queued tasks or a limit of its own (<c>Bureau:Workforce:SkillQueueLimits:NAME</c>, or, when
    /// <c>Bureau:Workforce:MaxQueuedTasksPerSkill</c> is set, every member's skill), with its limit; null: the skill has
    /// none (only <see cref="MaxQueuedTasks"/> bounds it).
    /// </summary>
    public IReadOnlyDictionary<string, int?> MaxQueuedBySkill { get; init; } = new Dictionary<string, int?>(StringComparer.Ordinal);
}

/// <summary>
/// The workforce of this host: a durable inbox of tasks routed by skill and load to persistent agents. A task is
/// written to the inbox before <see cref="SubmitAsync"/> returns; one dispatcher per engine (the single writer of
/// assignments; see docs/decisions/0039) gives it to the least-loaded member with its skill that is below its
/// concurrency limit, and starts that member's run with the idempotency key <c>workforce:TASK</c>, so a task has
/// exactly one run whatever crashes happen; the task's state follows the run.
/// </summary>
public sealed partial class BureauWorkforce
{
    private readonly BureauEngine _engine;
    private readonly IWorkforceStore? _store;
    private readonly IMemoryStore? _memory;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly SemaphoreSlim _signal = new(0, int.MaxValue);
    private readonly ConcurrentDictionary<string, Task> _watches = new(StringComparer.Ordinal);
    private readonly Func<string> _newId;
    private CancellationToken _stopping;

    private readonly IBoardStore? _board;

    internal BureauWorkforce(BureauEngine engine, IWorkforceStore? store, IMemoryStore? memory, TimeProvider time, ILoggerFactory loggers, IBoardStore? board = null)
    {
        _engine = engine;
        _board = board;
        _store = store;
        _memory = memory;
        _time = time;
        _logger = loggers.CreateLogger("Bureau.Workforce");
        _newId = () => "t-" + RunIds.New(time);
    }

    /// <summary>The deployed workforce.</summary>
    public WorkforceDefinition Definition => _engine.Definitions.Workforce;

    /// <summary>How often the dispatcher looks at the inbox when nothing wakes it (default 1 s).</summary>
    internal TimeSpan PollInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>When the dispatcher last read the running tasks to watch them (<see cref="PassAsync"/>).</summary>
    private DateTimeOffset _lastSweep = DateTimeOffset.MinValue;

    /// <summary>Raised after every dispatch pass (tests await it rather than sleep).</summary>
    internal event Action? Dispatched;

    private IWorkforceStore Store => _store ?? throw new InvalidOperationException("this host has no workforce store: pick one with UseSqliteStorage or UsePostgreSqlStorage, or register an IWorkforceStore");

    /// <summary>
    /// Puts a task in the inbox, durably, and wakes the dispatcher. A task with the same id returns the first one
    /// (<see cref="WorkforceEnqueueResult.Created"/> false) and adds nothing, even when the inbox is full. A new task is
    /// refused when the inbox is at its limit (<see cref="BureauWorkforceOptions"/>); the count and the insert are one decision.
    /// </summary>
    /// <exception cref="UnknownSkillException">No member has the skill; nothing was written.</exception>
    /// <exception cref="ArgumentException">The input is empty, or the id is not a valid task id; nothing was written.</exception>
    /// <exception cref="WorkforceInboxFullException">
    /// The inbox is at <c>Bureau:Workforce:MaxQueuedTasks</c> (or the skill's limit) and the id is not in it yet; nothing was written.
    /// </exception>
    public async Task<WorkforceEnqueueResult> SubmitAsync(WorkforceTaskRequest request, CancellationToken cancellationToken = default)
    {
        var result = await AddAsync(request, cancellationToken);
        if (result.Created) Wake();
        return result;
    }

    /// <summary><see cref="SubmitAsync"/> without waking the dispatcher.</summary>
    private async Task<WorkforceEnqueueResult> AddAsync(WorkforceTaskRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (string.IsNullOrWhiteSpace(request.Skill)) throw new ArgumentException("'skill' is required: the skill the task needs", nameof(request));
        if (!Definition.WithSkill(request.Skill).Any()) throw new UnknownSkillException(request.Skill, Definition.Skills);
        if (string.IsNullOrWhiteSpace(request.Input)) throw new ArgumentException("'input' is required: the text the member's run starts with", nameof(request));
        if (request.Id is { } id && !IsValidId(id))
            throw new ArgumentException($"'id' must be 1 to 100 characters of letters, digits, '-', '_', '.' or ':', not '{(id.Length > 40 ? id[..40] + "…" : id)}'", nameof(request));
        var limits = _engine.Options.Workforce.LimitsFor(request.Skill, _engine.Options.QueueFullRetryAfter);
        return await Store.EnqueueAsync(request.Id ?? _newId(), request.Skill, request.Input, request.Source, request.Actor, _time.GetUtcNow(), limits, cancellationToken);
    }

    /// <summary>
    /// A member's run hands a task to another member (the <c>delegate</c> tool): the task's id comes from the call's
    /// idempotency key (<c>d-RUN:STEP</c>), so a call re-run after a crash adds nothing new; it goes on the workforce's
    /// board (claimed by the member that takes it, completed with its output) and into the inbox, routed like any task.
    /// The inbox comes first: a task it refuses (<see cref="WorkforceInboxFullException"/>) leaves the board as it was. The
    /// dispatcher is woken once the task is on the board too (a crash between the two: the call re-run adds it to the board).
    /// </summary>
    /// <exception cref="WorkforceInboxFullException">The inbox is full; nothing was written (the tool answers the model with an error).</exception>
    internal async Task<WorkforceEnqueueResult> DelegateAsync(string runId, string idempotencyKey, string skill, string task, CancellationToken ct)
    {
        var run = await _engine.GetRunAsync(runId, ct) ?? throw new RunNotFoundException(runId);
        var id = "d-" + idempotencyKey;
        var result = await AddAsync(new WorkforceTaskRequest(skill, task, id, "agent:" + run.Agent, run.Actor), ct);
        if (_board is not null)
            await _board.AddTaskAsync(Definition.Board, id, $"{skill}: {(task.Length > 80 ? task[..80] + "…" : task)}", task, run.Agent, _time.GetUtcNow(), ct);
        if (result.Created) Wake();
        return result;
    }

    /// <summary>Mirrors a delegated task's progress on the board (best effort: the inbox is the truth; a repeat is a no-op conflict).</summary>
    private async Task MirrorOnBoardAsync(WorkforceTask task, bool finished)
    {
        if (_board is null || !task.Source.StartsWith("agent:", StringComparison.Ordinal) || task.Agent is null) return;
        try
        {
            await _board.ClaimAsync(Definition.Board, task.Id, task.Agent, _time.GetUtcNow());
            if (!finished) return;
            if (task.Status == WorkforceTaskStatus.Succeeded) await _board.CompleteAsync(Definition.Board, task.Id, task.Agent, task.Output, _time.GetUtcNow());
            else await _board.BlockAsync(Definition.Board, task.Id, task.Agent, $"run {task.RunId} {WireNames.Of(task.Status)}: {task.Error ?? "no reason recorded"}", _time.GetUtcNow());
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            Log.BoardFailed(_logger, task.Id, ex);
        }
    }

    /// <summary>The task, or null.</summary>
    public Task<WorkforceTask?> GetTaskAsync(string id, CancellationToken cancellationToken = default) => Store.GetAsync(id, cancellationToken);

    /// <summary>The members with their load, inbox depth and memory size, and the inbox.</summary>
    public Task<WorkforceStatus> StatusAsync(CancellationToken cancellationToken = default) => StatusAsync(Definition, Store, _memory, _engine.Options.Workforce, cancellationToken);

    /// <summary>
    /// The status of <paramref name="definition"/>'s members from a store (the CLI reads a database without an engine),
    /// with the inbox's limits of <paramref name="limits"/>.
    /// </summary>
    internal static async Task<WorkforceStatus> StatusAsync(WorkforceDefinition definition, IWorkforceStore store, IMemoryStore? memory, BureauWorkforceOptions limits,
        CancellationToken cancellationToken)
    {
        var loads = (await store.LoadsAsync(cancellationToken)).ToDictionary(l => l.Agent, StringComparer.Ordinal);
        var queued = await store.QueuedBySkillAsync(cancellationToken);
        var agents = new List<WorkforceAgentStatus>();
        foreach (var m in definition.Members.Values.OrderBy(m => m.Name, StringComparer.Ordinal))
        {
            loads.TryGetValue(m.Name, out var load);
            var inbox = m.Skills.Sum(s => queued.TryGetValue(s, out var n) ? n : 0);
            agents.Add(new WorkforceAgentStatus(m.Name, m.Skills, m.Concurrency, load?.InProgress ?? 0, load?.Finished ?? 0, inbox,
                memory is null ? null : await CountFactsAsync(memory, MemoryScopes.Agent + ":" + m.Name, cancellationToken)));
        }
        return new WorkforceStatus(agents, queued.Values.Sum(), queued, loads.Values.Sum(l => l.InProgress))
        {
            MaxQueuedTasks = limits.MaxQueuedTasks,
            MaxQueuedBySkill = limits.SkillLimits(definition, queued.Keys),
        };
    }

    /// <summary>Current facts in a scope (counted by pages; a status, not a hot path).</summary>
    internal static async Task<int> CountFactsAsync(IMemoryStore memory, string scope, CancellationToken ct)
    {
        var count = 0;
        string? after = null;
        while (true)
        {
            var page = await memory.ListAsync(scope, after, 500, ct);
            count += page.Count;
            if (page.Count < 500) return count;
            after = page[^1].Key;
        }
    }

    internal static bool IsValidId(string id) =>
        id.Length is > 0 and <= 100 && id.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' or ':');

    /// <summary>Wakes the dispatcher (a task arrived or one finished).</summary>
    internal void Wake() => _signal.Release();

    /// <summary>The dispatcher: a pass now, then one each time it is woken or <see cref="PollInterval"/> passes, until stopped.</summary>
    internal async Task RunAsync(CancellationToken stoppingToken)
    {
        if (Definition.Members.Count == 0 || _store is null) return;
        _stopping = stoppingToken; // watchers stop with the dispatcher; the next start watches the running tasks again
        while (!_engine.IsReady && !stoppingToken.IsCancellationRequested)
            await Task.Delay(TimeSpan.FromMilliseconds(50), _time, stoppingToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await PassAsync(stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                Log.PassFailed(_logger, ex); // a storage fault: the next pass tries again, nothing is lost (the inbox is durable)
            }
            Dispatched?.Invoke();
            try
            {
                await _signal.WaitAsync(PollInterval, stoppingToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    /// <summary>
    /// One pass: starts the runs of assigned tasks (assigned before a crash, or whose start failed), watches running
    /// tasks' runs, then routes queued tasks, oldest first, each to the least-loaded member with its skill below its limit.
    /// </summary>
    internal async Task PassAsync(CancellationToken ct)
    {
        foreach (var task in await Store.ListAsync(WorkforceTaskStatus.Assigned, 1000, ct)) await StartRunAsync(task, ct);
        // Running tasks are re-read for watching (after a restart, or when another node that watched them died) once per
        // PollInterval, not on every wake: a wake comes with each task that arrives or finishes.
        var now = _time.GetUtcNow();
        if (now - _lastSweep >= PollInterval)
        {
            _lastSweep = now;
            foreach (var task in await Store.ListAsync(WorkforceTaskStatus.Running, 100_000, ct)) Watch(task);
        }

        var loads = (await Store.LoadsAsync(ct)).ToDictionary(l => l.Agent, StringComparer.Ordinal);
        int InProgress(string agent) => loads.TryGetValue(agent, out var l) ? l.InProgress : 0;
        long Finished(string agent) => loads.TryGetValue(agent, out var l) ? l.Finished : 0;
        foreach (var task in await Store.ListAsync(WorkforceTaskStatus.Queued, 1000, ct))
        {
            if (_engine.IsStopping) return;
            // Least-loaded first; among equals, the one that finished fewest (work spreads), then by name (deterministic).
            var candidates = Definition.WithSkill(task.Skill)
                .Where(m => InProgress(m.Name) < m.Concurrency)
                .OrderBy(m => InProgress(m.Name)).ThenBy(m => Finished(m.Name)).ThenBy(m => m.Name, StringComparer.Ordinal)
                .ToList();
            foreach (var member in candidates)
            {
                var assigned = await Store.AssignAsync(task.Id, member.Name, member.Concurrency, _time.GetUtcNow(), ct);
                if (assigned is null) continue; // another dispatcher took the task, or the member is full after all
                loads[member.Name] = new WorkforceLoad(member.Name, InProgress(member.Name) + 1, Finished(member.Name));
                Log.Assigned(_logger, task.Id, task.Skill, member.Name);
                await StartRunAsync(assigned, ct);
                break;
            }
        }
    }

    /// <summary>Starts (or finds, by its idempotency key) the run of an assigned task, records it, and watches it.</summary>
    private async Task StartRunAsync(WorkforceTask task, CancellationToken ct)
    {
        var submitted = await _engine.SubmitAsync(new RunRequest(task.Agent!, task.Input, WorkforceTask.RunKey(task.Id), task.Actor ?? "workforce"), ct);
        _engine.CrashPoints.Hit("workforce-after-run-start");
        var running = await Store.StartedAsync(task.Id, submitted.Run.Id, _time.GetUtcNow(), ct);
        if (running is null) return;
        await MirrorOnBoardAsync(running, finished: false);
        Watch(running);
    }

    /// <summary>Follows a running task's run until it ends, then finishes the task (once: the change needs the task running).</summary>
    private void Watch(WorkforceTask task)
    {
        if (task.RunId is not { } runId || _watches.ContainsKey(task.Id)) return;
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        if (!_watches.TryAdd(task.Id, gate.Task)) return;
        _ = Task.Run(async () =>
        {
            try
            {
                await foreach (var _ in _engine.WatchAsync(runId, long.MaxValue - 1, cancellationToken: _stopping)) { }
                var run = await _engine.GetRunAsync(runId) ?? throw new RunNotFoundException(runId);
                if (run.Status.IsTerminal())
                {
                    var status = run.Status switch
                    {
                        RunStatus.Succeeded => WorkforceTaskStatus.Succeeded,
                        RunStatus.Canceled => WorkforceTaskStatus.Canceled,
                        _ => WorkforceTaskStatus.Failed,
                    };
                    if (await Store.FinishAsync(task.Id, status, run.Output, run.Error, _time.GetUtcNow()) is { } finished) await MirrorOnBoardAsync(finished, finished: true);
                    Log.Finished(_logger, task.Id, task.Agent ?? "?", runId, status);
                }
            }
            catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
            {
            }
            catch (Exception ex)
            {
                Log.WatchFailed(_logger, task.Id, runId, ex); // the next pass watches it again
            }
            finally
            {
                _watches.TryRemove(task.Id, out _);
                gate.TrySetResult();
                Wake();
            }
        });
    }

    private static partial class Log
    {
        [LoggerMessage(1500, LogLevel.Information, "Workforce: task {TaskId} ({Skill}) assigned to {Agent}")]
        public static partial void Assigned(ILogger logger, string taskId, string skill, string agent);

        [LoggerMessage(1501, LogLevel.Information, "Workforce: task {TaskId} of {Agent} (run {RunId}) {Status}")]
        public static partial void Finished(ILogger logger, string taskId, string agent, string runId, WorkforceTaskStatus status);

        [LoggerMessage(1502, LogLevel.Warning, "Workforce: a dispatch pass failed; the next pass tries again")]
        public static partial void PassFailed(ILogger logger, Exception ex);

        [LoggerMessage(1504, LogLevel.Warning, "Workforce: the board could not follow delegated task {TaskId}; the inbox has its state")]
        public static partial void BoardFailed(ILogger logger, string taskId, Exception ex);

        [LoggerMessage(1503, LogLevel.Warning, "Workforce: following run {RunId} of task {TaskId} failed; the next pass follows it again")]
        public static partial void WatchFailed(ILogger logger, string taskId, string runId, Exception ex);
    }
}
