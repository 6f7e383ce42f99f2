using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.AI;

namespace Bureau.Engine;

/// <summary>An agent called as a tool by another agent (<see cref="AgentDefinition.Delegates"/>).</summary>
internal static class Delegation
{
    private static readonly JsonElement Schema = JsonDocument.Parse(
        """{"type":"object","properties":{"task":{"type":"string","description":"What the agent should do, with everything it needs to know."}},"required":["task"],"additionalProperties":false}""").RootElement.Clone();

    public static AITool Declaration(AgentDefinition callee) =>
        AIFunctionFactory.CreateDeclaration(callee.Name, callee.Description ?? $"Ask agent '{callee.Name}' to do a task; returns its answer.", Schema);

    /// <summary>The task of a delegation call, or an error saying what is wrong with its arguments.</summary>
    public static (string? Task, string? Error) TaskOf(string arguments)
    {
        try
        {
            if (JsonNode.Parse(arguments) is JsonObject o && o["task"] is JsonValue v && v.TryGetValue<string>(out var task) && !string.IsNullOrWhiteSpace(task))
            {
                return o.Count == 1 ? (task, null) : (null, $"only 'task' is expected; unexpected: {string.Join(", ", o.Select(p => p.Key).Where(k => k != "task"))}");
            }
        }
        catch (JsonException)
        {
        }
        return (null, "expected {\"task\": \"...\"} with a non-empty task");
    }
}
