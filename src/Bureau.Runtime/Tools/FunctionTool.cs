using System.Text.Json;
using Microsoft.Extensions.AI;

namespace Bureau.Tools;

/// <summary>
/// Calls a C# <see cref="AIFunction"/> with the model's arguments. A string result is returned as is,
/// anything else as JSON. The idempotency key is in <see cref="BureauToolContext.Current"/>.
/// </summary>
internal sealed class FunctionTool : BureauTool
{
    private readonly FunctionToolDefinition _definition;

    public FunctionTool(FunctionToolDefinition definition) : base(definition)
    {
        ArgumentNullException.ThrowIfNull(definition.Function, nameof(definition.Function));
        _definition = definition;
    }

    /// <summary>The declared schema, or the one the function's signature implies.</summary>
    public override JsonElement ParametersSchema => _definition.Parameters ?? _definition.Function.JsonSchema;

    /// <inheritdoc />
    public override AITool ToDeclaration() =>
        AIFunctionFactory.CreateDeclaration(Name, _definition.Description ?? _definition.Function.Description ?? string.Empty, ParametersSchema);

    protected override async Task<ToolOutcome> InvokeCoreAsync(ToolInvocation invocation, CancellationToken cancellationToken)
    {
        var arguments = new AIFunctionArguments();
        if (invocation.Arguments.ValueKind == JsonValueKind.Object)
        {
            foreach (var property in invocation.Arguments.EnumerateObject())
                arguments[property.Name] = property.Value.Clone();
        }
        // WaitAsync: a function that ignores its token still cannot hold the call past its timeout.
        var pending = _definition.Function.InvokeAsync(arguments, cancellationToken);
        var result = pending.IsCompletedSuccessfully ? pending.Result : await pending.AsTask().WaitAsync(cancellationToken);
        return ToolOutcome.Success(ToText(result));
    }

    /// <summary>A string (or a JSON string) as its text; null as <c>null</c>; anything else as JSON.</summary>
    internal static string ToText(object? result) => result switch
    {
        null => "null",
        string s => s,
        JsonElement { ValueKind: JsonValueKind.String } e => e.GetString()!,
        JsonElement { ValueKind: JsonValueKind.Undefined } => "null",
        JsonElement e => e.GetRawText(),
        System.Text.Json.Nodes.JsonNode n => n.ToJsonString(),
        _ => JsonSerializer.Serialize(result, AIJsonUtilities.DefaultOptions.GetTypeInfo(result.GetType())),
    };
}
