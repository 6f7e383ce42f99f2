using System.Text.Json;
using System.Text.Json.Nodes;
using Bureau.Tools;
using Microsoft.Extensions.AI;

namespace Bureau.Governance;

/// <summary>
/// The model's stated confidence on a tool call (agents with <see cref="AgentDefinition.StateConfidence"/>):
/// a required <c>confidence</c> parameter added to each tool's declaration, taken out of the call's
/// arguments before validation and invocation, and handed to the policy.
/// </summary>
internal static class Confidence
{
    public const string Parameter = "confidence";

    private const string Description =
        "How sure you are that this call is the right thing to do now, from 0 (a guess) to 1 (certain). A person may be asked to approve calls you are unsure of.";

    /// <summary>The tool's declaration with the <c>confidence</c> parameter added (required).</summary>
    public static AITool Declaration(BureauTool tool)
    {
        var schema = JsonNode.Parse(tool.ParametersSchema.GetRawText()) as JsonObject ?? new JsonObject { ["type"] = "object" };
        var properties = schema["properties"] as JsonObject ?? new JsonObject();
        schema["properties"] = properties;
        properties[Parameter] = new JsonObject { ["type"] = "number", ["minimum"] = 0, ["maximum"] = 1, ["description"] = Description };
        var required = schema["required"] as JsonArray ?? new JsonArray();
        if (!required.Any(r => (string?)r == Parameter)) required.Add(Parameter);
        schema["required"] = required;
        using var doc = JsonDocument.Parse(schema.ToJsonString());
        return AIFunctionFactory.CreateDeclaration(tool.Name, tool.Definition.Description ?? string.Empty, doc.RootElement.Clone());
    }

    /// <summary>The call without its <c>confidence</c> argument, and the value stated (null when absent or not a number in [0, 1]).</summary>
    public static (ToolCallRecord Call, double? Confidence) Take(ToolCallRecord call)
    {
        JsonObject? args;
        try
        {
            args = JsonNode.Parse(call.Arguments) as JsonObject;
        }
        catch (JsonException)
        {
            return (call, null);
        }
        if (args is null || !args.TryGetPropertyValue(Parameter, out var value)) return (call, null);
        args.Remove(Parameter);
        double? stated = value is JsonValue v && v.TryGetValue<double>(out var d) && d is >= 0 and <= 1 ? d : null;
        return (call with { Arguments = args.ToJsonString() }, stated);
    }
}
