using System.Text.Json.Serialization;

namespace Bureau;

/// <summary>
/// The kinds of long-term memory scope. A scope address is <c>KIND:ID</c>: <c>agent:triage</c>,
/// <c>team:support-desk</c>, <c>user:alice</c>, <c>tenant:acme</c>. The runtime resolves the id of a
/// run's scope (decision 0023); a model names only the kind.
/// </summary>
public static class MemoryScopes
{
    /// <summary>Facts of one agent (the id is the agent's name).</summary>
    public const string Agent = "agent";

    /// <summary>Facts a team shares (the id is the team's name).</summary>
    public const string Team = "team";

    /// <summary>Facts about the person a run works for (the id is the root run's actor).</summary>
    public const string User = "user";

    /// <summary>Facts of the whole tenant (the id is <see cref="AgentMemory.Tenant"/>).</summary>
    public const string Tenant = "tenant";

    /// <summary>Every kind, in order of breadth.</summary>
    public static readonly IReadOnlyList<string> All = [Agent, Team, User, Tenant];

    /// <summary>The longest scope address, key and value accepted (characters).</summary>
    public const int MaxScopeLength = 200, MaxKeyLength = 200, MaxValueLength = 64 * 1024;

    /// <summary>The address of a scope: <c>KIND:ID</c>.</summary>
    public static string Address(string kind, string id) => kind + ":" + id;

    /// <summary>Checks a scope address; returns what is wrong with it, or null when it is valid.</summary>
    public static string? Problem(string? scope)
    {
        if (string.IsNullOrWhiteSpace(scope)) return "the scope is empty; expected KIND:ID, for example team:support";
        if (scope.Length > MaxScopeLength) return $"the scope is longer than {MaxScopeLength} characters";
        var colon = scope.IndexOf(':', StringComparison.Ordinal);
        if (colon <= 0 || colon == scope.Length - 1) return $"scope '{scope}' is not KIND:ID (for example team:support)";
        var kind = scope[..colon];
        if (!All.Contains(kind)) return $"scope '{scope}': unknown kind '{kind}'; expected one of {string.Join(", ", All)}";
        return null;
    }

    /// <summary>Checks a fact's key; returns what is wrong with it, or null when it is valid.</summary>
    public static string? KeyProblem(string? key)
    {
        if (string.IsNullOrWhiteSpace(key)) return "the key is empty";
        if (key.Length > MaxKeyLength) return $"the key is longer than {MaxKeyLength} characters";
        return null;
    }
}

/// <summary>What a write does when the fact is not at the version it expected (declared per agent, <c>memory.onConflict</c>).</summary>
[JsonConverter(typeof(JsonStringEnumConverter<MemoryConflictRule>))]
public enum MemoryConflictRule
{
    /// <summary>The write is refused; the writer gets the current value and version (a tool error the model can act on).</summary>
    [JsonStringEnumMemberName("reject")] Reject,
    /// <summary>The write supersedes whatever is current (recorded as superseding it).</summary>
    [JsonStringEnumMemberName("last-writer-wins")] LastWriterWins,
    /// <summary>The new value is appended to the current one (a new line), as a new version.</summary>
    [JsonStringEnumMemberName("append")] Append,
}

/// <summary>Where a fact's version came from.</summary>
/// <param name="RunId">The run that wrote it (null: written through the API or C#, outside a run).</param>
/// <param name="Step">The journal step of the write (its <c>tool.intent</c>).</param>
/// <param name="Agent">The agent that wrote it.</param>
/// <param name="At">When it was written.</param>
/// <param name="Actor">Who the run worked for (its actor), or who wrote it outside a run.</param>
public sealed record MemoryProvenance(string? RunId, long? Step, string? Agent, DateTimeOffset At, string? Actor = null);

/// <summary>One version of a fact. A forgotten fact's newest version has no <see cref="Value"/> (a tombstone).</summary>
/// <param name="Scope">Its scope address (<c>team:support</c>).</param>
/// <param name="Key">Its key within the scope.</param>
/// <param name="Version">Its version, from 1; each write of the key adds one.</param>
/// <param name="Value">Its value; null when this version forgot the fact.</param>
/// <param name="Provenance">Who wrote this version, where and when.</param>
/// <param name="Supersedes">The version this one replaced, or null for the first.</param>
/// <param name="SupersededBy">The version that replaced this one, or null while it is current.</param>
public sealed record MemoryFact(string Scope, string Key, long Version, string? Value, MemoryProvenance Provenance, long? Supersedes = null, long? SupersededBy = null)
{
    /// <summary>True for the version that forgot the fact.</summary>
    [JsonIgnore]
    public bool IsForgotten => Value is null;
}

