using System.Net;
using System.Text.Json.Nodes;
using Microsoft.Extensions.AI;
using Xunit;

namespace Bureau.Hosting.Tests;

/// <summary>A model that is down: every call fails as a 503 would.</summary>
public sealed class DownModel : IChatClient
{
    public int Calls;

    public Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        Interlocked.Increment(ref Calls);
        throw new HttpRequestException("503 Service Unavailable", null, HttpStatusCode.ServiceUnavailable);
    }

    public IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
        throw new NotSupportedException();

    public object? GetService(Type serviceType, object? serviceKey = null) => null;

    public void Dispose() { }
}

/// <summary><c>GET /v1/health/dependencies</c>, <c>GET /v1/failures</c>, <c>GET /v1/costs</c> and the failure and cost of a run document.</summary>
public sealed class DependencyHealthTests : IAsyncDisposable
{
    private readonly TestHost _host = new();
    private readonly DownModel _down = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask DisposeAsync() => _host.DisposeAsync();

    private Task StartAsync() => _host.StartAsync(b => b
        .AddModel(new ChatClientModelDefinition
        {
            Name = "down",
            Client = _down,
            Retry = new RetrySettings { MaxAttempts = 1 },
            CircuitBreaker = new CircuitBreakerSettings { MinimumThroughput = 2, BreakDuration = TimeSpan.FromMinutes(10) },
        })
        .AddModel(new ChatClientModelDefinition { Name = "priced", Client = new EchoModel(), Price = new ModelPrice(1_000, 10_000) })
        .AddAgent(new AgentDefinition { Name = "fragile", Model = "down" })
        .AddAgent(new AgentDefinition { Name = "paid", Model = "priced" })
        .AddTeam(new TeamDefinition { Name = "paid-pair", Pattern = TeamPattern.Sequential, Members = ["paid", "paid"] }));

    private async Task<JsonObject> RunAsync(string agent, bool untilFinished = false)
    {
        using var res = await _host.Client.SendAsync(Http.Json(HttpMethod.Post, "/v1/runs", new JsonObject { ["agent"] = agent, ["input"] = "x" }.ToJsonString()), Ct);
        var id = (string)(await Http.BodyAsync(res))["id"]!;
        if (untilFinished)
        {
            // A team waits for its members: follow its journal to the end.
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
            timeout.CancelAfter(TimeSpan.FromSeconds(20));
            await foreach (var _ in _host.Engine.WatchAsync(id, 0, untilWaiting: false, cancellationToken: timeout.Token)) { }
        }
        else await _host.WaitAsync(id);
        using var doc = await _host.Client.SendAsync(Http.Get($"/v1/runs/{id}"), Ct);
        return await Http.BodyAsync(doc);
    }

    [Fact]
    public async Task HealthDependencies_BreakerOpen_ShowsItAndWhenItIsTriedAgain_AndFailuresGroupTheRuns()
    {
        await StartAsync();

        await RunAsync("fragile");
        await RunAsync("fragile");
        var fast = await RunAsync("fragile");

        Assert.Equal(2, _down.Calls);   // the third run failed fast
        Assert.Contains("circuit breaker is open", (string)fast["error"]!);
        var failure = fast["failure"]!.AsObject();
        Assert.Equal(("model", "unavailable", "model:down"), ((string)failure["cause"]!, (string)failure["kind"]!, (string)failure["dependency"]!));

        using var res = await _host.Client.SendAsync(Http.Get("/v1/health/dependencies"), Ct);
        Assert.Equal(HttpStatusCode.OK, res.StatusCode);
        var down = (await Http.BodyAsync(res))["items"]!.AsArray().Single(i => (string)i!["name"]! == "model:down")!;
        Assert.Equal("open", (string)down["circuit"]!);
        Assert.NotNull(down["retryAt"]);
        Assert.Equal((2L, 2L, 1L), ((long)down["calls"]!, (long)down["failures"]!, (long)down["rejected"]!));

        using var failures = await _host.Client.SendAsync(Http.Get("/v1/failures"), Ct);
        // One cause and dependency, two errors: the model's own failure (twice) and the open breaker (once).
        var groups = (await Http.BodyAsync(failures))["groups"]!.AsArray();
        Assert.Equal(2, groups.Count);
        Assert.All(groups, g => Assert.Equal(("model", "model:down"), ((string)g!["cause"]!, (string)g!["dependency"]!)));
        Assert.Equal([2, 1], groups.Select(g => (int)g!["count"]!));
        var breaker = groups[1]!;
        Assert.Equal((string)fast["id"]!, (string)breaker["exampleRun"]!);
        Assert.Contains("circuit breaker is open", (string)breaker["signature"]!);
    }

