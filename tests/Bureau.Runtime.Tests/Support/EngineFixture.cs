using System.Collections.Concurrent;
using Bureau.Storage.Sqlite;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Bureau.Tests.Support;

/// <summary>An engine on a throwaway SQLite file, with tools that count their calls by idempotency key.</summary>
public sealed class EngineFixture : IAsyncDisposable
{
    private readonly TempDir _dir = new();
    private readonly List<IAsyncDisposable> _owned = [];

    public EngineFixture()
    {
        Definitions.Add(new ChatClientModelDefinition { Name = "m", Client = new FakeModel((_, _) => FakeModel.Text("unused")) });
    }

    public BureauDefinitions Definitions { get; } = new();

    /// <summary>The services of the engine last started.</summary>
    public IServiceProvider Services { get; private set; } = null!;
    public string DbPath => _dir.File("bureau.db");
    public ConcurrentDictionary<string, int> Executions { get; } = new();
    public ConcurrentQueue<string> Keys { get; } = new();
    public TimeProvider? Time { get; set; }

    public FakeModel UseModel(Func<IReadOnlyList<ChatMessage>, int, ChatResponse> answer, RetrySettings? retry = null, ModelPrice? price = null,
        CircuitBreakerSettings? breaker = null, int? requestsPerMinute = null, TimeSpan? maxRateLimitWait = null, string name = "m", long? tokensPerMinute = null)
    {
        var model = new FakeModel(answer);
        Definitions.Add(new ChatClientModelDefinition
        {
            Name = name, Client = model, Retry = retry, Price = price, CircuitBreaker = breaker,
            RequestsPerMinute = requestsPerMinute, TokensPerMinute = tokensPerMinute, MaxRateLimitWait = maxRateLimitWait,
        });
        return model;
    }

    /// <summary>The clock of the resilience links only (retry waits, breakers, rate limits); null: the engine's.</summary>
    public TimeProvider? ResilienceTime { get; set; }

    /// <summary>The engine's run slots.</summary>
    public int MaxConcurrentRuns { get; set; } = 16;

    /// <summary>Adds a C# tool returning <c>name:arg</c> and counting executions per idempotency key.</summary>
    public void AddTool(string name, ToolEffect effect, Func<string, CancellationToken, Task<string>>? body = null, string schema = """{"type":"object","properties":{"key":{"type":"string"}},"required":["key"],"additionalProperties":false}""", TimeSpan? inDoubtTimeout = null)
    {
        Definitions.Add(new FunctionToolDefinition
        {
            Name = name,
            Effect = effect,
            InDoubtTimeout = inDoubtTimeout,
            Description = "test tool " + name,
            Parameters = System.Text.Json.JsonDocument.Parse(schema).RootElement.Clone(),
            Function = AIFunctionFactory.Create(async (string key, CancellationToken ct) =>
            {
                var idem = Bureau.Tools.BureauToolContext.Current?.IdempotencyKey ?? "?";
                Keys.Enqueue(name + "|" + idem);
                Executions.AddOrUpdate(name + "|" + idem, 1, (_, n) => n + 1);
                return body is null ? $"{name}:{key}" : await body(key, ct);
            }, name),
        });
    }

    /// <summary>
    /// Adds a read tool that holds its caller (and so the run's slot) until <c>Release</c> is completed; <c>Entered</c>
    /// completes when a call first holds.
    /// </summary>
    public (TaskCompletionSource Entered, TaskCompletionSource Release) AddHoldingTool(string name = "hold")
    {
        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        AddTool(name, ToolEffect.Read, body: async (_, ct) =>
        {
            entered.TrySetResult();
            await release.Task.WaitAsync(ct);
            return "held";
        });
        return (entered, release);
    }

    public void AddAgent(string name = "a", AgentBudgets? budgets = null, LoopDetectionSettings? loop = null, params string[] tools) =>
        Definitions.Add(new AgentDefinition { Name = name, Model = "m", Instructions = "You are a test agent.", Tools = tools, Budgets = budgets ?? new(), LoopDetection = loop ?? new() });

    public async Task<SqliteRunStore> OpenStoreAsync()
    {
        var store = new SqliteRunStore(new SqliteStoreOptions { Path = DbPath });
        await store.InitializeAsync();
        _owned.Add(store);
        return store;
    }

    /// <summary>More services for the engine's composition (a run kind, a tool filter, crash points).</summary>
    public Action<BureauBuilder>? Configure { get; set; }

    /// <summary>An engine composed as applications compose it (<c>AddBureau()</c>), on <paramref name="store"/> or the fixture's SQLite file.</summary>
    public async Task<BureauEngine> StartAsync(IRunStore? store = null, bool start = true)
    {
        var services = new ServiceCollection();
        if (Time is not null) services.AddSingleton(Time);
        if (ResilienceTime is not null) services.AddSingleton(new Bureau.Resilience.ResilienceClock(ResilienceTime));
        var bureau = services.AddBureau(o => o.MaxConcurrentRuns = MaxConcurrentRuns).AddDefinitions(Definitions);
        if (store is null) bureau.UseSqliteStorage(DbPath);
        else services.AddSingleton(store);
        Configure?.Invoke(bureau);
        var provider = services.BuildServiceProvider();
        _owned.Insert(0, provider);
        await provider.GetRequiredService<IRunStore>().InitializeAsync();
        if (provider.GetService<IMemoryStore>() is { } memory) await memory.InitializeAsync(); // as the host's start does
        var engine = provider.GetRequiredService<BureauEngine>();
        Services = provider;
        _owned.Insert(0, engine);
        if (start) await engine.StartAsync();
        return engine;
    }

    public static async Task<RunRecord> WaitAsync(BureauEngine engine, string runId, int seconds = 20)
    {
        try
        {
            return await engine.WaitAsync(runId).WaitAsync(TimeSpan.FromSeconds(seconds));
        }
        catch (TimeoutException)
        {
            var run = await engine.GetRunAsync(runId);
            var journal = await engine.ReadJournalAsync(runId);
            throw new TimeoutException($"run {runId} did not end or wait within {seconds}s: status {run?.Status}, last step {journal.LastOrDefault()?.N} ({journal.LastOrDefault()?.Entry.Kind})");
        }
    }

    /// <summary>Polls <paramref name="condition"/> every 10 ms; fails the test when it does not hold within 20 s.</summary>
    public static async Task UntilAsync(Func<bool> condition)
    {
        for (var i = 0; i < 2000 && !condition(); i++) await Task.Delay(10, TestContext.Current.CancellationToken);
        Assert.True(condition(), "the condition did not hold within 20 s");
    }

    /// <summary>Stops and disposes every engine and store started so far (their database lock released), as a process exit would; the database stays.</summary>
    public async Task DisposeEnginesAsync()
    {
        foreach (var d in _owned) await d.DisposeAsync();
        _owned.Clear();
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var d in _owned) await d.DisposeAsync();
        _dir.Dispose();
    }
}
