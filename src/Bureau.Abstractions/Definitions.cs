using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using Microsoft.Extensions.AI;

namespace Bureau;

/// <summary>What a tool call does to the world, which decides how Bureau retries it after a crash.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<ToolEffect>))]
public enum ToolEffect
{
    /// <summary>Reads only; safe to run again at any time.</summary>
    [JsonStringEnumMemberName("read")] Read,
    /// <summary>Changes the world, but honours its idempotency key: running it again with the same key is safe.</summary>
    [JsonStringEnumMemberName("idempotent")] Idempotent,
    /// <summary>Changes the world and may not be safe to repeat; never re-run automatically after a crash.</summary>
    [JsonStringEnumMemberName("write")] Write,
}

/// <summary>What happens to a tool call that was started but whose result was never journaled (a crash in between).</summary>
[JsonConverter(typeof(JsonStringEnumConverter<InDoubtAction>))]
public enum InDoubtAction
{
    /// <summary>The run waits for a person to resolve the step (the default for <see cref="ToolEffect.Write"/>).</summary>
    [JsonStringEnumMemberName("wait")] Wait,
    /// <summary>Run the tool again with the same idempotency key (the default for read and idempotent tools).</summary>
    [JsonStringEnumMemberName("retry")] Retry,
    /// <summary>Record the call as failed and tell the model.</summary>
    [JsonStringEnumMemberName("fail")] Fail,
}

/// <summary>A chat model an agent can use. Subclasses carry provider-specific settings.</summary>
public abstract class ModelDefinition
{
    /// <summary>The name agents refer to, as in the manifest's <c>models:</c> map.</summary>
    public required string Name { get; init; }

    /// <summary>The provider id: <c>openai</c>, <c>scripted</c> or <c>custom</c>.</summary>
    public abstract string Provider { get; }

    /// <summary>How failed calls are retried; null uses <see cref="RetrySettings.ModelDefault"/> (for OpenAI-compatible models, <c>maxRetries</c> sets the attempts).</summary>
    public RetrySettings? Retry { get; init; }

    /// <summary>The model's circuit breaker, shared by every run in the process; null uses <see cref="CircuitBreakerSettings.Default"/>.</summary>
    public CircuitBreakerSettings? CircuitBreaker { get; init; }

    /// <summary>Most calls of this model in flight at once in the process (a bulkhead); null: no limit.</summary>
    public int? MaxConcurrency { get; init; }

    /// <summary>Calls that may wait for a free slot when <see cref="MaxConcurrency"/> are in flight; more are refused. Null: as many as <see cref="MaxConcurrency"/>.</summary>
    public int? MaxQueue { get; init; }

    /// <summary>Requests per minute the process sends this model; null: no limit.</summary>
    public int? RequestsPerMinute { get; init; }

    /// <summary>Tokens per minute (input estimated before a call, corrected by the reported usage after it); null: no limit.</summary>
    public long? TokensPerMinute { get; init; }

    /// <summary>Longest a call waits for the rate limit before failing as rate limited (and falling back); null: <see cref="DefaultMaxRateLimitWait"/>.</summary>
    public TimeSpan? MaxRateLimitWait { get; init; }

    /// <summary>The rate-limit wait used when none is set: 30 seconds.</summary>
    public static readonly TimeSpan DefaultMaxRateLimitWait = TimeSpan.FromSeconds(30);

    /// <summary>How long one attempt may take, on the runtime's clock; null: only the provider's own timeout (<see cref="OpenAIModelDefinition.Timeout"/>; none for other providers).</summary>
    public TimeSpan? AttemptTimeout { get; init; }

    /// <summary>How long one model step may take, all attempts and waits included; null: no limit beyond the retry's <see cref="RetrySettings.MaxTotalTime"/>.</summary>
    public TimeSpan? StepTimeout { get; init; }

    /// <summary>Models tried in order when this one fails in a retriable way (after its retries) or its breaker is open.</summary>
    public IReadOnlyList<string> Fallback { get; init; } = [];

    /// <summary>What the model costs; null: its calls cost nothing (and a run's cost counts only priced models).</summary>
    public ModelPrice? Price { get; init; }
}

