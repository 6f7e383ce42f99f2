using System.Net;
using System.Net.Sockets;
using Bureau.Resilience;
using Bureau.Tests.Support;
using Bureau.Tests.Tools;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Bureau.Tests.Resilience;

/// <summary>Tool calls behind the retry stage: retries by effect class, timeouts, breakers and bulkheads (the cascade a hanging tool must not cause: <see cref="CascadeTests"/>).</summary>
public sealed class ToolResilienceTests : IAsyncDisposable
{
    private readonly EngineFixture _f = new();

    public ValueTask DisposeAsync() => _f.DisposeAsync();

    private static IEnumerable<JournalEntry> Entries(IReadOnlyList<JournalRecord> journal) => journal.Select(r => r.Entry);

    /// <summary>A model that calls <paramref name="tool"/> once, then answers with what it got.</summary>
    private void ModelCalling(string tool) =>
        _f.UseModel((msgs, turn) => turn == 1 ? FakeModel.Call(tool, """{"key":"k"}""") : FakeModel.Text("got: " + FakeModel.LastToolResult(msgs)));

    private async Task<(RunRecord Run, IReadOnlyList<JournalRecord> Journal)> RunAsync(BureauEngine engine, string input = "x")
    {
        var id = (await engine.SubmitAsync(new RunRequest("a", input))).Run.Id;
        var run = await EngineFixture.WaitAsync(engine, id, 60);
        return (run, await engine.ReadJournalAsync(id));
    }

    private void AddTool(string name, ToolEffect effect, Func<int, CancellationToken, Task<string>> body, RetrySettings? retry = null,
        TimeSpan? timeout = null, int? maxConcurrency = null, int? maxQueue = null, CircuitBreakerSettings? breaker = null, TimeSpan? stepTimeout = null)
    {
        var calls = 0;
        _f.Definitions.Add(new FunctionToolDefinition
        {
            Name = name,
            Effect = effect,
            Retry = retry,
            Timeout = timeout,
            StepTimeout = stepTimeout,
            MaxConcurrency = maxConcurrency,
            MaxQueue = maxQueue,
            CircuitBreaker = breaker,
            Parameters = System.Text.Json.JsonDocument.Parse("""{"type":"object","properties":{"key":{"type":"string"}}}""").RootElement.Clone(),
            Function = AIFunctionFactory.Create(async (string key, CancellationToken ct) =>
            {
                var idem = Bureau.Tools.BureauToolContext.Current?.IdempotencyKey ?? "?";
                _f.Keys.Enqueue(name + "|" + idem);
                return await body(Interlocked.Increment(ref calls), ct);
            }, name),
        });
    }

    [Fact]
    public async Task IdempotentTool_CrashesMidwayTwice_IsRetriedWithTheSameKeyAndEveryAttemptIsJournaled()
    {
        _f.ResilienceTime = new InstantTimeProvider();
        ModelCalling("charge");
        AddTool("charge", ToolEffect.Idempotent, (n, _) => n <= 2 ? throw new IOException($"connection reset during call {n}") : Task.FromResult("charged"));
        _f.AddAgent(tools: "charge");
        var engine = await _f.StartAsync();

        var (run, journal) = await RunAsync(engine);

        Assert.Equal((RunStatus.Succeeded, "got: charged"), (run.Status, run.Output));
        var intent = Entries(journal).OfType<ToolIntent>().Single();
        var attempts = Entries(journal).OfType<AttemptFailed>().ToList();
        Assert.Equal([1, 2], attempts.Select(a => a.Attempt));
        Assert.All(attempts, a => Assert.Equal(("tool:charge", "crash", intent.IdempotencyKey), (a.Dependency, a.Class, a.IdempotencyKey)));
        Assert.Equal(Enumerable.Repeat("charge|" + intent.IdempotencyKey, 3), _f.Keys);   // three attempts, one key
        var result = Entries(journal).OfType<ToolCompleted>().Single();
        Assert.Equal((false, 3), (result.IsError, result.Attempts));
    }

