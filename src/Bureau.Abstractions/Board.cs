using System.Text.Json.Serialization;

namespace Bureau;

/// <summary>Where a task of a board stands.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<BoardTaskStatus>))]
public enum BoardTaskStatus
{
    /// <summary>Nobody works on it yet; it may be claimed.</summary>
    [JsonStringEnumMemberName("open")] Open,
    /// <summary>One worker claimed it (exactly one: a claim is compare-and-set on <see cref="Open"/>).</summary>
    [JsonStringEnumMemberName("claimed")] Claimed,
    /// <summary>Its claimer finished it.</summary>
    [JsonStringEnumMemberName("done")] Done,
    /// <summary>It cannot go on; <see cref="BoardTask.Note"/> says why.</summary>
    [JsonStringEnumMemberName("blocked")] Blocked,
}

/// <summary>A task on a team's board.</summary>
/// <param name="Board">The board (a team's name).</param>
/// <param name="Id">The task's id on the board.</param>
/// <param name="Title">What is to be done.</param>
/// <param name="Detail">More about it, or null.</param>
/// <param name="Status">Where it stands.</param>
/// <param name="ClaimedBy">Who claimed it (while claimed, and after: who did it or blocked it).</param>
/// <param name="Version">Its version: every change adds one.</param>
/// <param name="CreatedBy">Who put it on the board.</param>
/// <param name="CreatedAt">When.</param>
/// <param name="UpdatedAt">When it last changed.</param>
/// <param name="Note">The result of a done task, or why a blocked one is blocked.</param>
public sealed record BoardTask(string Board, string Id, string Title, string? Detail, BoardTaskStatus Status, string? ClaimedBy, long Version,
    string CreatedBy, DateTimeOffset CreatedAt, DateTimeOffset UpdatedAt, string? Note = null);

/// <summary>A decision recorded on a board (append-only).</summary>
public sealed record BoardDecision(string Board, long Seq, string Title, string Text, string By, DateTimeOffset At);

/// <summary>A compare-and-set key of a board: a small shared value with a version.</summary>
public sealed record BoardKey(string Board, string Key, string Value, long Version, string By, DateTimeOffset At);

/// <summary>Everything on a board.</summary>
public sealed record BoardSnapshot(string Board, IReadOnlyList<BoardTask> Tasks, IReadOnlyList<BoardDecision> Decisions, IReadOnlyList<BoardKey> Keys);

/// <summary>What a change of a board did.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<BoardChange>))]
public enum BoardChange
{
    /// <summary>The change was made.</summary>
    [JsonStringEnumMemberName("applied")] Applied,
    /// <summary>Nothing changed: the task or key was not in the state the change needs; the result carries what it is.</summary>
    [JsonStringEnumMemberName("conflict")] Conflict,
    /// <summary>Nothing changed: no such task.</summary>
    [JsonStringEnumMemberName("not-found")] NotFound,
}

/// <summary>The answer to a change of a task: on a conflict, <see cref="Task"/> is the task as it is.</summary>
public sealed record BoardTaskResult(BoardChange Outcome, BoardTask? Task);

/// <summary>The answer to a compare-and-set of a key: the key as written, or on a conflict as it is (null when absent).</summary>
public sealed record BoardKeyResult(BoardChange Outcome, BoardKey? Key);

/// <summary>
/// A team's operational board: tasks (open, claimed, done, blocked) claimed exactly once under any race, decisions,
/// and compare-and-set keys. Every change is durable when it returns; a refused change changes nothing.
/// </summary>
public interface IBoardStore
{
    /// <summary>Creates or migrates the schema. Called once before anything else.</summary>
    Task InitializeAsync(CancellationToken cancellationToken = default);

    /// <summary>Puts an open task on the board; a task with that id already there is returned unchanged (adding is idempotent by id).</summary>
    Task<BoardTask> AddTaskAsync(string board, string id, string title, string? detail, string by, DateTimeOffset at, CancellationToken cancellationToken = default);

    /// <summary>Claims an open task for <paramref name="by"/>: of any number of racing claims, exactly one is applied.</summary>
    Task<BoardTaskResult> ClaimAsync(string board, string id, string by, DateTimeOffset at, CancellationToken cancellationToken = default);

    /// <summary>Marks a task done; only its claimer can, while it is claimed.</summary>
    Task<BoardTaskResult> CompleteAsync(string board, string id, string by, string? result, DateTimeOffset at, CancellationToken cancellationToken = default);

    /// <summary>Marks an open task, or a task claimed by <paramref name="by"/>, blocked, with the reason.</summary>
    Task<BoardTaskResult> BlockAsync(string board, string id, string by, string reason, DateTimeOffset at, CancellationToken cancellationToken = default);

    /// <summary>Records a decision.</summary>
    Task<BoardDecision> AddDecisionAsync(string board, string title, string text, string by, DateTimeOffset at, CancellationToken cancellationToken = default);

    /// <summary>Sets a key if it is at <paramref name="expectedVersion"/> (0: absent).</summary>
    Task<BoardKeyResult> SetKeyAsync(string board, string key, string value, long expectedVersion, string by, DateTimeOffset at, CancellationToken cancellationToken = default);

    /// <summary>The board: tasks by creation, decisions in order, keys by name.</summary>
    Task<BoardSnapshot> ReadAsync(string board, CancellationToken cancellationToken = default);
}
