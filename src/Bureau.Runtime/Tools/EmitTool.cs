using System.Text.Json;
using System.Text.Json.Nodes;
using Bureau.Triggers;

namespace Bureau.Tools;

/// <summary>
/// Publishes a CloudEvent of the tool's topic with the model's <c>data</c>: its id is the call's idempotency key, so a
/// retried or replayed call publishes the same event and its subscribers' runs start once. The result names the runs.
/// A full queue is an <see cref="ToolFailure.Unavailable"/> error (the tool's retry policy may try again).
/// </summary>
internal sealed class EmitTool(EmitToolDefinition definition, Func<TriggerIngest> ingest) : BureauTool(definition)
{
    private static readonly JsonElement s_schema = JsonDocument.Parse("""
        {"type":"object","properties":{
          "data":{"description":"The event's data: a JSON value (an object, a string, ...)."},
          "subject":{"type":"string","description":"Optional: what the event is about (a ticket id)."}},
         "required":["data"],"additionalProperties":false}
        """).RootElement.Clone();

    /// <inheritdoc />
    public override JsonElement ParametersSchema => definition.Parameters ?? s_schema;

    protected override async Task<ToolOutcome> InvokeCoreAsync(ToolInvocation invocation, CancellationToken cancellationToken)
    {
        var ev = new JsonObject
        {
            ["specversion"] = "1.0",
            ["id"] = invocation.IdempotencyKey,
            ["source"] = definition.Source ?? "/bureau/runs/" + invocation.RunId,
            ["type"] = definition.Topic,
        };
        if (invocation.Arguments.ValueKind == JsonValueKind.Object)
        {
            if (invocation.Arguments.TryGetProperty("subject", out var subject) && subject.ValueKind == JsonValueKind.String) ev["subject"] = subject.GetString();
            if (invocation.Arguments.TryGetProperty("data", out var data))
            {
                ev["datacontenttype"] = "application/json";
                ev["data"] = JsonNode.Parse(data.GetRawText());
            }
        }
        using var doc = JsonDocument.Parse(ev.ToJsonString());
        IReadOnlyList<TriggerOutcome> outcomes;
        try
        {
            outcomes = await ingest().PublishAsync(doc.RootElement, cancellationToken);
        }
        catch (Exception ex) when (ex is QueueFullException or WorkforceInboxFullException)
        {
            return ToolOutcome.Error(ex.Message, ToolFailure.Unavailable);
        }
        var runs = new JsonArray();
        foreach (var o in outcomes)
        {
            runs.Add(new JsonObject
            {
                ["trigger"] = o.Trigger.Name,
                ["run"] = o.Result?.Run.Id,
                ["task"] = o.Task?.Task.Id,
                ["deadLetter"] = o.DeadLetter?.Id,
            });
        }
        return ToolOutcome.Success(new JsonObject { ["id"] = invocation.IdempotencyKey, ["topic"] = definition.Topic, ["runs"] = runs }.ToJsonString());
    }
}
