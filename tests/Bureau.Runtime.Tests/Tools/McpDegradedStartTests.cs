using Bureau.Resilience;
using Bureau.Tests.Support;
using Bureau.Tools.Mcp;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit;

namespace Bureau.Tests.Tools;

/// <summary>
/// An MCP server that cannot be reached when the host starts (decision 0028, degraded start): the host starts, the
/// server's tools fail at once saying when it is tried again, health shows it, and when the server comes up (the
/// C# test server, started late over HTTP and over stdio) its tools are deployed.
/// </summary>
public sealed class McpDegradedStartTests : IAsyncDisposable
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private readonly EngineFixture _f = new();
    private readonly List<IAsyncDisposable> _owned = [];
    private readonly string _dir = Directory.CreateTempSubdirectory("bureau-mcp-late-").FullName;

    public McpDegradedStartTests()
    {
        // Background attempts every 200 ms to 1 s, so that the tests see the server soon after it comes up.
        _f.Configure = b => b.Services.AddSingleton(sp => new McpConnections(NullLoggerFactory.Instance, sp.GetRequiredService<DependencyHealth>())
        {
            ReconnectDelay = TimeSpan.FromMilliseconds(200),
            ReconnectMaxDelay = TimeSpan.FromSeconds(1),
        });
    }

    public async ValueTask DisposeAsync()
    {
        await _f.DisposeAsync();
        foreach (var o in _owned) await o.DisposeAsync();
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }


    private DependencyStatus McpHealth(string server) =>
        _f.Services.GetRequiredService<DependencyHealth>().Snapshot().Single(d => d.Name == "mcp:" + server);

    [Fact]
    public async Task Http_ServerDownAtStart_HostStarts_CallsFailNamingTheServerAndTheNextAttempt_ThenItsToolsWork()
    {
        var port = McpTestSupport.FreePort();
        _f.Definitions.Add(new McpServerToolDefinition
        {
            Name = "late", Url = new Uri($"http://127.0.0.1:{port}/mcp"), Include = ["echo"], ConnectTimeout = TimeSpan.FromSeconds(20),
            Retry = new RetrySettings { MaxAttempts = 1 },
            CircuitBreaker = new CircuitBreakerSettings { MinimumThroughput = 2, FailureRatio = 0.5, SamplingDuration = TimeSpan.FromMinutes(5), BreakDuration = TimeSpan.FromMinutes(5) },
        });
        var model = _f.UseModel((msgs, turn) => turn <= 3 ? FakeModel.Call("late_echo", $$"""{"text":"call {{turn}}"}""") : FakeModel.Text("last: " + FakeModel.LastToolResult(msgs)));
        _f.AddAgent(tools: "late");

        var engine = await _f.StartAsync();   // nothing listens on the port: the host starts anyway

        var health = McpHealth("late");
        Assert.Equal("connecting", health.Connection);
        Assert.NotNull(health.NextAttemptAt);
        Assert.Contains("could not connect", health.LastError);
        var placeholder = Assert.IsType<McpToolDefinition>(engine.Definitions.Tools["late_echo"]);
        Assert.False(placeholder.Listed);   // known by the name include gives, before the server answered
        Assert.Equal(["late_echo"], engine.Definitions.Agents["a"].Tools);

        var (run, journal) = await McpTestSupport.RunAsync(engine, Ct);

        Assert.Equal(RunStatus.Succeeded, run.Status);   // the model was told; the run was not stranded
        Assert.Equal(["late_echo"], model.LastToolNames);
        var results = journal.OfType<ToolCompleted>().ToList();
        Assert.Equal(3, results.Count);
        Assert.All(results, r => Assert.True(r.IsError));
        Assert.Contains("MCP server 'late'", results[0].Content);
        Assert.Contains("is not connected", results[0].Content);
        Assert.Contains("tries again in the background, next at", results[0].Content);
        Assert.Contains("circuit breaker is open", results[2].Content);   // through the breaker: two failures opened it

        await using var app = await McpTestSupport.StartHttpServerAsync(null, port);
        await McpTestSupport.WaitForAsync(() => engine.Definitions.Tools["late_echo"] is McpToolDefinition { Listed: true }, "the late server's tools to be deployed", Ct);

        Assert.Equal("connected", McpHealth("late").Connection);
        var listed = (McpToolDefinition)engine.Definitions.Tools["late_echo"];
        Assert.Equal("string", listed.Parameters!.Value.GetProperty("properties").GetProperty("text").GetProperty("type").GetString());   // the server's schema now
        var (after, afterJournal) = await McpTestSupport.RunAsync(engine, Ct);
        Assert.Equal(RunStatus.Succeeded, after.Status);
        var ok = afterJournal.OfType<ToolCompleted>().ToList();
        Assert.All(ok, r => Assert.False(r.IsError, r.Content));   // a fresh breaker for the listed tool
        Assert.Equal("last: echo: call 3", after.Output);
    }

    [Fact]
    public async Task Stdio_ServerMissingAtStart_AgentHasNoneOfItsTools_ThenTheyAppearWhenItCanStart()
    {
        var script = Path.Combine(_dir, "server.sh");   // does not exist yet: sh fails to start the server
        _f.Definitions.Add(new McpServerToolDefinition { Name = "test", Command = ["sh", script], ConnectTimeout = TimeSpan.FromSeconds(60), Timeout = TimeSpan.FromSeconds(60) });
        var model = _f.UseModel((_, _) => FakeModel.Text("done"));
        _f.AddAgent(tools: "test");

        var engine = await _f.StartAsync();

        Assert.Equal("connecting", McpHealth("test").Connection);
        Assert.Empty(engine.Definitions.Agents["a"].Tools);   // no include: nothing of the server is known yet
        var (first, _) = await McpTestSupport.RunAsync(engine, Ct);
        Assert.Equal(RunStatus.Succeeded, first.Status);
        Assert.Empty(model.LastToolNames);

        await File.WriteAllTextAsync(script, $"exec '{McpTestSupport.Dotnet}' '{typeof(Bureau.McpTestServer.TestTools).Assembly.Location}'\n", Ct);
        await McpTestSupport.WaitForAsync(() => engine.Definitions.Agents["a"].Tools.Contains("test_echo"), "the stdio server's tools to be deployed", Ct);

        Assert.Equal("connected", McpHealth("test").Connection);
        Assert.Null(McpHealth("test").NextAttemptAt);
        Assert.Contains("test_pid", engine.Definitions.Agents["a"].Tools);
        var (second, _) = await McpTestSupport.RunAsync(engine, Ct);
        Assert.Equal(RunStatus.Succeeded, second.Status);
        Assert.Contains("test_echo", model.LastToolNames);   // a run started now sees them
    }

    [Fact]
    public async Task Stdio_ServerListedLate_KilledAfterwards_IsStartedAgainOnTheNextCall()
    {
        var script = Path.Combine(_dir, "server.sh");
        _f.Definitions.Add(new McpServerToolDefinition { Name = "test", Command = ["sh", script], Include = ["pid"], ConnectTimeout = TimeSpan.FromSeconds(60), Timeout = TimeSpan.FromSeconds(60) });
        _f.UseModel((msgs, turn) => turn == 1 ? FakeModel.Call("test_pid", "{}") : FakeModel.Text(FakeModel.LastToolResult(msgs) ?? ""));
        _f.AddAgent(tools: "test");
        var engine = await _f.StartAsync();
        await File.WriteAllTextAsync(script, $"exec '{McpTestSupport.Dotnet}' '{typeof(Bureau.McpTestServer.TestTools).Assembly.Location}'\n", Ct);
        await McpTestSupport.WaitForAsync(() => engine.Definitions.Tools["test_pid"] is McpToolDefinition { Listed: true }, "the stdio server's tools to be deployed", Ct);

        var (first, _) = await McpTestSupport.RunAsync(engine, Ct);
        Assert.Equal(RunStatus.Succeeded, first.Status);
        var pid = int.Parse(first.Output!, System.Globalization.CultureInfo.InvariantCulture);
        using (var process = System.Diagnostics.Process.GetProcessById(pid))
        {
            process.Kill();
            await process.WaitForExitAsync(Ct);
        }

        var (second, _) = await McpTestSupport.RunAsync(engine, Ct);
        Assert.Equal(RunStatus.Succeeded, second.Status);
        Assert.NotEqual(first.Output, second.Output);   // a new server process answered
        Assert.Equal("connected", McpHealth("test").Connection);
    }
}
