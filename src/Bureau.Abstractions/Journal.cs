using System.Text.Json.Serialization;

namespace Bureau;

/// <summary>
/// One step of a run's journal. The journal is append-only and the single source of truth:
/// a run's state is a fold over it. A closed hierarchy; the discriminator <c>kind</c> is stable
/// across versions so stored journals stay readable.
/// </summary>
[JsonPolymorphic(TypeDiscriminatorPropertyName = "kind")]
[JsonDerivedType(typeof(RunStarted), RunStarted.KindName)]
[JsonDerivedType(typeof(ModelResponded), ModelResponded.KindName)]
[JsonDerivedType(typeof(ToolIntent), ToolIntent.KindName)]
[JsonDerivedType(typeof(ToolCompleted), ToolCompleted.KindName)]
[JsonDerivedType(typeof(ToolCallRejected), ToolCallRejected.KindName)]
[JsonDerivedType(typeof(BudgetExceeded), BudgetExceeded.KindName)]
[JsonDerivedType(typeof(LoopDetected), LoopDetected.KindName)]
[JsonDerivedType(typeof(RunWaiting), RunWaiting.KindName)]
[JsonDerivedType(typeof(StepResolved), StepResolved.KindName)]
[JsonDerivedType(typeof(RunResumed), RunResumed.KindName)]
[JsonDerivedType(typeof(RunCanceled), RunCanceled.KindName)]
[JsonDerivedType(typeof(RunFinished), RunFinished.KindName)]
[JsonDerivedType(typeof(ChildRunStarted), ChildRunStarted.KindName)]
[JsonDerivedType(typeof(ChildRunFinished), ChildRunFinished.KindName)]
[JsonDerivedType(typeof(WaitAnswered), WaitAnswered.KindName)]
[JsonDerivedType(typeof(WaitExpired), WaitExpired.KindName)]
[JsonDerivedType(typeof(AttemptFailed), AttemptFailed.KindName)]
[JsonDerivedType(typeof(DependencyWaited), DependencyWaited.KindName)]
[JsonDerivedType(typeof(ModelFallback), ModelFallback.KindName)]
[JsonDerivedType(typeof(PolicyApplied), PolicyApplied.KindName)]
[JsonDerivedType(typeof(MemoryRead), MemoryRead.KindName)]
[JsonDerivedType(typeof(MemoryWritten), MemoryWritten.KindName)]
[JsonDerivedType(typeof(ConversationSummarized), ConversationSummarized.KindName)]
public abstract record JournalEntry
{
    /// <summary>The entry's kind, as stored and as the host's event stream names it.</summary>
    [JsonIgnore]
    public abstract string Kind { get; }
}

/// <summary>The run was accepted. Kind, parent and root are written only when they are not the defaults (an agent run at the top of its tree).</summary>
/// <param name="Agent">The agent (or, for other run kinds, the target).</param>
/// <param name="Input">The run's input.</param>
/// <param name="Actor">Who or what started it.</param>
/// <param name="RunKind">The run kind, when not <c>agent</c>.</param>
/// <param name="ParentRunId">The parent run, for a child run.</param>
/// <param name="RootRunId">The root of the run's tree, for a child run.</param>
/// <param name="TraceParent">The W3C <c>traceparent</c> of the span the run was submitted in (an HTTP request, its parent
/// run), recorded when telemetry is on: every execution of the run joins that trace, also after a restart. Null otherwise
/// (and in journals written before it existed).</param>
public sealed record RunStarted(string Agent, string Input, string? Actor = null, string? RunKind = null, string? ParentRunId = null, string? RootRunId = null, string? TraceParent = null) : JournalEntry
{
    /// <summary>The stored kind.</summary>
    public const string KindName = "run.started";
    /// <inheritdoc />
    [JsonIgnore]
    public override string Kind => KindName;
}

/// <summary>A tool call the model asked for, as it asked (arguments are the model's raw text).</summary>
public sealed record ToolCallRecord(string CallId, string Name, string Arguments);