    [Fact]
    public async Task WriteTool_CrashesMidway_IsNotRetriedAndTheJournalSaysWhy()
    {
        _f.ResilienceTime = new InstantTimeProvider();
        ModelCalling("refund");
        AddTool("refund", ToolEffect.Write, (n, _) => throw new IOException("connection reset after the request was sent"));
        _f.AddAgent(tools: "refund");
        var engine = await _f.StartAsync();

        var (run, journal) = await RunAsync(engine);

        Assert.Equal(RunStatus.Succeeded, run.Status);   // the model was told, and answered
        Assert.Single(_f.Keys);
        var result = Entries(journal).OfType<ToolCompleted>().Single();
        Assert.Equal((true, "crash", (int?)null), (result.IsError, result.Failure, result.Attempts));
        var gaveUp = Entries(journal).OfType<AttemptFailed>().Single();
        Assert.Null(gaveUp.RetryInMs);
        Assert.Contains("a write tool is not retried automatically", gaveUp.GaveUp);
    }

    [Fact]
    public async Task WriteTool_DeclaringOnlyBeforeSend_RetriesARefusedConnectionButNotACrash()
    {
        _f.ResilienceTime = new InstantTimeProvider();
        var port = ClosedPort();
        _f.UseModel((msgs, turn) => turn switch
        {
            1 => FakeModel.Call("post", """{"key":"k"}"""),
            2 => FakeModel.Call("write_fn", """{"key":"k"}"""),
            _ => FakeModel.Text("done"),
        });
        _f.Definitions.Add(new HttpToolDefinition
        {
            Name = "post",
            Effect = ToolEffect.Write,
            Url = new Uri($"http://127.0.0.1:{port}/orders"),
            Retry = new RetrySettings { MaxAttempts = 3, OnlyBefore = RetryBoundary.Send },
        });
        AddTool("write_fn", ToolEffect.Write, (_, _) => throw new IOException("reset mid-way"), retry: new RetrySettings { MaxAttempts = 3, OnlyBefore = RetryBoundary.Send });
        _f.AddAgent(tools: ["post", "write_fn"]);
        var engine = await _f.StartAsync();

        var (_, journal) = await RunAsync(engine);

        var results = Entries(journal).OfType<ToolCompleted>().ToList();
        Assert.Equal(("post", "not-sent", 3), (results[0].Tool, results[0].Failure, results[0].Attempts));
        Assert.Equal(("write_fn", "crash", (int?)null), (results[1].Tool, results[1].Failure, results[1].Attempts));
        Assert.Single(_f.Keys, k => k.StartsWith("write_fn|", StringComparison.Ordinal));
    }

    [Fact]
    public async Task ReadTool_HangsPastItsTimeout_TimesOutAndTheRetryAnswers()
    {
        ModelCalling("slow");
        AddTool("slow", ToolEffect.Read, async (n, ct) =>
        {
            if (n == 1) await Task.Delay(Timeout.Infinite, ct);
            return "fast enough";
        }, retry: new RetrySettings { MaxAttempts = 2, Delay = TimeSpan.FromMilliseconds(10) }, timeout: TimeSpan.FromMilliseconds(200));
        _f.AddAgent(tools: "slow");
        var engine = await _f.StartAsync();

        var (run, journal) = await RunAsync(engine);

        Assert.Equal((RunStatus.Succeeded, "got: fast enough"), (run.Status, run.Output));
        var failed = Assert.Single(Entries(journal).OfType<AttemptFailed>());
        Assert.Equal("timeout", failed.Class);
        Assert.Contains("timed out after 200ms", failed.Error);
    }

    /// <summary>Backoff of 10 s, 20 s, 40 s … (no jitter), five attempts; the total-time cap as given.</summary>
    private static RetrySettings TenSecondBackoff(TimeSpan maxTotalTime) =>
        new() { MaxAttempts = 5, Delay = TimeSpan.FromSeconds(10), MaxDelay = TimeSpan.FromMinutes(5), MaxTotalTime = maxTotalTime, Jitter = false };

