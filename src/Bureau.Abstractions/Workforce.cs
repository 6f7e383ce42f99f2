using System.Text.Json.Serialization;

namespace Bureau;

/// <summary>
/// A persistent agent of the workforce: an agent (its identity is the agent's name, its memory the agent's
/// <c>memory:</c>, whose <c>agent:NAME</c> scope persists across tasks) with skills and a concurrency limit.
/// Tasks for a skill go to the least-loaded member that has it and is below its limit.
/// </summary>
public sealed class WorkforceMember
{
    /// <summary>The agent's name (an agent defined in the deployment).</summary>
    public required string Name { get; init; }

    /// <summary>The skills it takes tasks for (at least one).</summary>
    public IReadOnlyList<string> Skills { get; init; } = [];

    /// <summary>The most tasks it works on at once (default 1).</summary>
    public int Concurrency { get; init; } = 1;

    /// <summary>
    /// Whether it may hand work to another member: it gets the built-in <c>delegate</c> tool (<c>{skill, task}</c>), which puts a
    /// task on the workforce's board and in the inbox, routed like any task. Default false.
    /// </summary>
    public bool CanDelegate { get; init; }
}

/// <summary>The workforce: its members by name and the board delegated tasks are put on.</summary>
public sealed class WorkforceDefinition
{
    /// <summary>The board name used when none is given.</summary>
    public const string DefaultBoard = "workforce";

    /// <summary>The members by agent name.</summary>
    public Dictionary<string, WorkforceMember> Members { get; } = new(StringComparer.Ordinal);

    /// <summary>The board that tasks delegated by one member to another are put on (default <c>workforce</c>).</summary>
    public string Board { get; set; } = DefaultBoard;

    /// <summary>Adds a member, replacing one of the same name.</summary>
    public WorkforceDefinition Add(WorkforceMember member)
    {
        ArgumentNullException.ThrowIfNull(member);
        Members[member.Name] = member;
        return this;
    }

    /// <summary>The members that have <paramref name="skill"/>, by name.</summary>
    public IEnumerable<WorkforceMember> WithSkill(string skill) =>
        Members.Values.Where(m => m.Skills.Contains(skill, StringComparer.Ordinal)).OrderBy(m => m.Name, StringComparer.Ordinal);

    /// <summary>Every skill of any member, sorted.</summary>
    public IReadOnlyList<string> Skills => [.. Members.Values.SelectMany(m => m.Skills).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal)];
}

/// <summary>Where a workforce task stands; it follows its run once it has one.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<WorkforceTaskStatus>))]
public enum WorkforceTaskStatus
{
    /// <summary>In the inbox: no member took it yet (all with its skill are at their limit).</summary>
    [JsonStringEnumMemberName("queued")] Queued,
    /// <summary>A member was chosen; its run is being started.</summary>
    [JsonStringEnumMemberName("assigned")] Assigned,
    /// <summary>Its run is queued, running or waiting.</summary>
    [JsonStringEnumMemberName("running")] Running,
    /// <summary>Its run succeeded.</summary>
    [JsonStringEnumMemberName("succeeded")] Succeeded,
    /// <summary>Its run failed.</summary>
    [JsonStringEnumMemberName("failed")] Failed,
    /// <summary>Its run was canceled.</summary>
    [JsonStringEnumMemberName("canceled")] Canceled,
}

