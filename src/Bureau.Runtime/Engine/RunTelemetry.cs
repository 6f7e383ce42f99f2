using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;

namespace Bureau.Engine;

/// <summary>
/// The spans and measurements of runs (GenAI semantic conventions, docs/observability.md): every method is called
/// only when someone listens (<see cref="ActivitySource.HasListeners"/>, an instrument's <c>Enabled</c>), so a host
/// without telemetry pays one check per execution, model call and tool call.
/// </summary>
internal static class RunTelemetry
{
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<(string, string), string> s_names = new();
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, string[]> s_finishReasons = new(StringComparer.Ordinal);

    /// <summary>A span's name, <c>{operation} {target}</c>, made once per pair (not per call).</summary>
    public static string SpanName(string operation, string target) =>
        s_names.TryGetValue((operation, target), out var name) ? name : s_names.GetOrAdd((operation, target), static k => k.Item1 + " " + k.Item2);

    /// <summary>
    /// The caller's trace context, journaled on the run's <see cref="RunStarted"/> (the HTTP request's span, a parent
    /// run's span, the application's own span): null when there is none.
    /// </summary>
    public static string? CallerTraceParent() =>
        Activity.Current is { IdFormat: ActivityIdFormat.W3C } current ? current.Id : null;

    /// <summary>
    /// The parent of every execution of a run: the journaled caller's context when there is one; else a context made
    /// from the run tree's ids (the trace id from the root run's id, the span id from the parent run's id), the same
    /// across executions, restarts and nodes.
    /// </summary>
    public static ActivityContext ParentOf(RunRecord run, string? traceParent)
    {
        if (traceParent is not null && ActivityContext.TryParse(traceParent, null, isRemote: true, out var caller)) return caller;
        var root = run.RootRunId ?? run.Id;
        return new ActivityContext(TraceIdOf(root), SpanIdOf(run.ParentRunId ?? root), ActivityTraceFlags.Recorded, isRemote: true);
    }

    /// <summary>The trace id of a tree of runs submitted with no caller's context: the first 16 bytes of SHA-256 of its root run's id.</summary>
    public static ActivityTraceId TraceIdOf(string rootRunId)
    {
        Span<byte> hash = stackalloc byte[SHA256.HashSizeInBytes];
        Hash("trace:", rootRunId, hash);
        return ActivityTraceId.CreateFromBytes(hash[..16]);
    }

    /// <summary>The span id standing for a run with no caller's context (its executions' parent for its children).</summary>
    public static ActivitySpanId SpanIdOf(string runId)
    {
        Span<byte> hash = stackalloc byte[SHA256.HashSizeInBytes];
        Hash("run:", runId, hash);
        return ActivitySpanId.CreateFromBytes(hash[..8]);
    }

    /// <summary>SHA-256 of the UTF-8 of <paramref name="prefix"/> and <paramref name="id"/> (on the stack: once per execution, no garbage).</summary>
    private static void Hash(string prefix, string id, Span<byte> hash)
    {
        var length = Encoding.UTF8.GetByteCount(prefix) + Encoding.UTF8.GetByteCount(id);
        var input = length <= 256 ? stackalloc byte[length] : new byte[length];
        var n = Encoding.UTF8.GetBytes(prefix, input);
        Encoding.UTF8.GetBytes(id, input[n..]);
        SHA256.HashData(input, hash);
    }

    /// <summary>
    /// Starts an execution's span (<c>invoke_agent {agent}</c>, <c>invoke_workflow {team}</c> for a team). Before it,
    /// as finished siblings, what the run went through since its last execution: the queue (a fresh run, from its
    /// acceptance) or the wait it was woken from (from <see cref="RunWaiting"/> to its answer).
    /// </summary>
    public static Activity? StartExecution(RunRecord run, IReadOnlyList<JournalRecord> journal, string? traceParent, bool fresh, DateTimeOffset now)
    {
        var parent = ParentOf(run, traceParent);
        if (fresh) Finished(SpanName("queue", run.Agent), parent, run.CreatedAt, now, run, static (s, _) => s.AddTag("bureau.operation.name", "queue"), (object?)null);
        else if (LastWait(journal) is { } wait)
        {
            Finished($"wait {wait.Waiting.WaitingFor.Reason}", parent, wait.From, wait.To, run, static (s, w) =>
            {
                s.AddTag("bureau.operation.name", "wait");
                s.AddTag("bureau.wait.reason", w.Waiting.WaitingFor.Reason);
                s.AddTag("bureau.wait.step", TagValues.Box(w.Waiting.WaitingFor.Step));
                s.AddTag("bureau.wait.outcome", w.Outcome);
                if (w.Waiting.WaitingFor is ApprovalWait a) s.AddTag("gen_ai.tool.name", a.Tool);
                if (w.Outcome == "expired") s.SetStatus(ActivityStatusCode.Error, "the wait's deadline passed");
            }, wait);
        }
        var operation = run.Kind == RunKinds.Team ? "invoke_workflow" : "invoke_agent";
        var span = BureauTelemetry.ActivitySource.StartActivity(SpanName(operation, run.Agent), ActivityKind.Internal, parent);
        if (span is null || !span.IsAllDataRequested) return span;
        span.AddTag("gen_ai.operation.name", operation);
        span.AddTag(run.Kind == RunKinds.Team ? "gen_ai.workflow.name" : "gen_ai.agent.name", run.Agent);
        Tag(span, run);
        return span;
    }

