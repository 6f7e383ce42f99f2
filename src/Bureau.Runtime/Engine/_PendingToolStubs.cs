// Temporary until the tools branch lands: same public shape as the real types.
using System.Text.Json;
namespace Bureau.Tools;
public sealed class ToolFactory
{
    public ToolFactory(HttpClient? httpClient = null) { }
    public BureauTool Create(ToolDefinition definition) => throw new InvalidOperationException("tools branch not merged");
}
public sealed record ToolCallCheck(bool IsValid, string? Error, BureauTool? Tool, JsonElement Arguments);
public sealed class ToolCallValidator
{
    public ToolCallValidator(IReadOnlyDictionary<string, BureauTool> tools) { }
    public ToolCallCheck Check(AgentDefinition agent, string toolName, string argumentsJson) => throw new InvalidOperationException("tools branch not merged");
}
public sealed class BureauToolContext
{
    public static BureauToolContext? Current => null;
    public string IdempotencyKey => "";
}