/// <summary>A write of a fact (a new version), or a forget (<see cref="Value"/> null).</summary>
public sealed record MemoryWrite
{
    /// <summary>The scope address.</summary>
    public required string Scope { get; init; }

    /// <summary>The key.</summary>
    public required string Key { get; init; }

    /// <summary>The new value; null forgets the fact.</summary>
    public string? Value { get; init; }

    /// <summary>
    /// The compare-and-set condition: the version the writer last saw. <c>0</c>: the fact must not exist (never
    /// written, or forgotten). Null: no condition (a blind write).
    /// </summary>
    public long? ExpectedVersion { get; init; }

    /// <summary>What happens when the condition does not hold.</summary>
    public MemoryConflictRule OnConflict { get; init; }

    /// <summary>Who writes.</summary>
    public required MemoryProvenance Provenance { get; init; }

    /// <summary>
    /// The write's idempotency key (a run's <c>RUN:STEP</c>): a write whose key was applied before is not applied again;
    /// the store answers with what it did then (<see cref="MemoryWriteResult.Repeated"/>). Null: not deduplicated.
    /// </summary>
    public string? IdempotencyKey { get; init; }
}

/// <summary>What a write did.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<MemoryWriteOutcome>))]
public enum MemoryWriteOutcome
{
    /// <summary>A new version was written.</summary>
    [JsonStringEnumMemberName("written")] Written,
    /// <summary>A new version was written by the <see cref="MemoryConflictRule.Append"/> rule: the current value and the new one.</summary>
    [JsonStringEnumMemberName("merged")] Merged,
    /// <summary>The fact was forgotten (a tombstone version was written).</summary>
    [JsonStringEnumMemberName("forgotten")] Forgotten,
    /// <summary>Nothing was written: the fact is not at the expected version; <see cref="MemoryWriteResult.Current"/> is what is.</summary>
    [JsonStringEnumMemberName("conflict")] Conflict,
    /// <summary>Nothing was written: a forget of a fact that does not exist.</summary>
    [JsonStringEnumMemberName("absent")] Absent,
}

/// <summary>The answer to a <see cref="MemoryWrite"/>.</summary>
/// <param name="Outcome">What happened.</param>
/// <param name="Fact">The version written (written, merged, forgotten), or null.</param>
/// <param name="Current">On a conflict, the current version (null when the fact does not exist or was forgotten).</param>
/// <param name="Repeated">True when the idempotency key had been applied before: nothing new was written.</param>
public sealed record MemoryWriteResult(MemoryWriteOutcome Outcome, MemoryFact? Fact, MemoryFact? Current = null, bool Repeated = false)
{
    /// <summary>True when the write took effect (now or, for a repeat, before).</summary>
    public bool Succeeded => Outcome is MemoryWriteOutcome.Written or MemoryWriteOutcome.Merged or MemoryWriteOutcome.Forgotten;
}

/// <summary>A read of memory: one key, or a search.</summary>
public sealed record MemoryRecall
{
    /// <summary>The scopes looked in (addresses), in order.</summary>
    public required IReadOnlyList<string> Scopes { get; init; }

    /// <summary>The key, for an exact read; null for a search.</summary>
    public string? Key { get; init; }

    /// <summary>The search text, when <see cref="Key"/> is null.</summary>
    public string? Query { get; init; }

    /// <summary>The most hits returned.</summary>
    public int Limit { get; init; } = 5;
}

/// <summary>A fact a recall found, with its score (a search's relevance, higher is better; null for an exact read).</summary>
public sealed record MemoryHit(MemoryFact Fact, double? Score);

/// <summary>
/// Long-term memory: versioned facts in scopes, written with compare-and-set, with provenance and supersession
/// (decision 0023). Every implementation passes the memory conformance suite (tests: <c>MemoryStoreConformanceTests</c>).
/// Writes are durable when they complete; concurrent writers of one fact are serialized, and exactly one of
/// them wins each version.
/// </summary>
public interface IMemoryStore
{
    /// <summary>Creates or migrates the schema. Called once before anything else.</summary>
    Task InitializeAsync(CancellationToken cancellationToken = default);