    /// <summary>Ends an execution's span with the run's status (an error status for a failed run).</summary>
    public static void EndExecution(Activity? span, RunStatus status)
    {
        if (span is not { IsAllDataRequested: true }) return;
        span.AddTag("bureau.run.status", status.ToWireName());
        if (status == RunStatus.Failed) span.SetStatus(ActivityStatusCode.Error, "the run failed");
    }

    private static void Tag(Activity span, RunRecord run)
    {
        span.AddTag("bureau.run.id", run.Id);
        span.AddTag("bureau.run.kind", run.Kind);
        if (run.ParentRunId is not null) span.AddTag("bureau.run.parent_id", run.ParentRunId);
        if (run.RootRunId is not null && run.RootRunId != run.Id) span.AddTag("bureau.run.root_id", run.RootRunId);
    }

    /// <summary>A span for something that already happened (from its journal times), which does not become current.</summary>
    private static void Finished<T>(string name, ActivityContext parent, DateTimeOffset from, DateTimeOffset to, RunRecord run, Action<Activity, T> tag, T state)
    {
        var current = Activity.Current;
        var span = BureauTelemetry.ActivitySource.StartActivity(name, ActivityKind.Internal, parent, startTime: from);
        if (span is null) return;
        try
        {
            if (span.IsAllDataRequested)
            {
                Tag(span, run);
                tag(span, state);
            }
            span.SetEndTime((to < from ? from : to).UtcDateTime);
            span.Stop();
        }
        finally
        {
            Activity.Current = current;
        }
    }

    private sealed record WaitSpan(RunWaiting Waiting, DateTimeOffset From, DateTimeOffset To, string Outcome);

    /// <summary>The wait that ended since the last execution: the last <see cref="RunWaiting"/>, if nothing but its answer follows it.</summary>
    private static WaitSpan? LastWait(IReadOnlyList<JournalRecord> journal)
    {
        for (var i = journal.Count - 1; i >= 0; i--)
        {
            switch (journal[i].Entry)
            {
                case RunWaiting w when w.WaitingFor is not ChildRunsWait && i + 1 < journal.Count:
                    var answer = journal[i + 1];
                    var outcome = answer.Entry switch
                    {
                        WaitExpired => "expired",
                        StepResolved => "resolved",
                        RunCanceled => "canceled",
                        _ => "answered",
                    };
                    return new WaitSpan(w, journal[i].At, answer.At, outcome);
                case RunWaiting or RunResumed or ModelResponded or ToolCompleted:
                    return null;
            }
        }
        return null;
    }

    /// <summary>Starts a model call's span: <c>chat {model}</c> (GenAI conventions), a client span.</summary>
    public static Activity? StartChat(AgentRuntime agent, string runId, int turn)
    {
        var span = BureauTelemetry.ActivitySource.StartActivity(SpanName("chat", agent.ModelLabel), ActivityKind.Client);
        if (span is null || !span.IsAllDataRequested) return span; // a sampled-out span carries the context, no attributes
        span.AddTag("gen_ai.operation.name", "chat");
        span.AddTag("gen_ai.provider.name", agent.Provider);
        span.AddTag("gen_ai.request.model", agent.ModelLabel);
        span.AddTag("bureau.model", agent.ModelName);
        span.AddTag("bureau.run.id", runId);
        span.AddTag("bureau.turn", TagValues.Box(turn));
        return span;
    }

