using Bureau.Resilience;
using Bureau.Tests.Support;
using Bureau.Tests.Tools;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace Bureau.Tests.Resilience;

/// <summary>
/// Model calls behind the resilience links, with faults injected by a loopback Chat Completions server
/// (Kestrel) or a fake client: 429 with Retry-After, 500 bursts, hangs, a model that is down, breakers,
/// rate limits, fallbacks and costs.
/// </summary>
public sealed class ModelResilienceTests(ITestOutputHelper output) : IAsyncDisposable
{
    private readonly EngineFixture _f = new();
    private readonly List<IAsyncDisposable> _servers = [];

    public async ValueTask DisposeAsync()
    {
        await _f.DisposeAsync();
        foreach (var s in _servers) await s.DisposeAsync();
    }

    private async Task<FaultyChatServer> ServerAsync(Func<int, Fault> script)
    {
        var server = await FaultyChatServer.StartAsync(script);
        _servers.Add(server);
        return server;
    }

    private void AddOpenAIModel(string name, FaultyChatServer server, RetrySettings? retry = null, CircuitBreakerSettings? breaker = null,
        IReadOnlyList<string>? fallback = null, ModelPrice? price = null, TimeSpan? attemptTimeout = null, int? maxRetries = null)
    {
        _f.Definitions.Add(new OpenAIModelDefinition
        {
            Name = name,
            Endpoint = server.Endpoint,
            Model = "faulty-" + name,
            Retry = retry,
            CircuitBreaker = breaker,
            Fallback = fallback ?? [],
            Price = price,
            AttemptTimeout = attemptTimeout,
            MaxRetries = maxRetries ?? OpenAIModelDefinition.DefaultMaxRetries,
        });
    }

    private void AddAgent(string model, AgentBudgets? budgets = null) =>
        _f.Definitions.Add(new AgentDefinition { Name = "a", Model = model, Instructions = "test", Budgets = budgets ?? new() });

    private static async Task<(RunRecord Run, IReadOnlyList<JournalRecord> Journal)> RunAsync(BureauEngine engine, string input = "hello")
    {
        var id = (await engine.SubmitAsync(new RunRequest("a", input))).Run.Id;
        var run = await EngineFixture.WaitAsync(engine, id);
        return (run, await engine.ReadJournalAsync(id));
    }

    private static RunFinished Finished(IReadOnlyList<JournalRecord> journal) => journal.Select(r => r.Entry).OfType<RunFinished>().Single();

    [Fact]
    public async Task Run_ModelAnswers429WithRetryAfterFourTimesInARow_SucceedsUnderTheDefaultPolicyAndJournalsEachAttempt()
    {
        // The measured failure: 4 consecutive 429s (Retry-After: 1) on one turn failed the run.
        var server = await ServerAsync(n => n <= 4 ? new Fault.Status(429, "1") : Fault.Ok("answered"));
        var clock = new InstantTimeProvider();
        _f.ResilienceTime = clock;
        AddOpenAIModel("m", server);
        AddAgent("m");
        var engine = await _f.StartAsync();

        var (run, journal) = await RunAsync(engine);

        Assert.Equal(RunStatus.Succeeded, run.Status);
        Assert.Equal("answered", run.Output);
        Assert.Equal(5, server.Requests);   // one attempt each: the provider's own retries are off inside Bureau
        var attempts = journal.Select(r => r.Entry).OfType<AttemptFailed>().ToList();
        Assert.Equal([1, 2, 3, 4], attempts.Select(a => a.Attempt));
        Assert.All(attempts, a => Assert.Equal(("model:m", "rate-limited", 1000d), (a.Dependency, a.Class, a.RetryInMs)));
        Assert.Equal(Enumerable.Repeat(TimeSpan.FromSeconds(1), 4), clock.Waits);   // Retry-After honoured, no jitter on it
        Assert.Equal(5, journal.Select(r => r.Entry).OfType<ModelResponded>().Single().Attempts);
    }

