using System.Security.Cryptography;
using System.Text;

namespace Bureau;

/// <summary>
/// An event whose handling failed: it could not start a run (<see cref="DeadLetterReasons.Refused"/>: the run's
/// submission was refused for a reason that sending the event again cannot fix, such as an empty input or an agent
/// no longer deployed), or the run it started failed (<see cref="DeadLetterReasons.RunFailed"/>: after the run's own
/// retries). Nothing is dropped: the event (or the failed run's input) is kept with the error until someone retries it.
/// </summary>
public sealed record DeadLetter
{
    /// <summary>The dead letter's id: <c>dl_</c> and 16 hex digits of the SHA-256 of <see cref="Key"/>.</summary>
    public required string Id { get; init; }

    /// <summary>The idempotency key the event's run has (or would have had): <c>trigger:NAME:ID</c>, <c>event:ID:NAME</c>, ...; unique.</summary>
    public required string Key { get; init; }

    /// <summary>The trigger that received the event.</summary>
    public required string Trigger { get; init; }

    /// <summary>The event's own id (a delivery id, a CloudEvent id, a tick), as far as it is known.</summary>
    public string? EventId { get; init; }

    /// <summary><see cref="DeadLetterReasons.Refused"/> or <see cref="DeadLetterReasons.RunFailed"/>.</summary>
    public required string Reason { get; init; }

    /// <summary>The agent (or team) it was for.</summary>
    public required string Agent { get; init; }

    /// <summary>The run's input (rendered from the event); may be empty (that may be the error).</summary>
    public required string Input { get; init; }

    /// <summary>For a refused event: the event as the trigger's input template sees it (<c>$</c>), JSON, so that a retry renders the input again with the trigger as deployed then.</summary>
    public string? Event { get; init; }

    /// <summary>For a refused event: what the input is when the trigger has no template (a CloudEvent's data), JSON; null: <see cref="Event"/>.</summary>
    public string? Data { get; init; }

    /// <summary>Why: the refusal's message, or the failed run's error.</summary>
    public required string Error { get; init; }

    /// <summary>The failed run (<see cref="DeadLetterReasons.RunFailed"/>).</summary>
    public string? RunId { get; init; }

    /// <summary>When it was recorded.</summary>
    public required DateTimeOffset At { get; init; }

    /// <summary>How many times it was retried.</summary>
    public int Retries { get; init; }

    /// <summary>When it was last retried (it then leaves the list of dead letters unless asked for).</summary>
    public DateTimeOffset? RetriedAt { get; init; }

    /// <summary>The run the last retry started.</summary>
    public string? RetryRunId { get; init; }

    /// <summary>The id of the dead letter of <paramref name="key"/>.</summary>
    public static string IdOf(string key) => "dl_" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key)))[..16];
}

/// <summary>Why an event is a dead letter.</summary>
public static class DeadLetterReasons
{
    /// <summary>The event could not start a run: the submission was refused (empty input, unknown agent, invalid request).</summary>
    public const string Refused = "refused";

    /// <summary>The event started a run, and that run failed (after its own retries).</summary>
    public const string RunFailed = "run-failed";
}

/// <summary>
/// Durable state of Bureau's event handling besides runs: the dead-letter store and the cursors of poll triggers.
/// Writes are durable when they complete.
/// </summary>
public interface IEventStore
{
    /// <summary>Creates or migrates the schema. Called once before anything else.</summary>
    Task InitializeAsync(CancellationToken cancellationToken = default);

    /// <summary>Stores a dead letter unless one with its <see cref="DeadLetter.Key"/> exists; returns whether it was stored.</summary>
    Task<bool> AddDeadLetterAsync(DeadLetter letter, CancellationToken cancellationToken = default);

    /// <summary>Dead letters, newest first; retried ones only with <paramref name="includeRetried"/>.</summary>
    Task<IReadOnlyList<DeadLetter>> ListDeadLettersAsync(bool includeRetried = false, int limit = 100, CancellationToken cancellationToken = default);

    /// <summary>The dead letter, or null.</summary>
    Task<DeadLetter?> GetDeadLetterAsync(string id, CancellationToken cancellationToken = default);

    /// <summary>Records a retry: <see cref="DeadLetter.Retries"/> becomes <paramref name="retries"/> (unless it is already at least that), with the run it started.</summary>
    Task MarkRetriedAsync(string id, int retries, string runId, DateTimeOffset at, CancellationToken cancellationToken = default);

    /// <summary>A poll trigger's cursor (the last value of its cursor column whose rows were accepted), or null.</summary>
    Task<string?> GetCursorAsync(string trigger, CancellationToken cancellationToken = default);

    /// <summary>Stores a poll trigger's cursor.</summary>
    Task SetCursorAsync(string trigger, string value, DateTimeOffset at, CancellationToken cancellationToken = default);
}

/// <summary>No dead letter has that id.</summary>
public sealed class DeadLetterNotFoundException(string id) : Exception($"no dead letter has the id '{id}' (bureau events dead lists them)")
{
    /// <summary>The id asked for.</summary>
    public string Id { get; } = id;
}

/// <summary>
/// The queue of runs waiting for the agent (or all agents) is at its limit: the request was refused and changed
/// nothing; send it again after <see cref="RetryAfter"/>.
/// </summary>
public sealed class QueueFullException(string agent, int queued, int limit, bool global, TimeSpan retryAfter)
    : Exception(global
        ? $"the queue is full: {queued} runs wait to start, the limit is {limit} (Bureau:MaxQueuedRuns); nothing was stored, send it again later"
        : $"the queue of agent '{agent}' is full: {queued} runs wait to start, the limit is {limit}; nothing was stored, send it again later")
{
    /// <summary>The agent asked for.</summary>
    public string Agent { get; } = agent;
    /// <summary>Runs waiting.</summary>
    public int Queued { get; } = queued;
    /// <summary>The limit reached.</summary>
    public int Limit { get; } = limit;
    /// <summary>Whether the global limit (rather than the agent's) was reached.</summary>
    public bool Global { get; } = global;
    /// <summary>When to send again.</summary>
    public TimeSpan RetryAfter { get; } = retryAfter;
}

/// <summary>
/// A built-in tool that publishes a CloudEvent of type <see cref="Topic"/> on Bureau's event bus: every topic trigger
/// subscribed to it starts its agent (an event chain). The model gives the event's <c>data</c> (and optionally a
/// <c>subject</c>). The event's id is the call's idempotency key (<c>RUN:STEP</c>): a call retried, or replayed after a
/// crash, publishes the same event, and the subscribers' runs (keyed <c>event:ID:TRIGGER</c>) start once.
/// </summary>
public sealed class EmitToolDefinition : ToolDefinition
{
    /// <summary>Creates the definition; its effect is <see cref="ToolEffect.Idempotent"/> (an in-doubt call is published again, with the same id).</summary>
    public EmitToolDefinition() => Effect = ToolEffect.Idempotent;

    /// <inheritdoc />
    public override string Kind => "emit";

    /// <summary>The CloudEvents <c>type</c> published (the topic subscribers name).</summary>
    public required string Topic { get; init; }

    /// <summary>The CloudEvents <c>source</c>; null: <c>/bureau/runs/RUN</c>.</summary>
    public string? Source { get; init; }
}