    /// <summary>
    /// Ends a model call's span and records its measurements: tokens, duration, cost, step latency. <paramref name="answer"/>
    /// is null when the call failed or was stopped (the run's journal says why).
    /// </summary>
    public static void EndChat(Activity? span, AgentRuntime agent, ModelResponded? answer, double elapsedSeconds, bool captureContent)
    {
        var provider = new KeyValuePair<string, object?>("gen_ai.provider.name", agent.Provider);
        var request = new KeyValuePair<string, object?>("gen_ai.request.model", agent.ModelLabel);
        var operation = new KeyValuePair<string, object?>("gen_ai.operation.name", "chat");
        if (answer is null)
        {
            span?.AddTag("error.type", "model_call_failed");
            span?.SetStatus(ActivityStatusCode.Error, "the model call failed or was stopped; the run's journal has the error");
            span?.Dispose();
            if (BureauTelemetry.OperationDuration.Enabled)
                BureauTelemetry.OperationDuration.Record(elapsedSeconds, operation, provider, request, new("error.type", "model_call_failed"));
            return;
        }
        var responseModel = new KeyValuePair<string, object?>("gen_ai.response.model", answer.Model);
        if (span is { IsAllDataRequested: true })
        {
            span.AddTag("gen_ai.response.model", answer.Model);
            span.AddTag("gen_ai.usage.input_tokens", TagValues.Box(answer.Usage.InputTokens));
            span.AddTag("gen_ai.usage.output_tokens", TagValues.Box(answer.Usage.OutputTokens));
            if (answer.FinishReason is not null) span.AddTag("gen_ai.response.finish_reasons", s_finishReasons.GetOrAdd(answer.FinishReason, static r => [r]));
            if (answer.Cost is { } cost) span.AddTag("bureau.model.cost", cost);
            if (answer.Attempts is { } attempts) span.AddTag("bureau.attempts", TagValues.Box(attempts));
            if (answer.AnsweredBy is not null) span.AddTag("bureau.model.answered_by", answer.AnsweredBy);
            if (captureContent)
            {
                if (answer.Text is not null) span.AddTag("gen_ai.output.text", answer.Text);
                if (answer.ToolCalls.Count > 0)
                    span.AddTag("gen_ai.output.tool_calls", string.Join("\n", answer.ToolCalls.Select(c => $"{c.Name}({c.Arguments})")));
            }
        }
        span?.Dispose();
        if (BureauTelemetry.TokenUsage.Enabled)
        {
            BureauTelemetry.TokenUsage.Record(answer.Usage.InputTokens, operation, provider, request, responseModel, new("gen_ai.token.type", "input"));
            BureauTelemetry.TokenUsage.Record(answer.Usage.OutputTokens, operation, provider, request, responseModel, new("gen_ai.token.type", "output"));
        }
        if (BureauTelemetry.OperationDuration.Enabled) BureauTelemetry.OperationDuration.Record(elapsedSeconds, operation, provider, request, responseModel);
        if (answer.Cost is { } c && BureauTelemetry.ModelCost.Enabled)
            BureauTelemetry.ModelCost.Add(c, provider, request, new("gen_ai.agent.name", agent.Definition.Name));
        if (BureauTelemetry.StepDuration.Enabled)
            BureauTelemetry.StepDuration.Record(elapsedSeconds, new("bureau.step.kind", "model"), new("gen_ai.agent.name", agent.Definition.Name));
    }

    /// <summary>The low-cardinality <c>error.type</c> of a tool's failure.</summary>
    public static string ErrorType(Tools.ToolFailure failure) => Tools.ToolFailureNames.Of(failure) ?? "error";
}

/// <summary>
/// Span attribute values that are numbers, boxed once: an attribute's value is an <see cref="object"/>, and boxing a
/// turn, a step, a token count or an attempt count on every span cost 24 bytes each (small values are the common ones).
/// </summary>
internal static class TagValues
{
    private static readonly object[] s_ints = [.. Enumerable.Range(0, 256).Select(i => (object)i)];
    private static readonly object[] s_longs = [.. Enumerable.Range(0, 4096).Select(i => (object)(long)i)];

    public static object Box(int value) => (uint)value < (uint)s_ints.Length ? s_ints[value] : value;

    public static object Box(long value) => (ulong)value < (ulong)s_longs.Length ? s_longs[value] : value;
}

/// <summary>A model call being observed: its span (when traced) and its start, for the measurements.</summary>
internal sealed class ChatTelemetry
{
    private readonly Activity? _span;
    private readonly AgentRuntime _agent;
    private readonly long _started = Stopwatch.GetTimestamp();

    private ChatTelemetry(Activity? span, AgentRuntime agent) => (_span, _agent) = (span, agent);

    public static ChatTelemetry Start(AgentRuntime agent, string runId, int turn) =>
        new(BureauTelemetry.ActivitySource.HasListeners() ? RunTelemetry.StartChat(agent, runId, turn) : null, agent);

    public void End(ModelResponded? answer, bool captureContent) =>
        RunTelemetry.EndChat(_span, _agent, answer, Stopwatch.GetElapsedTime(_started).TotalSeconds, captureContent);
}

/// <summary>
/// The logging scope of an execution: <c>RunId</c>, <c>Agent</c> and <c>Step</c>, read when a log record is written
/// (so <c>Step</c> is the run's step then, not at the start of the execution).
/// </summary>
internal sealed class RunLogScope(RunContext run) : IReadOnlyList<KeyValuePair<string, object?>>
{
    public int Count => 3;

    public KeyValuePair<string, object?> this[int index] => index switch
    {
        0 => new("RunId", run.RunId),
        1 => new("Agent", run.Run.Agent),
        2 => new("Step", run.Version),
        _ => throw new ArgumentOutOfRangeException(nameof(index)),
    };

    public IEnumerator<KeyValuePair<string, object?>> GetEnumerator()
    {
        for (var i = 0; i < Count; i++) yield return this[i];
    }

    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();

    public override string ToString() => $"run {run.RunId} ({run.Run.Agent}) step {run.Version}";
}
