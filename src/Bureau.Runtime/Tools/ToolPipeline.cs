using System.Diagnostics;
using System.Text.Json;

namespace Bureau.Tools;

/// <summary>One validated tool call on its way through the tool pipeline.</summary>
public sealed class ToolCall
{
    internal ToolCall(string runId, AgentDefinition agent, BureauTool tool, long step, string idempotencyKey, string callId, JsonElement arguments, string argumentsText, CancellationToken cancellationToken)
    {
        RunId = runId;
        Agent = agent;
        Tool = tool;
        Step = step;
        IdempotencyKey = idempotencyKey;
        CallId = callId;
        Arguments = arguments;
        ArgumentsText = argumentsText;
        CancellationToken = cancellationToken;
    }

    /// <summary>The run.</summary>
    public string RunId { get; }
    /// <summary>The agent making the call.</summary>
    public AgentDefinition Agent { get; }
    /// <summary>The tool called.</summary>
    public BureauTool Tool { get; }
    /// <summary>The journal step of the call (its intent, or the model answer's step for <c>read</c> tools).</summary>
    public long Step { get; }
    /// <summary>The idempotency key the tool gets: <c>{runId}:{step}</c>.</summary>
    public string IdempotencyKey { get; }
    /// <summary>The model's id of the call.</summary>
    public string CallId { get; }
    /// <summary>The arguments, validated against the tool's schema.</summary>
    public JsonElement Arguments { get; }
    /// <summary>The arguments as the model wrote them.</summary>
    public string ArgumentsText { get; }
    /// <summary>Fires when the run is canceled (or, inside the retry stage, when the step's timeout passes).</summary>
    public CancellationToken CancellationToken { get; }

    /// <summary>The same call (same step and idempotency key) with another token: what the retry stage passes on.</summary>
    internal ToolCall WithCancellation(CancellationToken cancellationToken) =>
        cancellationToken == CancellationToken ? this : new ToolCall(RunId, Agent, Tool, Step, IdempotencyKey, CallId, Arguments, ArgumentsText, cancellationToken);
}

/// <summary>The next link of the tool pipeline (in the end, the tool itself).</summary>
public delegate ValueTask<ToolOutcome> ToolCallHandler(ToolCall call);

/// <summary>Where a filter sits in the tool pipeline; lower stages run first (outermost).</summary>
public enum ToolFilterStage
{
    /// <summary>Decides whether the call may run at all (allow, deny).</summary>
    Policy = 100,
    /// <summary>Asks a person before the call runs.</summary>
    Approval = 200,
    /// <summary>Traces and measures the call.</summary>
    Telemetry = 300,
    /// <summary>Retries the call, backs off, breaks circuits.</summary>
    Retry = 400,
}

/// <summary>
/// A link of the tool pipeline every validated call passes through before the tool runs:
/// policy → approval → telemetry → retry → tool. Register with <c>AddToolFilter</c>. A filter may
/// answer without calling <c>next</c> (a deny is an error outcome the model sees).
/// </summary>
public interface IToolCallFilter
{
    /// <summary>Its stage.</summary>
    ToolFilterStage Stage { get; }

    /// <summary>Handles the call, usually by calling <paramref name="next"/>.</summary>
    ValueTask<ToolOutcome> InvokeAsync(ToolCall call, ToolCallHandler next);
}

/// <summary>The filters in stage order, ending with the tool; built once.</summary>
internal sealed class ToolPipeline
{
    private readonly ToolCallHandler _handler;

    public ToolPipeline(IEnumerable<IToolCallFilter> filters)
    {
        ToolCallHandler handler = static call => new ValueTask<ToolOutcome>(call.Tool.InvokeAsync(
            new ToolInvocation(call.RunId, call.Step, call.IdempotencyKey, call.Tool.Name, call.Arguments), call.CancellationToken));
        foreach (var filter in filters.OrderByDescending(f => (int)f.Stage))
        {
            var next = handler;
            handler = call => filter.InvokeAsync(call, next);
        }
        _handler = handler;
    }