/// <summary>
/// The model answered. Journaled before any tool it asks for runs; on resume the answer is
/// taken from here, never requested again. Carries the facts of the request too (turn, message count).
/// </summary>
public sealed record ModelResponded(
    int Turn,
    string Model,
    string Provider,
    string? Text,
    IReadOnlyList<ToolCallRecord> ToolCalls,
    UsageRecord Usage,
    string? FinishReason,
    int RequestMessages,
    double DurationMs,
    double? Cost = null,
    string? AnsweredBy = null,
    int? Attempts = null) : JournalEntry
{
    /// <summary>The stored kind.</summary>
    public const string KindName = "model.response";
    /// <inheritdoc />
    [JsonIgnore]
    public override string Kind => KindName;
}

/// <summary>
/// A tool with side effects is about to run. Its key is <c>{runId}:{n}</c>, n being this entry's number.
/// An intent with no result after a crash is in doubt.
/// </summary>
public sealed record ToolIntent(string CallId, string Tool, string Arguments, ToolEffect Effect, string IdempotencyKey) : JournalEntry
{
    /// <summary>The stored kind.</summary>
    public const string KindName = "tool.intent";
    /// <inheritdoc />
    [JsonIgnore]
    public override string Kind => KindName;
}

/// <summary>A tool returned (or failed: <see cref="IsError"/>); the content goes back to the model.</summary>
/// <param name="CallId">The model's id of the call.</param>
/// <param name="Tool">The tool.</param>
/// <param name="Content">The result (or the error) as the model sees it.</param>
/// <param name="IsError">True when the call failed.</param>
/// <param name="DurationMs">How long the tool ran.</param>
/// <param name="IntentStep">The step of the call's intent, for <c>idempotent</c> and <c>write</c> tools.</param>
/// <param name="Note">What Bureau noticed beside the result (for example stray processes it killed), or null.</param>
/// <param name="Failure">For an error: its class (<c>error</c>, <c>timeout</c>, <c>crash</c>, <c>unavailable</c>, <c>not-sent</c>), or null.</param>
/// <param name="Attempts">Attempts made when more than one.</param>
public sealed record ToolCompleted(string CallId, string Tool, string Content, bool IsError, double DurationMs, long? IntentStep = null, string? Note = null, string? Failure = null, int? Attempts = null) : JournalEntry
{
    /// <summary>The stored kind.</summary>
    public const string KindName = "tool.result";
    /// <inheritdoc />
    [JsonIgnore]
    public override string Kind => KindName;
}

/// <summary>A call the model asked for failed validation and went back to the model as an error; the tool never ran.</summary>
public sealed record ToolCallRejected(string CallId, string Tool, string Arguments, string Error) : JournalEntry
{
    /// <summary>The stored kind.</summary>
    public const string KindName = "tool.rejected";
    /// <inheritdoc />
    [JsonIgnore]
    public override string Kind => KindName;
}

/// <summary>A budget ran out; the run ends with outcome <c>budget</c>.</summary>
/// <param name="Budget"><c>steps</c>, <c>tokens</c> or <c>time</c>.</param>
/// <param name="Limit">The limit (steps, tokens or seconds).</param>
/// <param name="Used">What was used when it stopped.</param>
public sealed record BudgetExceeded(string Budget, double Limit, double Used) : JournalEntry
{
    /// <summary>The stored kind.</summary>
    public const string KindName = "budget.exceeded";
    /// <inheritdoc />
    [JsonIgnore]
    public override string Kind => KindName;
}

/// <summary>Loop detection fired. With <see cref="LoopAction.Warn"/> the call <see cref="CallId"/> was not run; the warning went back to the model as its result.</summary>
public sealed record LoopDetected(string Reason, string? Tool, LoopAction Action, string? CallId = null) : JournalEntry
{
    /// <summary>The stored kind.</summary>
    public const string KindName = "loop.detected";
    /// <inheritdoc />
    [JsonIgnore]
    public override string Kind => KindName;
}

/// <summary>The run paused for a person.</summary>
public sealed record RunWaiting(WaitingFor WaitingFor) : JournalEntry
{
    /// <summary>The stored kind.</summary>
    public const string KindName = "run.waiting";
    /// <inheritdoc />
    [JsonIgnore]
    public override string Kind => KindName;
}

