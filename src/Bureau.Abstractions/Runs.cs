using System.Text.Json.Serialization;

namespace Bureau;

/// <summary>Where a run is in its life.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<RunStatus>))]
public enum RunStatus
{
    /// <summary>Accepted and durable; not started yet.</summary>
    [JsonStringEnumMemberName("queued")] Queued,
    /// <summary>An executor is working on it.</summary>
    [JsonStringEnumMemberName("running")] Running,
    /// <summary>Paused until something outside answers (a person resolving an in-doubt step).</summary>
    [JsonStringEnumMemberName("waiting")] Waiting,
    /// <summary>Finished with an output.</summary>
    [JsonStringEnumMemberName("succeeded")] Succeeded,
    /// <summary>Finished without one, for a reason it recorded.</summary>
    [JsonStringEnumMemberName("failed")] Failed,
    /// <summary>Stopped on request.</summary>
    [JsonStringEnumMemberName("canceled")] Canceled,
}

/// <summary>Helpers for <see cref="RunStatus"/>.</summary>
public static class RunStatusExtensions
{
    /// <summary>True for succeeded, failed and canceled: nothing more will happen to the run.</summary>
    public static bool IsTerminal(this RunStatus status) =>
        status is RunStatus.Succeeded or RunStatus.Failed or RunStatus.Canceled;

    /// <summary>The wire name (<c>queued</c>, <c>running</c>, ...), from <see cref="WireNames"/>.</summary>
    public static string ToWireName(this RunStatus status) => WireNames.Of(status);

    /// <summary>Parses a wire name (any case: a query filter such as <c>?status=Succeeded</c> is forgiving); false when it is not one.</summary>
    public static bool TryParseWireName(string? text, out RunStatus status) =>
        WireNames.TryParse(text?.ToLowerInvariant(), out status);
}

/// <summary>Tokens used, as the model reported them (or estimated, for the scripted model).</summary>
public sealed record UsageRecord(long InputTokens, long OutputTokens)
{
    /// <summary>No usage.</summary>
    public static readonly UsageRecord Zero = new(0, 0);

    /// <summary>Input plus output.</summary>
    public long TotalTokens => InputTokens + OutputTokens;

    /// <summary>Adds two usages.</summary>
    public static UsageRecord operator +(UsageRecord a, UsageRecord b) =>
        new(a.InputTokens + b.InputTokens, a.OutputTokens + b.OutputTokens);
}

/// <summary>A run as stored: the row, not the journal.</summary>
public sealed record RunRecord
{
    /// <summary>The run's id.</summary>
    public required string Id { get; init; }
    /// <summary>What it runs: the agent's name (or, for other run kinds, their target's name).</summary>
    public required string Agent { get; init; }
    /// <summary>The run kind, which picks its executor: <c>agent</c> (the agent loop) unless another kind is registered.</summary>
    public string Kind { get; init; } = RunKinds.Agent;
    /// <summary>The run that started this one as a child, or null for a top-level run.</summary>
    public string? ParentRunId { get; init; }
    /// <summary>The top-level run of this run's tree (its own id for a top-level run).</summary>
    public string? RootRunId { get; init; }
    /// <summary>Its status.</summary>
    public required RunStatus Status { get; init; }
    /// <summary>The input it was started with.</summary>
    public required string Input { get; init; }
    /// <summary>The final answer, once succeeded.</summary>
    public string? Output { get; init; }
    /// <summary>Why it failed or stopped, once failed or canceled.</summary>
    public string? Error { get; init; }
    /// <summary>How it ended beyond its status: <c>budget</c>, <c>loop</c>, <c>error</c>, <c>canceled</c> or null.</summary>
    public string? Outcome { get; init; }
    /// <summary>Tokens used so far.</summary>
    public UsageRecord Usage { get; init; } = UsageRecord.Zero;
    /// <summary>
    /// What it cost so far (priced models only; any currency): for an agent run, its own model calls; for a team
    /// run, the sum of its members' costs, as <see cref="Usage"/> sums their tokens.
    /// </summary>
    public double Cost { get; init; }
    /// <summary>When it was accepted.</summary>
    public required DateTimeOffset CreatedAt { get; init; }
    /// <summary>When it last changed.</summary>
    public required DateTimeOffset UpdatedAt { get; init; }
    /// <summary>The number of its last journal entry: the version an append must expect.</summary>
    public long Version { get; init; }
    /// <summary>Set while the run waits.</summary>
    public WaitingFor? WaitingFor { get; init; }
    /// <summary>The key the submitter gave, if any.</summary>
    public string? IdempotencyKey { get; init; }
    /// <summary>Who or what started the run.</summary>
    public string? Actor { get; init; }
}