/// <summary>A task of the workforce's inbox.</summary>
/// <param name="Id">Its id (adding a task is idempotent by id).</param>
/// <param name="Skill">The skill it needs.</param>
/// <param name="Input">The input of the run that does it.</param>
/// <param name="Status">Where it stands.</param>
/// <param name="Agent">The member it was routed to, once assigned.</param>
/// <param name="RunId">Its run, once started.</param>
/// <param name="Source">Where it came from: <c>api</c>, <c>trigger:NAME</c>, <c>agent:NAME</c> (a delegation), <c>code</c>.</param>
/// <param name="Actor">Who asked.</param>
/// <param name="CreatedAt">When it arrived.</param>
/// <param name="UpdatedAt">When it last changed.</param>
/// <param name="Version">Every change adds one.</param>
/// <param name="Output">The run's output, once it succeeded.</param>
/// <param name="Error">Why the run failed or was canceled.</param>
public sealed record WorkforceTask(string Id, string Skill, string Input, WorkforceTaskStatus Status, string? Agent, string? RunId, string Source, string? Actor,
    DateTimeOffset CreatedAt, DateTimeOffset UpdatedAt, long Version, string? Output = null, string? Error = null)
{
    /// <summary>The run's idempotency key for this task: one run per task, whatever crashes or retries happen.</summary>
    public static string RunKey(string taskId) => "workforce:" + taskId;

    /// <summary>Whether it is finished (succeeded, failed or canceled).</summary>
    [JsonIgnore]
    public bool IsFinished => Status is WorkforceTaskStatus.Succeeded or WorkforceTaskStatus.Failed or WorkforceTaskStatus.Canceled;
}

/// <summary>The answer to adding a task: the task, and whether this call created it (false: one with that id existed).</summary>
public sealed record WorkforceEnqueueResult(WorkforceTask Task, bool Created);

/// <summary>
/// The inbox's limits that <see cref="IWorkforceStore.EnqueueAsync(string, string, string, string, string?, DateTimeOffset, WorkforceInboxLimits, CancellationToken)"/>
/// checks as one decision with the insert (<c>Bureau:Workforce:MaxQueuedTasks</c> and the per-skill limits).
/// </summary>
/// <param name="MaxQueued">Most queued tasks, all skills together; null: no limit.</param>
/// <param name="MaxQueuedForSkill">Most queued tasks of the task's skill; null: no limit.</param>
/// <param name="RetryAfter">What a refusal (<see cref="WorkforceInboxFullException.RetryAfter"/>) tells the caller to wait.</param>
public sealed record WorkforceInboxLimits(int? MaxQueued, int? MaxQueuedForSkill, TimeSpan RetryAfter);

/// <summary>
/// The workforce's inbox is at its limit (all skills together, or the task's skill): the task was refused and nothing
/// was written; send it again after <see cref="RetryAfter"/>. A task whose id is already in the inbox is never refused
/// (adding it again returns it).
/// </summary>
public sealed class WorkforceInboxFullException(string skill, int queued, int limit, bool global, TimeSpan retryAfter)
    : Exception(global
        ? $"the workforce inbox is full: {queued} tasks are queued, the limit is {limit} (Bureau:Workforce:MaxQueuedTasks); nothing was stored, send it again later"
        : $"the workforce inbox is full for skill '{skill}': {queued} tasks of it are queued, the limit is {limit} (Bureau:Workforce:MaxQueuedTasksPerSkill or Bureau:Workforce:SkillQueueLimits:{skill}); nothing was stored, send it again later")
{
    /// <summary>The skill of the refused task.</summary>
    public string Skill { get; } = skill;
    /// <summary>Tasks queued when it was refused (all skills, or the skill's when <see cref="Global"/> is false).</summary>
    public int Queued { get; } = queued;
    /// <summary>The limit reached.</summary>
    public int Limit { get; } = limit;
    /// <summary>Whether the limit of all skills together (rather than the skill's) was reached.</summary>
    public bool Global { get; } = global;
    /// <summary>When to send again.</summary>
    public TimeSpan RetryAfter { get; } = retryAfter;
}

/// <summary>How many tasks a member holds (assigned or running), and how many it finished.</summary>
public sealed record WorkforceLoad(string Agent, int InProgress, long Finished);

/// <summary>
/// The workforce's durable inbox: tasks, their routing to members and their state. Every change is durable when it
/// returns; a state change is compare-and-set on the task's state, so of racing changes exactly one applies.
/// </summary>
public interface IWorkforceStore
{
    /// <summary>Creates or migrates the schema. Called once before anything else.</summary>
    Task InitializeAsync(CancellationToken cancellationToken = default);

