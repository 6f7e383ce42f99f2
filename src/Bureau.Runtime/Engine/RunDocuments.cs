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
            ["cost"] = run.Cost,
            ["createdAt"] = run.CreatedAt,
            ["updatedAt"] = run.UpdatedAt,
            ["version"] = run.Version,
        };
        if (run.WaitingFor is { } w) o["waitingFor"] = WaitingFor(w);
        if (run.Actor is not null) o["actor"] = run.Actor;
        if (run.Kind != RunKinds.Agent) o["kind"] = run.Kind;
        if (run.ParentRunId is not null) o["parentRunId"] = run.ParentRunId;
        if (run.RootRunId is not null && run.RootRunId != run.Id) o["rootRunId"] = run.RootRunId;
        return o;
    }

    /// <summary>What the run's model calls cost (priced models only), summed over its journal.</summary>
    public static double CostOf(IReadOnlyList<JournalRecord> journal)
    {
        ArgumentNullException.ThrowIfNull(journal);
        var cost = 0d;
        foreach (var r in journal)
            if (r.Entry is ModelResponded { Cost: { } c }) cost += c;
        return Math.Round(cost, 9);
    }

    /// <summary>
    /// The run's cost: its row's (an agent's own model calls, a team's members summed), or, for an agent run stored
    /// before rows had a cost and not migrated, the sum over its journal.
    /// </summary>
    public static double CostOf(RunRecord run, IReadOnlyList<JournalRecord> journal)
    {
        ArgumentNullException.ThrowIfNull(run);
        return run.Cost != 0 || run.Kind == RunKinds.Team ? run.Cost : CostOf(journal);
    }

    /// <summary>The summary with what the journal adds: <c>failure</c> for a failed or canceled run.</summary>
    private static JsonObject WithJournalFacts(RunRecord run, IReadOnlyList<JournalRecord> journal)
    {
        var o = Summary(run);
        o["cost"] = CostOf(run, journal);
        if (Resilience.FailureReport.FailureOf(run, journal) is { } f)
            o["failure"] = JsonSerializer.SerializeToNode(f, BureauJsonContext.Default.RunFailure);
        return o;
    }

    /// <summary>The run with every step of its journal.</summary>
    public static JsonObject Full(RunRecord run, IReadOnlyList<JournalRecord> journal)
    {
        var o = WithJournalFacts(run, journal);
        var steps = new JsonArray();
        foreach (var r in journal) steps.Add(Step(r));
        o["steps"] = steps;
        return o;
    }

    /// <summary>One journal entry as JSON: <c>n</c>, <c>at</c>, <c>kind</c>, then the entry's own fields (<see cref="BureauJson.SerializeStep"/>).</summary>
    public static JsonObject Step(JournalRecord record) => JsonNode.Parse(BureauJson.SerializeStep(record))!.AsObject();

    /// <summary>Why a run waits, as JSON: <c>reason</c>, <c>step</c>, <c>deadline</c> when it has one, then the wait's own fields.</summary>
    public static JsonObject WaitingFor(WaitingFor w) => JsonSerializer.SerializeToNode(w, BureauJsonContext.Default.WaitingFor)!.AsObject();

    /// <summary>Writes the run with every step of its journal, each step as the store's bytes prefixed with its number and time (no re-parsing).</summary>
    public static void WriteFull(Utf8JsonWriter writer, RunRecord run, IReadOnlyList<JournalRecord> journal)
    {
        ArgumentNullException.ThrowIfNull(writer);
        var summary = WithJournalFacts(run, journal);
        writer.WriteStartObject();
        foreach (var (key, value) in summary)
        {
            writer.WritePropertyName(key);
            if (value is null) writer.WriteNullValue();
            else value.WriteTo(writer, JsonOptions);
        }
        writer.WriteStartArray("steps");
        foreach (var r in journal) writer.WriteRawValue(BureauJson.SerializeStep(r), skipInputValidation: true);
        writer.WriteEndArray();
        writer.WriteEndObject();
    }

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