    /// <summary>Writes (or forgets) a fact under its compare-and-set condition and conflict rule.</summary>
    Task<MemoryWriteResult> WriteAsync(MemoryWrite write, CancellationToken cancellationToken = default);

    /// <summary>The fact's current version, or null when it does not exist or was forgotten.</summary>
    Task<MemoryFact?> GetAsync(string scope, string key, CancellationToken cancellationToken = default);

    /// <summary>Every version of the fact, oldest first (empty when it was never written).</summary>
    Task<IReadOnlyList<MemoryFact>> HistoryAsync(string scope, string key, CancellationToken cancellationToken = default);

    /// <summary>The current facts of a scope, by key (forgotten ones left out), from <paramref name="afterKey"/> on.</summary>
    Task<IReadOnlyList<MemoryFact>> ListAsync(string scope, string? afterKey = null, int limit = 100, CancellationToken cancellationToken = default);

    /// <summary>
    /// Reads for a run: the current version of <see cref="MemoryRecall.Key"/> in each scope that has it, or the facts
    /// that best match <see cref="MemoryRecall.Query"/> across the scopes, best first, with scores.
    /// </summary>
    Task<IReadOnlyList<MemoryHit>> RecallAsync(MemoryRecall recall, CancellationToken cancellationToken = default);
}

/// <summary>
/// An agent's memory (manifest <c>memory:</c>): the built-in tools <c>remember</c>, <c>recall</c> and <c>forget</c>,
/// the scopes they may use and the conflict rule of its writes; and its conversation window.
/// </summary>
public sealed class AgentMemory
{
    /// <summary>The built-in memory tools.</summary>
    public static readonly IReadOnlyList<string> ToolNames = ["remember", "recall", "forget"];

    /// <summary>The scope kinds its tools may use (<see cref="MemoryScopes"/>); default: all four.</summary>
    public IReadOnlyList<string> Scopes { get; init; } = MemoryScopes.All;

    /// <summary>Which of the memory tools it has; default: all three.</summary>
    public IReadOnlyList<string> Tools { get; init; } = ToolNames;

    /// <summary>What its writes do on a version conflict; default <see cref="MemoryConflictRule.Reject"/>.</summary>
    public MemoryConflictRule OnConflict { get; init; }

    /// <summary>The id of the <c>team</c> scope; null: the team whose member the run is (its nearest team ancestor).</summary>
    public string? Team { get; init; }

    /// <summary>The id of the <c>tenant</c> scope; default <c>default</c>.</summary>
    public string Tenant { get; init; } = "default";

    /// <summary>The most facts one <c>recall</c> returns; default 5.</summary>
    public int RecallLimit { get; init; } = 5;

    /// <summary>The conversation window; null: every message is sent to the model.</summary>
    public ConversationWindow? Window { get; init; }
}

/// <summary>What is done when the conversation no longer fits the window.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<WindowOverflow>))]
public enum WindowOverflow
{
    /// <summary>The oldest turns are left out of the request (the system prompt and the run's input stay; a tool call and its result go together).</summary>
    [JsonStringEnumMemberName("drop-oldest")] DropOldest,
    /// <summary>The oldest turns are replaced by a summary a model writes (journaled, so a resume uses the same summary).</summary>
    [JsonStringEnumMemberName("summarize")] Summarize,
}

/// <summary>The short-term memory of an agent: how many tokens of conversation go to the model, and what happens beyond.</summary>
public sealed class ConversationWindow
{
    /// <summary>The most tokens of messages sent with one model call (counted with <see cref="Tokenizer"/>).</summary>
    public required int MaxTokens { get; init; }

    /// <summary>What is done with the older messages when the conversation is longer.</summary>
    public WindowOverflow Overflow { get; init; }

    /// <summary>The model that writes summaries (<see cref="WindowOverflow.Summarize"/>); null: the agent's own model.</summary>
    public string? SummaryModel { get; init; }

    /// <summary>The tokenizer that counts: <c>o200k_base</c> (default).</summary>
    public string Tokenizer { get; init; } = "o200k_base";
}
