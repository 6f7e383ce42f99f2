using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using Bureau.Tools;
using Microsoft.Extensions.AI;

namespace Bureau.Workforce;

/// <summary>
/// The built-in <c>delegate</c> tool of workforce members with <see cref="WorkforceMember.CanDelegate"/>: <c>{skill, task}</c> puts
/// a task on the workforce's board and in its inbox. Its effect is <c>idempotent</c>: the task id is derived from the call's
/// idempotency key, so a call a crash interrupted is run again with the same key and adds the same task, once.
/// </summary>
internal static class WorkforceDelegation
{
    public const string ToolName = "delegate";

    /// <summary>The tools this class deployed: a replay or a what-if deploys the host's definitions again, this tool among them.</summary>
    private static readonly ConditionalWeakTable<ToolDefinition, object> BuiltIn = new();

    public static void Deploy(BureauDefinitions all, Func<BureauWorkforce> workforce)
    {
        var delegating = all.Workforce.Members.Values.Where(m => m.CanDelegate).OrderBy(m => m.Name, StringComparer.Ordinal).ToList();
        if (delegating.Count == 0) return;
        if (all.Tools.TryGetValue(ToolName, out var existing) && !BuiltIn.TryGetValue(existing, out _))
            throw new InvalidOperationException($"a tool named '{ToolName}' is defined, and workforce members delegate with the built-in tool of that name: rename the tool");
        var skills = all.Workforce.Skills;
        var tool = new FunctionToolDefinition
        {
            Name = ToolName,
            Effect = ToolEffect.Idempotent,
            Description = $"Hand a task to the member of the workforce that has the skill (skills: {string.Join(", ", skills)}). It goes on the team's board and runs as that member's own run; this call answers with the task's id at once.",
            Parameters = JsonDocument.Parse(new JsonObject
            {
                ["type"] = "object",
                ["properties"] = new JsonObject
                {
                    ["skill"] = new JsonObject { ["type"] = "string", ["enum"] = new JsonArray([.. skills.Select(k => (JsonNode)k)]), ["description"] = "The skill the task needs." },
                    ["task"] = new JsonObject { ["type"] = "string", ["description"] = "What is to be done, with everything the other member needs to know." },
                },
                ["required"] = new JsonArray("skill", "task"),
                ["additionalProperties"] = false,
            }.ToJsonString()).RootElement.Clone(),
            Function = AIFunctionFactory.Create(async (string skill, string task, CancellationToken ct) =>
            {
                var call = BureauToolContext.Current ?? throw new InvalidOperationException("'delegate' runs only inside a run");
                var result = await workforce().DelegateAsync(call.RunId, call.IdempotencyKey, skill, task, ct);
                return new JsonObject { ["task"] = result.Task.Id, ["skill"] = result.Task.Skill, ["status"] = WireNames.Of(result.Task.Status), ["board"] = all.Workforce.Board }.ToJsonString();
            }, ToolName),
        };
        BuiltIn.AddOrUpdate(tool, tool);
        all.Add(tool); // replaces the built-in tool of the definitions deployed again, bound to this deployment's workforce
        foreach (var m in delegating)
            if (all.Agents.TryGetValue(m.Name, out var agent) && !agent.Tools.Contains(ToolName)) all.Add(agent.WithTools([.. agent.Tools, ToolName]));
    }
}