    [Fact]
    public async Task Run_ModelAnswers429ToHalfTheRequests_EveryRunSucceedsWithOneRetryPerTurn()
    {
        // One run at a time, so that "every other request" is every other attempt of each run.
        var server = await ServerAsync(n => n % 2 == 1 ? new Fault.Status(429, "1") : Fault.Ok());
        _f.ResilienceTime = new InstantTimeProvider();
        AddOpenAIModel("m", server);
        AddAgent("m");
        var engine = await _f.StartAsync();

        for (var i = 0; i < 20; i++)
        {
            var (run, journal) = await RunAsync(engine);
            Assert.Equal(RunStatus.Succeeded, run.Status);
            Assert.Single(journal.Select(r => r.Entry).OfType<AttemptFailed>());
        }
        Assert.Equal(40, server.Requests);
    }

    [Fact]
    public async Task Run_500Burst_RetriesThroughItWithBackoff()
    {
        var server = await ServerAsync(n => n <= 3 ? new Fault.Status(500) : Fault.Ok("after the burst"));
        var clock = new InstantTimeProvider();
        _f.ResilienceTime = clock;
        AddOpenAIModel("m", server, retry: new RetrySettings { MaxAttempts = 5, Delay = TimeSpan.FromSeconds(1), Jitter = false });
        AddAgent("m");
        var engine = await _f.StartAsync();

        var (run, journal) = await RunAsync(engine);

        Assert.Equal((RunStatus.Succeeded, "after the burst"), (run.Status, run.Output));
        Assert.Equal(4, server.Requests);
        Assert.Equal([TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(4)], clock.Waits);   // exponential
        Assert.All(journal.Select(r => r.Entry).OfType<AttemptFailed>(), a => Assert.Equal("unavailable", a.Class));
    }

    [Fact]
    public async Task Run_ModelHangsPastTheAttemptTimeout_TheNextAttemptAnswers()
    {
        var server = await ServerAsync(n => n == 1 ? new Fault.Hang() : Fault.Ok("second try"));
        AddOpenAIModel("m", server, retry: new RetrySettings { MaxAttempts = 2, Delay = TimeSpan.FromMilliseconds(10) },
            attemptTimeout: TimeSpan.FromSeconds(2));   // long enough for a busy machine to deliver the first request
        AddAgent("m");
        var engine = await _f.StartAsync();

        var (run, journal) = await RunAsync(engine);

        Assert.Equal((RunStatus.Succeeded, "second try"), (run.Status, run.Output));
        var failed = Assert.Single(journal.Select(r => r.Entry).OfType<AttemptFailed>());
        Assert.Equal("timeout", failed.Class);
        Assert.Contains("did not answer within 2s", failed.Error);
    }

    /// <summary>A model behind a fake client, with the links' settings given here.</summary>
    private FakeModel AddFakeModel(string name, Func<IReadOnlyList<Microsoft.Extensions.AI.ChatMessage>, int, Microsoft.Extensions.AI.ChatResponse> answer,
        RetrySettings? retry = null, CircuitBreakerSettings? breaker = null, TimeSpan? stepTimeout = null, IReadOnlyList<string>? fallback = null,
        int? maxConcurrency = null, int? maxQueue = null, int? requestsPerMinute = null, TimeSpan? maxRateLimitWait = null)
    {
        var model = new FakeModel(answer);
        _f.Definitions.Add(new ChatClientModelDefinition
        {
            Name = name, Client = model, Retry = retry, CircuitBreaker = breaker, StepTimeout = stepTimeout, Fallback = fallback ?? [],
            MaxConcurrency = maxConcurrency, MaxQueue = maxQueue, RequestsPerMinute = requestsPerMinute, MaxRateLimitWait = maxRateLimitWait,
        });
        return model;
    }

    private static Microsoft.Extensions.AI.ChatResponse Down(IReadOnlyList<Microsoft.Extensions.AI.ChatMessage> _, int __) =>
        throw new HttpRequestException("service unavailable", null, System.Net.HttpStatusCode.ServiceUnavailable);