/// <summary>A run to create.</summary>
public sealed record NewRun
{
    /// <summary>The new run's id.</summary>
    public required string Id { get; init; }
    /// <summary>The agent (or other target) it runs.</summary>
    public required string Agent { get; init; }
    /// <summary>Its input.</summary>
    public required string Input { get; init; }
    /// <summary>Its kind (<see cref="RunKinds.Agent"/> by default).</summary>
    public string Kind { get; init; } = RunKinds.Agent;
    /// <summary>The parent run, for a child run.</summary>
    public string? ParentRunId { get; init; }
    /// <summary>The root of the run tree; null means the run itself.</summary>
    public string? RootRunId { get; init; }
    /// <summary>Journal entry 1, made by the engine; the store writes it as given.</summary>
    public required RunStarted Started { get; init; }
    /// <summary>The scheduler that claims the new run at once (so no other node picks it up), or null.</summary>
    public RunClaim? Claim { get; init; }
    /// <summary>When it was accepted.</summary>
    public required DateTimeOffset CreatedAt { get; init; }
    /// <summary>The submitter's idempotency key: a second submission with it returns the first run.</summary>
    public string? IdempotencyKey { get; init; }
    /// <summary>Who or what started it.</summary>
    public string? Actor { get; init; }
}

/// <summary>The answer to a submission.</summary>
/// <param name="Run">The run, new or the one the idempotency key already named.</param>
/// <param name="Created">False when the idempotency key named an existing run.</param>
public sealed record SubmitResult(RunRecord Run, bool Created);

/// <summary>Changes to a run's row made in the same transaction as an append.</summary>
public sealed record RunUpdate
{
    /// <summary>The new status.</summary>
    public required RunStatus Status { get; init; }
    /// <summary>The output (succeeded runs).</summary>
    public string? Output { get; init; }
    /// <summary>The error (failed or canceled runs).</summary>
    public string? Error { get; init; }
    /// <summary>The outcome beyond status.</summary>
    public string? Outcome { get; init; }
    /// <summary>Usage so far; null leaves it as is.</summary>
    public UsageRecord? Usage { get; init; }
    /// <summary>Cost so far (<see cref="RunRecord.Cost"/>); null leaves it as is.</summary>
    public double? Cost { get; init; }
    /// <summary>Why it waits (waiting runs); cleared otherwise. Its deadline, if any, is what the timer service fires.</summary>
    public WaitingFor? WaitingFor { get; init; }
    /// <summary>Claims the run for a scheduler in the same transaction (a command that requeues a run); null leaves the claim as is. A waiting or finished run is never claimed.</summary>
    public RunClaim? Claim { get; init; }
}

/// <summary>A scheduler's lease on unfinished runs: while it holds, no other scheduler picks them up.</summary>
/// <param name="Owner">The scheduler (node) id.</param>
/// <param name="Until">When the lease ends unless renewed.</param>
public sealed record RunClaim(string Owner, DateTimeOffset Until);

/// <summary>The run kinds Bureau ships.</summary>
public static class RunKinds
{
    /// <summary>An agent loop: model calls and tool calls until the model answers.</summary>
    public const string Agent = "agent";

    /// <summary>A team: an orchestration whose members run as child runs (manifest <c>teams:</c>).</summary>
    public const string Team = "team";

    /// <summary>A rollback: compensates the completed writes of the run named by its input, newest first (a child of that run).</summary>
    public const string Rollback = "rollback";
}

/// <summary>One append to a run's journal: entries numbered from <c>ExpectedVersion + 1</c>.</summary>
public sealed record AppendRequest
{
    /// <summary>The run.</summary>
    public required string RunId { get; init; }
    /// <summary>The number of the run's last entry as the writer knows it; a stale writer is rejected.</summary>
    public required long ExpectedVersion { get; init; }
    /// <summary>The entries, numbered in order from <c>ExpectedVersion + 1</c>.</summary>
    public required IReadOnlyList<JournalEntry> Entries { get; init; }
    /// <summary>When they happened.</summary>
    public required DateTimeOffset At { get; init; }
    /// <summary>A change to the run's row, or null.</summary>
    public RunUpdate? Update { get; init; }
}

