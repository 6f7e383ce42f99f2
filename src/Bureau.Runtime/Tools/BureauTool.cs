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

    /// <summary>For an error, its class, which decides whether the call is retried and whether it counts against the tool's circuit breaker.</summary>
    public ToolFailure Failure { get; init; }

    /// <summary>How long the tool asked to be left alone (an HTTP <c>Retry-After</c>), when it said.</summary>
    public TimeSpan? RetryAfter { get; init; }

    /// <summary>Attempts made for this outcome, when more than one (set by the retry link).</summary>
    public int Attempts { get; init; } = 1;

    /// <summary>A result.</summary>
    public static ToolOutcome Success(string content) => new(content, false);

    /// <summary>An error the tool reported (a 4xx answer, a non-zero exit): not retried.</summary>
    public static ToolOutcome Error(string message) => new(message, true) { Failure = ToolFailure.Error };

    /// <summary>An error of the given class.</summary>
    public static ToolOutcome Error(string message, ToolFailure failure) => new(message, true) { Failure = failure };
}

/// <summary>The class of a failed tool call.</summary>
public enum ToolFailure
{
    /// <summary>No failure.</summary>
    None,
    /// <summary>The tool answered with an error (a 4xx status, a non-zero exit, an error it reported): the same call would fail again.</summary>
    Error,
    /// <summary>The call ran past its timeout.</summary>
    Timeout,
    /// <summary>The tool crashed or threw mid-way (a lost connection, an exception, a killed process).</summary>
    Crash,
    /// <summary>The tool is unavailable (a 5xx, 429 or 408 answer, an open circuit breaker, a full bulkhead).</summary>
    Unavailable,
    /// <summary>Nothing was sent: the connection was refused, the host unknown, the program could not start.</summary>
    NotSent,
}

/// <summary>Wire names of <see cref="ToolFailure"/>.</summary>
public static class ToolFailureNames
{
    /// <summary><c>error</c>, <c>timeout</c>, <c>crash</c>, <c>unavailable</c>, <c>not-sent</c>, or null for none.</summary>
    public static string? Of(ToolFailure failure) => failure switch
    {
        ToolFailure.Error => "error",
        ToolFailure.Timeout => "timeout",
        ToolFailure.Crash => "crash",
        ToolFailure.Unavailable => "unavailable",
        ToolFailure.NotSent => "not-sent",
        _ => null,
    };
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
            // A tool that ignores its token is abandoned at the timeout (it may go on in the background,
            // but the run does not wait for it, and holds no thread).
            var task = InvokeCoreAsync(invocation, timeoutCts.Token);
            return HonoursCancellation ? await task : await task.WaitAsync(timeoutCts.Token);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested && timeoutCts.IsCancellationRequested)
        {
            return ToolOutcome.Error($"tool '{Name}' timed out after {FormatTimeout(timeout)}", ToolFailure.Timeout);
        }
        catch (WorkforceInboxFullException ex)
        {
            // The workforce's inbox refused a task (the built-in delegate tool, or a C# tool that adds tasks): a refusal,
            // not a crash. The model gets it as the call's error (not retried, not counted against the tool's health;
            // decision 0050) and the run goes on.
            return ToolOutcome.Error($"tool '{Name}': {ex.Message}");
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            return ToolOutcome.Error($"tool '{Name}' failed: {ex.Message}", NothingSent(ex) ? ToolFailure.NotSent : ToolFailure.Crash);
        }
        finally
        {
            BureauToolContext.Current = previous;
        }
    }

    /// <summary>
    /// True when the tool stops promptly once its token fires, and must be awaited to the end (a process tool
    /// kills its processes then); false (the default) abandons a call that ignores its token at the timeout.
    /// </summary>
    protected virtual bool HonoursCancellation => false;

    /// <summary>True when <paramref name="ex"/> proves the request never left: a refused connection, an unknown host.</summary>
    internal static bool NothingSent(Exception ex)
    {
        for (var e = ex; e is not null; e = e.InnerException)
        {
            if (e is System.Net.Sockets.SocketException se
                && se.SocketErrorCode is System.Net.Sockets.SocketError.ConnectionRefused or System.Net.Sockets.SocketError.HostNotFound
                    or System.Net.Sockets.SocketError.NoData or System.Net.Sockets.SocketError.HostUnreachable or System.Net.Sockets.SocketError.NetworkUnreachable)
                return true;
        }
        return false;
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
