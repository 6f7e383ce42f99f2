using System.Collections.Concurrent;
using System.Text.Json;
using ModelContextProtocol;
using ModelContextProtocol.Client;
using ModelContextProtocol.Protocol;
using Xunit;

namespace Bureau.Hosting.Tests;

/// <summary>The deployed agents as MCP tools at /mcp, called with the C# MCP client, under the API's keys and roles.</summary>
public sealed class McpServerTests(KeyedHostFixture fixture) : IClassFixture<KeyedHostFixture>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private sealed class Collect : IProgress<ProgressNotificationValue>
    {
        public ConcurrentQueue<ProgressNotificationValue> Values { get; } = new();
        public void Report(ProgressNotificationValue value) => Values.Enqueue(value);
    }

    private Task<McpClient> ConnectAsync(string? key)
    {
        var headers = new Dictionary<string, string>();
        if (key is not null) headers["Authorization"] = "Bearer " + key;
        var transport = new HttpClientTransport(new HttpClientTransportOptions
        {
            Endpoint = new Uri(fixture.Host.Client.BaseAddress!, "/mcp"),
            TransportMode = HttpTransportMode.StreamableHttp,
            AdditionalHeaders = headers,
        }, fixture.Host.Client, ownsHttpClient: false);
        return McpClient.CreateAsync(transport, cancellationToken: Ct);
    }

    [Fact]
    public async Task Client_ListsTheDeployedAgentsAsTools()
    {
        await using var client = await ConnectAsync(fixture.Keys[ApiKeyRole.Viewer]);

        var tools = await client.ListToolsAsync(cancellationToken: Ct);

        Assert.Equal(["echo", "pager", "slow"], tools.Select(t => t.Name));
        var echo = tools[0].ProtocolTool;
        Assert.Contains("Answers with its input.", echo.Description);
        Assert.Equal(["input"], echo.InputSchema.GetProperty("required").EnumerateArray().Select(e => e.GetString()));
    }

    [Fact]
    public async Task Operator_CallingAnAgent_StartsADurableRunAndGetsItsOutput()
    {
        await using var client = await ConnectAsync(fixture.Keys[ApiKeyRole.Operator]);

        var result = await client.CallToolAsync("echo", new Dictionary<string, object?> { ["input"] = "hello over mcp" }, cancellationToken: Ct);

        Assert.NotEqual(true, result.IsError);
        Assert.Equal("echo: hello over mcp", Assert.IsType<TextContentBlock>(Assert.Single(result.Content)).Text);
        var runId = result.Meta!["bureau/runId"]!.GetValue<string>();
        Assert.Null(result.Meta["bureau/scripted"]);   // echo is no scripted model: no label
        var run = await fixture.Host.Engine.GetRunAsync(runId, Ct);
        Assert.NotNull(run);
        Assert.Equal((RunStatus.Succeeded, "echo", "hello over mcp"), (run.Status, run.Agent, run.Input));
        Assert.StartsWith("key:", run.Actor);   // the caller's key is the run's actor, as with POST /v1/runs
    }

    [Fact]
    public async Task LongRun_SendsProgressWhileItRuns_ThenItsOutput()
    {
        await using var client = await ConnectAsync(fixture.Keys[ApiKeyRole.Operator]);
        var progress = new Collect();
        var input = "slow " + Guid.NewGuid().ToString("n");

        // The slow agent's model answers only when the gate opens: the call is still going on meanwhile.
        var call = client.CallToolAsync("slow", new Dictionary<string, object?> { ["input"] = input }, progress, cancellationToken: Ct).AsTask();
        await WaitForAsync(() => progress.Values.Any(p => p.Message!.EndsWith("step 1 run.started", StringComparison.Ordinal)),
            () => $"a progress notification for the run's first step (got [{string.Join("; ", progress.Values.Select(p => p.Message))}])");
        Assert.False(call.IsCompleted);
        fixture.Host.Gate.Open(input);
        var result = await call.WaitAsync(TimeSpan.FromSeconds(60), Ct);

        Assert.NotEqual(true, result.IsError);
        Assert.Equal("opened: " + input, Assert.IsType<TextContentBlock>(Assert.Single(result.Content)).Text);
        Assert.Matches("^run [0-9a-z]+: step 1 run.started$", progress.Values.First().Message);
    }

    [Fact]
    public async Task Viewer_MayListButNotStartARun()
    {
        await using var client = await ConnectAsync(fixture.Keys[ApiKeyRole.Viewer]);
        var before = (await fixture.Host.Engine.ListRunsAsync(new RunQuery { Agent = "pager", Limit = 1000 }, Ct)).Items.Count;

        var result = await client.CallToolAsync("pager", new Dictionary<string, object?> { ["input"] = "not allowed" }, cancellationToken: Ct);

        Assert.True(result.IsError);
        Assert.Contains("needs the role operator", Assert.IsType<TextContentBlock>(Assert.Single(result.Content)).Text);
        Assert.Equal(before, (await fixture.Host.Engine.ListRunsAsync(new RunQuery { Agent = "pager", Limit = 1000 }, Ct)).Items.Count);   // nothing started
    }

    [Theory]
    [InlineData(null)]
    [InlineData("bk_aaaaaaaaaaaa_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")]
    public async Task WithoutAValidKey_WhenKeysExist_TheConnectionIsRefused(string? key)
    {
        var ex = await Assert.ThrowsAnyAsync<Exception>(() => ConnectAsync(key));
        Assert.Contains("401", ex.ToString());
    }

    [Fact]
    public async Task BadArguments_AreAToolErrorAndStartNothing()
    {
        await using var client = await ConnectAsync(fixture.Keys[ApiKeyRole.Operator]);

        var result = await client.CallToolAsync("pager", new Dictionary<string, object?> { ["text"] = "wrong name" }, cancellationToken: Ct);

        Assert.True(result.IsError);
        Assert.Contains("{\"input\": \"...\"}", Assert.IsType<TextContentBlock>(Assert.Single(result.Content)).Text);
    }

    [Fact]
    public async Task UnknownAgent_IsAProtocolErrorNamingTheAgents()
    {
        await using var client = await ConnectAsync(fixture.Keys[ApiKeyRole.Operator]);

        var ex = await Assert.ThrowsAsync<McpProtocolException>(() => client.CallToolAsync("nobody", new Dictionary<string, object?> { ["input"] = "x" }, cancellationToken: Ct).AsTask());

        Assert.Contains("unknown tool 'nobody'", ex.Message);
        Assert.Contains("echo, pager, slow", ex.Message);
    }

    private static async Task WaitForAsync(Func<bool> condition, Func<string> what)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException("waited 20 s for " + what());
            await Task.Delay(20, Ct);
        }
    }
}