/// <summary>How a person resolved an in-doubt step.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<StepResolution>))]
public enum StepResolution
{
    /// <summary>The tool did run; <see cref="StepResolved.Content"/> is its result.</summary>
    [JsonStringEnumMemberName("done")] Done,
    /// <summary>Run the tool again, with the same key.</summary>
    [JsonStringEnumMemberName("retry")] Retry,
    /// <summary>Treat the call as failed and tell the model.</summary>
    [JsonStringEnumMemberName("failed")] Failed,
}

/// <summary>A person decided an in-doubt step.</summary>
public sealed record StepResolved(long Step, StepResolution Resolution, string? Content, string? Actor) : JournalEntry
{
    /// <summary>The stored kind.</summary>
    public const string KindName = "step.resolved";
    /// <inheritdoc />
    [JsonIgnore]
    public override string Kind => KindName;
}

/// <summary>An executor picked the run up again from its journal (after a restart or a resolution).</summary>
public sealed record RunResumed(string Reason) : JournalEntry
{
    /// <summary>The stored kind.</summary>
    public const string KindName = "run.resumed";
    /// <inheritdoc />
    [JsonIgnore]
    public override string Kind => KindName;
}

/// <summary>The run was canceled; <see cref="InFlight"/> names what was running then.</summary>
public sealed record RunCanceled(string? Reason, string? Actor, IReadOnlyList<string> InFlight) : JournalEntry
{
    /// <summary>The stored kind.</summary>
    public const string KindName = "run.canceled";
    /// <inheritdoc />
    [JsonIgnore]
    public override string Kind => KindName;
}

/// <summary>The run ended. A failed or canceled run carries its <see cref="Failure"/>: one cause class, the step, the dependency and a hint.</summary>
public sealed record RunFinished(RunStatus Status, string? Output, string? Error, string? Outcome, RunFailure? Failure = null) : JournalEntry
{
    /// <summary>The stored kind.</summary>
    public const string KindName = "run.finished";
    /// <inheritdoc />
    [JsonIgnore]
    public override string Kind => KindName;
}

/// <summary>The run started a child run (a team member, a delegated task); the child has its own journal.</summary>
/// <param name="ChildRunId">The child run.</param>
/// <param name="Target">The agent or team it runs.</param>
/// <param name="RunKind">Its run kind.</param>
/// <param name="Input">Its input.</param>
/// <param name="Label">What the child is in the parent's plan (a team's stage: <c>member</c>, <c>plan</c>, <c>merge</c>, <c>review</c>, a graph node).</param>
public sealed record ChildRunStarted(string ChildRunId, string Target, string RunKind, string Input, string? Label = null) : JournalEntry
{
    /// <summary>The stored kind.</summary>
    public const string KindName = "child.started";
    /// <inheritdoc />
    [JsonIgnore]
    public override string Kind => KindName;
}

/// <summary>A child run ended; its outcome as the parent saw it.</summary>
/// <param name="ChildRunId">The child run.</param>
/// <param name="Status">How it ended.</param>
/// <param name="Output">Its output.</param>
/// <param name="Error">Its error.</param>
/// <param name="Usage">The tokens its tree used (for budgets shared down a tree).</param>
/// <param name="Cost">What it cost (<see cref="RunRecord.Cost"/>; for budgets shared down a tree); null when nothing was priced.</param>
/// <param name="Steps">The steps (model calls and tool calls) it and its children took, for a team's <c>budgets.maxSteps</c> shared down a tree; null where no team above counts steps.</param>
public sealed record ChildRunFinished(string ChildRunId, RunStatus Status, string? Output, string? Error, UsageRecord? Usage = null, double? Cost = null, int? Steps = null) : JournalEntry
{
    /// <summary>The stored kind.</summary>
    public const string KindName = "child.finished";
    /// <inheritdoc />
    [JsonIgnore]
    public override string Kind => KindName;
}

/// <summary>Someone answered the wait on <see cref="Step"/> (an approval, an external event).</summary>
/// <param name="Step">The step the wait was about.</param>
/// <param name="Reason">The wait's reason.</param>
/// <param name="Answer">The answer (JSON or text), as given.</param>
/// <param name="Actor">Who answered.</param>
public sealed record WaitAnswered(long Step, string Reason, string? Answer, string? Actor) : JournalEntry
{
    /// <summary>The stored kind.</summary>
    public const string KindName = "wait.answered";
    /// <inheritdoc />
    [JsonIgnore]
    public override string Kind => KindName;
}

