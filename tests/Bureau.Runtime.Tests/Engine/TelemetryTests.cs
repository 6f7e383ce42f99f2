using System.Collections.Concurrent;
using System.Diagnostics;
using Bureau.Governance;
using Bureau.Tests.Support;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Xunit;

namespace Bureau.Tests.Engine;

/// <summary>
/// Bureau's spans (GenAI semantic conventions), seen through an <see cref="ActivityListener"/>: the tree and attributes of
/// a tool-calling run under its caller's span, content left out unless captured, and the trace kept across a restart.
/// Other tests run beside these and emit spans too: every assertion looks at this test's runs only.
/// </summary>
public sealed class TelemetryTests : IAsyncDisposable
{
    private static readonly ActivitySource Caller = new("Bureau.Tests.Caller");
    private readonly EngineFixture _f = new();
    private readonly ConcurrentQueue<Activity> _spans = new();
    private readonly ActivityListener _listener;
    private readonly object _gate = new();
    private TaskCompletionSource _stopped = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public TelemetryTests()
    {
        _listener = new ActivityListener
        {
            ShouldListenTo = s => s.Name is BureauTelemetry.Name or "Bureau.Tests.Caller",
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = span =>
            {
                _spans.Enqueue(span);
                TaskCompletionSource stopped;
                lock (_gate) (stopped, _stopped) = (_stopped, new(TaskCreationOptions.RunContinuationsAsynchronously));
                stopped.TrySetResult();
            },
        };
        ActivitySource.AddActivityListener(_listener);
    }

    public async ValueTask DisposeAsync()
    {
        await _f.DisposeAsync();
        _listener.Dispose();
    }

    private List<Activity> SpansOf(string runId) => [.. _spans.Where(s => (string?)s.GetTagItem("bureau.run.id") == runId)];

