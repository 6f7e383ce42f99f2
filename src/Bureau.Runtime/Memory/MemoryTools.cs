using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.AI;

namespace Bureau.Memory;

/// <summary>A <c>remember</c> or <c>forget</c> call, parsed: the scope kind (or, in an intent, its address), key, value, expected version.</summary>
internal sealed record MemoryWriteCall(string Scope, string Key, string? Value, long? ExpectedVersion);

/// <summary>A <c>recall</c> call, parsed.</summary>
internal sealed record MemoryRecallCall(IReadOnlyList<string> ScopeKinds, bool ScopeNamed, string? Key, string? Query, int Limit);

/// <summary>
/// The built-in memory tools (<c>remember</c>, <c>recall</c>, <c>forget</c>): what the model sees, how its arguments
/// are read (each error says what is wrong, and goes back to the model), and the results it gets.
/// </summary>
internal static class MemoryTools
{
    public const string Remember = "remember", Recall = "recall", Forget = "forget";

    public static bool IsMemoryTool(AgentMemory? memory, string name) => memory is not null && memory.Tools.Contains(name, StringComparer.Ordinal);

    /// <summary>The declarations of the agent's memory tools.</summary>
    public static IReadOnlyList<AITool> Declarations(AgentMemory memory)
    {
        var scopes = new JsonArray([.. memory.Scopes.Select(s => (JsonNode)JsonValue.Create(s))]);
        var list = new List<AITool>();
        foreach (var name in memory.Tools)
        {
            var (description, schema) = name switch
            {
                Remember => ("Store a fact in long-term memory (a new version of it). Scopes: " + string.Join(", ", memory.Scopes) +
                    ". The write is compare-and-set: it succeeds only if the fact is still at the version you last saw (recall it first); " +
                    "otherwise you get an error with the current value, and can decide again.",
                    Schema(new JsonObject
                    {
                        ["scope"] = new JsonObject { ["type"] = "string", ["enum"] = scopes.DeepClone(), ["description"] = "Whose fact it is." },
                        ["key"] = new JsonObject { ["type"] = "string", ["description"] = "The fact's name, e.g. customer-plan." },
                        ["value"] = new JsonObject { ["type"] = "string", ["description"] = "The fact." },
                        ["expectedVersion"] = new JsonObject { ["type"] = "integer", ["minimum"] = 0, ["description"] = "The version you last saw; 0: the fact must not exist yet. Leave out to use the version this run last read or wrote (0 if none)." },
                    }, "scope", "key", "value")),
                Recall => ("Read long-term memory: one fact by key, or the facts that best match a query (with scores, versions and who wrote them).",
                    Schema(new JsonObject
                    {
                        ["scope"] = new JsonObject { ["type"] = "string", ["enum"] = scopes.DeepClone(), ["description"] = "Where to look; leave out to look in every scope." },
                        ["key"] = new JsonObject { ["type"] = "string", ["description"] = "The fact's key, for an exact read." },
                        ["query"] = new JsonObject { ["type"] = "string", ["description"] = "What to look for, when you do not know the key." },
                        ["limit"] = new JsonObject { ["type"] = "integer", ["minimum"] = 1, ["maximum"] = 20, ["description"] = "The most facts returned." },
                    })),
                _ => ("Forget a fact in long-term memory (compare-and-set like remember; its history stays for audit).",
                    Schema(new JsonObject
                    {
                        ["scope"] = new JsonObject { ["type"] = "string", ["enum"] = scopes.DeepClone() },
                        ["key"] = new JsonObject { ["type"] = "string" },
                        ["expectedVersion"] = new JsonObject { ["type"] = "integer", ["minimum"] = 0 },
                    }, "scope", "key")),
            };
            list.Add(AIFunctionFactory.CreateDeclaration(name, description, schema));
        }
        return list;
    }

    private static JsonElement Schema(JsonObject properties, params string[] required)
    {
        var schema = new JsonObject { ["type"] = "object", ["properties"] = properties, ["additionalProperties"] = false };
        if (required.Length > 0) schema["required"] = new JsonArray([.. required.Select(r => (JsonNode)JsonValue.Create(r))]);
        using var doc = JsonDocument.Parse(schema.ToJsonString());
        return doc.RootElement.Clone();
    }

