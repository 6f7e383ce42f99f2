using System.Text.Json;
using System.Text.RegularExpressions;
using Json.Schema;

namespace Bureau.Tools;

/// <summary>The verdict on one tool call the model asked for.</summary>
/// <param name="IsValid">True when the call may run.</param>
/// <param name="Error">Why it may not (returned to the model as the tool's error); null when valid.</param>
/// <param name="Tool">The tool to run; null when the tool is unknown.</param>
/// <param name="Arguments">The parsed arguments (a JSON object) when valid; <c>default</c> otherwise.</param>
public sealed record ToolCallCheck(bool IsValid, string? Error, BureauTool? Tool, JsonElement Arguments);

/// <summary>
/// Checks a tool call before anything runs: the tool exists, the agent may use it, the arguments are
/// JSON, an object, and satisfy the tool's JSON Schema. Each schema is compiled once, when the
/// validator is built. The JSON is read strictly: a property name twice in one object, a lone
/// <c>\uD800</c> escape, a number beyond a 64-bit float, nesting deeper than 64 levels and arguments
/// longer than <see cref="MaxArgumentsLength"/> are rejected before the schema sees them. A check
/// never throws for anything the model sends.
/// </summary>
public sealed class ToolCallValidator
{
    private const int MaxListedErrors = 10;

    /// <summary>
    /// The longest arguments checked, in characters (1 MiB); longer ones are rejected unread, so the work
    /// of a check is bounded whatever the model sends.
    /// </summary>
    public const int MaxArgumentsLength = 1 << 20;

    // Valid calls (the common case) are checked with the cheap Flag output; only a failing call is
    // evaluated again with the List output that names every error.
    private static readonly EvaluationOptions s_check = new() { OutputFormat = OutputFormat.Flag };
    private static readonly EvaluationOptions s_evaluation = new() { OutputFormat = OutputFormat.List };

    private readonly IReadOnlyDictionary<string, BureauTool> _tools;
    private readonly Dictionary<string, CompiledSchema> _schemas = new(StringComparer.Ordinal);

    /// <summary>Creates the validator and compiles every tool's schema.</summary>
    /// <exception cref="ArgumentException">A tool's parameters are not a valid JSON Schema.</exception>
    public ToolCallValidator(IReadOnlyDictionary<string, BureauTool> tools)
    {
        ArgumentNullException.ThrowIfNull(tools);
        _tools = tools;
        foreach (var (name, tool) in tools)
        {
            var text = tool.ParametersSchema.GetRawText();
            try
            {
                // A registry per schema: nothing leaks into the global one, and equal $ids do not collide.
                var schema = JsonSchema.FromText(text, new BuildOptions { SchemaRegistry = new SchemaRegistry() });
                _schemas[name] = new CompiledSchema(schema, tool.ParametersSchema.Clone(), FlatSchema.TryCreate(tool.ParametersSchema));
            }
            catch (Exception ex) when (ex is JsonSchemaException or JsonException or InvalidOperationException or ArgumentException)
            {
                throw new ArgumentException($"tool '{name}': parameters are not a valid JSON Schema: {ex.Message}", nameof(tools), ex);
            }
        }
    }

    /// <summary>Why <paramref name="schema"/> cannot be a tool's parameters (it does not compile as a JSON Schema); null when it can, or when there is none.</summary>
    internal static string? SchemaProblem(JsonElement? schema)
    {
        if (schema is not { } s) return null;
        try
        {
            JsonSchema.FromText(s.GetRawText(), new BuildOptions { SchemaRegistry = new SchemaRegistry() });
            return null;
        }
        catch (Exception ex) when (ex is JsonSchemaException or JsonException or InvalidOperationException or ArgumentException)
        {
            return ex.Message;
        }
    }

    /// <summary>Checks a call of <paramref name="toolName"/> by <paramref name="agent"/> with <paramref name="argumentsJson"/>.</summary>
    public ToolCallCheck Check(AgentDefinition agent, string toolName, string argumentsJson)
    {
        ArgumentNullException.ThrowIfNull(agent);
        toolName ??= string.Empty;
        var allowed = agent.Tools.Contains(toolName, StringComparer.Ordinal);
        if (!_tools.TryGetValue(toolName, out var tool))
            return Invalid($"unknown tool '{toolName}'.{DidYouMean(toolName, agent.Tools)} {AgentTools(agent)}", null);
        if (!allowed)
            return Invalid($"tool '{toolName}' is not available to agent '{agent.Name}'. {AgentTools(agent)}", tool);

        // The engine records arguments the model sent but that could not be parsed as an empty string.
        if (string.IsNullOrWhiteSpace(argumentsJson))
            return Invalid($"invalid arguments for tool '{toolName}': not valid JSON: the arguments were empty or could not be parsed; send a JSON object", tool);
        if (argumentsJson.Length > MaxArgumentsLength)
            return Invalid($"invalid arguments for tool '{toolName}': the arguments are longer than {MaxArgumentsLength} characters ({argumentsJson.Length}); send less", tool);
        // Strict: no name twice, no lone surrogate, no number beyond a double, bounded depth; see ArgumentsJson.
        if (ArgumentsJson.Parse(argumentsJson, out var jsonError) is not { } arguments)
            return Invalid($"invalid arguments for tool '{toolName}': {jsonError}", tool);
        if (arguments.ValueKind != JsonValueKind.Object)
            return Invalid($"invalid arguments for tool '{toolName}': expected a JSON object, got {SchemaErrors.Describe(arguments)}", tool);

        var compiled = _schemas.TryGetValue(toolName, out var c) ? c : throw new InvalidOperationException($"tool '{toolName}' was added after the validator was built");
        if (compiled.Flat?.IsCertainlyValid(arguments) == true) return new ToolCallCheck(true, null, tool, arguments);
        EvaluationResults results;
        try
        {
            if (compiled.Schema.Evaluate(arguments, s_check).IsValid) return new ToolCallCheck(true, null, tool, arguments);
            results = compiled.Schema.Evaluate(arguments, s_evaluation);
        }
        catch (Exception ex) when (ex is FormatException or OverflowException or InvalidOperationException or ArgumentException or RegexMatchTimeoutException)
        {
            // The evaluator could not read a value (the strict parse should have refused it): still a rejection, never a run.
            return Invalid($"invalid arguments for tool '{toolName}': the arguments could not be checked against the tool's schema ({ex.Message})", tool);
        }

        var errors = SchemaErrors.Format(results, arguments, compiled.Document);
        var listed = errors.Count > MaxListedErrors ? [.. errors.Take(MaxListedErrors), $"and {errors.Count - MaxListedErrors} more"] : errors;
        return Invalid($"invalid arguments for tool '{toolName}': {(listed.Count == 0 ? "the arguments do not satisfy the tool's schema" : string.Join("; ", listed))}", tool);
    }

    private static ToolCallCheck Invalid(string error, BureauTool? tool) => new(false, error, tool, default);

    private static string AgentTools(AgentDefinition agent) =>
        agent.Tools.Count == 0
            ? $"Agent '{agent.Name}' has no tools."
            : $"Tools agent '{agent.Name}' may call: {string.Join(", ", agent.Tools)}.";

    private static string DidYouMean(string name, IReadOnlyList<string> candidates) =>
        Suggestions.Closest(name, candidates) is { } best ? $" Did you mean '{best}'?" : string.Empty;

    /// <summary>A tool's schema: compiled for the full evaluator, as written (for messages), and in flat form when it has that shape.</summary>
    private sealed record CompiledSchema(JsonSchema Schema, JsonElement Document, FlatSchema? Flat);
}