    /// <summary>Adds a queued task; a task with that id already there is returned unchanged (<see cref="WorkforceEnqueueResult.Created"/> false).</summary>
    Task<WorkforceEnqueueResult> EnqueueAsync(string id, string skill, string input, string source, string? actor, DateTimeOffset at, CancellationToken cancellationToken = default);

    /// <summary>
    /// Adds a queued task unless the inbox is at one of <paramref name="limits"/>: a task with that id already there is
    /// returned unchanged (<see cref="WorkforceEnqueueResult.Created"/> false) whatever the limits; otherwise the queued
    /// tasks are counted and the task inserted as one decision, so concurrent adds never take the inbox beyond a limit.
    /// The default implementation counts, then adds, in separate calls: concurrent adds can overshoot a limit by their number.
    /// The built-in stores (SQLite, PostgreSQL) override it with one transaction.
    /// </summary>
    /// <exception cref="WorkforceInboxFullException">The inbox (or the skill's part of it) is at its limit; nothing was written.</exception>
    async Task<WorkforceEnqueueResult> EnqueueAsync(string id, string skill, string input, string source, string? actor, DateTimeOffset at, WorkforceInboxLimits limits, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(limits);
        if (await GetAsync(id, cancellationToken) is { } existing) return new WorkforceEnqueueResult(existing, false);
        if (limits.MaxQueued is not null || limits.MaxQueuedForSkill is not null)
        {
            var queued = await QueuedBySkillAsync(cancellationToken);
            if (limits.MaxQueued is { } max && queued.Values.Sum() is var all && all >= max)
                throw new WorkforceInboxFullException(skill, all, max, global: true, limits.RetryAfter);
            if (limits.MaxQueuedForSkill is { } own && (queued.TryGetValue(skill, out var n) ? n : 0) is var mine && mine >= own)
                throw new WorkforceInboxFullException(skill, mine, own, global: false, limits.RetryAfter);
        }
        return await EnqueueAsync(id, skill, input, source, actor, at, cancellationToken);
    }

    /// <summary>
    /// Assigns a queued task to <paramref name="agent"/> if that member holds fewer than <paramref name="concurrency"/> tasks:
    /// one conditional change, so racing dispatchers never assign a task twice nor a member beyond its limit. Null when not applied.
    /// </summary>
    Task<WorkforceTask?> AssignAsync(string id, string agent, int concurrency, DateTimeOffset at, CancellationToken cancellationToken = default);

    /// <summary>Records the run of an assigned task (it is then running); null when the task is not assigned.</summary>
    Task<WorkforceTask?> StartedAsync(string id, string runId, DateTimeOffset at, CancellationToken cancellationToken = default);

    /// <summary>Records how the task's run ended; null when the task is not running (already finished: nothing changes).</summary>
    Task<WorkforceTask?> FinishAsync(string id, WorkforceTaskStatus status, string? output, string? error, DateTimeOffset at, CancellationToken cancellationToken = default);

    /// <summary>The task, or null.</summary>
    Task<WorkforceTask?> GetAsync(string id, CancellationToken cancellationToken = default);

    /// <summary>Tasks in <paramref name="status"/>, oldest first, at most <paramref name="limit"/>.</summary>
    Task<IReadOnlyList<WorkforceTask>> ListAsync(WorkforceTaskStatus status, int limit, CancellationToken cancellationToken = default);

    /// <summary>Per member that ever had a task: tasks in progress (assigned or running) and finished.</summary>
    Task<IReadOnlyList<WorkforceLoad>> LoadsAsync(CancellationToken cancellationToken = default);

    /// <summary>Queued tasks per skill (the inbox's depth).</summary>
    Task<IReadOnlyDictionary<string, int>> QueuedBySkillAsync(CancellationToken cancellationToken = default);
}