    /// <summary>Reads a <c>remember</c>/<c>forget</c> call of the model: the scope is a kind the agent may use.</summary>
    public static (MemoryWriteCall? Call, string? Error) ParseWrite(string tool, string arguments, AgentMemory memory)
    {
        if (Object(tool, arguments, out var error) is not { } o) return (null, error);
        var allowed = tool == Remember ? new[] { "scope", "key", "value", "expectedVersion" } : ["scope", "key", "expectedVersion"];
        if (Unexpected(tool, o, allowed) is { } unexpected) return (null, unexpected);
        if (Text(o, "scope") is not { } scope) return (null, $"invalid arguments for '{tool}': 'scope' is required: one of {string.Join(", ", memory.Scopes)}");
        if (!memory.Scopes.Contains(scope, StringComparer.Ordinal))
            return (null, $"invalid arguments for '{tool}': scope '{scope}' is not one of this agent's memory scopes ({string.Join(", ", memory.Scopes)})");
        if (Text(o, "key") is not { } key) return (null, $"invalid arguments for '{tool}': 'key' is required (a non-empty string)");
        if (MemoryScopes.KeyProblem(key) is { } keyProblem) return (null, $"invalid arguments for '{tool}': {keyProblem}");
        string? value = null;
        if (tool == Remember)
        {
            if (o["value"] is not JsonValue v || !v.TryGetValue<string>(out value)) return (null, $"invalid arguments for '{tool}': 'value' is required (a string)");
            if (value.Length > MemoryScopes.MaxValueLength) return (null, $"invalid arguments for '{tool}': 'value' is longer than {MemoryScopes.MaxValueLength} characters");
        }
        long? expected = null;
        if (o["expectedVersion"] is { } ev)
        {
            if (ev is not JsonValue evv || !evv.TryGetValue<long>(out var n) || n < 0)
                return (null, $"invalid arguments for '{tool}': 'expectedVersion' must be an integer, 0 or more (0: the fact must not exist yet)");
            expected = n;
        }
        return (new MemoryWriteCall(scope, key, value, expected), null);
    }

    /// <summary>The arguments a memory write's intent is journaled with: the scope's address and the expected version resolved, so a resume writes exactly that.</summary>
    public static string IntentArguments(string scopeAddress, MemoryWriteCall call)
    {
        var o = new JsonObject { ["scope"] = scopeAddress, ["key"] = call.Key };
        if (call.Value is not null) o["value"] = call.Value;
        if (call.ExpectedVersion is { } e) o["expectedVersion"] = e;
        return o.ToJsonString();
    }

    /// <summary>Reads the arguments of a journaled intent (see <see cref="IntentArguments"/>).</summary>
    public static MemoryWriteCall ParseIntent(string arguments)
    {
        var o = JsonNode.Parse(arguments) as JsonObject ?? throw new InvalidDataException($"a memory intent's arguments are not an object: {arguments}");
        return new MemoryWriteCall(
            (string)o["scope"]!,
            (string)o["key"]!,
            o["value"] is JsonValue v ? v.GetValue<string>() : null,
            o["expectedVersion"] is JsonValue e ? e.GetValue<long>() : null);
    }

    /// <summary>Reads a <c>recall</c> call of the model.</summary>
    public static (MemoryRecallCall? Call, string? Error) ParseRecall(string arguments, AgentMemory memory)
    {
        if (Object(Recall, arguments, out var error) is not { } o) return (null, error);
        if (Unexpected(Recall, o, ["scope", "key", "query", "limit"]) is { } unexpected) return (null, unexpected);
        IReadOnlyList<string> kinds = memory.Scopes;
        var named = false;
        if (o["scope"] is not null)
        {
            if (Text(o, "scope") is not { } scope || !memory.Scopes.Contains(scope, StringComparer.Ordinal))
                return (null, $"invalid arguments for 'recall': 'scope' must be one of this agent's memory scopes ({string.Join(", ", memory.Scopes)}), or left out");
            kinds = [scope];
            named = true;
        }
        var key = Text(o, "key");
        var query = Text(o, "query");
        if (key is null && query is null) return (null, "invalid arguments for 'recall': give 'key' (an exact read) or 'query' (a search)");
        if (key is not null && query is not null) return (null, "invalid arguments for 'recall': give 'key' or 'query', not both");
        var limit = memory.RecallLimit;
        if (o["limit"] is { } l)
        {
            if (l is not JsonValue lv || !lv.TryGetValue<int>(out limit) || limit < 1 || limit > 20)
                return (null, "invalid arguments for 'recall': 'limit' must be an integer from 1 to 20");
        }
        return (new MemoryRecallCall(kinds, named, key, query, limit), null);
    }