    [Fact]
    public async Task StepTimeout_PassesDuringTheRetries_CutsThemShortAndTheResultSaysItWasTheStepTimeout()
    {
        var clock = new WaitRecordingClock();
        _f.ResilienceTime = clock;
        ModelCalling("flaky");
        AddTool("flaky", ToolEffect.Read, (n, _) => throw new IOException($"connection reset during call {n}"),
            retry: TenSecondBackoff(TimeSpan.FromHours(1)), breaker: new CircuitBreakerSettings { Enabled = false }, stepTimeout: TimeSpan.FromSeconds(15));
        _f.AddAgent(tools: "flaky");
        var engine = await _f.StartAsync();

        var id = (await engine.SubmitAsync(new RunRequest("a", "x"))).Run.Id;
        await clock.AdvanceOnceWaitingAsync(TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(10));   // the first backoff ends: attempt 2
        await clock.AdvanceOnceWaitingAsync(TimeSpan.FromSeconds(20), TimeSpan.FromSeconds(5));    // 15 s into the step, inside the second backoff
        var run = await EngineFixture.WaitAsync(engine, id, 60);
        var journal = await engine.ReadJournalAsync(id);

        Assert.Equal(RunStatus.Succeeded, run.Status);   // the model was told, and answered
        Assert.Equal(2, _f.Keys.Count);                  // 5 attempts allowed, 2 made: the step's time was up
        var result = Entries(journal).OfType<ToolCompleted>().Single();
        Assert.Equal((true, "timeout", (int?)2), (result.IsError, result.Failure, result.Attempts));
        Assert.Equal("tool 'flaky' did not finish within its step timeout (15s) over 2 attempt(s)", result.Content);
        Assert.Equal([(1, (double?)10_000), (2, 20_000)], Entries(journal).OfType<AttemptFailed>().Select(a => (a.Attempt, a.RetryInMs)));
        Assert.Equal("got: " + result.Content, run.Output);
    }

    [Fact]
    public async Task MaxTotalTime_TheNextWaitWouldPassIt_ToolRetriesStopAndTheJournalSaysWhy()
    {
        var clock = new WaitRecordingClock();
        _f.ResilienceTime = clock;
        ModelCalling("flaky");
        AddTool("flaky", ToolEffect.Idempotent, (n, _) => throw new IOException($"connection reset during call {n}"),
            retry: TenSecondBackoff(TimeSpan.FromSeconds(25)), breaker: new CircuitBreakerSettings { Enabled = false });
        _f.AddAgent(tools: "flaky");
        var engine = await _f.StartAsync();

        var id = (await engine.SubmitAsync(new RunRequest("a", "x"))).Run.Id;
        await clock.AdvanceOnceWaitingAsync(TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(10));   // attempt 2 fails 10 s in: 10 + 20 > 25
        var run = await EngineFixture.WaitAsync(engine, id, 60);
        var journal = await engine.ReadJournalAsync(id);

        Assert.Equal(RunStatus.Succeeded, run.Status);
        var intent = Entries(journal).OfType<ToolIntent>().Single();
        Assert.Equal(["flaky|" + intent.IdempotencyKey, "flaky|" + intent.IdempotencyKey], _f.Keys);   // two attempts, one key
        var attempts = Entries(journal).OfType<AttemptFailed>().ToList();
        Assert.Equal([(1, (double?)10_000, (string?)null), (2, null, "the next wait (20s) would pass maxTotalTime (25s)")],
            attempts.Select(a => (a.Attempt, a.RetryInMs, a.GaveUp)));
        Assert.All(attempts, a => Assert.Equal(("tool:flaky", "crash", intent.IdempotencyKey), (a.Dependency, a.Class, a.IdempotencyKey)));
        var result = Entries(journal).OfType<ToolCompleted>().Single();
        Assert.Equal((true, "crash", (int?)2), (result.IsError, result.Failure, result.Attempts));
    }

    [Fact]
    public async Task Bulkhead_Full_TheExtraCallFailsAtOnceSayingSo()
    {
        var release = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        ModelCalling("narrow");
        AddTool("narrow", ToolEffect.Read, async (n, ct) =>
        {
            entered.TrySetResult();
            return await release.Task.WaitAsync(ct);
        }, maxConcurrency: 1, maxQueue: 0);
        _f.AddAgent(tools: "narrow");
        var engine = await _f.StartAsync();

        var first = (await engine.SubmitAsync(new RunRequest("a", "first"))).Run.Id;
        await entered.Task.WaitAsync(TimeSpan.FromSeconds(20), TestContext.Current.CancellationToken);
        var (second, journal) = await RunAsync(engine, "second");
        release.SetResult("done");
        var firstRun = await EngineFixture.WaitAsync(engine, first);

        Assert.Equal("got: done", firstRun.Output);
        var rejected = Entries(journal).OfType<ToolCompleted>().Single();
        Assert.Equal((true, "unavailable"), (rejected.IsError, rejected.Failure));
        Assert.Contains("tool 'narrow' is busy: 1 calls in flight and 0 waiting (bulkhead full)", rejected.Content);
        Assert.Equal(1, _f.Services.GetRequiredService<DependencyHealth>().Snapshot().Single(d => d.Name == "tool:narrow").Rejected);
        Assert.Equal(RunStatus.Succeeded, second.Status);
    }

    private static int ClosedPort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;   // closed again when disposed: connections are refused
    }
}
