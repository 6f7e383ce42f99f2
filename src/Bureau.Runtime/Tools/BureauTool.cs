using System.Diagnostics;
using System.Text.Json;
using Microsoft.Extensions.AI;

namespace Bureau.Tools;

/// <summary>One call of a tool, as the engine makes it after validation.</summary>
/// <param name="RunId">The run.</param>
/// <param name="Step">The journal step of the call (its intent entry, or the model answer for read tools).</param>
/// <param name="IdempotencyKey">The key passed to the tool: <c>{runId}:{step}</c>.</param>
/// <param name="ToolName">The tool's name.</param>
/// <param name="Arguments">The validated arguments (a JSON object).</param>
public sealed record ToolInvocation(string RunId, long Step, string IdempotencyKey, string ToolName, JsonElement Arguments);

/// <summary>What a tool call produced: its result or its error, both go back to the model.</summary>
/// <param name="Content">The result text, or the error message.</param>
/// <param name="IsError">True for a tool error.</param>
public sealed record ToolOutcome(string Content, bool IsError)
{
    /// <summary>
    /// Something the journal should record about the call besides its result, not shown to the model; null when
    /// there is nothing. E.g. "killed 1 stray descendant process left running by the tool: sleep".
    /// </summary>
    public string? Note { get; init; }

    /// <summary>A result.</summary>
    public static ToolOutcome Success(string content) => new(content, false);

    /// <summary>An error.</summary>
    public static ToolOutcome Error(string message) => new(message, true);
}

/// <summary>
/// A tool Bureau can run. <see cref="InvokeAsync"/> applies the timeout and turns failures into
/// error outcomes; subclasses implement <see cref="InvokeCoreAsync"/>.
/// </summary>
public abstract class BureauTool
{
    /// <summary>Creates the tool.</summary>
    protected BureauTool(ToolDefinition definition) => Definition = definition;

    /// <summary>The tool's definition.</summary>
    public ToolDefinition Definition { get; }

    /// <summary>The tool's name.</summary>
    public string Name => Definition.Name;

    /// <summary>
    /// Runs the tool. Returns an error outcome (never throws) when the tool fails or times out;
    /// throws <see cref="OperationCanceledException"/> only when <paramref name="cancellationToken"/> is canceled.
    /// </summary>
    public async Task<ToolOutcome> InvokeAsync(ToolInvocation invocation, CancellationToken cancellationToken)
    {
        var timeout = Definition.Timeout ?? ToolDefinition.DefaultTimeout;
        using var timeoutCts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeoutCts.CancelAfter(timeout);
        var previous = BureauToolContext.Current;
        BureauToolContext.Current = new BureauToolContext(invocation.RunId, invocation.Step, invocation.IdempotencyKey, invocation.ToolName);
        try
        {
            return await InvokeCoreAsync(invocation, timeoutCts.Token);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested && timeoutCts.IsCancellationRequested)
        {
            return ToolOutcome.Error($"tool '{Name}' timed out after {FormatTimeout(timeout)}");
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            return ToolOutcome.Error($"tool '{Name}' failed: {ex.Message}");
        }
        finally
        {
            BureauToolContext.Current = previous;
        }
    }

    /// <summary>Runs the tool; <paramref name="cancellationToken"/> fires on timeout or cancellation.</summary>
    protected abstract Task<ToolOutcome> InvokeCoreAsync(ToolInvocation invocation, CancellationToken cancellationToken);

    /// <summary>The declaration the model sees: name, description and JSON Schema of the arguments.</summary>
    public virtual AITool ToDeclaration() =>
        AIFunctionFactory.CreateDeclaration(Name, Definition.Description ?? string.Empty, ParametersSchema);

    /// <summary>The JSON Schema of the arguments (an empty object schema when none was given).</summary>
    public virtual JsonElement ParametersSchema => Definition.Parameters ?? EmptyObjectSchema;

    private static readonly JsonElement EmptyObjectSchema = JsonDocument.Parse("""{"type":"object"}""").RootElement.Clone();

    private static string FormatTimeout(TimeSpan t) =>
        t.TotalSeconds >= 1 && t.Milliseconds == 0 ? $"{t.TotalSeconds:0}s" : $"{t.TotalMilliseconds:0}ms";

    /// <summary>Time measurement helper for subclasses.</summary>
    protected static long Timestamp() => Stopwatch.GetTimestamp();
}
