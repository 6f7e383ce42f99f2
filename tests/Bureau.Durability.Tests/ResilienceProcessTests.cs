using System.Net;
using System.Net.Sockets;
using System.Text.Json.Nodes;
using Bureau.Storage.Sqlite;
using Xunit;

namespace Bureau.Durability.Tests;

/// <summary>The `bureau` executable against a model that throttles or is down: the default policy, and `bureau runs failures`.</summary>
public sealed class ResilienceProcessTests : IAsyncLifetime
{
    private FakeChatServer _model = null!;
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bureau-resilience", Guid.NewGuid().ToString("n"));
    private static readonly TimeSpan ProcessTimeout = TimeSpan.FromSeconds(90);

    public async ValueTask InitializeAsync()
    {
        Directory.CreateDirectory(_dir);
        _model = await FakeChatServer.StartAsync();
        File.WriteAllText(Path.Combine(_dir, "tool.sh"), "cat >/dev/null\necho ok\n");
        int closedPort;
        using (var probe = new TcpListener(IPAddress.Loopback, 0))
        {
            probe.Start();
            closedPort = ((IPEndPoint)probe.LocalEndpoint).Port;
        }
        // No retry settings on `fake`: the defaults must carry a run through the throttling.
        File.WriteAllText(Path.Combine(_dir, "bureau.yaml"), $$"""
            models:
              fake:
                provider: openai
                endpoint: {{_model.BaseUrl}}
                model: fake-model
              down:
                provider: openai
                endpoint: http://127.0.0.1:{{closedPort}}/v1
                model: nothing-listens
                retry: { maxAttempts: 2, delay: 10ms }
                circuitBreaker: { minimumThroughput: 2, breakDuration: 10m }
              priced:
                provider: openai
                endpoint: {{_model.BaseUrl}}
                model: fake-model
                price: { input: 1000, output: 2000 }
            tools:
              charge: { kind: process, command: ["sh", "tool.sh"], effect: idempotent }
              ledger: { kind: process, command: ["sh", "tool.sh"], effect: write }
            agents:
              clerk: { model: fake, tools: [charge, ledger] }
              broken: { model: down }
              spender: { model: priced, tools: [charge, ledger], budgets: { maxCost: 0.03 } }
            """);
    }