/// <summary>A model's price per million tokens, in the deployment's currency (whatever unit the prices are written in).</summary>
/// <param name="InputPerMillion">Price of a million input (prompt) tokens.</param>
/// <param name="OutputPerMillion">Price of a million output (completion) tokens.</param>
public sealed record ModelPrice(double InputPerMillion, double OutputPerMillion)
{
    /// <summary>The cost of <paramref name="usage"/> at this price.</summary>
    public double CostOf(UsageRecord usage) =>
        (usage.InputTokens * InputPerMillion + usage.OutputTokens * OutputPerMillion) / 1_000_000d;
}

/// <summary>The point of a call before which a failure proves nothing was sent (<c>retry: { onlyBefore: send }</c>).</summary>
[JsonConverter(typeof(JsonStringEnumConverter<RetryBoundary>))]
public enum RetryBoundary
{
    /// <summary>The request never left: the connection was refused, the host unknown, the program missing.</summary>
    [JsonStringEnumMemberName("send")] Send,
}

/// <summary>
/// How a failed call is tried again: exponential backoff with jitter, honouring <c>Retry-After</c>, capped
/// by <see cref="MaxAttempts"/> and <see cref="MaxTotalTime"/>. Model calls and <c>read</c> and <c>idempotent</c>
/// tools retry; a <c>write</c> tool retries only a failure that happened before anything was sent, and only
/// when it declares <see cref="OnlyBefore"/> = <see cref="RetryBoundary.Send"/>.
/// </summary>
public sealed class RetrySettings
{
    /// <summary>Most attempts, the first included; 1 turns retrying off.</summary>
    public int MaxAttempts { get; init; } = 3;