/// <summary>/mcp without API keys: loopback clients are served, as on /v1.</summary>
public sealed class McpServerWithoutKeysTests : IAsyncLifetime
{
    private readonly TestHost _host = new();

    public async ValueTask InitializeAsync() => await _host.StartAsync();

    public ValueTask DisposeAsync() => _host.DisposeAsync();

    [Fact]
    public async Task LoopbackClient_WithoutAKey_ListsAndCallsWhenNoKeyExists()
    {
        var ct = TestContext.Current.CancellationToken;
        var transport = new HttpClientTransport(new HttpClientTransportOptions
        {
            Endpoint = new Uri(_host.Client.BaseAddress!, "/mcp"),
            TransportMode = HttpTransportMode.StreamableHttp,
        }, _host.Client, ownsHttpClient: false);
        await using var client = await McpClient.CreateAsync(transport, cancellationToken: ct);

        Assert.Contains("pager", (await client.ListToolsAsync(cancellationToken: ct)).Select(t => t.Name));
        var result = await client.CallToolAsync("pager", new Dictionary<string, object?> { ["input"] = "no keys here" }, cancellationToken: ct);

        Assert.Equal("echo: no keys here", Assert.IsType<TextContentBlock>(Assert.Single(result.Content)).Text);
        var run = await _host.Engine.GetRunAsync(result.Meta!["bureau/runId"]!.GetValue<string>(), ct);
        Assert.Equal("loopback", run!.Actor);
    }
}