    /// <summary>Backoff of 10 s, 20 s, 40 s … (no jitter), five attempts; the total-time cap as given.</summary>
    private static RetrySettings TenSecondBackoff(TimeSpan maxTotalTime) =>
        new() { MaxAttempts = 5, Delay = TimeSpan.FromSeconds(10), MaxDelay = TimeSpan.FromMinutes(5), MaxTotalTime = maxTotalTime, Jitter = false };

    [Fact]
    public async Task StepTimeout_PassesDuringTheRetries_CutsThemShortAndTheRunSaysItWasTheStepTimeout()
    {
        var clock = new WaitRecordingClock();
        _f.ResilienceTime = clock;
        var model = AddFakeModel("m", Down, retry: TenSecondBackoff(TimeSpan.FromHours(1)), breaker: new CircuitBreakerSettings { Enabled = false },
            stepTimeout: TimeSpan.FromSeconds(15));
        AddAgent("m");
        var engine = await _f.StartAsync();

        var id = (await engine.SubmitAsync(new RunRequest("a", "hello"))).Run.Id;
        await clock.AdvanceOnceWaitingAsync(TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(10));   // the first backoff ends: attempt 2
        await clock.AdvanceOnceWaitingAsync(TimeSpan.FromSeconds(20), TimeSpan.FromSeconds(5));    // 15 s into the step, inside the second backoff
        var run = await EngineFixture.WaitAsync(engine, id);
        var journal = await engine.ReadJournalAsync(id);

        Assert.Equal(RunStatus.Failed, run.Status);
        Assert.Equal(2, model.Calls);   // 5 attempts allowed, 2 made: the step's time was up
        Assert.Contains("model 'm' did not answer within its step timeout (15s) over 2 attempt(s)", run.Error);
        Assert.Equal(run.Error, Finished(journal).Error);
        var failure = Finished(journal).Failure!;
        Assert.Equal(("model", "model:m", 2), (failure.Cause, failure.Dependency, failure.Attempts));
        Assert.Equal([(1, (double?)10_000), (2, 20_000)], journal.Select(r => r.Entry).OfType<AttemptFailed>().Select(a => (a.Attempt, a.RetryInMs)));
    }

    [Fact]
    public async Task MaxTotalTime_TheNextWaitWouldPassIt_RetriesStopAndTheJournalSaysWhy()
    {
        var clock = new WaitRecordingClock();
        _f.ResilienceTime = clock;
        var model = AddFakeModel("m", Down, retry: TenSecondBackoff(TimeSpan.FromSeconds(25)), breaker: new CircuitBreakerSettings { Enabled = false });
        AddAgent("m");
        var engine = await _f.StartAsync();

        var id = (await engine.SubmitAsync(new RunRequest("a", "hello"))).Run.Id;
        await clock.AdvanceOnceWaitingAsync(TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(10));   // attempt 2 fails 10 s in: 10 + 20 > 25
        var run = await EngineFixture.WaitAsync(engine, id);
        var journal = await engine.ReadJournalAsync(id);

        Assert.Equal(RunStatus.Failed, run.Status);
        Assert.Equal(2, model.Calls);
        var attempts = journal.Select(r => r.Entry).OfType<AttemptFailed>().ToList();
        Assert.Equal([(1, (double?)10_000, (string?)null), (2, null, "the next wait (20s) would pass maxTotalTime (25s)")],
            attempts.Select(a => (a.Attempt, a.RetryInMs, a.GaveUp)));
        Assert.Contains("failed after 2 attempt(s)", run.Error);
        Assert.Contains("would pass maxTotalTime (25s)", run.Error);
        Assert.Equal(("model", "unavailable", 2), (Finished(journal).Failure!.Cause, Finished(journal).Failure!.Kind, Finished(journal).Failure!.Attempts));
    }