    /// <summary>What the model gets back from a recall.</summary>
    public static string RecallResult(IReadOnlyList<MemoryHit> hits)
    {
        var facts = new JsonArray();
        foreach (var h in hits)
        {
            var f = FactJson(h.Fact);
            if (h.Score is { } s) f["score"] = s;
            facts.Add(f);
        }
        return new JsonObject { ["found"] = hits.Count, ["facts"] = facts }.ToJsonString();
    }

    /// <summary>What the model gets back from a write: the version written, or a conflict with the current value.</summary>
    public static string WriteResult(string tool, MemoryWriteCall call, MemoryWriteResult result)
    {
        switch (result.Outcome)
        {
            case MemoryWriteOutcome.Conflict:
                var current = result.Current;
                var now = current is null ? "does not exist" : current.IsForgotten ? $"was forgotten (version {current.Version})" : $"is at version {current.Version}";
                var expected = call.ExpectedVersion is 0 or null ? "not to exist yet" : $"to be at version {call.ExpectedVersion}";
                var next = current is null ? 0 : current.Version;
                var o = new JsonObject
                {
                    ["error"] = "conflict",
                    ["message"] = $"'{tool}' was not applied: fact '{call.Key}' in scope {call.Scope} {now}, and you expected it {expected}"
                        + (current is { IsForgotten: false } ? $"; its current value is below (written by {Writer(current.Provenance)})" : "")
                        + $". Decide with the current value, then call '{tool}' again with expectedVersion {next} if your change should still apply.",
                    ["current"] = current is null ? null : FactJson(current),
                };
                return o.ToJsonString();
            case MemoryWriteOutcome.Absent:
                return new JsonObject
                {
                    ["error"] = "absent",
                    ["message"] = $"'{tool}' was not applied: fact '{call.Key}' in scope {call.Scope} does not exist",
                }.ToJsonString();
            default:
                var fact = result.Fact!;
                var ok = new JsonObject
                {
                    ["ok"] = true,
                    ["outcome"] = result.Outcome switch { MemoryWriteOutcome.Merged => "merged", MemoryWriteOutcome.Forgotten => "forgotten", _ => "written" },
                    ["scope"] = fact.Scope,
                    ["key"] = fact.Key,
                    ["version"] = fact.Version,
                };
                if (fact.Supersedes is { } s) ok["supersedes"] = s;
                if (result.Outcome == MemoryWriteOutcome.Merged) ok["value"] = fact.Value;
                return ok.ToJsonString();
        }
    }

    private static JsonObject FactJson(MemoryFact f)
    {
        var o = new JsonObject
        {
            ["scope"] = f.Scope,
            ["key"] = f.Key,
            ["value"] = f.Value,
            ["version"] = f.Version,
            ["writtenBy"] = Writer(f.Provenance),
            ["at"] = f.Provenance.At.ToString("u", CultureInfo.InvariantCulture),
        };
        return o;
    }

    private static string Writer(MemoryProvenance p)
    {
        var parts = new List<string>();
        if (p.Agent is not null) parts.Add("agent " + p.Agent);
        if (p.RunId is not null) parts.Add(p.Step is { } s ? $"run {p.RunId} step {s}" : "run " + p.RunId);
        if (parts.Count == 0) parts.Add(p.Actor ?? "unknown");
        return string.Join(", ", parts);
    }

    private static JsonObject? Object(string tool, string arguments, out string? error)
    {
        error = null;
        try
        {
            if (JsonNode.Parse(arguments) is JsonObject o) return o;
        }
        catch (JsonException)
        {
        }
        error = $"invalid arguments for '{tool}': expected a JSON object";
        return null;
    }

    private static string? Unexpected(string tool, JsonObject o, string[] allowed)
    {
        var extra = o.Select(p => p.Key).Where(k => !allowed.Contains(k)).ToList();
        return extra.Count == 0 ? null : $"invalid arguments for '{tool}': unexpected {string.Join(", ", extra)}; expected only {string.Join(", ", allowed)}";
    }

    private static string? Text(JsonObject o, string name) =>
        o[name] is JsonValue v && v.TryGetValue<string>(out var s) && !string.IsNullOrWhiteSpace(s) ? s : null;
}