    public ValueTask<ToolOutcome> InvokeAsync(ToolCall call) => _handler(call);
}

/// <summary>
/// An <c>execute_tool</c> span per call (GenAI semantic conventions) and the tool measurements (step latency, errors),
/// when anyone listens. Arguments and results go on the span only when content capture is on.
/// </summary>
internal sealed class TelemetryToolFilter(Microsoft.Extensions.Options.IOptions<BureauOptions> options) : IToolCallFilter
{
    private readonly bool _captureContent = options.Value.Telemetry.CaptureContent;

    public ToolFilterStage Stage => ToolFilterStage.Telemetry;

    public ValueTask<ToolOutcome> InvokeAsync(ToolCall call, ToolCallHandler next) =>
        BureauTelemetry.ObservesToolCalls ? TracedAsync(call, next) : next(call);

    private async ValueTask<ToolOutcome> TracedAsync(ToolCall call, ToolCallHandler next)
    {
        using var span = BureauTelemetry.ActivitySource.HasListeners()
            ? BureauTelemetry.ActivitySource.StartActivity(Engine.RunTelemetry.SpanName("execute_tool", call.Tool.Name), ActivityKind.Internal)
            : null;
        if (span is { IsAllDataRequested: true }) // a sampled-out span carries the context, no attributes
        {
            span.AddTag("gen_ai.operation.name", "execute_tool");
            span.AddTag("gen_ai.tool.name", call.Tool.Name);
            span.AddTag("gen_ai.tool.call.id", call.CallId);
            span.AddTag("bureau.tool.effect", WireNames.Of(call.Tool.Definition.Effect));
            span.AddTag("bureau.run.id", call.RunId);
            span.AddTag("bureau.step", Engine.TagValues.Box(call.Step));
            if (_captureContent) span.AddTag("gen_ai.tool.call.arguments", call.ArgumentsText);
        }
        var started = Stopwatch.GetTimestamp();
        ToolOutcome outcome;
        try
        {
            outcome = await next(call);
        }
        catch (Exception ex)
        {
            var type = ex is OperationCanceledException ? "canceled" : ex.GetType().FullName ?? "exception";
            span?.AddTag("error.type", type);
            span?.SetStatus(ActivityStatusCode.Error, ex is OperationCanceledException ? "canceled" : ex.Message);
            Measure(call, started, type);
            throw;
        }
        string? error = null;
        if (outcome.IsError)
        {
            error = Engine.RunTelemetry.ErrorType(outcome.Failure);
            // The error's text is the tool's answer (content): on the span only when content capture is on.
            span?.SetStatus(ActivityStatusCode.Error, _captureContent ? Excerpt(outcome.Content) : null);
            span?.AddTag("error.type", error);
        }
        if (span is { IsAllDataRequested: true })
        {
            span.AddTag("bureau.tool.outcome", error is null ? "ok" : "error");
            if (outcome.Attempts > 1) span.AddTag("bureau.attempts", Engine.TagValues.Box(outcome.Attempts));
            if (_captureContent) span.AddTag("gen_ai.tool.call.result", Excerpt(outcome.Content, 4096));
        }
        Measure(call, started, error);
        return outcome;
    }

    private static void Measure(ToolCall call, long started, string? error)
    {
        var tool = new KeyValuePair<string, object?>("gen_ai.tool.name", call.Tool.Name);
        if (BureauTelemetry.StepDuration.Enabled)
            BureauTelemetry.StepDuration.Record(Stopwatch.GetElapsedTime(started).TotalSeconds, new("bureau.step.kind", "tool"), new("gen_ai.agent.name", call.Agent.Name), tool);
        if (error is not null && BureauTelemetry.ToolErrors.Enabled)
            BureauTelemetry.ToolErrors.Add(1, tool, new("error.type", error), new("bureau.tool.effect", WireNames.Of(call.Tool.Definition.Effect)));
    }

    private static string Excerpt(string content, int max = 200) => content.Length > max ? content[..max] : content;
}
