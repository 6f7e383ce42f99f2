using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Bureau.Tests.Support;
using Microsoft.Extensions.AI;
using Xunit;

namespace Bureau.Tests.Engine;

[CollectionDefinition(nameof(TelemetryMetricsTests), DisableParallelization = true)]
public sealed class TelemetryMetricsCollection;

/// <summary>
/// The <c>Bureau</c> meter's values, read with a <see cref="MeterListener"/>. Not run beside other tests: the run counters
/// carry no run id, so another test's runs would be counted too.
/// </summary>
[Collection(nameof(TelemetryMetricsTests))]
public sealed class TelemetryMetricsTests : IAsyncDisposable
{
    private readonly EngineFixture _f = new();
    private readonly ConcurrentQueue<(string Name, double Value, Dictionary<string, object?> Tags)> _measured = new();
    private readonly MeterListener _listener = new();

    public TelemetryMetricsTests()
    {
        _listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == BureauTelemetry.Name) l.EnableMeasurementEvents(instrument);
        };
        _listener.SetMeasurementEventCallback<long>((i, v, tags, _) => Record(i, v, tags));
        _listener.SetMeasurementEventCallback<int>((i, v, tags, _) => Record(i, v, tags));
        _listener.SetMeasurementEventCallback<double>((i, v, tags, _) => Record(i, v, tags));
        _listener.Start();
    }

    private void Record(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        var d = new Dictionary<string, object?>(StringComparer.Ordinal);
        foreach (var t in tags) d[t.Key] = t.Value;
        _measured.Enqueue((instrument.Name, value, d));
    }

    private List<(double Value, Dictionary<string, object?> Tags)> Of(string name, string? tag = null, object? value = null) =>
        [.. _measured.Where(m => m.Name == name && (tag is null || Equals(m.Tags.GetValueOrDefault(tag), value))).Select(m => (m.Value, m.Tags))];

    /// <summary>An observable counter's value now (cumulative), for one dependency or in all.</summary>
    private double Observed(string name, string? dependency = null)
    {
        var before = _measured.Count;
        _listener.RecordObservableInstruments();
        return _measured.Skip(before).Where(m => m.Name == name && (dependency is null || Equals(m.Tags.GetValueOrDefault("bureau.dependency"), dependency)))
            .Sum(m => m.Value);
    }

    public async ValueTask DisposeAsync()
    {
        _listener.Dispose();
        await _f.DisposeAsync();
    }

    [Fact]
    public async Task ToolCallingRun_CountsRunsTokensCostStepsAndToolErrors()
    {
        _f.AddTool("lookup", ToolEffect.Read);
        _f.AddTool("broken", ToolEffect.Read, body: (_, _) => throw new InvalidOperationException("no such key"));
        _f.UseModel((msgs, turn) =>
        {
            var r = turn switch
            {
                1 => FakeModel.Call("lookup", """{"key":"a"}""", "c1"),
                2 => FakeModel.Call("broken", """{"key":"b"}""", "c2"),
                _ => FakeModel.Text("done"),
            };
            r.Usage = new UsageDetails { InputTokenCount = 100 * turn, OutputTokenCount = 10 };
            return r;
        }, price: new ModelPrice(1_000_000, 2_000_000), name: "metered");
        _f.Definitions.Add(new AgentDefinition { Name = "meter", Model = "metered", Instructions = "test", Tools = ["lookup", "broken"] });
        var engine = await _f.StartAsync();
        var (entriesBefore, modelAttemptsBefore, toolAttemptsBefore, toolFailuresBefore) = (Observed("bureau.journal.entries"),
            Observed("bureau.dependency.attempts", "model:metered"), Observed("bureau.dependency.attempts", "tool:broken"), Observed("bureau.dependency.failures", "tool:broken"));

        var run = await EngineFixture.WaitAsync(engine, (await engine.SubmitAsync(new RunRequest("meter", "go"))).Run.Id);
        Assert.Equal(RunStatus.Succeeded, run.Status);

        // Observable counters, read at export: every journal entry of the run, each model attempt, and the broken read
        // tool's attempts (3 by the default retry policy of read tools), every one of them failed.
        Assert.Equal(run.Version, Observed("bureau.journal.entries") - entriesBefore);
        Assert.Equal(3, Observed("bureau.dependency.attempts", "model:metered") - modelAttemptsBefore);
        Assert.Equal(3, Observed("bureau.dependency.attempts", "tool:broken") - toolAttemptsBefore);
        Assert.Equal(3, Observed("bureau.dependency.failures", "tool:broken") - toolFailuresBefore);

        Assert.Equal(1, Of("bureau.runs.started").Sum(m => m.Value));
        var finished = Assert.Single(Of("bureau.runs.finished"));
        Assert.Equal(("succeeded", "succeeded"), (finished.Tags["bureau.run.status"], finished.Tags["bureau.run.outcome"]));

        var input = Of("gen_ai.client.token.usage", "gen_ai.token.type", "input");
        var output = Of("gen_ai.client.token.usage", "gen_ai.token.type", "output");
        Assert.Equal([100d, 200d, 300d], input.Select(m => m.Value));
        Assert.Equal(30, output.Sum(m => m.Value));
        Assert.All(input, m => Assert.Equal(("chat", "metered"), (m.Tags["gen_ai.operation.name"], m.Tags["gen_ai.request.model"])));
        Assert.Equal(3, Of("gen_ai.client.operation.duration").Count);
        // Price per million tokens: input 1e6, output 2e6 => 1 per input token, 2 per output token.
        Assert.Equal(600 + 60, Of("bureau.model.cost").Sum(m => m.Value), 6);

        Assert.Equal(3, Of("bureau.step.duration", "bureau.step.kind", "model").Count);
        Assert.Equal(["lookup", "broken"], Of("bureau.step.duration", "bureau.step.kind", "tool").Select(m => (string)m.Tags["gen_ai.tool.name"]!));
        var error = Assert.Single(Of("bureau.tool.errors"));
        Assert.Equal(("broken", "crash", "read"), (error.Tags["gen_ai.tool.name"], error.Tags["error.type"], error.Tags["bureau.tool.effect"]));
    }

    [Fact]
    public async Task QueueDepth_CountsRunsWaitingForASlot()
    {
        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _f.AddTool("hold", ToolEffect.Read, body: async (key, ct) =>
        {
            if (key == "first") { entered.TrySetResult(); await release.Task.WaitAsync(ct); }
            return "held";
        });
        _f.AddAgent("holder", tools: "hold");
        _f.UseModel((msgs, turn) => turn == 1
            ? FakeModel.Call("hold", "{\"key\":\"" + msgs.First(m => m.Role == ChatRole.User).Text + "\"}", "c1")
            : FakeModel.Text("done"));
        _f.MaxConcurrentRuns = 1;
        var engine = await _f.StartAsync();

        var first = (await engine.SubmitAsync(new RunRequest("holder", "first"))).Run.Id;
        string[] more;
        try
        {
            await entered.Task.WaitAsync(TimeSpan.FromSeconds(20), TestContext.Current.CancellationToken);
            more = [(await engine.SubmitAsync(new RunRequest("holder", "second"))).Run.Id, (await engine.SubmitAsync(new RunRequest("holder", "third"))).Run.Id];
            _listener.RecordObservableInstruments();
            Assert.Contains(2d, Of("bureau.queue.depth").Select(m => m.Value));
            Assert.Contains(1d, Of("bureau.runs.active").Select(m => m.Value));
        }
        finally
        {
            release.TrySetResult(); // a failed assertion must not leave the run holding the only slot
        }

        foreach (var id in more.Prepend(first)) Assert.Equal(RunStatus.Succeeded, (await EngineFixture.WaitAsync(engine, id)).Status);
    }

    [Fact]
    public async Task DependencyMetrics_AfterABreakerOpens_CountAttemptsFailuresRejectionsAndShowTheCircuitAndInFlight()
    {
        // Names no other test uses: the gauges observe every dependency of the process.
        const string Flaky = "metrics_flaky", Hold = "metrics_hold";
        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _f.ResilienceTime = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);   // the break does not end during the test
        FunctionToolDefinition Tool(string name, Func<CancellationToken, Task<string>> body, CircuitBreakerSettings? breaker = null) => new()
        {
            Name = name,
            Effect = ToolEffect.Read,
            Retry = new RetrySettings { MaxAttempts = 1 },
            CircuitBreaker = breaker,
            Parameters = System.Text.Json.JsonDocument.Parse("""{"type":"object","properties":{"key":{"type":"string"}}}""").RootElement.Clone(),
            Function = AIFunctionFactory.Create((string key, CancellationToken ct) => body(ct), name),
        };
        _f.Definitions.Add(Tool(Flaky, _ => throw new IOException("connection reset"),
            new CircuitBreakerSettings { MinimumThroughput = 2, FailureRatio = 0.5, BreakDuration = TimeSpan.FromMinutes(5) }));
        _f.Definitions.Add(Tool(Hold, async ct =>
        {
            entered.TrySetResult();
            await release.Task.WaitAsync(ct);
            return "held";
        }));
        _f.UseModel((msgs, turn) => turn == 1
            ? FakeModel.Call(msgs.First(m => m.Role == ChatRole.User).Text, """{"key":"k"}""", "c1")
            : FakeModel.Text("done"));
        _f.AddAgent(tools: [Flaky, Hold]);
        var engine = await _f.StartAsync();
        const string Tag = "bureau.dependency";
        const string FlakyDependency = "tool:" + Flaky, HoldDependency = "tool:" + Hold;

        for (var i = 0; i < 3; i++)   // two failures open the breaker; the third call is refused
            await EngineFixture.WaitAsync(engine, (await engine.SubmitAsync(new RunRequest("a", Flaky))).Run.Id);

        Assert.Equal(2, Observed("bureau.dependency.attempts", FlakyDependency));   // observable counters: cumulative, read now
        Assert.Equal(2, Observed("bureau.dependency.failures", FlakyDependency));
        var rejected = Assert.Single(Of("bureau.dependency.rejections", Tag, FlakyDependency));
        Assert.Equal((1d, "circuit-open"), (rejected.Value, rejected.Tags["bureau.reason"]));
        _listener.RecordObservableInstruments();
        Assert.Equal(2, Of("bureau.dependency.circuit.state", Tag, FlakyDependency).Last().Value);   // 2: open
        Assert.Equal(0, Of("bureau.dependency.circuit.state", Tag, HoldDependency).Last().Value);    // 0: closed (not called yet)

        var held = (await engine.SubmitAsync(new RunRequest("a", Hold))).Run.Id;
        try
        {
            await entered.Task.WaitAsync(TimeSpan.FromSeconds(20), TestContext.Current.CancellationToken);
            _listener.RecordObservableInstruments();
            Assert.Equal(1, Of("bureau.dependency.in_flight", Tag, HoldDependency).Last().Value);
            Assert.Equal(0, Of("bureau.dependency.in_flight", Tag, FlakyDependency).Last().Value);
        }
        finally
        {
            release.TrySetResult();   // a failed assertion must not leave the run holding the call
        }
        Assert.Equal(RunStatus.Succeeded, (await EngineFixture.WaitAsync(engine, held)).Status);
        _listener.RecordObservableInstruments();
        Assert.Equal(0, Of("bureau.dependency.in_flight", Tag, HoldDependency).Last().Value);
        Assert.Equal(1, Observed("bureau.dependency.attempts", HoldDependency));
        Assert.Equal(0, Observed("bureau.dependency.failures", HoldDependency));
    }
}
