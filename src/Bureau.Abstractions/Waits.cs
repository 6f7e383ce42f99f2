using System.Text.Json.Serialization;

namespace Bureau;

/// <summary>
/// Why a waiting run waits, and what lets it go on: a closed hierarchy, stored with the run and in
/// its journal (<see cref="RunWaiting"/>). The discriminator <c>reason</c> is stable across versions.
/// A wait with a <see cref="Deadline"/> is fired once by the timer service when nobody answered in time
/// (<see cref="WaitExpired"/>), also when the deadline passed while the host was down.
/// </summary>
[JsonPolymorphic(TypeDiscriminatorPropertyName = "reason")]
[JsonDerivedType(typeof(InDoubtWait), InDoubtWait.ReasonName)]
[JsonDerivedType(typeof(ApprovalWait), ApprovalWait.ReasonName)]
[JsonDerivedType(typeof(ChildRunsWait), ChildRunsWait.ReasonName)]
[JsonDerivedType(typeof(TimerWait), TimerWait.ReasonName)]
[JsonDerivedType(typeof(ExternalEventWait), ExternalEventWait.ReasonName)]
public abstract record WaitingFor
{
    /// <summary>The wait's kind, as stored: <c>in-doubt</c>, <c>approval</c>, <c>children</c>, <c>timer</c>, <c>event</c>.</summary>
    [JsonIgnore]
    public abstract string Reason { get; }

    /// <summary>The journal step the wait is about (an in-doubt intent, an approval request, ...).</summary>
    public required long Step { get; init; }

    /// <summary>When the wait ends by itself if nobody answers; null waits for ever.</summary>
    public DateTimeOffset? Deadline { get; init; }
}

/// <summary>A <c>write</c> tool call was interrupted by a crash: a person decides whether it ran (<c>bureau runs resolve</c>).</summary>
public sealed record InDoubtWait : WaitingFor
{
    /// <summary>The stored reason.</summary>
    public const string ReasonName = "in-doubt";
    /// <inheritdoc />
    [JsonIgnore] public override string Reason => ReasonName;
    /// <summary>The tool of that step.</summary>
    public string? Tool { get; init; }
    /// <summary>The idempotency key the tool was given.</summary>
    public string? Key { get; init; }
    /// <summary>The arguments the tool was given (JSON).</summary>
    public string? Arguments { get; init; }
}

/// <summary>A person must approve (or reject) a step before it runs.</summary>
public sealed record ApprovalWait : WaitingFor
{
    /// <summary>The stored reason.</summary>
    public const string ReasonName = "approval";
    /// <inheritdoc />
    [JsonIgnore] public override string Reason => ReasonName;
    /// <summary>The tool awaiting approval, if the step is a tool call.</summary>
    public string? Tool { get; init; }
    /// <summary>Its arguments (JSON).</summary>
    public string? Arguments { get; init; }
    /// <summary>Who may answer (roles or names); empty means any caller allowed to answer waits.</summary>
    public IReadOnlyList<string> Approvers { get; init; } = [];
    /// <summary>What the person is asked.</summary>
    public string? Question { get; init; }
    /// <summary>The tool call awaiting approval.</summary>
    public string? CallId { get; init; }
    /// <summary>The policy rule that asked for it.</summary>
    public string? Rule { get; init; }
    /// <summary>The escalation level (0 for the first; each timeout moves to the next).</summary>
    public int Level { get; init; }
    /// <summary>How many distinct approvers must approve (four-eyes: 2).</summary>
    public int Required { get; init; } = 1;
    /// <summary>Whether the approver may change the arguments.</summary>
    public bool EditableArguments { get; init; }
}

/// <summary>The run waits for child runs to finish.</summary>
public sealed record ChildRunsWait : WaitingFor
{
    /// <summary>The stored reason.</summary>
    public const string ReasonName = "children";
    /// <inheritdoc />
    [JsonIgnore] public override string Reason => ReasonName;
    /// <summary>The child runs waited for.</summary>
    public IReadOnlyList<string> RunIds { get; init; } = [];
    /// <summary>How many of them must finish (all when null).</summary>
    public int? Needed { get; init; }
}

/// <summary>The run sleeps until its <see cref="WaitingFor.Deadline"/>.</summary>
public sealed record TimerWait : WaitingFor
{
    /// <summary>The stored reason.</summary>
    public const string ReasonName = "timer";
    /// <inheritdoc />
    [JsonIgnore] public override string Reason => ReasonName;
}

/// <summary>The run waits for a named event from outside (a webhook, a message).</summary>
public sealed record ExternalEventWait : WaitingFor
{
    /// <summary>The stored reason.</summary>
    public const string ReasonName = "event";
    /// <inheritdoc />
    [JsonIgnore] public override string Reason => ReasonName;
    /// <summary>The event's name.</summary>
    public required string EventName { get; init; }
}
