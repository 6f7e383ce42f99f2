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

/// <summary><c>GET /v1/health/dependencies</c>, <c>GET /v1/failures</c> and the failure and cost of a run document.</summary>
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
        .AddAgent(new AgentDefinition { Name = "paid", Model = "priced" }));

    private async Task<JsonObject> RunAsync(string agent)
    {
        using var res = await _host.Client.SendAsync(Http.Json(HttpMethod.Post, "/v1/runs", new JsonObject { ["agent"] = agent, ["input"] = "x" }.ToJsonString()), Ct);
        var id = (string)(await Http.BodyAsync(res))["id"]!;
        await _host.WaitAsync(id);
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
        var group = Assert.Single((await Http.BodyAsync(failures))["groups"]!.AsArray())!;
        Assert.Equal(("model", "model:down", 3), ((string)group["cause"]!, (string)group["dependency"]!, (int)group["count"]!));
        Assert.Equal((string)fast["id"]!, (string)group["exampleRun"]!);
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
}