    /// <summary>
    /// Waits until the execution of <paramref name="runId"/> that ended with <paramref name="status"/> has ended its span:
    /// an execution's span ends after its last journal entry, so after the run's watchers saw it end or wait.
    /// </summary>
    private async Task ExecutionEndedAsync(string runId, string status)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        while (true)
        {
            Task stopped;
            lock (_gate) stopped = _stopped.Task;
            if (SpansOf(runId).Any(s => s.OperationName.StartsWith("invoke_agent ", StringComparison.Ordinal) && (string?)s.GetTagItem("bureau.run.status") == status)) return;
            try
            {
                await stopped.WaitAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
                throw new TimeoutException($"run {runId}: no invoke_agent span with bureau.run.status {status} ended within 20 s");
            }
        }
    }

    private void ToolCallingAgent()
    {
        _f.AddTool("lookup", ToolEffect.Read);
        _f.AddAgent("teller", tools: "lookup");
        _f.UseModel((msgs, turn) => turn == 1
            ? WithUsage(FakeModel.Call("lookup", """{"key":"secret-arg"}""", "c1"), 11, 3, ChatFinishReason.ToolCalls)
            : WithUsage(FakeModel.Text("the answer is " + FakeModel.LastToolResult(msgs)), 20, 5, ChatFinishReason.Stop));
    }

    private static ChatResponse WithUsage(ChatResponse response, long input, long output, ChatFinishReason reason)
    {
        response.Usage = new UsageDetails { InputTokenCount = input, OutputTokenCount = output };
        response.FinishReason = reason;
        response.ModelId = "fake-1";
        return response;
    }

    [Fact]
    public async Task ToolCallingRun_SpansNestUnderTheCallersSpan_WithGenAiAttributes()
    {
        ToolCallingAgent();
        var engine = await _f.StartAsync();
        string id;
        ActivityContext caller;
        using (var span = Caller.StartActivity("POST /v1/runs"))
        {
            caller = span!.Context;
            id = (await engine.SubmitAsync(new RunRequest("teller", "what is it?"))).Run.Id;
        }
        var run = await EngineFixture.WaitAsync(engine, id);
        Assert.Equal(RunStatus.Succeeded, run.Status);
        await ExecutionEndedAsync(id, "succeeded");

        var started = Assert.IsType<RunStarted>((await engine.ReadJournalAsync(id))[0].Entry);
        Assert.Equal($"00-{caller.TraceId}-{caller.SpanId}-01", started.TraceParent);

        var spans = SpansOf(id);
        Assert.All(spans, s => Assert.Equal(caller.TraceId, s.TraceId));
        var agent = Assert.Single(spans, s => s.OperationName == "invoke_agent teller");
        Assert.Equal(caller.SpanId, agent.ParentSpanId);
        Assert.Equal("invoke_agent", agent.GetTagItem("gen_ai.operation.name"));
        Assert.Equal("teller", agent.GetTagItem("gen_ai.agent.name"));
        Assert.Equal("succeeded", agent.GetTagItem("bureau.run.status"));
        var queue = Assert.Single(spans, s => s.OperationName == "queue teller");
        Assert.Equal(caller.SpanId, queue.ParentSpanId);

        var chats = spans.Where(s => s.OperationName == "chat m").OrderBy(s => s.StartTimeUtc).ToList();
        Assert.Equal(2, chats.Count);
        Assert.All(chats, c =>
        {
            Assert.Equal(agent.SpanId, c.ParentSpanId);
            Assert.Equal(ActivityKind.Client, c.Kind);
            Assert.Equal("chat", c.GetTagItem("gen_ai.operation.name"));
            Assert.Equal("m", c.GetTagItem("gen_ai.request.model"));
            Assert.Equal("fake-1", c.GetTagItem("gen_ai.response.model"));
            Assert.NotNull(c.GetTagItem("gen_ai.provider.name"));
        });
        Assert.Equal((11L, 3L), ((long)chats[0].GetTagItem("gen_ai.usage.input_tokens")!, (long)chats[0].GetTagItem("gen_ai.usage.output_tokens")!));
        Assert.Equal(["tool_calls"], (string[])chats[0].GetTagItem("gen_ai.response.finish_reasons")!);
        Assert.Equal(["stop"], (string[])chats[1].GetTagItem("gen_ai.response.finish_reasons")!);

        var tool = Assert.Single(spans, s => s.OperationName == "execute_tool lookup");
        Assert.Equal(agent.SpanId, tool.ParentSpanId);
        Assert.Equal(("execute_tool", "lookup", "c1", "read", "ok"), (tool.GetTagItem("gen_ai.operation.name"), tool.GetTagItem("gen_ai.tool.name"),
            tool.GetTagItem("gen_ai.tool.call.id"), tool.GetTagItem("bureau.tool.effect"), tool.GetTagItem("bureau.tool.outcome")));
        Assert.True(chats[0].StartTimeUtc <= tool.StartTimeUtc && tool.StartTimeUtc <= chats[1].StartTimeUtc);

        // Content is not captured by default: no argument, result or answer text on any span.
        Assert.All(spans, s => Assert.DoesNotContain(s.TagObjects, t => t.Value?.ToString()?.Contains("secret-arg") == true
            || t.Value?.ToString()?.Contains("the answer is") == true));
        Assert.All(spans, s => Assert.Null(s.GetTagItem("gen_ai.tool.call.arguments")));
    }

    [Fact]
    public async Task CaptureContent_On_ArgumentsResultsAndAnswersAreOnTheSpans()
    {
        ToolCallingAgent();
        _f.Configure = b => b.Configure(o => o.Telemetry.CaptureContent = true);
        var engine = await _f.StartAsync();
        var id = (await engine.SubmitAsync(new RunRequest("teller", "what is it?"))).Run.Id;
        await EngineFixture.WaitAsync(engine, id);

        var spans = SpansOf(id);
        var tool = Assert.Single(spans, s => s.OperationName == "execute_tool lookup");
        Assert.Equal("""{"key":"secret-arg"}""", tool.GetTagItem("gen_ai.tool.call.arguments"));
        Assert.Equal("lookup:secret-arg", tool.GetTagItem("gen_ai.tool.call.result"));
        Assert.Contains(spans, s => (string?)s.GetTagItem("gen_ai.output.text") == "the answer is lookup:secret-arg");
        Assert.Contains(spans, s => ((string?)s.GetTagItem("gen_ai.output.tool_calls"))?.Contains("secret-arg") == true);
    }

    [Fact]
    public async Task NoCallersSpan_TheTraceComesFromTheRunsId_AndNothingIsJournaled()
    {
        ToolCallingAgent();
        var engine = await _f.StartAsync();
        var id = (await engine.SubmitAsync(new RunRequest("teller", "x"))).Run.Id;
        await EngineFixture.WaitAsync(engine, id);
        await ExecutionEndedAsync(id, "succeeded");

        Assert.Null(Assert.IsType<RunStarted>((await engine.ReadJournalAsync(id))[0].Entry).TraceParent);
        var agent = Assert.Single(SpansOf(id), s => s.OperationName == "invoke_agent teller");
        Assert.Equal(BureauEngine.TraceIdOf(id), agent.TraceId);
    }

    [Fact]
    public void TheIdsMadeFromARunsId_AreSha256OfIt_SoRunsJournaledBeforeAnUpgradeKeepTheirTrace()
    {
        // Runs executing across an upgrade of Bureau derive their trace again from the id: the derivation must not change.
        var id = "01m96runid-é-" + new string('x', 300); // non-ASCII, and longer than the stack buffer
        var trace = System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes("trace:" + id));
        var span = System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes("run:" + id));
        Assert.Equal(ActivityTraceId.CreateFromBytes(trace.AsSpan(0, 16)), BureauEngine.TraceIdOf(id));
        Assert.Equal(ActivitySpanId.CreateFromBytes(span.AsSpan(0, 8)), BureauEngine.SpanIdOf(id));
        Assert.Equal(ActivityTraceId.CreateFromBytes(System.Security.Cryptography.SHA256.HashData("trace:r1"u8).AsSpan(0, 16)), BureauEngine.TraceIdOf("r1"));
    }

    [Fact]
    public async Task Restart_TheResumedExecutionJoinsTheSameTrace_WithTheApprovalWaitAsASpan()
    {
        _f.AddTool("refund", ToolEffect.Write);
        _f.AddAgent("clerk", tools: "refund");
        _f.UseModel((msgs, turn) => turn == 1 ? FakeModel.Call("refund", """{"key":"big"}""", "c1") : FakeModel.Text("after: " + FakeModel.LastToolResult(msgs)));
        _f.Definitions.Policies = new PolicySet
        {
            Rules =
            [
                new PolicyRule
                {
                    Name = "big-refunds", Action = PolicyAction.RequireApproval, Reason = "big refunds need a lead",
                    When = new PolicyConditions { Tools = ["refund"] },
                    Approval = new ApprovalSpec { Levels = [new(["leads"], null)] },
                },
            ],
        };
        var engine = await _f.StartAsync();
        string id;
        ActivityContext caller;
        using (var span = Caller.StartActivity("POST /v1/runs"))
        {
            caller = span!.Context;
            id = (await engine.SubmitAsync(new RunRequest("clerk", "refund please"))).Run.Id;
        }
        var waiting = await EngineFixture.WaitAsync(engine, id);
        var wait = Assert.IsType<ApprovalWait>(waiting.WaitingFor);
        await ExecutionEndedAsync(id, "waiting");
        Assert.Equal(1, await engine.CountApprovalsOpenAsync(TestContext.Current.CancellationToken));

        // The process ends; a new engine on the same database answers the approval and resumes the run.
        await _f.DisposeEnginesAsync();
        var restarted = await _f.StartAsync();
        await restarted.DecideApprovalAsync(id, wait.Step, new ApprovalDecision(true, "ok"), "lea", ["leads"]);
        var run = await EngineFixture.WaitAsync(restarted, id);
        Assert.Equal(RunStatus.Succeeded, run.Status);
        Assert.Equal(0, await restarted.CountApprovalsOpenAsync(TestContext.Current.CancellationToken));
        await ExecutionEndedAsync(id, "succeeded");

        var spans = SpansOf(id);
        var executions = spans.Where(s => s.OperationName == "invoke_agent clerk").OrderBy(s => s.StartTimeUtc).ToList();
        Assert.Equal(2, executions.Count);
        Assert.All(spans, s => Assert.Equal(caller.TraceId, s.TraceId));
        Assert.All(executions, s => Assert.Equal(caller.SpanId, s.ParentSpanId));
        Assert.Equal(["waiting", "succeeded"], executions.Select(s => (string?)s.GetTagItem("bureau.run.status")));
        var waited = Assert.Single(spans, s => s.OperationName == "wait approval");
        Assert.Equal(("approval", "answered", "refund"), (waited.GetTagItem("bureau.wait.reason"), waited.GetTagItem("bureau.wait.outcome"), waited.GetTagItem("gen_ai.tool.name")));
        // The wait's ends are journal times, whole milliseconds (truncated): allow one either side of the executions' spans.
        var ms = TimeSpan.FromMilliseconds(1);
        Assert.True(waited.StartTimeUtc + ms >= executions[0].StartTimeUtc, $"the wait starts at {waited.StartTimeUtc:O}, before the first execution ({executions[0].StartTimeUtc:O})");
        Assert.True(waited.StartTimeUtc + waited.Duration <= executions[1].StartTimeUtc + ms, $"the wait ends at {waited.StartTimeUtc + waited.Duration:O}, after the resumed execution starts ({executions[1].StartTimeUtc:O})");
        Assert.Contains(spans, s => s.OperationName == "execute_tool refund" && s.ParentSpanId == executions[1].SpanId);
    }

    [Fact]
    public async Task QueuedRun_ExecutedAfterARestart_StillJoinsItsCallersTrace()
    {
        ToolCallingAgent();
        var engine = await _f.StartAsync(start: false); // accepted, never executed here
        string id;
        ActivityContext caller;
        using (var span = Caller.StartActivity("POST /v1/runs"))
        {
            caller = span!.Context;
            id = (await engine.SubmitAsync(new RunRequest("teller", "x"))).Run.Id;
        }
        await _f.DisposeEnginesAsync();

        var restarted = await _f.StartAsync();
        Assert.Equal(RunStatus.Succeeded, (await EngineFixture.WaitAsync(restarted, id)).Status);
        await ExecutionEndedAsync(id, "succeeded");
        var agent = Assert.Single(SpansOf(id), s => s.OperationName == "invoke_agent teller");
        Assert.Equal((caller.TraceId, caller.SpanId), (agent.TraceId, agent.ParentSpanId));
    }

    [Fact]
    public async Task LogsWrittenDuringAnExecution_CarryTheRunAndTheStepThen()
    {
        var logs = new ScopeCapturingLoggerProvider();
        _f.AddTool("lookup", ToolEffect.Read);
        _f.AddAgent("scoped", tools: "lookup");
        _f.UseModel((_, turn) => turn == 1 ? FakeModel.Call("lookup", """{"wrong":1}""", "c1") : FakeModel.Text("done"));
        _f.Configure = b => b.Services.AddSingleton<ILoggerFactory>(new LoggerFactory([logs]));
        var engine = await _f.StartAsync();
        var id = (await engine.SubmitAsync(new RunRequest("scoped", "x"))).Run.Id;
        await EngineFixture.WaitAsync(engine, id);

        // The rejected call is logged once its rejection is journaled (step 3, after run.started and the model's answer):
        // the scope says the step the run is at when the record is written, not when the execution began (step 1).
        var rejected = Assert.Single(logs.Records, r => r.Message.Contains("rejected before running") && r.Message.Contains(id));
        Assert.Contains("step 3", rejected.Message);
        Assert.Equal(id, rejected.Scope["RunId"]);
        Assert.Equal("scoped", rejected.Scope["Agent"]);
        Assert.Equal(3L, rejected.Scope["Step"]);
    }

    private sealed class ScopeCapturingLoggerProvider : ILoggerProvider, ISupportExternalScope
    {
        private IExternalScopeProvider _scopes = new LoggerExternalScopeProvider();

        public ConcurrentQueue<(string Message, Dictionary<string, object?> Scope)> Records { get; } = new();

        public ILogger CreateLogger(string categoryName) => new Logger(this);

        public void SetScopeProvider(IExternalScopeProvider scopeProvider) => _scopes = scopeProvider;

        public void Dispose() { }

        private sealed class Logger(ScopeCapturingLoggerProvider owner) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state) where TState : notnull => owner._scopes.Push(state);

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                var scope = new Dictionary<string, object?>(StringComparer.Ordinal);
                owner._scopes.ForEachScope((s, d) =>
                {
                    if (s is IEnumerable<KeyValuePair<string, object?>> pairs) foreach (var (k, v) in pairs) d[k] = v;
                }, scope);
                owner.Records.Enqueue((formatter(state, exception), scope));
            }
        }
    }
}