/// <summary>Filters and paging for run listings.</summary>
public sealed record RunQuery
{
    /// <summary>Only runs with this status.</summary>
    public RunStatus? Status { get; init; }
    /// <summary>Only runs of this agent.</summary>
    public string? Agent { get; init; }
    /// <summary>Only the child runs of this run (its direct children).</summary>
    public string? ParentRunId { get; init; }
    /// <summary>Only runs whose idempotency key starts with this (a trigger's runs: <c>schedule:NAME:</c>, <c>trigger:NAME:</c>).</summary>
    public string? IdempotencyKeyPrefix { get; init; }
    /// <summary>Only the run submitted with exactly this idempotency key (at most one).</summary>
    public string? IdempotencyKey { get; init; }
    /// <summary>Only the runs of this tree below its root (children, their children, ...).</summary>
    public string? RootRunId { get; init; }
    /// <summary>At most this many.</summary>
    public int Limit { get; init; } = 50;
    /// <summary>The <see cref="RunPage.Next"/> of the previous page.</summary>
    public string? Cursor { get; init; }
}

/// <summary>A page of runs, newest first.</summary>
/// <param name="Items">The runs.</param>
/// <param name="Next">The cursor of the next page, null on the last.</param>
public sealed record RunPage(IReadOnlyList<RunRecord> Items, string? Next);

/// <summary>A stored journal entry with its number and time.</summary>
/// <param name="N">Its number in the run: 1, 2, 3, ...</param>
/// <param name="At">When it was appended.</param>
/// <param name="Entry">The entry.</param>
public sealed record JournalRecord(long N, DateTimeOffset At, JournalEntry Entry);

/// <summary>Thrown when an append expects a version the run no longer has: another writer got there first.</summary>
public sealed class JournalConflictException : Exception
{
    /// <summary>Creates the exception.</summary>
    public JournalConflictException(string runId, long expectedVersion, long? actualVersion)
        : base($"run {runId}: journal append expected version {expectedVersion} but the run is at {(actualVersion?.ToString() ?? "nothing (no such run)")}; another executor wrote first")
    {
        RunId = runId;
        ExpectedVersion = expectedVersion;
        ActualVersion = actualVersion;
    }

    /// <summary>The run.</summary>
    public string RunId { get; }
    /// <summary>What the writer expected.</summary>
    public long ExpectedVersion { get; }
    /// <summary>What the store had, or null if the run does not exist.</summary>
    public long? ActualVersion { get; }
}

/// <summary>Finished runs to delete (<see cref="IRunStore.DeleteRunsAsync"/>).</summary>
public sealed class RunDeletion
{
    /// <summary>The runs' ids.</summary>
    public required IReadOnlyList<string> RunIds { get; init; }

    /// <summary>When (the audit entry's time).</summary>
    public required DateTimeOffset At { get; init; }

    /// <summary>Who (the audit entry's actor), such as <c>retention</c>.</summary>
    public string? Actor { get; init; }

    /// <summary>Why, added to the audit entry's detail (such as the agent and its policy).</summary>
    public string? Reason { get; init; }
}

/// <summary>How stores turn <see cref="RunQuery.IdempotencyKeyPrefix"/> into a range on their key index.</summary>
internal static class KeyPrefixes
{
    /// <summary>
    /// The smallest string after every string that starts with <paramref name="prefix"/> (ordinal, as UTF-8 bytes order
    /// them), or null when there is none a store can use: the prefix is only U+FFFF, or its last character (U+FFFF
    /// dropped) is a surrogate or would become one. The range only narrows the search: stores also check the prefix itself.
    /// </summary>
    public static string? End(string prefix)
    {
        var kept = prefix.TrimEnd('\uFFFF');
        if (kept.Length == 0) return null;
        var last = kept[^1];
        if (char.IsSurrogate(last) || char.IsSurrogate((char)(last + 1))) return null;
        return kept[..^1] + (char)(last + 1);
    }
}