    [Fact]
    public async Task ModelDownThroughEveryAttempt_TheRunFails_TheLogSaysWhyInALine_WithoutAStackTrace()
    {
        AddFakeModel("m", Down, retry: new RetrySettings { MaxAttempts = 2, Delay = TimeSpan.FromMilliseconds(10) }, breaker: new CircuitBreakerSettings { Enabled = false });
        AddAgent("m");
        var logs = new Support.CapturingLoggerProvider();
        _f.Configure = b => b.Services.AddSingleton<Microsoft.Extensions.Logging.ILoggerFactory>(new Microsoft.Extensions.Logging.LoggerFactory([logs]));
        var engine = await _f.StartAsync();

        var (run, _) = await RunAsync(engine);

        Assert.Equal(RunStatus.Failed, run.Status);
        var warning = Assert.Single(logs.At(Microsoft.Extensions.Logging.LogLevel.Warning), m => m.Contains("the model failed", StringComparison.Ordinal));
        Assert.Contains($"Run {run.Id} step ", warning);
        Assert.Contains("model 'm' failed after 2 attempt(s)", warning);
        // The link classified the failure and journaled each attempt: its stack trace would be 40 lines of noise in `bureau run`.
        Assert.DoesNotContain(logs.Exceptions, e => e.Message.Contains("the model failed", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Fallback_PrimaryBreakerOpen_TheNextModelAnswersAndTheJournalNamesIt()
    {
        _f.ResilienceTime = new FakeTimeProvider(new DateTimeOffset(2026, 12, 6, 12, 0, 0, TimeSpan.Zero));   // the break does not end during the test
        var main = AddFakeModel("main", Down, retry: new RetrySettings { MaxAttempts = 1 }, fallback: ["backup"],
            breaker: new CircuitBreakerSettings { MinimumThroughput = 2, FailureRatio = 0.5, BreakDuration = TimeSpan.FromMinutes(5) });
        var backup = AddFakeModel("backup", (_, _) => FakeModel.Text("from the backup"));
        AddAgent("main");
        var engine = await _f.StartAsync();
        var health = _f.Services.GetRequiredService<DependencyHealth>();

        await RunAsync(engine);
        await RunAsync(engine);   // two failures of two calls: the breaker opens
        Assert.Equal("open", health.Snapshot().Single(d => d.Name == "model:main").Circuit);

        var (run, journal) = await RunAsync(engine);

        Assert.Equal((RunStatus.Succeeded, "from the backup"), (run.Status, run.Output));
        Assert.Equal((2, 3), (main.Calls, backup.Calls));   // the open breaker kept the third call from the primary
        var fallback = Assert.Single(journal.Select(r => r.Entry).OfType<ModelFallback>());
        Assert.Equal(("main", "backup"), (fallback.From, fallback.To));
        Assert.Contains("model 'main' is unavailable: its circuit breaker is open", fallback.Reason);
        Assert.Equal("backup", journal.Select(r => r.Entry).OfType<ModelResponded>().Single().AnsweredBy);
    }

    [Fact]
    public async Task Fallback_PrimaryRateLimitWaitTooLong_TheNextModelAnswersAtOnceAndTheJournalNamesIt()
    {
        _f.ResilienceTime = new FakeTimeProvider(new DateTimeOffset(2026, 12, 6, 12, 0, 0, TimeSpan.Zero));
        var main = AddFakeModel("main", (_, _) => FakeModel.Text("from main"), requestsPerMinute: 1, maxRateLimitWait: TimeSpan.FromSeconds(5), fallback: ["backup"]);
        var backup = AddFakeModel("backup", (_, _) => FakeModel.Text("from the backup"));
        AddAgent("main");
        var engine = await _f.StartAsync();

        var (first, firstJournal) = await RunAsync(engine);
        Assert.Equal("from main", first.Output);
        Assert.Null(firstJournal.Select(r => r.Entry).OfType<ModelResponded>().Single().AnsweredBy);   // named only when a fallback answered

        var (run, journal) = await RunAsync(engine);   // the next request is a minute away: past maxRateLimitWait (5 s)

        Assert.Equal((RunStatus.Succeeded, "from the backup"), (run.Status, run.Output));
        Assert.Equal((1, 1), (main.Calls, backup.Calls));
        var fallback = Assert.Single(journal.Select(r => r.Entry).OfType<ModelFallback>());
        Assert.Equal(("main", "backup"), (fallback.From, fallback.To));
        Assert.Contains("requests-per-minute limit", fallback.Reason);
        Assert.Contains("would pass maxRateLimitWait (5s)", fallback.Reason);
        Assert.Empty(journal.Select(r => r.Entry).OfType<DependencyWaited>());   // it did not wait
        Assert.Equal("backup", journal.Select(r => r.Entry).OfType<ModelResponded>().Single().AnsweredBy);
        Assert.Equal(1, _f.Services.GetRequiredService<DependencyHealth>().Snapshot().Single(d => d.Name == "model:main").Rejected);
    }

    [Fact]
    public async Task Bulkhead_ModelFull_TheExtraCallFailsAtOnceSayingSo()
    {
        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var model = AddFakeModel("m", (_, _) => FakeModel.Text("done"), maxConcurrency: 1, maxQueue: 0);
        model.BeforeAnswer = async (_, _, ct) =>
        {
            if (entered.TrySetResult()) await release.Task.WaitAsync(ct);   // the first call holds the only slot
        };
        AddAgent("m");
        var engine = await _f.StartAsync();

        var first = (await engine.SubmitAsync(new RunRequest("a", "first"))).Run.Id;
        RunRecord second;
        IReadOnlyList<JournalRecord> journal;
        try
        {
            await entered.Task.WaitAsync(TimeSpan.FromSeconds(20), TestContext.Current.CancellationToken);
            (second, journal) = await RunAsync(engine, "second");
        }
        finally
        {
            release.TrySetResult();   // a failed assertion must not leave the first run holding the slot
        }

        Assert.Equal(RunStatus.Failed, second.Status);
        Assert.Equal(1, model.Calls);   // the second run's call never reached the model
        Assert.Contains("model 'm' is busy: 1 calls in flight and its queue of 0 full (bulkhead)", second.Error);
        var failure = Finished(journal).Failure!;
        Assert.Equal(("model", "unavailable", "model:m"), (failure.Cause, failure.Kind, failure.Dependency));
        Assert.Empty(journal.Select(r => r.Entry).OfType<AttemptFailed>());   // refused at once, not retried
        Assert.Equal(1, _f.Services.GetRequiredService<DependencyHealth>().Snapshot().Single(d => d.Name == "model:m").Rejected);
        var firstRun = await EngineFixture.WaitAsync(engine, first);
        Assert.Equal((RunStatus.Succeeded, "done"), (firstRun.Status, firstRun.Output));
    }

    [Fact]
    public async Task RetryStorm_ModelDown_AttemptsCountedAtTheServerStayWithinTheCaps()
    {
        var server = await ServerAsync(_ => new Fault.Status(503));
        _f.ResilienceTime = new InstantTimeProvider();
        // The breaker off: the cap on attempts alone must bound the storm.
        AddOpenAIModel("m", server, retry: new RetrySettings { MaxAttempts = 4 }, breaker: new CircuitBreakerSettings { Enabled = false });
        AddAgent("m");
        var engine = await _f.StartAsync();

        var runs = await Task.WhenAll(Enumerable.Range(0, 30).Select(_ => RunAsync(engine)));

        output.WriteLine($"retry storm, breaker off: 30 runs x 4 attempts, {server.Requests} requests reached the server");
        Assert.Equal(30 * 4, server.Requests);
        foreach (var (run, journal) in runs)
        {
            Assert.Equal(RunStatus.Failed, run.Status);
            var failure = Finished(journal).Failure!;
            Assert.Equal(("model", "unavailable", "model:m", 4), (failure.Cause, failure.Kind, failure.Dependency, failure.Attempts));
            Assert.Contains("all 4 attempts failed", run.Error);
            Assert.Contains(run.Id, run.Error);
        }
    }

    [Fact]
    public async Task RetryStorm_ModelDownWithTheDefaultBreaker_TheBreakerCutsTheStormShort()
    {
        var server = await ServerAsync(_ => new Fault.Status(503));
        _f.ResilienceTime = new InstantTimeProvider();
        _f.MaxConcurrentRuns = 4;
        AddOpenAIModel("m", server);   // 6 attempts, breaker: 50% of at least 10 calls in 30s
        AddAgent("m");
        var engine = await _f.StartAsync();

        var runs = await Task.WhenAll(Enumerable.Range(0, 30).Select(_ => RunAsync(engine)));

        output.WriteLine($"retry storm, default breaker: 30 runs x up to 6 attempts on 4 run slots, {server.Requests} requests reached the server, "
            + $"{runs.Count(r => r.Run.Error!.Contains("circuit breaker is open", StringComparison.Ordinal))} runs ended on the open breaker's error");
        Assert.All(runs, r => Assert.Equal(RunStatus.Failed, r.Run.Status));
        // Once open (after 10 failures), no more requests reach the server until the break ends: at most the
        // attempts in flight when it opened (4 runs) get through.
        Assert.True(server.Requests <= 10 + 4, $"{server.Requests} requests reached a model that was down");
        Assert.Contains(runs, r => r.Run.Error!.Contains("circuit breaker is open", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Breaker_OpensAfterFailures_FailsFastNamingTheModelAndWhen_ThenHalfOpensAndCloses()
    {
        var failing = true;
        var server = await ServerAsync(_ => Volatile.Read(ref failing) ? new Fault.Status(503) : Fault.Ok("back"));
        var clock = new FakeTimeProvider(new DateTimeOffset(2026, 12, 6, 12, 0, 0, TimeSpan.Zero));
        _f.ResilienceTime = clock;
        AddOpenAIModel("m", server, retry: new RetrySettings { MaxAttempts = 1 },
            breaker: new CircuitBreakerSettings { MinimumThroughput = 2, FailureRatio = 0.5, BreakDuration = TimeSpan.FromSeconds(30) });
        AddAgent("m");
        var engine = await _f.StartAsync();
        var health = _f.Services.GetRequiredService<DependencyHealth>();

        await RunAsync(engine);
        await RunAsync(engine);
        Assert.Equal("open", health.Snapshot().Single(d => d.Name == "model:m").Circuit);

        var (fast, journal) = await RunAsync(engine);
        Assert.Equal(2, server.Requests);   // failed fast: the request never left
        Assert.Contains("model 'm' is unavailable: its circuit breaker is open", fast.Error);
        Assert.Contains("tried again at 2026-12-06 12:00:30Z", fast.Error);
        Assert.Equal(("model", "unavailable"), (Finished(journal).Failure!.Cause, Finished(journal).Failure!.Kind));
        Assert.Equal(clock.GetUtcNow().AddSeconds(30), health.Snapshot().Single(d => d.Name == "model:m").RetryAt);

        Volatile.Write(ref failing, false);
        clock.Advance(TimeSpan.FromSeconds(31));   // the break ends: the next call is the trial
        var (trial, _) = await RunAsync(engine);

        Assert.Equal((RunStatus.Succeeded, "back"), (trial.Status, trial.Output));
        Assert.Equal(3, server.Requests);
        Assert.Equal("closed", health.Snapshot().Single(d => d.Name == "model:m").Circuit);
    }

    [Fact]
    public async Task Fallback_PrimaryDown_TheNextModelAnswersAndTheJournalSaysWhich()
    {
        var primary = await ServerAsync(_ => new Fault.Status(503));
        var backup = await ServerAsync(_ => Fault.Ok("from the backup"));
        _f.ResilienceTime = new InstantTimeProvider();
        AddOpenAIModel("main", primary, retry: new RetrySettings { MaxAttempts = 2 }, fallback: ["backup"], price: new ModelPrice(100, 100));
        AddOpenAIModel("backup", backup, price: new ModelPrice(1, 2));
        AddAgent("main");
        var engine = await _f.StartAsync();

        var (run, journal) = await RunAsync(engine);

        Assert.Equal((RunStatus.Succeeded, "from the backup"), (run.Status, run.Output));
        Assert.Equal(2, primary.Requests);
        var fallback = Assert.Single(journal.Select(r => r.Entry).OfType<ModelFallback>());
        Assert.Equal(("main", "backup"), (fallback.From, fallback.To));
        Assert.Contains("failed after 2 attempt(s)", fallback.Reason);
        var answer = journal.Select(r => r.Entry).OfType<ModelResponded>().Single();
        Assert.Equal("backup", answer.AnsweredBy);
        Assert.Equal((100 * 1 + 20 * 2) / 1_000_000d, answer.Cost!.Value, 12);   // priced as the model that answered
    }

    [Fact]
    public async Task Fallback_PrimaryRefusesTheRequest_NoFallbackAndTheCauseIsRefused()
    {
        var primary = await ServerAsync(_ => new Fault.Status(401));
        var backup = await ServerAsync(_ => Fault.Ok("never"));
        AddOpenAIModel("main", primary, fallback: ["backup"]);
        AddOpenAIModel("backup", backup);
        AddAgent("main");
        var engine = await _f.StartAsync();

        var (run, journal) = await RunAsync(engine);

        Assert.Equal(RunStatus.Failed, run.Status);
        Assert.Equal((1, 0), (primary.Requests, backup.Requests));
        Assert.Equal(("model", "refused"), (Finished(journal).Failure!.Cause, Finished(journal).Failure!.Kind));
    }

    [Fact]
    public async Task RateLimit_RequestsPerMinuteHit_TheRunWaitsAndTheJournalSaysSo()
    {
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        _f.ResilienceTime = clock;
        var model = _f.UseModel((_, _) => FakeModel.Text("ok"), requestsPerMinute: 1, maxRateLimitWait: TimeSpan.FromMinutes(2));
        _f.AddAgent();
        var waited = await SecondRunWaitsAsync(clock, model, TimeSpan.FromMinutes(1));
        Assert.Equal(("model:m", "requests-per-minute", 60_000d), (waited.Dependency, waited.Reason, waited.WaitedMs));
    }

    /// <summary>
    /// A first run spends the model's limit; a second waits for it (the health view counts it waiting, the model
    /// is not called); after <paramref name="advance"/> on the clock it succeeds. Returns its one wait entry.
    /// </summary>
    private async Task<DependencyWaited> SecondRunWaitsAsync(FakeTimeProvider clock, FakeModel model, TimeSpan advance)
    {
        var engine = await _f.StartAsync();
        var health = _f.Services.GetRequiredService<DependencyHealth>();

        var (first, _) = await RunAsync(engine);
        Assert.Equal(RunStatus.Succeeded, first.Status);
        var second = (await engine.SubmitAsync(new RunRequest("a", "again"))).Run.Id;
        await ToolTestSupport.WaitUntilAsync(() => health.Snapshot().Single(d => d.Name == "model:m").Waiting == 1, "the second run to wait for the rate limit");
        Assert.Equal(1, model.Calls);

        clock.Advance(advance);
        var run = await EngineFixture.WaitAsync(engine, second);

        Assert.Equal(RunStatus.Succeeded, run.Status);
        Assert.Equal(2, model.Calls);
        return Assert.Single((await engine.ReadJournalAsync(second)).Select(r => r.Entry).OfType<DependencyWaited>());
    }

    [Fact]
    public async Task RateLimit_WaitLongerThanMaxRateLimitWait_FailsAtOnceAsRateLimited()
    {
        _f.ResilienceTime = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var model = _f.UseModel((_, _) => FakeModel.Text("ok"), requestsPerMinute: 1, maxRateLimitWait: TimeSpan.FromSeconds(5));
        _f.AddAgent();
        var engine = await _f.StartAsync();

        await RunAsync(engine);
        var (run, journal) = await RunAsync(engine);

        Assert.Equal(RunStatus.Failed, run.Status);
        Assert.Equal(1, model.Calls);
        Assert.Contains("requests-per-minute limit", run.Error);
        Assert.Equal(("model", "rate-limited"), (Finished(journal).Failure!.Cause, Finished(journal).Failure!.Kind));
    }

    [Fact]
    public async Task Cost_MaxCostReached_TheRunStopsWithABudgetOutcome()
    {
        // The fake model reports 10 input and 5 output tokens a call: 0.02 a call at these prices.
        _f.UseModel((_, turn) => FakeModel.Call("lookup", $$"""{"key":"k{{turn}}"}"""), price: new ModelPrice(1000, 2000));
        _f.AddTool("lookup", ToolEffect.Read);
        _f.AddAgent(budgets: new AgentBudgets { MaxCost = 0.03 }, tools: "lookup");
        var engine = await _f.StartAsync();

        var (run, journal) = await RunAsync(engine);

        Assert.Equal((RunStatus.Failed, "budget"), (run.Status, run.Outcome));
        var exceeded = journal.Select(r => r.Entry).OfType<BudgetExceeded>().Single();
        Assert.Equal(("cost", 0.03, 0.04), (exceeded.Budget, exceeded.Limit, exceeded.Used));
        Assert.Equal(("budget", "cost"), (Finished(journal).Failure!.Cause, Finished(journal).Failure!.Kind));
        Assert.Equal(2, journal.Select(r => r.Entry).OfType<ModelResponded>().Count());
        Assert.Equal(0.04, run.Cost, 9); // the row keeps the cost, as it keeps the usage
    }

    [Fact]
    public async Task RateLimit_TokensPerMinuteHit_TheRunWaitsRatherThanFails_AndTheJournalSaysSo()
    {
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        _f.ResilienceTime = clock;
        // The fake model reports 15 tokens a call: the first run spends the whole minute's 15.
        var model = _f.UseModel((_, _) => FakeModel.Text("ok"), tokensPerMinute: 15, maxRateLimitWait: TimeSpan.FromSeconds(30));
        _f.AddAgent();
        // Its estimate (26 characters / 4 = 6 tokens) is back in 24 s at 15 a minute: a wait within maxRateLimitWait (30 s).
        var waited = await SecondRunWaitsAsync(clock, model, TimeSpan.FromSeconds(25));
        Assert.Equal(("model:m", "tokens-per-minute"), (waited.Dependency, waited.Reason));
        Assert.InRange(waited.WaitedMs, 24_000, 25_000);
    }

    [Fact]
    public async Task RateLimit_TokensPerMinuteWaitLongerThanMaxRateLimitWait_FailsAtOnceAsModelRateLimited()
    {
        _f.ResilienceTime = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var model = _f.UseModel((_, _) => FakeModel.Text("ok"), tokensPerMinute: 15, maxRateLimitWait: TimeSpan.FromSeconds(1));
        _f.AddAgent();
        var engine = await _f.StartAsync();

        await RunAsync(engine);
        var (run, journal) = await RunAsync(engine, "again");

        Assert.Equal(RunStatus.Failed, run.Status);
        Assert.Equal(1, model.Calls); // the second run never reached the model
        Assert.Contains("tokens-per-minute limit", run.Error);
        Assert.Contains("maxRateLimitWait", run.Error);
        var failure = Finished(journal).Failure!;
        Assert.Equal(("model", "rate-limited", "model:m"), (failure.Cause, failure.Kind, failure.Dependency));
        Assert.Empty(journal.Select(r => r.Entry).OfType<DependencyWaited>());
    }
}
