using Bureau.McpTestServer;
using Bureau.Tests.Support;
using Bureau.Tools.Mcp;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using ModelContextProtocol.Protocol;
using Xunit;

namespace Bureau.Tests.Tools;

/// <summary>
/// A server's <c>notifications/tools/list_changed</c> (decision 0051): the C# test server (stdio, started with
/// <c>BUREAU_TEST_CHANGING_TOOLS</c>) changes its tools while Bureau runs, when asked through its tool
/// <c>change_tools</c> (by the test, over Bureau's own session, or by a model), and Bureau lists them again and
/// redeploys them: added tools appear for new runs, changed ones are used with their new schema, withdrawn ones fail
/// a call from a run already going with a clear error, a burst makes a bounded number of listings, a failed
/// listing keeps the tools, and a re-listed tool whose name or input schema Bureau cannot use is left out with an
/// error logged naming the server and the tool (what is logged is captured and checked).
/// </summary>
public sealed class McpToolListChangedTests : IAsyncDisposable
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private readonly EngineFixture _f = new();
    private readonly CapturingLoggerProvider _logs = new();
    private McpServerConnection _connection = null!;

    public McpToolListChangedTests() => _f.Configure = b => b.Services.AddSingleton<ILoggerFactory>(new LoggerFactory([_logs]));

    /// <summary>The errors Bureau logged about its MCP servers (category <c>Bureau.Mcp</c>).</summary>
    private List<string> McpErrors => [.. _logs.Records.Where(r => r.Category == "Bureau.Mcp" && r.Level == LogLevel.Error).Select(r => r.Message)];

    public async ValueTask DisposeAsync() => await _f.DisposeAsync();

    /// <summary>The test server as entry 'live' (with the tools <paramref name="initial"/> besides its own), and agent 'a' listing the entry.</summary>
    private McpServerToolDefinition Serve(string initial = "1")
    {
        var server = McpTestSupport.StdioServer("live", env: new Dictionary<string, string?> { ["BUREAU_TEST_CHANGING_TOOLS"] = initial });
        _f.Definitions.Add(server);
        _f.AddAgent(tools: "live");
        return server;
    }

    /// <summary>Starts the host (the server's tools are listed) and waits until Bureau follows the server's changes.</summary>
    private async Task<BureauEngine> StartAsync(McpServerToolDefinition server)
    {
        var engine = await _f.StartAsync();
        _connection = _f.Services.GetRequiredService<McpConnections>().For(server);
        await McpTestSupport.WaitForAsync(() => _connection.FollowsToolChanges, "Bureau to follow the server's tool list changes", Ct);
        return engine;
    }

    /// <summary>Asks the server to change its tools, over Bureau's own session with it.</summary>
    private async Task<string> ChangeAsync(string action, string? name = null, string? property = null, string? description = null, string? schema = null)
    {
        var client = await _connection.GetClientAsync(Ct);
        var result = await client.CallToolAsync("change_tools", new Dictionary<string, object?>
        {
            ["action"] = action, ["name"] = name, ["property"] = property, ["description"] = description, ["schema"] = schema,
        }, cancellationToken: Ct);
        var text = string.Join("\n", result.Content.OfType<TextContentBlock>().Select(b => b.Text));
        Assert.True(result.IsError != true, text);
        return text;
    }


    [Fact]
    public async Task ToolAdded_AppearsForANewRun_AndIsCalled()
    {
        var server = Serve();
        FakeModel model = null!;
        model = _f.UseModel((msgs, turn) => turn == 1 && model.LastToolNames.Contains("live_added")
            ? FakeModel.Call("live_added", """{"text":"hi"}""")
            : FakeModel.Text("last: " + (FakeModel.LastToolResult(msgs) ?? "(no call)")));
        var engine = await StartAsync(server);

        var (before, _) = await McpTestSupport.RunAsync(engine, Ct);
        Assert.Equal(RunStatus.Succeeded, before.Status);
        Assert.DoesNotContain("live_added", model.LastToolNames);

        await ChangeAsync("set", "added", "text");
        await McpTestSupport.WaitForAsync(() => engine.Definitions.Agents["a"].Tools.Contains("live_added"), "the added tool to be deployed", Ct);

        var added = Assert.IsType<McpToolDefinition>(engine.Definitions.Tools["live_added"]);
        Assert.Equal("added", added.RemoteName);
        Assert.Contains("live_echo", engine.Definitions.Agents["a"].Tools);   // the others stay
        var (after, journal) = await McpTestSupport.RunAsync(engine, Ct);
        Assert.Equal(RunStatus.Succeeded, after.Status);
        Assert.Contains("live_added", model.LastToolNames);
        var result = Assert.Single(journal.OfType<ToolCompleted>());
        Assert.False(result.IsError, result.Content);
        Assert.Equal("last: added: text=hi", after.Output);
    }

    [Fact]
    public async Task ToolRemoved_ACallFromARunAlreadyGoingFailsClearly_AndNewRunsDoNotSeeIt()
    {
        var server = Serve("doomed:text");
        var atSecondTurn = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var proceed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        FakeModel model = null!;
        model = _f.UseModel((msgs, turn) => !model.LastToolNames.Contains("live_doomed") ? FakeModel.Text("no doomed tool")
            : turn <= 2 ? FakeModel.Call("live_doomed", $$"""{"text":"call {{turn}}"}""")
            : FakeModel.Text("last: " + FakeModel.LastToolResult(msgs)));
        var engine = await StartAsync(server);
        Assert.Contains("live_doomed", engine.Definitions.Agents["a"].Tools);
        model.BeforeAnswer = async (msgs, turn, ct) =>
        {
            if (turn != 2 || msgs[^1].Role != ChatRole.Tool || atSecondTurn.Task.IsCompleted) return;
            atSecondTurn.TrySetResult();
            await proceed.Task.WaitAsync(ct);
        };

        var id = (await engine.SubmitAsync(new RunRequest("a", "go"), Ct)).Run.Id;
        await atSecondTurn.Task.WaitAsync(TimeSpan.FromSeconds(90), Ct);   // the run called the tool once and waits for its model
        await ChangeAsync("remove", "doomed");
        await McpTestSupport.WaitForAsync(() => !engine.Definitions.Tools.ContainsKey("live_doomed"), "the removed tool to be withdrawn", Ct);
        Assert.DoesNotContain("live_doomed", engine.Definitions.Agents["a"].Tools);
        proceed.SetResult();

        var run = await EngineFixture.WaitAsync(engine, id, 120);
        Assert.Equal(RunStatus.Succeeded, run.Status);   // the model was told; nothing crashed or hung
        var results = (await engine.ReadJournalAsync(id, cancellationToken: Ct)).Select(r => r.Entry).OfType<ToolCompleted>().ToList();
        Assert.Equal(2, results.Count);
        Assert.False(results[0].IsError, results[0].Content);
        Assert.True(results[1].IsError);
        Assert.Contains("the MCP server 'live' no longer offers tool 'doomed'", results[1].Content);
        Assert.Equal("error", results[1].Failure);

        var (after, afterJournal) = await McpTestSupport.RunAsync(engine, Ct);
        Assert.Equal(RunStatus.Succeeded, after.Status);
        Assert.DoesNotContain("live_doomed", model.LastToolNames);
        Assert.Contains("live_echo", model.LastToolNames);
        Assert.Empty(afterJournal.OfType<ToolCompleted>());
        Assert.Equal("no doomed tool", after.Output);
    }

    [Fact]
    public async Task ToolSchemaChanged_ANewRunIsValidatedAgainstTheNewSchemaAndCallsIt()
    {
        var server = Serve("shape:text");
        _f.UseModel((msgs, turn) => turn == 1 ? FakeModel.Call("live_shape", """{"size":"XL"}""") : FakeModel.Text("last: " + FakeModel.LastToolResult(msgs)));
        var engine = await StartAsync(server);
        var before = (McpToolDefinition)engine.Definitions.Tools["live_shape"];
        Assert.Equal(["text"], before.Parameters!.Value.GetProperty("required").EnumerateArray().Select(e => e.GetString()));

        await ChangeAsync("set", "shape", "size", "A tool whose input changed.");
        await McpTestSupport.WaitForAsync(() => engine.Definitions.Tools["live_shape"] is McpToolDefinition t && t.Parameters!.Value.GetProperty("properties").TryGetProperty("size", out _),
            "the changed schema to be deployed", Ct);

        var after = (McpToolDefinition)engine.Definitions.Tools["live_shape"];
        Assert.Equal("A tool whose input changed.", after.Description);
        Assert.Equal(["size"], after.Parameters!.Value.GetProperty("required").EnumerateArray().Select(e => e.GetString()));
        var (run, journal) = await McpTestSupport.RunAsync(engine, Ct);
        Assert.Equal(RunStatus.Succeeded, run.Status);
        Assert.Empty(journal.OfType<ToolCallRejected>());   // valid against the new schema (the old one required 'text')
        var result = Assert.Single(journal.OfType<ToolCompleted>());
        Assert.False(result.IsError, result.Content);
        Assert.Equal("last: shape: size=XL", run.Output);
    }

    [Fact]
    public async Task ABurstOfNotifications_IsListedAtMostTwice()
    {
        var server = Serve();
        _f.UseModel((_, _) => FakeModel.Text("done"));
        var engine = await StartAsync(server);
        var listingsBefore = int.Parse(await ChangeAsync("listings"), System.Globalization.CultureInfo.InvariantCulture);
        var receivedBefore = _connection.ListChangedReceived;
        var relistingsBefore = _connection.Relistings;

        // The listings wait at the server until every notification of the burst has reached Bureau, so that the
        // bound does not depend on timing: one listing may be under way, and the rest fold into one more.
        await ChangeAsync("hold-listing");
        const int Burst = 20;
        for (var i = 0; i < Burst; i++) await ChangeAsync("set", $"burst_{i}", "text");
        await McpTestSupport.WaitForAsync(() => _connection.ListChangedReceived >= receivedBefore + Burst, "the burst's notifications to reach Bureau", Ct);
        await ChangeAsync("release-listing");
        await McpTestSupport.WaitForAsync(() => Enumerable.Range(0, Burst).All(i => engine.Definitions.Agents["a"].Tools.Contains($"live_burst_{i}")), "the burst's tools to be deployed", Ct);
        await McpTestSupport.WaitForAsync(() => !_connection.Relisting, "the re-listing to end", Ct);

        var listings = int.Parse(await ChangeAsync("listings"), System.Globalization.CultureInfo.InvariantCulture) - listingsBefore;
        TestContext.Current.TestOutputHelper?.WriteLine($"{Burst} notifications received, {listings} listing(s) at the server, {_connection.Relistings - relistingsBefore} re-listing(s) by Bureau");
        Assert.InRange(listings, 1, 2);
        Assert.InRange(_connection.Relistings - relistingsBefore, 1, 2);
    }

    [Fact]
    public async Task ListingFails_TheToolsStayAsTheyWere_AndTheNextChangeIsFollowed()
    {
        var server = Serve();
        _f.UseModel((msgs, turn) => turn == 1 ? FakeModel.Call("live_echo", """{"text":"still here"}""") : FakeModel.Text("last: " + FakeModel.LastToolResult(msgs)));
        var engine = await StartAsync(server);
        var toolsBefore = engine.Definitions.Agents["a"].Tools.ToList();
        var definitionsBefore = engine.Definitions;
        var relistingsBefore = _connection.Relistings;

        await ChangeAsync("fail-listing", "on");
        await ChangeAsync("set", "newcomer", "text");
        await McpTestSupport.WaitForAsync(() => _connection.Relistings > relistingsBefore && !_connection.Relisting, "the failed re-listing", Ct);

        Assert.Same(definitionsBefore, engine.Definitions);   // nothing changed
        Assert.Equal(toolsBefore, engine.Definitions.Agents["a"].Tools);
        Assert.False(engine.Definitions.Tools.ContainsKey("live_newcomer"));
        var (run, _) = await McpTestSupport.RunAsync(engine, Ct);
        Assert.Equal(RunStatus.Succeeded, run.Status);
        Assert.Equal("last: echo: still here", run.Output);   // the tools it had still work
        Assert.Contains(McpErrors, e => e.StartsWith("MCP server 'live' said its tools changed, but listing them again failed (", StringComparison.Ordinal)
            && e.Contains("listing fails on purpose (ChangingTools.FailListing)", StringComparison.Ordinal)   // the server's own reason
            && e.EndsWith("); its tools stay as they were", StringComparison.Ordinal));

        await ChangeAsync("fail-listing", "off");
        await ChangeAsync("set", "second", "text");
        await McpTestSupport.WaitForAsync(() => engine.Definitions.Agents["a"].Tools.Contains("live_second"), "the next change to be deployed", Ct);
        Assert.Contains("live_newcomer", engine.Definitions.Agents["a"].Tools);   // that listing sees every change since
    }

    [Fact]
    public async Task AModelAsksTheServerToAddATool_ANewRunSeesAndCallsIt()
    {
        var server = Serve();
        FakeModel model = null!;
        model = _f.UseModel((msgs, turn) => turn > 1 ? FakeModel.Text("last: " + FakeModel.LastToolResult(msgs))
            : model.LastToolNames.Contains("live_fresh") ? FakeModel.Call("live_fresh", """{"text":"new"}""")
            : FakeModel.Call("live_change_tools", """{"action":"set","name":"fresh","property":"text"}"""));
        var engine = await StartAsync(server);

        var (first, _) = await McpTestSupport.RunAsync(engine, Ct);   // the model asks the server to add a tool
        Assert.Equal(RunStatus.Succeeded, first.Status);
        Assert.Equal("last: set fresh(text)", first.Output);
        await McpTestSupport.WaitForAsync(() => engine.Definitions.Agents["a"].Tools.Contains("live_fresh"), "the stdio server's new tool to be deployed", Ct);

        var (second, journal) = await McpTestSupport.RunAsync(engine, Ct);
        Assert.Equal(RunStatus.Succeeded, second.Status);
        var result = Assert.Single(journal.OfType<ToolCompleted>());
        Assert.False(result.IsError, result.Content);
        Assert.Equal("last: fresh: text=new", second.Output);
    }

    [Fact]
    public async Task Http_AToolAddedAndOneWithdrawn_OverTheSubscriptionStream()
    {
        var changing = new ChangingTools();
        await using var app = await McpTestSupport.StartHttpServerAsync(null, changing: changing);
        changing.Set("doomed", "text");
        var server = new McpServerToolDefinition { Name = "web", Url = McpTestSupport.McpAddress(app), ConnectTimeout = TimeSpan.FromSeconds(60), Timeout = TimeSpan.FromSeconds(60) };
        _f.Definitions.Add(server);
        _f.AddAgent(tools: "web");
        FakeModel model = null!;
        model = _f.UseModel((msgs, turn) => turn == 1 && model.LastToolNames.Contains("web_added")
            ? FakeModel.Call("web_added", """{"text":"over http"}""")
            : FakeModel.Text("last: " + (FakeModel.LastToolResult(msgs) ?? "(no call)")));
        var engine = await StartAsync(server);   // subscribed: the server acknowledged toolsListChanged on subscriptions/listen
        Assert.Contains("web_doomed", engine.Definitions.Agents["a"].Tools);

        changing.Set("added", "text");
        changing.Remove("doomed");
        await McpTestSupport.WaitForAsync(() => engine.Definitions.Agents["a"].Tools.Contains("web_added") && !engine.Definitions.Tools.ContainsKey("web_doomed"),
            "the HTTP server's changes to be deployed", Ct);

        Assert.DoesNotContain("web_doomed", engine.Definitions.Agents["a"].Tools);
        Assert.Contains("web_echo", engine.Definitions.Agents["a"].Tools);
        var (run, journal) = await McpTestSupport.RunAsync(engine, Ct);
        Assert.Equal(RunStatus.Succeeded, run.Status);
        var result = Assert.Single(journal.OfType<ToolCompleted>());
        Assert.False(result.IsError, result.Content);
        Assert.Equal("last: added: text=over http", run.Output);
    }

    [Fact]
    public async Task AToolWhoseNameAnotherToolHas_IsLeftOut_TheRestOfTheListingIsDeployed()
    {
        var server = Serve();
        _f.AddTool("live_clash", ToolEffect.Read);   // a tool of Bureau's own with the name the server's 'clash' would get
        _f.AddAgent(tools: ["live", "live_clash"]);   // replaces the agent Serve added
        _f.UseModel((_, _) => FakeModel.Text("done"));
        var engine = await StartAsync(server);
        var own = engine.Definitions.Tools["live_clash"];

        await ChangeAsync("set", "clash", "text");
        await ChangeAsync("set", "fine", "text");
        await McpTestSupport.WaitForAsync(() => engine.Definitions.Agents["a"].Tools.Contains("live_fine"), "the listing to be deployed", Ct);

        Assert.Same(own, engine.Definitions.Tools["live_clash"]);   // the server's tool did not take the name
        Assert.IsNotType<McpToolDefinition>(engine.Definitions.Tools["live_clash"]);
        Assert.Single(engine.Definitions.Agents["a"].Tools, t => t == "live_clash");
        var (run, _) = await McpTestSupport.RunAsync(engine, Ct);
        Assert.Equal(RunStatus.Succeeded, run.Status);
    }

    [Fact]
    public async Task AToolWhoseSchemaIsNotValidJsonSchema_IsLeftOutWithAnErrorNamingIt_TheRestIsDeployedAndRunsGoOn()
    {
        var server = Serve();
        _f.UseModel((msgs, turn) => turn == 1 ? FakeModel.Call("live_fine", """{"text":"ok"}""") : FakeModel.Text("last: " + FakeModel.LastToolResult(msgs)));
        var engine = await StartAsync(server);

        await ChangeAsync("set-schema", "broken", schema: """{"type":"object","properties":{"x":{"type":"nope"}}}""");
        await ChangeAsync("set", "fine", "text");
        await McpTestSupport.WaitForAsync(() => engine.Definitions.Agents["a"].Tools.Contains("live_fine"), "the listing to be deployed", Ct);

        Assert.False(engine.Definitions.Tools.ContainsKey("live_broken"));
        Assert.DoesNotContain("live_broken", engine.Definitions.Agents["a"].Tools);
        var error = Assert.Single(McpErrors.Distinct(), e => e.Contains("'broken'", StringComparison.Ordinal));
        Assert.StartsWith("MCP server 'live': tool 'broken' (live_broken) has an input schema that is not a valid JSON Schema (", error);
        Assert.EndsWith("re-listed after notifications/tools/list_changed: the tool is left out", error);
        var (run, journal) = await McpTestSupport.RunAsync(engine, Ct);
        Assert.Equal(RunStatus.Succeeded, run.Status);
        var result = Assert.Single(journal.OfType<ToolCompleted>());
        Assert.False(result.IsError, result.Content);
        Assert.Equal("last: fine: text=ok", run.Output);
    }

    [Fact]
    public async Task ADeployedToolWhoseNewSchemaIsNotValid_KeepsItsEarlierDefinition_WithAnErrorNamingIt()
    {
        var server = Serve("shape:text");
        _f.UseModel((msgs, turn) => turn == 1 ? FakeModel.Call("live_shape", """{"text":"kept"}""") : FakeModel.Text("last: " + FakeModel.LastToolResult(msgs)));
        var engine = await StartAsync(server);
        var before = engine.Definitions.Tools["live_shape"];

        await ChangeAsync("set-schema", "shape", schema: """{"type":"object","properties":{"text":{"type":"nope"}}}""");
        await ChangeAsync("set", "marker", "text");   // deployed by the same or a later listing than the bad schema
        await McpTestSupport.WaitForAsync(() => engine.Definitions.Agents["a"].Tools.Contains("live_marker"), "the listing to be deployed", Ct);

        Assert.Same(before, engine.Definitions.Tools["live_shape"]);
        Assert.Contains("live_shape", engine.Definitions.Agents["a"].Tools);
        Assert.Contains(McpErrors, e => e.StartsWith("MCP server 'live': tool 'shape' (live_shape) has an input schema that is not a valid JSON Schema (", StringComparison.Ordinal)
            && e.EndsWith("the tool is left out, its earlier definition stays", StringComparison.Ordinal));
        var (run, journal) = await McpTestSupport.RunAsync(engine, Ct);
        Assert.Equal(RunStatus.Succeeded, run.Status);
        var result = Assert.Single(journal.OfType<ToolCompleted>());
        Assert.False(result.IsError, result.Content);
        Assert.Equal("last: shape: text=kept", run.Output);
    }

    [Fact]
    public async Task AToolWhoseNameIsNotValidForBureau_IsLeftOutWithAnErrorNamingIt_TheRestIsDeployed()
    {
        var server = Serve();
        _f.UseModel((_, _) => FakeModel.Text("done"));
        var engine = await StartAsync(server);
        var tooLong = new string('x', 60);   // valid for MCP; with the prefix 'live_', longer than Bureau's 64

        await ChangeAsync("set", "bad.name", "text");   // '.' is allowed in MCP tool names, not in Bureau's
        await ChangeAsync("set", tooLong, "text");
        await ChangeAsync("set", "fine", "text");
        await McpTestSupport.WaitForAsync(() => engine.Definitions.Agents["a"].Tools.Contains("live_fine"), "the listing to be deployed", Ct);

        Assert.DoesNotContain(engine.Definitions.Tools.Keys, n => n.Contains("bad", StringComparison.Ordinal) || n.Contains(tooLong, StringComparison.Ordinal));
        Assert.DoesNotContain(engine.Definitions.Agents["a"].Tools, n => n.Contains("bad", StringComparison.Ordinal) || n.Contains(tooLong, StringComparison.Ordinal));
        Assert.Contains("live_echo", engine.Definitions.Agents["a"].Tools);
        var errors = McpErrors;
        Assert.Contains("MCP server 'live': tool 'bad.name' would be named 'live_bad.name', but tool names are 1 to 64 letters, digits, '_' or '-'; exclude it or change the prefix (re-listed after notifications/tools/list_changed: the tool is left out)", errors);
        Assert.Contains(errors, e => e.StartsWith($"MCP server 'live': tool '{tooLong}' would be named 'live_{tooLong}', but tool names are 1 to 64", StringComparison.Ordinal));
        var (run, _) = await McpTestSupport.RunAsync(engine, Ct);
        Assert.Equal(RunStatus.Succeeded, run.Status);
    }
}