/// <summary>The deadline of the wait on <see cref="Step"/> passed with no answer; fired once by the timer service.</summary>
public sealed record WaitExpired(long Step, string Reason, DateTimeOffset Deadline) : JournalEntry
{
    /// <summary>The stored kind.</summary>
    public const string KindName = "wait.expired";
    /// <inheritdoc />
    [JsonIgnore]
    public override string Kind => KindName;
}


/// <summary>
/// Why a run failed or stopped, in one cause class: <c>model</c>, <c>tool</c>, <c>validation</c>, <c>policy</c>,
/// <c>budget</c>, <c>loop</c>, <c>in-doubt</c>, <c>canceled</c> or <c>internal</c>.
/// </summary>
/// <param name="Cause">The cause class.</param>
/// <param name="Kind">Its detail: for <c>model</c> <c>unavailable</c>, <c>rate-limited</c>, <c>refused</c>, <c>invalid-output</c>; for <c>tool</c> <c>error</c>, <c>timeout</c>, <c>crash</c>, <c>unavailable</c>; for <c>budget</c> the budget.</param>
/// <param name="Step">The step it failed at.</param>
/// <param name="Dependency">The model or tool (<c>model:name</c>, <c>tool:name</c>), when one was at fault.</param>
/// <param name="Attempts">Attempts made on it.</param>
/// <param name="Hint">One line on what to do.</param>
public sealed record RunFailure(string Cause, string? Kind, long? Step, string? Dependency, int? Attempts, string Hint);

/// <summary>
/// One attempt of a model or tool call failed. Every failed attempt is journaled, before its retry waits;
/// <see cref="RetryInMs"/> is null when no retry follows. A retried tool call keeps its idempotency key.
/// </summary>
/// <param name="Dependency"><c>model:name</c> or <c>tool:name</c>.</param>
/// <param name="Attempt">The attempt's number, from 1.</param>
/// <param name="Error">What went wrong.</param>
/// <param name="Class">Its class: <c>rate-limited</c>, <c>unavailable</c>, <c>timeout</c>, <c>crash</c>, <c>error</c>, <c>refused</c>, <c>not-sent</c>.</param>
/// <param name="RetryInMs">The wait before the next attempt, or null when this was the last.</param>
/// <param name="IdempotencyKey">The tool call's key, the same on every attempt.</param>
/// <param name="GaveUp">Why no retry follows (attempts or time used up, not retriable, a write tool), when none does.</param>
public sealed record AttemptFailed(string Dependency, int Attempt, string Error, string Class, double? RetryInMs, string? IdempotencyKey = null, string? GaveUp = null) : JournalEntry
{
    /// <summary>The stored kind.</summary>
    public const string KindName = "attempt.failed";
    /// <inheritdoc />
    [JsonIgnore]
    public override string Kind => KindName;
}

/// <summary>A call waited for a dependency's limit (requests or tokens per minute, a bulkhead) instead of failing.</summary>
/// <param name="Dependency"><c>model:name</c> or <c>tool:name</c>.</param>
/// <param name="Reason">What it waited for: <c>requests-per-minute</c>, <c>tokens-per-minute</c>.</param>
/// <param name="WaitedMs">How long it waited.</param>
public sealed record DependencyWaited(string Dependency, string Reason, double WaitedMs) : JournalEntry
{
    /// <summary>The stored kind.</summary>
    public const string KindName = "dependency.waited";
    /// <inheritdoc />
    [JsonIgnore]
    public override string Kind => KindName;
}

/// <summary>A model failed (after its retries) or its breaker was open; the next model of its fallback list is tried.</summary>
public sealed record ModelFallback(string From, string To, string Reason) : JournalEntry
{
    /// <summary>The stored kind.</summary>
    public const string KindName = "model.fallback";
    /// <inheritdoc />
    [JsonIgnore]
    public override string Kind => KindName;
}

