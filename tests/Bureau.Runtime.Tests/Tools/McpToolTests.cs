using System.Diagnostics;
using System.Text.Json;
using Bureau.Tests.Support;
using Bureau.Tools;
using Bureau.Tools.Mcp;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit;
using static Bureau.Tests.Tools.ToolTestSupport;

namespace Bureau.Tests.Tools;

/// <summary>
/// <c>kind: mcp</c> tools against real MCP servers: the C# SDK's test server over stdio and over streamable HTTP,
/// and @modelcontextprotocol/server-filesystem from npm (which nobody here wrote).
/// </summary>
public sealed class McpToolTests : IAsyncDisposable
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private readonly EngineFixture _f = new();
    private readonly McpConnections _connections = new();
    private readonly List<IAsyncDisposable> _owned = [];

    public async ValueTask DisposeAsync()
    {
        await _f.DisposeAsync();
        await _connections.DisposeAsync();
        foreach (var o in _owned) await o.DisposeAsync();
    }

    private BureauDefinitions Expand(params ToolDefinition[] tools)
    {
        var definitions = new BureauDefinitions();
        foreach (var t in tools) definitions.Add(t);
        return McpToolListing.Expand(definitions, _connections, NullLogger.Instance);
    }

    private static async Task<(RunRecord Run, IReadOnlyList<JournalEntry> Journal)> RunAsync(BureauEngine engine, string input = "go")
    {
        var id = (await engine.SubmitAsync(new RunRequest("a", input), Ct)).Run.Id;
        var run = await EngineFixture.WaitAsync(engine, id, 120);
        return (run, [.. (await engine.ReadJournalAsync(id, cancellationToken: Ct)).Select(r => r.Entry)]);
    }

    [Fact]
    public void DocsSnippet_CSharpRegistration_DeploysTheServersEntries()
    {
        var services = new Microsoft.Extensions.DependencyInjection.ServiceCollection();

        // docs/mcp.md begin ("Tools from MCP servers": the C# registration)
        services.AddBureau()
            .AddTool(new McpServerToolDefinition
            {
                Name = "files",
                Command = ["node", "server-filesystem/dist/index.js", "/srv/data"],
                Exclude = ["move_file"],
                Effects = new Dictionary<string, ToolEffect> { ["create_directory"] = ToolEffect.Idempotent },
            })
            .AddTool(new McpServerToolDefinition
            {
                Name = "crm",
                Url = new Uri("https://mcp.example.com/mcp"),
                BearerTokenVariable = "CRM_MCP_TOKEN",
            });
        // docs/mcp.md end

        var code = services.Single(d => d.ServiceType == typeof(CodeDefinitions)).ImplementationInstance as CodeDefinitions;
        Assert.Equal(["crm", "files"], code!.Definitions.Tools.Values.OfType<McpServerToolDefinition>().Select(t => t.Name).Order(StringComparer.Ordinal));
        Assert.Equal("files_", ((McpServerToolDefinition)code.Definitions.Tools["files"]).EffectivePrefix);
    }

    [Fact]
    public void Stdio_ToolsAreListedFilteredAndGivenEffects()
    {
        var definitions = Expand(McpTestSupport.StdioServer(exclude: ["fail"], effects: new Dictionary<string, ToolEffect> { ["env"] = ToolEffect.Idempotent }));

        var tools = definitions.Tools.Values.OfType<McpToolDefinition>().ToDictionary(t => t.Name);
        Assert.Equal(["test_echo", "test_env", "test_pid", "test_save_note"], tools.Keys.Order(StringComparer.Ordinal));
        Assert.False(definitions.Tools.ContainsKey("test"));   // the server's entry is replaced by its tools
        Assert.Equal((ToolEffect.Read, "default"), (tools["test_echo"].Effect, tools["test_echo"].EffectSource));
        Assert.Equal((ToolEffect.Write, "annotation"), (tools["test_save_note"].Effect, tools["test_save_note"].EffectSource));   // destructiveHint: true
        Assert.Equal((ToolEffect.Idempotent, "declared"), (tools["test_env"].Effect, tools["test_env"].EffectSource));
        Assert.Equal("echo", tools["test_echo"].RemoteName);
        Assert.Equal("string", tools["test_echo"].Parameters!.Value.GetProperty("properties").GetProperty("text").GetProperty("type").GetString());
    }

    [Fact]
    public void Include_NamingAToolTheServerDoesNotHave_FailsTheStartNamingIt()
    {
        var ex = Assert.Throws<InvalidOperationException>(() => Expand(McpTestSupport.StdioServer(include: ["echo", "ecko"])));
        Assert.Contains("MCP server 'test': include names 'ecko', which the server does not have", ex.Message);
        Assert.Contains("echo", ex.Message);
    }

    [Fact]
    public void Server_ThatCannotStart_FailsTheStartWithAClearError()
    {
        var missing = new McpServerToolDefinition { Name = "ghost", Command = ["/nonexistent/mcp-server"], ConnectTimeout = TimeSpan.FromSeconds(30) };
        var ex = Assert.Throws<InvalidOperationException>(() => Expand(missing));
        Assert.Contains("MCP server 'ghost' (stdio: /nonexistent/mcp-server): could not connect", ex.Message);
    }

    [Fact]
    public async Task AgentRun_CallsAWriteMcpTool_TheCallIsJournaledWithItsResultAndIdempotencyKey()
    {
        _f.Definitions.Add(McpTestSupport.StdioServer());
        _f.UseModel((msgs, turn) => turn == 1 ? FakeModel.Call("test_save_note", """{"text":"buy milk"}""") : FakeModel.Text("done: " + FakeModel.LastToolResult(msgs)));
        _f.AddAgent(tools: "test");   // the server's name: the agent gets all its tools
        var engine = await _f.StartAsync();

        var (run, journal) = await RunAsync(engine);

        Assert.Equal(RunStatus.Succeeded, run.Status);
        var intent = journal.OfType<ToolIntent>().Single();
        Assert.Equal(("test_save_note", ToolEffect.Write), (intent.Tool, intent.Effect));   // destructiveHint made it a write: intent first
        var result = journal.OfType<ToolCompleted>().Single();
        Assert.False(result.IsError);
        Assert.Equal($"saved 'buy milk' with key {intent.IdempotencyKey}", result.Content);   // the key reached the server in _meta
        Assert.Equal($"done: saved 'buy milk' with key {intent.IdempotencyKey}", run.Output);
    }

    [Fact]
    public async Task AgentRun_InvalidArguments_AreRejectedAgainstTheServersSchemaBeforeAnythingIsSent()
    {
        _f.Definitions.Add(McpTestSupport.StdioServer(include: ["save_note"]));
        _f.UseModel((msgs, turn) => turn == 1 ? FakeModel.Call("test_save_note", """{"txt":"typo"}""") : FakeModel.Text("got: " + FakeModel.LastToolResult(msgs)));
        _f.AddAgent(tools: "test");
        var engine = await _f.StartAsync();

        var (run, journal) = await RunAsync(engine);

        Assert.Equal(RunStatus.Succeeded, run.Status);
        Assert.Contains("invalid arguments for tool 'test_save_note'", run.Output);
        Assert.Contains("text", run.Output);
        Assert.Empty(journal.OfType<ToolIntent>());   // nothing was attempted
    }

    [Fact]
    public async Task ToolError_FromTheServer_IsAToolErrorTheModelSees()
    {
        var definitions = Expand(McpTestSupport.StdioServer(include: ["fail"]));
        var tool = new ToolFactory { Mcp = () => _connections }.Create(definitions.Tools["test_fail"]);

        var outcome = await tool.InvokeAsync(Invocation("test_fail", """{"why":"no stock"}"""), Ct);

        Assert.True(outcome.IsError);
        Assert.Equal(ToolFailure.Error, outcome.Failure);
        Assert.Contains("failed on purpose: no stock", outcome.Content);
    }

    [Fact]
    public async Task StdioServer_KilledByPid_IsStartedAgainOnTheNextCall_WhichSucceeds()
    {
        var definitions = Expand(McpTestSupport.StdioServer(include: ["pid", "echo"]));
        var factory = new ToolFactory { Mcp = () => _connections };
        var pidTool = factory.Create(definitions.Tools["test_pid"]);
        var echo = factory.Create(definitions.Tools["test_echo"]);

        var first = await pidTool.InvokeAsync(Invocation("test_pid"), Ct);
        Assert.False(first.IsError, first.Content);
        var pid = int.Parse(first.Content, System.Globalization.CultureInfo.InvariantCulture);
        using (var server = Process.GetProcessById(pid)) server.Kill();
        await WaitUntilAsync(() => IsGone(pid), $"the MCP server (pid {pid}) to die", 30);
        var connection = _connections.For(((McpToolDefinition)definitions.Tools["test_pid"]).Server);

        var again = await echo.InvokeAsync(Invocation("test_echo", """{"text":"still there?"}"""), Ct);

        Assert.True(!again.IsError, again.Content);
        Assert.Equal("echo: still there?", again.Content);
        var second = await pidTool.InvokeAsync(Invocation("test_pid"), Ct);
        Assert.NotEqual(pid.ToString(System.Globalization.CultureInfo.InvariantCulture), second.Content);
        Assert.Equal(2, connection.Connects);
    }

    [Fact]
    public async Task StdioServer_GetsOnlyTheDeclaredEnvironment()
    {
        var secret = "BUREAU_MCP_TEST_SECRET_" + Guid.NewGuid().ToString("n")[..6];
        Environment.SetEnvironmentVariable(secret, "host-secret");
        try
        {
            var definitions = Expand(McpTestSupport.StdioServer(include: ["env"], env: new Dictionary<string, string?> { ["GIVEN"] = "yes" }));
            var env = new ToolFactory { Mcp = () => _connections }.Create(definitions.Tools["test_env"]);

            Assert.Equal("yes", (await env.InvokeAsync(Invocation("test_env", """{"name":"GIVEN"}"""), Ct)).Content);
            Assert.Equal("(unset)", (await env.InvokeAsync(Invocation("test_env", $$"""{"name":"{{secret}}"}"""), Ct)).Content);
        }
        finally
        {
            Environment.SetEnvironmentVariable(secret, null);
        }
    }

    [Fact]
    public async Task Http_WithTheBearerTokenFromTheEnvironment_ListsAndCalls()
    {
        var token = Guid.NewGuid().ToString("n");
        var variable = "BUREAU_MCP_TEST_TOKEN_" + token[..6];
        Environment.SetEnvironmentVariable(variable, token);
        var app = await McpTestSupport.StartHttpServerAsync(token);
        _owned.Add(app);
        try
        {
            var definitions = Expand(new McpServerToolDefinition { Name = "remote", Url = McpTestSupport.McpAddress(app), BearerTokenVariable = variable, Include = ["echo"] });
            var echo = new ToolFactory { Mcp = () => _connections }.Create(definitions.Tools["remote_echo"]);

            var outcome = await echo.InvokeAsync(Invocation("remote_echo", """{"text":"over http"}"""), Ct);

            Assert.Equal((false, "echo: over http"), (outcome.IsError, outcome.Content));
        }
        finally
        {
            Environment.SetEnvironmentVariable(variable, null);
        }
    }

    [Fact]
    public async Task Http_TokenVariableUnsetOrWrong_FailsTheStartSayingWhy()
    {
        var app = await McpTestSupport.StartHttpServerAsync("right-token");
        _owned.Add(app);
        var unset = "BUREAU_MCP_TEST_UNSET_" + Guid.NewGuid().ToString("n")[..6];

        var ex = Assert.Throws<InvalidOperationException>(() => Expand(new McpServerToolDefinition { Name = "remote", Url = McpTestSupport.McpAddress(app), BearerTokenVariable = unset }));
        Assert.Contains($"MCP server 'remote': the bearer token variable {unset} is not set", ex.Message);

        var wrong = "BUREAU_MCP_TEST_WRONG_" + Guid.NewGuid().ToString("n")[..6];
        Environment.SetEnvironmentVariable(wrong, "wrong-token");
        try
        {
            var denied = Assert.Throws<InvalidOperationException>(() => Expand(new McpServerToolDefinition { Name = "remote2", Url = McpTestSupport.McpAddress(app), BearerTokenVariable = wrong }));
            Assert.Contains("MCP server 'remote2'", denied.Message);
            Assert.Contains("401", denied.Message);
        }
        finally
        {
            Environment.SetEnvironmentVariable(wrong, null);
        }
    }

    [Fact]
    public async Task Http_ServerGoneAfterStart_CallsFailClearlyAndOpenTheBreaker()
    {
        var app = await McpTestSupport.StartHttpServerAsync(null);
        var address = McpTestSupport.McpAddress(app);
        _f.ResilienceTime = new InstantTimeProvider();
        _f.Definitions.Add(new McpServerToolDefinition
        {
            Name = "remote", Url = address, Include = ["echo"], Timeout = TimeSpan.FromSeconds(30),
            Retry = new RetrySettings { MaxAttempts = 1 },
            CircuitBreaker = new CircuitBreakerSettings { MinimumThroughput = 2, FailureRatio = 0.5, SamplingDuration = TimeSpan.FromMinutes(5), BreakDuration = TimeSpan.FromMinutes(5) },
        });
        var results = new List<string>();
        _f.UseModel((msgs, turn) =>
        {
            if (turn > 1) lock (results) results.Add(FakeModel.LastToolResult(msgs) ?? "");
            return turn <= 3 ? FakeModel.Call("remote_echo", $$"""{"text":"call {{turn}}"}""") : FakeModel.Text("gave up");
        });
        _f.AddAgent(tools: "remote");
        var engine = await _f.StartAsync();   // the server is up: its tools are listed
        await app.StopAsync(Ct);
        await app.DisposeAsync();

        var (run, journal) = await RunAsync(engine);

        Assert.Equal(RunStatus.Succeeded, run.Status);
        var completed = journal.OfType<ToolCompleted>().ToList();
        Assert.Equal(3, completed.Count);
        Assert.All(completed, c => Assert.True(c.IsError));
        Assert.Contains("the MCP server 'remote' failed during the call", completed[0].Content);
        Assert.Contains("could not connect", completed[0].Content + completed[1].Content, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("circuit breaker is open", completed[2].Content);   // two failures opened it: the third never left
    }

    [Fact]
    public async Task NpmFilesystemServer_AgentWritesAndReadsAFile_EffectsFromItsAnnotations()
    {
        var script = McpTestSupport.NpmFilesystemServer();
        using var dir = new TempDir();
        var root = Path.GetFullPath(dir.Path);
        var server = new McpServerToolDefinition
        {
            Name = "fs", Command = ["node", script, root], Include = ["write_file", "read_text_file", "create_directory", "list_allowed_directories"],
            Effects = new Dictionary<string, ToolEffect> { ["create_directory"] = ToolEffect.Idempotent },
            ConnectTimeout = TimeSpan.FromSeconds(60), Timeout = TimeSpan.FromSeconds(60),
        };
        _f.Definitions.Add(server);
        var file = Path.Combine(root, "note.txt");
        _f.UseModel((msgs, turn) => turn switch
        {
            1 => FakeModel.Call("fs_write_file", JsonSerializer.Serialize(new { path = file, content = "hello from bureau" })),
            2 => FakeModel.Call("fs_read_text_file", JsonSerializer.Serialize(new { path = file })),
            _ => FakeModel.Text("read: " + FakeModel.LastToolResult(msgs)),
        });
        _f.AddAgent(tools: "fs");
        var engine = await _f.StartAsync();

        var deployed = engine.Definitions.Tools.Values.OfType<McpToolDefinition>().ToDictionary(t => t.Name);
        Assert.Equal(ToolEffect.Write, deployed["fs_write_file"].Effect);                 // destructiveHint: true
        Assert.Equal(ToolEffect.Read, deployed["fs_read_text_file"].Effect);
        Assert.Equal((ToolEffect.Idempotent, "declared"), (deployed["fs_create_directory"].Effect, deployed["fs_create_directory"].EffectSource));

        var (run, journal) = await RunAsync(engine);

        Assert.Equal(RunStatus.Succeeded, run.Status);
        Assert.Equal("hello from bureau", await File.ReadAllTextAsync(file, Ct));
        Assert.Equal("fs_write_file", journal.OfType<ToolIntent>().Single().Tool);
        var results = journal.OfType<ToolCompleted>().ToList();
        Assert.Equal(["fs_write_file", "fs_read_text_file"], results.Select(r => r.Tool));
        Assert.All(results, r => Assert.False(r.IsError, r.Content));
        Assert.Equal("read: hello from bureau", run.Output);
    }

    [Fact]
    public async Task NpmFilesystemServer_RefusesAPathOutsideItsRoot_AsAToolError()
    {
        var script = McpTestSupport.NpmFilesystemServer();
        using var dir = new TempDir();
        var definitions = Expand(new McpServerToolDefinition { Name = "fs", Command = ["node", script, Path.GetFullPath(dir.Path)], Include = ["read_text_file"], ConnectTimeout = TimeSpan.FromSeconds(60) });
        var read = new ToolFactory { Mcp = () => _connections }.Create(definitions.Tools["fs_read_text_file"]);

        var outcome = await read.InvokeAsync(Invocation("fs_read_text_file", """{"path":"/etc/hostname"}"""), Ct);

        Assert.True(outcome.IsError);
        Assert.Contains("outside allowed directories", outcome.Content, StringComparison.OrdinalIgnoreCase);
    }
}