    public async ValueTask DisposeAsync()
    {
        await _model.DisposeAsync();
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    [Fact]
    public async Task BureauRun_ModelAnswers429WithRetryAfterToHalfTheRequests_SucceedsUnderTheDefaultPolicy()
    {
        _model.ThrottleHalf = true;
        var db = Path.Combine(_dir, "throttled.db");

        using var bureau = BureauProcess.Start(_dir, new Dictionary<string, string>(), "run", "bureau.yaml", "--agent", "clerk", "--input", "o1", "--db", db, "--json");
        var exit = await bureau.WaitAsync(ProcessTimeout);

        Assert.True(exit == 0, $"exit {exit}\n{bureau.Stdout}\n{bureau.Stderr}");
        Assert.Contains("\"status\":\"succeeded\"", bureau.Stdout);
        await using var store = new SqliteRunStore(new SqliteStoreOptions { Path = db });
        await store.InitializeAsync();
        var run = Assert.Single((await store.ListRunsAsync(new RunQuery())).Items);
        var attempts = (await store.ReadJournalAsync(run.Id)).Select(r => r.Entry).OfType<AttemptFailed>().ToList();
        Assert.Equal(3, _model.Throttled);   // one 429 per turn, each retried once
        Assert.Equal(3, attempts.Count);
        Assert.All(attempts, a => Assert.Equal(("model:fake", "rate-limited", 1000d), (a.Dependency, a.Class, a.RetryInMs)));
    }

    [Fact]
    public async Task RunsFailures_AfterRunsFailOnADownModel_GroupsThemByCauseAndDependency()
    {
        var db = Path.Combine(_dir, "failures.db");
        for (var i = 0; i < 2; i++)
        {
            using var run = BureauProcess.Start(_dir, new Dictionary<string, string>(), "run", "bureau.yaml", "--agent", "broken", "--input", "x" + i, "--db", db, "--json");
            Assert.Equal(1, await run.WaitAsync(ProcessTimeout));
        }

        using var failures = BureauProcess.Start(_dir, new Dictionary<string, string>(), "runs", "failures", "--since", "1h", "--db", db, "--json");
        Assert.Equal(0, await failures.WaitAsync(ProcessTimeout));
        var group = Assert.Single(JsonNode.Parse(failures.Stdout)!["groups"]!.AsArray())!;
        Assert.Equal(("model", "unavailable", "model:down", 2), ((string)group["cause"]!, (string)group["kind"]!, (string)group["dependency"]!, (int)group["count"]!));
        Assert.Contains("fallback", (string)group["hint"]!);

        using var table = BureauProcess.Start(_dir, new Dictionary<string, string>(), "runs", "failures", "--db", db);
        Assert.Equal(0, await table.WaitAsync(ProcessTimeout));
        Assert.Contains("model/unavailable", table.Stdout);
    }

    [Fact]
    public async Task RunsShow_AFailedPricedRun_ShowsItsUsageCostAndCause()
    {
        // The fake server reports 10 input and 5 output tokens a call: 0.02 a call at these prices; maxCost 0.03 stops the
        // run right after the second answer.
        var db = Path.Combine(_dir, "priced.db");
        using (var run = BureauProcess.Start(_dir, new Dictionary<string, string>(), "run", "bureau.yaml", "--agent", "spender", "--input", "p1", "--db", db, "--json"))
        {
            var exit = await run.WaitAsync(ProcessTimeout);
            Assert.True(exit == 1, $"exit {exit}\n{run.Stdout}\n{run.Stderr}");
        }
        string id;
        await using (var store = new SqliteRunStore(new SqliteStoreOptions { Path = db }))
        {
            await store.InitializeAsync();
            id = Assert.Single((await store.ListRunsAsync(new RunQuery())).Items).Id;
        }

        using var show = BureauProcess.Start(_dir, new Dictionary<string, string>(), "runs", "show", id, "--db", db);
        Assert.Equal(0, await show.WaitAsync(ProcessTimeout));

        var lines = show.Stdout.Split('\n');
        Assert.StartsWith($"run {id}  agent spender  failed (budget)", lines[0]);
        Assert.EndsWith("tokens 20+10  cost 0.04", Assert.Single(lines, l => l.StartsWith("created ", StringComparison.Ordinal)).TrimEnd());
        var cause = Assert.Single(lines, l => l.StartsWith("cause: ", StringComparison.Ordinal));
        Assert.StartsWith("cause: budget/cost at step ", cause);
        Assert.Contains("hint: the run used its cost budget: raise budgets.maxCost", cause);
        Assert.Contains(lines, l => l.Contains("budget.exceeded", StringComparison.Ordinal));
    }

    [Fact]
    public async Task BureauHealth_AgainstAServeWhoseModelIsDown_ShowsTheOpenBreakerAndExits3()
    {
        var ct = TestContext.Current.CancellationToken;
        var db = Path.Combine(_dir, "serve.db");
        var url = $"http://127.0.0.1:{ServeSupport.FreePort()}";
        using var server = BureauProcess.Start(_dir, new Dictionary<string, string>(), "serve", "bureau.yaml", "--db", db, "--urls", url);
        using var http = new HttpClient { BaseAddress = new Uri(url), Timeout = TimeSpan.FromSeconds(20) };
        await ServeSupport.WaitReadyAsync(http, server, ProcessTimeout, ct);

        for (var i = 0; i < 2; i++)
        {
            using var res = await http.PostAsync("/v1/runs", new StringContent($$"""{"agent":"broken","input":"h{{i}}"}""", System.Text.Encoding.UTF8, "application/json"), ct);
            var id = (string)JsonNode.Parse(await res.Content.ReadAsStringAsync(ct))!["id"]!;
            using var events = await http.GetAsync($"/v1/runs/{id}/events", ct);   // ends after the run's end
            Assert.Contains("event: run.finished", await events.Content.ReadAsStringAsync(ct));
        }

        using var health = BureauProcess.Start(_dir, new Dictionary<string, string>(), "health", "--url", url);
        Assert.Equal(3, await health.WaitAsync(ProcessTimeout));
        var line = Assert.Single(health.Stdout.Split('\n'), l => l.StartsWith("model:down", StringComparison.Ordinal));
        Assert.Contains("open", line);
        Assert.Contains("tried again at", line);
        server.Terminate();
        await server.WaitAsync(ProcessTimeout);
    }
}