/// <summary>
/// A policy decided a tool call: denied it (the model is told why in the call's result, which
/// follows) or asked a person to approve it (a <see cref="RunWaiting"/> with an <see cref="ApprovalWait"/>
/// follows; the approval is named by this entry's step).
/// </summary>
/// <param name="CallId">The tool call.</param>
/// <param name="Tool">Its tool.</param>
/// <param name="Action">What the policy does: <c>deny</c> or <c>require_approval</c>.</param>
/// <param name="Rule">The rule that decided (<c>default:write</c> for an effect class's default).</param>
/// <param name="Reason">The rule's reason.</param>
public sealed record PolicyApplied(string CallId, string Tool, PolicyAction Action, string Rule, string? Reason) : JournalEntry
{
    /// <summary>The stored kind.</summary>
    public const string KindName = "policy.applied";
    /// <inheritdoc />
    [JsonIgnore]
    public override string Kind => KindName;
}

/// <summary>
/// A <c>recall</c> read long-term memory: what it found, as it was then (values, versions, provenance). The call's
/// <see cref="ToolCompleted"/> follows in the same append; a resumed or replayed run sees these values, never the store's.
/// </summary>
/// <param name="CallId">The model's id of the call.</param>
/// <param name="Scopes">The scope addresses looked in.</param>
/// <param name="Key">The key read, for an exact read.</param>
/// <param name="Query">The search text, for a search.</param>
/// <param name="Hits">What was found, best first.</param>
public sealed record MemoryRead(string CallId, IReadOnlyList<string> Scopes, string? Key, string? Query, IReadOnlyList<MemoryHit> Hits) : JournalEntry
{
    /// <summary>The stored kind.</summary>
    public const string KindName = "memory.read";
    /// <inheritdoc />
    [JsonIgnore]
    public override string Kind => KindName;
}

/// <summary>
/// A <c>remember</c> or <c>forget</c> wrote long-term memory (or was refused: a conflict). Follows the call's
/// <see cref="ToolIntent"/>, whose key (<c>RUN:STEP</c>) the store deduplicates: a write interrupted by a crash is
/// completed once, never applied twice. The call's <see cref="ToolCompleted"/> follows in the same append.
/// </summary>
/// <param name="CallId">The model's id of the call.</param>
/// <param name="Tool"><c>remember</c> or <c>forget</c>.</param>
/// <param name="Scope">The scope address.</param>
/// <param name="Key">The key.</param>
/// <param name="Outcome">What the write did.</param>
/// <param name="ExpectedVersion">The version the write expected (0: absent; null: no condition).</param>
/// <param name="Fact">The version written, when one was.</param>
/// <param name="Current">On a conflict, the current version the writer was told about.</param>
/// <param name="IntentStep">The step of the call's intent (its idempotency key's step).</param>
/// <param name="Repeated">True when the store had applied the write before (a crash came between the write and this entry).</param>
public sealed record MemoryWritten(string CallId, string Tool, string Scope, string Key, MemoryWriteOutcome Outcome, long? ExpectedVersion, MemoryFact? Fact,
    MemoryFact? Current, long IntentStep, bool Repeated = false) : JournalEntry
{
    /// <summary>The stored kind.</summary>
    public const string KindName = "memory.write";
    /// <inheritdoc />
    [JsonIgnore]
    public override string Kind => KindName;
}

/// <summary>
/// The conversation no longer fit the agent's window (<c>memory.window</c>, overflow <c>summarize</c>): a model summarized
/// its older messages. Journaled before the model call it was made for; from here on the summary stands in for the
/// first <see cref="Covers"/> messages of the conversation (after the system prompt and the input), and a resumed or
/// replayed run uses this summary, never a new one.
/// </summary>
/// <param name="Turn">The model turn it was made for.</param>
/// <param name="Covers">How many messages of the conversation, from its start, the summary replaces.</param>
/// <param name="Summary">The summary.</param>
/// <param name="Model">The model that wrote it.</param>
/// <param name="Usage">The tokens the summary call used (they count against the run's token budget).</param>
/// <param name="DurationMs">How long the summary call took.</param>
public sealed record ConversationSummarized(int Turn, int Covers, string Summary, string Model, UsageRecord Usage, double DurationMs) : JournalEntry
{
    /// <summary>The stored kind.</summary>
    public const string KindName = "window.summarized";
    /// <inheritdoc />
    [JsonIgnore]
    public override string Kind => KindName;
}
