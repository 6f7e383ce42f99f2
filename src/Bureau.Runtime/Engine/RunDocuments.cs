using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Bureau;

/// <summary>
/// The JSON document of a run: the same for <c>GET /v1/runs/{id}</c> and <c>bureau runs show --json</c>.
/// </summary>
public static class RunDocuments
{
    /// <summary>The run without its steps (for listings).</summary>
    public static JsonObject Summary(RunRecord run)
    {
        var o = new JsonObject
        {
            ["id"] = run.Id,
            ["agent"] = run.Agent,
            ["status"] = run.Status.ToWireName(),
            ["input"] = run.Input,
            ["output"] = run.Output,
            ["error"] = run.Error,
            ["outcome"] = run.Outcome,
            ["usage"] = new JsonObject
            {
                ["inputTokens"] = run.Usage.InputTokens,
                ["outputTokens"] = run.Usage.OutputTokens,
                ["totalTokens"] = run.Usage.TotalTokens,
            },
            ["createdAt"] = run.CreatedAt,
            ["updatedAt"] = run.UpdatedAt,
            ["version"] = run.Version,
        };
        if (run.WaitingFor is { } w) o["waitingFor"] = WaitingFor(w);
        if (run.Actor is not null) o["actor"] = run.Actor;
        return o;
    }

    /// <summary>The run with every step of its journal.</summary>
    public static JsonObject Full(RunRecord run, IReadOnlyList<JournalRecord> journal)
    {
        var o = Summary(run);
        var steps = new JsonArray();
        foreach (var r in journal) steps.Add(Step(r));
        o["steps"] = steps;
        return o;
    }

    /// <summary>One journal entry as JSON: <c>n</c>, <c>kind</c>, <c>at</c>, then the entry's own fields.</summary>
    public static JsonObject Step(JournalRecord record)
    {
        var entry = JsonNode.Parse(BureauJson.SerializeEntry(record.Entry))!.AsObject();
        var o = new JsonObject { ["n"] = record.N, ["kind"] = record.Entry.Kind, ["at"] = record.At };
        foreach (var (key, value) in entry.ToList())
        {
            if (key == "kind") continue;
            entry.Remove(key);
            o[key] = value;
        }
        return o;
    }

    /// <summary>Why a run waits, as JSON.</summary>
    public static JsonObject WaitingFor(WaitingFor w) => new()
    {
        ["reason"] = w.Reason,
        ["step"] = w.Step,
        ["tool"] = w.Tool,
        ["key"] = w.Key,
        ["arguments"] = w.Arguments,
    };

    /// <summary>
    /// How run documents are written: compact, and without escaping quotes or non-ASCII text inside
    /// strings (<c>"{\"n\":1}"</c>, not <c>"{\u0022n\u0022:1}"</c>). The documents are JSON data, never
    /// embedded in HTML unencoded.
    /// </summary>
    public static JsonSerializerOptions JsonOptions { get; } = CreateOptions(indented: false);

    private static readonly JsonSerializerOptions s_indented = CreateOptions(indented: true);

    private static JsonSerializerOptions CreateOptions(bool indented)
    {
        var options = new JsonSerializerOptions { WriteIndented = indented, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
        options.MakeReadOnly(populateMissingResolver: true);
        return options;
    }

    /// <summary>JSON text of a node (compact unless <paramref name="indented"/>).</summary>
    public static string ToJson(JsonNode node, bool indented = false) => node.ToJsonString(indented ? s_indented : JsonOptions);
}