    [Fact]
    public async Task McpServerDownAtStart_HostStartsAndIsReady_HealthShowsItConnecting()
    {
        int port;
        using (var listener = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0))
        {
            listener.Start();
            port = ((IPEndPoint)listener.LocalEndpoint).Port;   // released: nothing listens there
        }
        await _host.StartAsync(b => b
            .AddModel(new ChatClientModelDefinition { Name = "priced", Client = new EchoModel() })
            .AddTool(new McpServerToolDefinition { Name = "crm", Url = new Uri($"http://127.0.0.1:{port}/mcp"), Include = ["lookup"], ConnectTimeout = TimeSpan.FromSeconds(20) })
            .AddAgent(new AgentDefinition { Name = "clerk", Model = "priced", Tools = ["crm"] }));

        using var ready = await _host.Client.SendAsync(Http.Get("/readyz"), Ct);
        Assert.Equal(HttpStatusCode.OK, ready.StatusCode);   // a down MCP server does not make the host unready (decision 0028)
        using var res = await _host.Client.SendAsync(Http.Get("/v1/health/dependencies"), Ct);
        var crm = (await Http.BodyAsync(res))["items"]!.AsArray().Single(i => (string)i!["name"]! == "mcp:crm")!;
        Assert.Equal("connecting", (string)crm["connection"]!);
        Assert.NotNull(crm["nextAttemptAt"]);
        Assert.Contains("could not connect", (string)crm["lastError"]!);
        using var agent = await _host.Client.SendAsync(Http.Get("/v1/agents/clerk"), Ct);
        Assert.Contains("crm_lookup", (await Http.BodyAsync(agent)).ToJsonString());   // known by its include name
    }

    [Fact]
    public async Task GetRun_PricedModel_ShowsTheRunsCost()
    {
        await StartAsync();

        var run = await RunAsync("paid");

        // The echo model reports 3 input and 2 output tokens: (3 × 1000 + 2 × 10000) / 1e6.
        Assert.Equal(0.023, (double)run["cost"]!, 9);
        Assert.Null(run["failure"]);
    }

    [Fact]
    public async Task GetCosts_AnAgentRunAndATeamOfTwo_TheTeamsCostIsItsMembers_AndNoRunIsCountedTwice()
    {
        await StartAsync();

        var first = await RunAsync("paid");
        var team = await RunAsync("paid-pair", untilFinished: true);

        Assert.Equal("succeeded", (string)team["status"]!);
        Assert.Equal(0.046, (double)team["cost"]!, 9);   // two members at 0.023
        Assert.Equal(10L, (long)team["usage"]!["totalTokens"]!);
        using var byAgent = await _host.Client.SendAsync(Http.Get("/v1/costs"), Ct);
        Assert.Equal(HttpStatusCode.OK, byAgent.StatusCode);
        var report = await Http.BodyAsync(byAgent);
        Assert.Equal("agent", (string)report["by"]!);
        var row = Assert.Single(report["rows"]!.AsArray())!;   // the team's own row is not a second count of its members
        Assert.Equal(("paid", 3L, 9L, 6L), ((string)row["agent"]!, (long)row["runs"]!, (long)row["inputTokens"]!, (long)row["outputTokens"]!));
        Assert.Equal(0.069, (double)row["cost"]!, 9);
        Assert.Equal(0.069, (double)report["total"]!["cost"]!, 9);

        var today = ((DateTimeOffset)first["createdAt"]!).UtcDateTime.ToString("yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture);
        using var byDay = await _host.Client.SendAsync(Http.Get($"/v1/costs?by=day&since={today}"), Ct);
        var day = Assert.Single((await Http.BodyAsync(byDay))["rows"]!.AsArray())!;
        Assert.Equal((today, 3L), ((string)day["day"]!, (long)day["runs"]!));
        Assert.Equal(0.069, (double)day["cost"]!, 9);

        using var none = await _host.Client.SendAsync(Http.Get($"/v1/costs?until={today}"), Ct);
        Assert.Empty((await Http.BodyAsync(none))["rows"]!.AsArray());
    }

    [Theory]
    [InlineData("/v1/costs?since=yesterday", "since")]
    [InlineData("/v1/costs?until=12", "until")]
    [InlineData("/v1/costs?by=week", "by")]
    [InlineData("/v1/costs?since=2026-12-06&until=2026-12-05", "until")]
    public async Task GetCosts_BadQuery_ProblemNamesTheField(string url, string field)
    {
        await StartAsync();
        using var res = await _host.Client.SendAsync(Http.Get(url), Ct);
        await Http.ProblemAsync(res, 400, field);
    }
}