    /// <summary>The first backoff; each next one doubles (before jitter).</summary>
    public TimeSpan Delay { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>The longest backoff (a <c>Retry-After</c> longer than this is still honoured, within <see cref="MaxTotalTime"/>).</summary>
    public TimeSpan MaxDelay { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>No retry starts when its wait would end more than this after the first attempt started.</summary>
    public TimeSpan MaxTotalTime { get; init; } = TimeSpan.FromMinutes(2);

    /// <summary>Randomize each backoff (±50%) so that runs failing together do not retry together.</summary>
    public bool Jitter { get; init; } = true;

    /// <summary>For a <c>write</c> tool: retry only failures before this point. Null: a write tool never retries.</summary>
    public RetryBoundary? OnlyBefore { get; init; }

    /// <summary>Model calls: 6 attempts, from 1s doubling to 30s, at most 2 minutes.</summary>
    public static RetrySettings ModelDefault { get; } = new() { MaxAttempts = 6, Delay = TimeSpan.FromSeconds(1) };

    /// <summary>Tools: 3 attempts, from 500ms doubling to 30s, at most 2 minutes (write tools: 1 unless they declare <see cref="OnlyBefore"/>).</summary>
    public static RetrySettings ToolDefault { get; } = new();
}

/// <summary>A circuit breaker: when too many calls fail within a window, calls fail at once for a while, then one is let through to test.</summary>
public sealed class CircuitBreakerSettings
{
    /// <summary>False turns the breaker off.</summary>
    public bool Enabled { get; init; } = true;

    /// <summary>The share of failed calls in the window (0 to 1) that opens the breaker.</summary>
    public double FailureRatio { get; init; } = 0.5;

    /// <summary>Fewest calls in the window before the ratio counts.</summary>
    public int MinimumThroughput { get; init; } = 10;

    /// <summary>The window.</summary>
    public TimeSpan SamplingDuration { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How long the breaker stays open before a trial call.</summary>
    public TimeSpan BreakDuration { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>The breaker used when none is set.</summary>
    public static CircuitBreakerSettings Default { get; } = new();
}

/// <summary>Any OpenAI-compatible Chat Completions endpoint (OpenAI, Azure OpenAI, Ollama, vLLM, llama.cpp server, LM Studio).</summary>
public sealed class OpenAIModelDefinition : ModelDefinition
{
    /// <inheritdoc />
    public override string Provider => "openai";

    /// <summary>The API base address, for example <c>http://127.0.0.1:11434/v1</c>.</summary>
    public required Uri Endpoint { get; init; }

    /// <summary>The model id sent in each request.</summary>
    public required string Model { get; init; }

    /// <summary>The API key, if the endpoint needs one. Never logged or journaled.</summary>
    public string? ApiKey { get; init; }

    /// <summary>Sampling temperature; null leaves the endpoint's default.</summary>
    public float? Temperature { get; init; }

    /// <summary>Upper bound on tokens per answer; null leaves the endpoint's default.</summary>
    public int? MaxOutputTokens { get; init; }

    /// <summary>How long one request may take before it fails.</summary>
    public TimeSpan Timeout { get; init; } = DefaultTimeout;

    /// <summary>The request timeout used when none is set: 100 seconds.</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(100);

    /// <summary>
    /// How many times a 429, 5xx, timeout or network failure is retried (with backoff, honouring Retry-After): in a
    /// Bureau host, the runtime's retry link does it (<see cref="ModelDefinition.Retry"/>, when set, wins) and the
    /// provider's own retries are off; a client made with <c>ModelClientFactory</c> alone retries in the SDK.
    /// </summary>
    public int MaxRetries { get; init; } = DefaultMaxRetries;

    /// <summary>The retry count used when none is set: 5 (6 attempts).</summary>
    public const int DefaultMaxRetries = 5;
}

/// <summary>
/// The scripted model: a deterministic model driven by rules, for tests, demos and offline use.
/// It is always named as scripted in outputs and traces.
/// </summary>
public sealed class ScriptedModelDefinition : ModelDefinition
{
    /// <inheritdoc />
    public override string Provider => "scripted";

    /// <summary>Rules tried in order; the first whose condition matches answers.</summary>
    public IReadOnlyList<ScriptRule> Rules { get; init; } = [];

    /// <summary>Simulated latency before each answer (an awaited delay, no CPU).</summary>
    public TimeSpan Latency { get; init; }
}

/// <summary>A model supplied in C# as any <see cref="IChatClient"/>.</summary>
public sealed class ChatClientModelDefinition : ModelDefinition
{
    /// <inheritdoc />
    public override string Provider => "custom";

    /// <summary>The client that answers.</summary>
    public required IChatClient Client { get; init; }
}

/// <summary>One rule of the scripted model.</summary>
public sealed class ScriptRule
{
    /// <summary>When the rule applies; null matches always (a fallback).</summary>
    public ScriptCondition? When { get; init; }

    /// <summary>Text to answer with (templated). Either this or <see cref="Calls"/> or both.</summary>
    public string? Reply { get; init; }

    /// <summary>Tool calls to answer with (arguments templated).</summary>
    public IReadOnlyList<ScriptToolCall> Calls { get; init; } = [];

    /// <summary>Where the rule was written (for example <c>bureau.yaml:12:9</c>), for error messages.</summary>
    public string? Source { get; init; }
}

/// <summary>Conditions of a scripted rule; all that are set must hold.</summary>
public sealed class ScriptCondition
{
    /// <summary>First model call (1-based, per run) the rule applies to.</summary>
    public int? TurnFrom { get; init; }

    /// <summary>Last model call (1-based, per run) the rule applies to.</summary>
    public int? TurnTo { get; init; }

    /// <summary>Regex on the run's input (the first user message).</summary>
    public string? Input { get; init; }

    /// <summary>Regex on the latest user message.</summary>
    public string? User { get; init; }

    /// <summary>The latest message is the result of this tool.</summary>
    public string? Tool { get; init; }

    /// <summary>Regex on the latest message's text, whatever its role (a tool result included).</summary>
    public string? Match { get; init; }
}

/// <summary>A tool call the scripted model makes.</summary>
public sealed class ScriptToolCall
{
    /// <summary>The tool's name.</summary>
    public required string Tool { get; init; }

    /// <summary>The arguments, a JSON object whose string values may hold <c>{{placeholders}}</c>.</summary>
    public JsonObject Arguments { get; init; } = [];
}

/// <summary>A tool an agent may call.</summary>
public abstract class ToolDefinition
{
    /// <summary>The name the model calls it by.</summary>
    public required string Name { get; init; }

    /// <summary>The kind: <c>process</c>, <c>http</c> or <c>function</c>.</summary>
    public abstract string Kind { get; }

    /// <summary>What the tool does, shown to the model.</summary>
    public string? Description { get; init; }

    /// <summary>The tool's effect class.</summary>
    public ToolEffect Effect { get; init; } = ToolEffect.Read;

    /// <summary>How long one call may take; null means <see cref="DefaultTimeout"/>.</summary>
    public TimeSpan? Timeout { get; init; }

    /// <summary>The JSON Schema of the arguments; null accepts any JSON object.</summary>
    public JsonElement? Parameters { get; init; }

    /// <summary>What to do with a call interrupted by a crash; null means the effect's default.</summary>
    public InDoubtAction? OnInDoubt { get; init; }

    /// <summary>
    /// How long a run waits for a person to decide an in-doubt call of this tool (<see cref="InDoubtAction.Wait"/>);
    /// when the deadline passes with no decision, the call counts as failed and the run goes on. Null waits for ever.
    /// </summary>
    public TimeSpan? InDoubtTimeout { get; init; }

    /// <summary>The timeout used when none is set.</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(30);

    /// <summary>How failed calls are retried; null uses <see cref="RetrySettings.ToolDefault"/> (a <c>write</c> tool: no retry unless it sets <see cref="RetrySettings.OnlyBefore"/>).</summary>
    public RetrySettings? Retry { get; init; }

    /// <summary>The tool's circuit breaker, shared by every run in the process; null uses <see cref="CircuitBreakerSettings.Default"/>.</summary>
    public CircuitBreakerSettings? CircuitBreaker { get; init; }

    /// <summary>Most calls of this tool in flight at once in the process (a bulkhead); null: no limit.</summary>
    public int? MaxConcurrency { get; init; }

    /// <summary>Calls that may wait for a free slot when <see cref="MaxConcurrency"/> are in flight; more fail at once. Null: none wait.</summary>
    public int? MaxQueue { get; init; }

    /// <summary>How long one tool step may take, all attempts and waits included; null: no limit beyond the retry's caps.</summary>
    public TimeSpan? StepTimeout { get; init; }

    /// <summary>
    /// For a <c>write</c> tool: the tool that undoes a completed call of this one in a rollback. It
    /// gets <c>{"arguments": ORIGINAL_ARGUMENTS, "result": ORIGINAL_RESULT}</c> (the result parsed as JSON
    /// when it is JSON) and an idempotency key of its own; it must be safe to run again with that key.
    /// </summary>
    public string? Compensate { get; init; }

    /// <summary>The action applied to an in-doubt call: the declared one or the effect's default.</summary>
    public InDoubtAction EffectiveInDoubtAction => OnInDoubt ?? (Effect == ToolEffect.Write ? InDoubtAction.Wait : InDoubtAction.Retry);
}

/// <summary>A tool that runs a program (argv, no shell), arguments as JSON on stdin, stdout as the result.</summary>
public sealed class ProcessToolDefinition : ToolDefinition
{
    /// <inheritdoc />
    public override string Kind => "process";

    /// <summary>The program and its arguments. A relative program path resolves from <see cref="WorkingDirectory"/>.</summary>
    public required IReadOnlyList<string> Command { get; init; }

    /// <summary>The folder the process runs in (the manifest's folder for YAML tools).</summary>
    public string? WorkingDirectory { get; init; }

    /// <summary>
    /// Extra environment variables. A null value passes the host's variable of that name through;
    /// a non-null value sets it. Nothing else from the host's environment is passed on.
    /// </summary>
    public IReadOnlyDictionary<string, string?> Environment { get; init; } = new Dictionary<string, string?>();

    /// <summary>Stdout beyond this many bytes is cut, and the result says so.</summary>
    public int MaxOutputBytes { get; init; } = DefaultMaxOutputBytes;

    /// <summary>The stdout limit used when none is set: 1 MiB.</summary>
    public const int DefaultMaxOutputBytes = 1024 * 1024;

    /// <summary>How the program is confined (bubblewrap and rlimits); null: not sandboxed.</summary>
    public SandboxSettings? Sandbox { get; init; }

    /// <summary>
    /// True when a <c>write</c> tool of a version 2 manifest, which is sandboxed by default, says <c>sandbox: false</c>:
    /// it runs unsandboxed, and the host warns about it at start.
    /// </summary>
    public bool SandboxOptedOut { get; init; }
}

/// <summary>A tool that sends an HTTP request; the response body is the result.</summary>
public sealed class HttpToolDefinition : ToolDefinition
{
    /// <inheritdoc />
    public override string Kind => "http";

    /// <summary>The HTTP method; GET sends the arguments as the query string, others as a JSON body.</summary>
    public string Method { get; init; } = DefaultMethod;

    /// <summary>The method used when none is set.</summary>
    public const string DefaultMethod = "POST";

    /// <summary>The address called.</summary>
    public required Uri Url { get; init; }

    /// <summary>Headers sent with each request.</summary>
    public IReadOnlyDictionary<string, string> Headers { get; init; } = new Dictionary<string, string>();

    /// <summary>A response body beyond this many bytes is cut, and the result says so.</summary>
    public int MaxResponseBytes { get; init; } = DefaultMaxResponseBytes;

    /// <summary>The response body limit used when none is set: 1 MiB.</summary>
    public const int DefaultMaxResponseBytes = 1024 * 1024;
}

/// <summary>A tool implemented by a C# function (<see cref="AIFunction"/>).</summary>
public sealed class FunctionToolDefinition : ToolDefinition
{
    /// <inheritdoc />
    public override string Kind => "function";

    /// <summary>The function called with the model's arguments.</summary>
    public required AIFunction Function { get; init; }
}

/// <summary>Limits that stop a run with a <c>budget</c> outcome.</summary>
public sealed class AgentBudgets
{
    /// <summary>Most journal steps (model calls and tool calls) a run may take.</summary>
    public int? MaxSteps { get; init; }

    /// <summary>Most tokens (input plus output, as the model reports them) a run may use, those of the agents it delegates to included.</summary>
    public long? MaxTokens { get; init; }

    /// <summary>
    /// Longest a run may be active, summed over its active periods, counted from its first step:
    /// time in the queue and waiting for a person do not count.
    /// </summary>
    public TimeSpan? MaxWallTime { get; init; }

    /// <summary>Longest a run may wait in the queue before its first step; past it, the run ends as failed with outcome <c>expired</c>, without running. Null: no limit.</summary>
    public TimeSpan? MaxQueueTime { get; init; }

    /// <summary>Most a run may cost (priced models only, see <see cref="ModelDefinition.Price"/>), the agents it delegates to included; past it the run stops with a <c>budget</c> outcome.</summary>
    public double? MaxCost { get; init; }
}

/// <summary>What loop detection does when it fires.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<LoopAction>))]
public enum LoopAction
{
    /// <summary>End the run with a <c>loop</c> outcome.</summary>
    [JsonStringEnumMemberName("stop")] Stop,
    /// <summary>Tell the model once that it is looping; stop if it goes on.</summary>
    [JsonStringEnumMemberName("warn")] Warn,
}

/// <summary>How a run is judged to be looping.</summary>
public sealed class LoopDetectionSettings
{
    /// <summary>The same tool with the same arguments this many times is a loop. 0 turns this check off.</summary>
    public int MaxRepeatedCalls { get; init; } = DefaultMaxRepeatedCalls;

    /// <summary>The repeated-call limit used when none is set.</summary>
    public const int DefaultMaxRepeatedCalls = 3;

    /// <summary>This many model turns in a row that learn nothing new (every tool result already seen) is a loop. 0 turns it off.</summary>
    public int MaxTurnsWithoutProgress { get; init; } = DefaultMaxTurnsWithoutProgress;

    /// <summary>The no-progress limit used when none is set.</summary>
    public const int DefaultMaxTurnsWithoutProgress = 5;

    /// <summary>What to do when a loop is found.</summary>
    public LoopAction Action { get; init; } = LoopAction.Stop;
}

/// <summary>An agent: instructions, a model, tools and limits.</summary>
public sealed class AgentDefinition
{
    /// <summary>The agent's name, unique in a deployment.</summary>
    public required string Name { get; init; }

    /// <summary>The name of the model it uses.</summary>
    public required string Model { get; init; }

    /// <summary>The system prompt.</summary>
    public string? Instructions { get; init; }

    /// <summary>What the agent is for, shown in listings.</summary>
    public string? Description { get; init; }

    /// <summary>Names of the tools it may call.</summary>
    public IReadOnlyList<string> Tools { get; init; } = [];

    /// <summary>Its budgets.</summary>
    public AgentBudgets Budgets { get; init; } = new();

    /// <summary>Its loop detection settings.</summary>
    public LoopDetectionSettings LoopDetection { get; init; } = new();

    /// <summary>Whether a run may start with an empty (or blank) input. Default false: such a submission is refused before anything is written.</summary>
    public bool AllowEmptyInput { get; init; }

    /// <summary>
    /// Ask the model to state its confidence (0 to 1) with every tool call: each tool's declared
    /// parameters gain a required <c>confidence</c> number, which Bureau takes out before validating
    /// and running the call and gives to the policy (a rule can send calls below a threshold to a person).
    /// </summary>
    public bool StateConfidence { get; init; }

    /// <summary>
    /// Agents this agent may call as tools (the tool's name is the agent's; its one argument is the
    /// <c>task</c>). Each call is a child run; the callee may use only the tools both it and the caller
    /// may use (the intersection), never more.
    /// </summary>
    public IReadOnlyList<string> Delegates { get; init; } = [];

    /// <summary>A copy that may use only <paramref name="tools"/> (a delegate runs with the intersection of its tools and its caller's).</summary>
    public AgentDefinition WithTools(IReadOnlyList<string> tools) => With(tools, Budgets);

    /// <summary>A copy with <paramref name="budgets"/> (a team's member gets at most what the team has left).</summary>
    public AgentDefinition WithBudgets(AgentBudgets budgets) => With(Tools, budgets);

    /// <summary>A copy on another model and, when given, other instructions (a what-if fork of a run).</summary>
    public AgentDefinition WithModel(string model, string? instructions = null) => With(Tools, Budgets, model, instructions ?? Instructions);

    private AgentDefinition With(IReadOnlyList<string> tools, AgentBudgets budgets, string? model = null, string? instructions = null) => new()
    {
        Name = Name, Model = model ?? Model, Instructions = instructions ?? Instructions, Description = Description, Tools = tools, Budgets = budgets,
        LoopDetection = LoopDetection, AllowEmptyInput = AllowEmptyInput, StateConfidence = StateConfidence, Delegates = Delegates,
        RollbackOnFailure = RollbackOnFailure, Retention = Retention, Memory = Memory,
        MaxConcurrentRuns = MaxConcurrentRuns,
    };

    /// <summary>When a run of this agent fails or is canceled after completed writes, roll it back: compensate them in reverse order (a <c>rollback</c> child run).</summary>
    public bool RollbackOnFailure { get; init; }

    /// <summary>How long its finished runs are kept; null (default): for ever.</summary>
    public AgentRetention? Retention { get; init; }

    /// <summary>Its memory (the <c>remember</c>, <c>recall</c> and <c>forget</c> tools, its conversation window); null: none.</summary>
    public AgentMemory? Memory { get; init; }

    /// <summary>
    /// Most runs of this agent executing at once in the process (manifest <c>maxConcurrentRuns</c>); more wait in the queue
    /// while runs of other agents take the free slots. Waiting runs (approvals, children) hold no slot. Null (default):
    /// only the global <c>Bureau:MaxConcurrentRuns</c> and <c>Bureau:MaxConcurrentRunsPerAgent</c> apply;
    /// <c>Bureau:AgentConcurrencyLimits:NAME</c> overrides it.
    /// </summary>
    public int? MaxConcurrentRuns { get; init; }
}

/// <summary>
/// Which finished runs of an agent the runtime deletes (with their journals) in the background. A finished run
/// goes when it ended more than <see cref="KeepDays"/> ago or is not among the <see cref="KeepRuns"/> newest
/// finished runs; a failed run ended less than <see cref="KeepFailedDays"/> ago stays whatever the others say.
/// Queued, running and waiting runs, and runs whose root run has not finished, are never deleted.
/// </summary>
public sealed class AgentRetention
{
    /// <summary>Days a finished run is kept after it ended; null: no limit by age.</summary>
    public int? KeepDays { get; init; }

    /// <summary>How many of the newest finished runs are kept; null: no limit by count.</summary>
    public int? KeepRuns { get; init; }

    /// <summary>Days a failed run is kept after it ended (a failed run younger than that is kept even beyond <see cref="KeepRuns"/>); null: as <see cref="KeepDays"/>.</summary>
    public int? KeepFailedDays { get; init; }

    /// <summary>A folder where the runs are written as JSON lines (<c>bureau runs export</c>'s format) before they are deleted; null: not exported.</summary>
    public string? ExportTo { get; init; }

    /// <summary>Whether a run that ended at <paramref name="endedAt"/> with <paramref name="status"/>, the <paramref name="newerFinished"/>-th newest finished run of its agent (from 0), goes at <paramref name="now"/>.</summary>
    public bool ShouldDelete(RunStatus status, DateTimeOffset endedAt, int newerFinished, DateTimeOffset now)
    {
        if (!status.IsTerminal()) return false;
        var age = now - endedAt;
        if (status == RunStatus.Failed && KeepFailedDays is { } failedDays)
            return age >= TimeSpan.FromDays(failedDays);
        if (KeepDays is { } days && age >= TimeSpan.FromDays(days)) return true;
        return KeepRuns is { } runs && newerFinished >= runs;
    }
}

/// <summary>
/// Everything deployed: models, tools and agents. Built from YAML by Bureau.Manifests or in C#;
/// the runtime sees only this.
/// </summary>
public sealed class BureauDefinitions
{
    /// <summary>Models by name.</summary>
    public Dictionary<string, ModelDefinition> Models { get; } = new(StringComparer.Ordinal);

    /// <summary>Tools by name.</summary>
    public Dictionary<string, ToolDefinition> Tools { get; } = new(StringComparer.Ordinal);

    /// <summary>Agents by name.</summary>
    public Dictionary<string, AgentDefinition> Agents { get; } = new(StringComparer.Ordinal);

    /// <summary>The tool-call policy (rules, defaults per effect class); empty allows every call.</summary>
    public PolicySet Policies { get; set; } = new();

    /// <summary>Teams by name (agents and teams share one namespace).</summary>
    public Dictionary<string, TeamDefinition> Teams { get; } = new(StringComparer.Ordinal);

    /// <summary>Triggers by name (webhooks, schedules, topics), each starting an agent or a team.</summary>
    public Dictionary<string, TriggerDefinition> Triggers { get; } = new(StringComparer.Ordinal);

    /// <summary>The manifest file these came from, if any.</summary>
    public string? SourcePath { get; init; }

    /// <summary>The workforce: persistent agents with skills and concurrency limits that take tasks from an inbox (empty: none).</summary>
    public WorkforceDefinition Workforce { get; } = new();

    /// <summary>Adds a team, replacing one of the same name.</summary>
    public BureauDefinitions Add(TeamDefinition team) { Teams[team.Name] = team; return this; }

    /// <summary>Adds a trigger, replacing one of the same name.</summary>
    public BureauDefinitions Add(TriggerDefinition trigger) { Triggers[trigger.Name] = trigger; return this; }

    /// <summary>Adds a model, replacing one of the same name.</summary>
    public BureauDefinitions Add(ModelDefinition model) { Models[model.Name] = model; return this; }

    /// <summary>Adds a tool, replacing one of the same name.</summary>
    public BureauDefinitions Add(ToolDefinition tool) { Tools[tool.Name] = tool; return this; }

    /// <summary>Adds an agent, replacing one of the same name.</summary>
    public BureauDefinitions Add(AgentDefinition agent) { Agents[agent.Name] = agent; return this; }

    /// <summary>Adds everything from <paramref name="other"/>, replacing same-named entries.</summary>
    public BureauDefinitions Merge(BureauDefinitions other)
    {
        foreach (var m in other.Models.Values) Add(m);
        foreach (var t in other.Tools.Values) Add(t);
        foreach (var a in other.Agents.Values) Add(a);
        foreach (var t in other.Teams.Values) Add(t);
        foreach (var t in other.Triggers.Values) Add(t);
        foreach (var m in other.Workforce.Members.Values) Workforce.Add(m);
        if (other.Workforce.Board != WorkforceDefinition.DefaultBoard) Workforce.Board = other.Workforce.Board;
        if (!other.Policies.IsEmpty || other.Policies.Notify.Count > 0)
        {
            var defaults = new Dictionary<ToolEffect, PolicyAction>(Policies.Defaults);
            foreach (var (effect, action) in other.Policies.Defaults) defaults[effect] = action;
            Policies = new PolicySet
            {
                Rules = [.. Policies.Rules, .. other.Policies.Rules],
                Defaults = defaults,
                Notify = [.. Policies.Notify, .. other.Policies.Notify],
                DefaultApproval = other.Policies.Defaults.Count > 0 ? other.Policies.DefaultApproval : Policies.DefaultApproval,
            };
        }
        return this;
    }
}
