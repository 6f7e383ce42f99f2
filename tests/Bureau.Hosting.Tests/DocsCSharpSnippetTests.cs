using System.ClientModel;
using Microsoft.Agents.AI;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using ModelContextProtocol;
using ModelContextProtocol.Client;
using ModelContextProtocol.Protocol;
using OpenAI;
using OpenTelemetry.Trace;
using Xunit;

namespace Bureau.Hosting.Tests;

/// <summary>
/// C# snippets of the docs that are not whole samples, compiled here as the pages show them: each test holds the
/// page's code between markers, checks the page still shows exactly these lines, and runs it far enough to see it
/// does what the page says. An API change that breaks a snippet breaks this build. Snippets that need another test
/// project's references live there, between the same markers; <see cref="EveryCSharpBlockOfTheDocs_IsCompiledCode_OrExemptedWithAReason"/>
/// checks that every C# block of the docs is such code.
/// </summary>
public sealed class DocsCSharpSnippetTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bureau-docs-snippets", Guid.NewGuid().ToString("n"));

    public DocsCSharpSnippetTests() => Directory.CreateDirectory(_dir);

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    [Fact]
    public async Task ConfigurationMd_InCode_IsTheCompiledSnippet_AndSetsTheOptionsItNames()
    {
        AssertPageShows("configuration.md", "## In code", "configuration.md");
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ContentRootPath = _dir });
        IChatClient chatClient = new EchoModel();

        // docs/configuration.md begin
        builder.Services.AddBureau(o => o.MaxConcurrentRuns = 128)   // BureauOptions: the runtime (any generic host)
            .UseSqliteStorage("bureau.db")                      // or UseSqliteStorage(o => { o.Path = ...; o.Durability = StoreDurability.Process; })
            .AddHttpApi(o => o.MaxRequestBodyBytes = 256 * 1024) // BureauHttpOptions: what MapBureau() serves
            .AddManifest("bureau.yaml")                         // models, tools, agents from YAML
            .AddChatClient("gpt", chatClient)                   // any IChatClient, as model "gpt"
            .AddTool(AIFunctionFactory.Create(Lookup, "lookup"), ToolEffect.Read)
            .AddAgent(new AgentDefinition { Name = "clerk", Model = "gpt", Tools = ["lookup"] });
        var app = builder.Build();
        app.MapBureau();
        // docs/configuration.md end

        await using (app)
        {
            Assert.Equal(128, app.Services.GetRequiredService<IOptions<BureauOptions>>().Value.MaxConcurrentRuns);
            Assert.Equal(256 * 1024, app.Services.GetRequiredService<IOptions<BureauHttpOptions>>().Value.MaxRequestBodyBytes);
            Assert.Contains("bureau.yaml", app.Services.GetRequiredService<IOptions<BureauOptions>>().Value.Manifests);
        }
    }

    /// <summary>teams.md's and governance.md's snippets are compiled and run by the tests that check what they do.</summary>
    [Theory]
    [InlineData("teams.md", "tests/Bureau.Runtime.Tests/Teams/TeamTests.cs")]
    [InlineData("governance.md", "tests/Bureau.Runtime.Tests/Governance/ApprovalTests.cs")]
    public void InCSharp_IsTheSnippetATestRuns(string page, string source) => AssertPageShows(page, "## In C#", page, source);

    [Fact]
    public void TriggersMd_InCSharp_IsTheCompiledSnippet()
    {
        AssertPageShows("triggers.md", "## In C#", "triggers.md");
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ContentRootPath = _dir });
        builder.Configuration["GitHub:WebhookSecret"] = "s3cret";

        // docs/triggers.md begin
        builder.Services.AddBureau()
            .UseSqliteStorage("bureau.db")
            .AddHttpApi()                                   // serves /v1/hooks and /v1/events, fires schedules
            .AddTrigger(new WebhookTriggerDefinition
            {
                Name = "github-issues", Agent = "triage", Source = WebhookSource.GitHub,
                Secret = builder.Configuration["GitHub:WebhookSecret"]!, Events = ["issues.opened"],
                Input = "New issue {{$.issue.title}}: {{$.issue.body}}",
            })
            .AddTrigger(new ScheduleTriggerDefinition { Name = "nightly", Agent = "summarizer", Cron = "0 2 * * *", TimeZone = "Europe/Paris" })
            .AddTrigger(new TopicTriggerDefinition { Name = "escalations", Agent = "resolution", Topic = "ticket.escalated", Priority = 10 })
            .AddTool(new EmitToolDefinition { Name = "escalate", Topic = "ticket.escalated" })
            .AddTrigger(new PollTriggerDefinition
            {
                Name = "new-tickets", Agent = "triage", Provider = "Microsoft.Data.Sqlite", ConnectionString = "Data Source=crm.db",
                Query = "SELECT id, text FROM tickets WHERE id > @cursor ORDER BY id LIMIT 100", CursorColumn = "id", Input = "{{$.data.text}}",
            });
        // docs/triggers.md end

        Assert.Contains(builder.Services, d => d.ServiceType == typeof(BureauEngine));
    }

    [Fact]
    public async Task A2aMd_ToolKind_IsTheCompiledSnippet_AndAnUndeclaredEffectIsWrite()
    {
        AssertPageShows("a2a.md", "## Calling other A2A agents: the `a2a` tool kind", "a2a.md");
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ContentRootPath = _dir });

        // docs/a2a.md begin
        builder.Services.AddBureau()
            .AddTool(new A2AToolDefinition
            {
                Name = "ask-echo",
                Url = new Uri("https://agents.example.com/a2a/agents/echo"), // the card's JSONRPC interface URL
                Headers = new Dictionary<string, string> { ["Authorization"] = "Bearer bk_..." },
                Effect = ToolEffect.Idempotent, // the remote deduplicates by messageId (Bureau does)
                Description = "Ask the echo agent.",
            })
            .AddAgent(new AgentDefinition { Name = "caller", Model = "gpt", Tools = ["ask-echo"] });
        // docs/a2a.md end
        builder.Services.AddBureau().AddChatClient("gpt", new EchoModel());   // the page's model "gpt"

        await using var app = builder.Build();
        var deployed = app.Services.GetRequiredService<BureauDeployment>().Definitions;
        Assert.Equal(ToolEffect.Idempotent, Assert.IsType<A2AToolDefinition>(deployed.Tools["ask-echo"]).Effect);
        Assert.Equal(["ask-echo"], deployed.Agents["caller"].Tools);
        // "Its effect is write unless declared".
        Assert.Equal(ToolEffect.Write, new A2AToolDefinition { Name = "x", Url = new Uri("https://agents.example.com/a2a/agents/x") }.Effect);
    }

    /// <summary>The README's quickstart and getting-started's "Install Bureau" show the same lines: the sample's, an app built.</summary>
    [Fact]
    public void Quickstart_IsTheCompiledSnippet_AndDeploysTheAgentWithItsTool()
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ContentRootPath = _dir });

        // README.md begin
        // docs/getting-started.md begin
        builder.Services.AddBureau()
            .UseSqliteStorage("bureau.db")
            .AddModel(new ScriptedModelDefinition { Name = "model", Rules = Script.Rules }) // or AddChatClient with any IChatClient
            .AddTool(AIFunctionFactory.Create(Orders.Status, "order_status"), ToolEffect.Read)
            .AddAgent(new AgentDefinition { Name = "orders", Model = "model", Tools = ["order_status"] })
            .AddHttpApi();
        var app = builder.Build();
        app.MapBureau();   // /v1/runs, /v1/runs/{id}/events (SSE), /v1/agents, /healthz, /readyz, /openapi/v1.json
        // docs/getting-started.md end
        // README.md end

        var deployed = app.Services.GetRequiredService<BureauDeployment>().Definitions;
        Assert.Equal(["order_status"], deployed.Agents["orders"].Tools);
        Assert.Equal(ToolEffect.Read, deployed.Tools["order_status"].Effect);
        var routes = ((IEndpointRouteBuilder)app).DataSources.SelectMany(d => d.Endpoints).OfType<RouteEndpoint>().Select(e => e.RoutePattern.RawText).ToArray();
        Assert.Contains(routes, r => r is "/v1/runs" or "v1/runs");
        Assert.Contains(routes, r => r is "/healthz" or "healthz");
    }

    /// <summary>The quickstart's model and tool, as samples/01-embed-in-aspnetcore has them.</summary>
    private static class Orders
    {
        public static string Status(int order) => order == 1042 ? "shipped on 2026-11-20" : "unknown order";
    }

    private static class Script
    {
        public static readonly IReadOnlyList<ScriptRule> Rules = [new() { Reply = "Order status: {{input}}" }];
    }

    [Fact]
    public void A2aMd_PushNotifications_IsTheCompiledSnippet_AndAllowsPrivateUrls()
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ContentRootPath = _dir });
        builder.Services.AddBureau().AddHttpApi();

        // docs/a2a.md begin (push notifications)
        builder.Services.Configure<A2AOptions>(o => o.AllowPrivatePushUrls = true);
        // docs/a2a.md end

        using var provider = builder.Services.BuildServiceProvider();
        Assert.True(provider.GetRequiredService<IOptions<A2AOptions>>().Value.AllowPrivatePushUrls);
        Assert.False(new A2AOptions().AllowPrivatePushUrls);   // off unless turned on
    }

    [Fact]
    public async Task ObservabilityMd_EnablingIt_IsTheCompiledSnippet_AndRegistersTheSdk()
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ContentRootPath = _dir });

        // docs/observability.md begin ("Enabling it")
        builder.Services.AddBureau()
            .UseSqliteStorage("bureau.db")
            .AddHttpApi()
            .UseOpenTelemetry(o =>
            {
                o.OtlpEndpoint = new Uri("http://localhost:4317");   // null: OTEL_EXPORTER_OTLP_ENDPOINT, else localhost:4317 (gRPC)
                o.ServiceName = "support-desk";                     // service.name (default bureau)
                o.CaptureContent = false;                            // the default: no prompts' answers, arguments or results on spans
            });
        // docs/observability.md end

        await using var app = builder.Build();
        Assert.NotNull(app.Services.GetService<TracerProvider>());
        Assert.NotNull(app.Services.GetService<OpenTelemetry.Metrics.MeterProvider>());
        Assert.False(app.Services.GetRequiredService<IOptions<BureauOptions>>().Value.Telemetry.CaptureContent);
    }

    [Fact]
    public async Task ObservabilityMd_Dashboard_IsTheCompiledSnippet_AndServesTheDashboardUnderItsPath()
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ContentRootPath = _dir });
        builder.WebHost.UseTestServer();
        builder.Services.AddBureau().UseSqliteStorage(Path.Combine(_dir, "bureau.db")).AddHttpApi();
        await using var app = builder.Build();

        // docs/observability.md begin (the Dashboard in your own application)
        app.MapBureau();                       // the REST API under /v1
        app.MapBureauDashboard("/bureau");     // the Dashboard at /bureau/
        // docs/observability.md end

        await app.StartAsync(TestContext.Current.CancellationToken);
        using var client = app.GetTestClient();
        using var page = await client.GetAsync("/bureau/", TestContext.Current.CancellationToken);
        Assert.True(page.IsSuccessStatusCode, $"GET /bureau/ answered {(int)page.StatusCode}");
        Assert.Equal("text/html", page.Content.Headers.ContentType?.MediaType);
        using var health = await client.GetAsync("/healthz", TestContext.Current.CancellationToken);
        Assert.True(health.IsSuccessStatusCode, $"GET /healthz answered {(int)health.StatusCode}");
        await app.StopAsync(TestContext.Current.CancellationToken);
    }

    [Fact]
    public async Task InteropMd_AgentFramework_IsTheCompiledSnippet_AndEachCallIsARunInOneConversation()
    {
        await using var host = new TestHost();
        await host.StartAsync(b => b.AddChatClient("gpt", new EchoModel()).AddAgent(new AgentDefinition { Name = "triage", Model = "gpt" }));
        var app = host.App;

        // docs/interop.md begin (Microsoft Agent Framework)
        var engine = app.Services.GetRequiredService<BureauEngine>();
        AIAgent triage = engine.AsAIAgent("triage");            // UnknownAgentException when nothing of that name is deployed
        var session = await triage.CreateSessionAsync();
        var response = await triage.RunAsync("My invoice is wrong", session);
        Console.WriteLine($"{response.Text} (run {response.ResponseId})");
        var next = await triage.RunAsync("It was charged twice", session);   // the session's conversation is context
        // docs/interop.md end

        var first = await engine.GetRunAsync(response.ResponseId!, TestContext.Current.CancellationToken);
        Assert.Equal((RunStatus.Succeeded, "My invoice is wrong"), (first!.Status, first.Input));
        var second = await engine.GetRunAsync(next.ResponseId!, TestContext.Current.CancellationToken);
        Assert.StartsWith("Earlier in this conversation:\n[user] My invoice is wrong", second!.Input);
        Assert.EndsWith("The message to answer:\nIt was charged twice", second.Input);
        Assert.Throws<UnknownAgentException>(() => engine.AsAIAgent("nobody"));
    }

    /// <summary>
    /// Compiled, not run: these clients need a Bureau listening on 127.0.0.1:5080. The same calls run against a live host in
    /// InteropClientTests (OpenAI client) and McpServerTests (MCP client).
    /// </summary>
    internal static async Task InteropMd_OpenAIClient(string key)
    {
        // docs/interop.md begin (OpenAI-compatible API, with M.E.AI's OpenAI IChatClient)
        var openai = new OpenAIClient(new ApiKeyCredential(key), new OpenAIClientOptions { Endpoint = new Uri("http://127.0.0.1:5080/v1") });
        using IChatClient chat = openai.GetChatClient("triage").AsIChatClient();
        var response = await chat.GetResponseAsync("My invoice is wrong");
        Console.WriteLine($"{response.Text} (run {response.ResponseId})");
        await foreach (var update in chat.GetStreamingResponseAsync("Hi")) Console.Write(update.Text);
        // docs/interop.md end
    }

    /// <inheritdoc cref="InteropMd_OpenAIClient"/>
    internal static async Task McpMd_Client(string apiKey)
    {
        // docs/mcp.md begin ("Agents as an MCP server": a client)
        var transport = new HttpClientTransport(new HttpClientTransportOptions
        {
            Endpoint = new Uri("http://127.0.0.1:5080/mcp"),
            AdditionalHeaders = new Dictionary<string, string> { ["Authorization"] = "Bearer " + apiKey },
        });
        await using var client = await McpClient.CreateAsync(transport);
        foreach (var tool in await client.ListToolsAsync()) Console.WriteLine(tool.Name);   // one per agent
        var result = await client.CallToolAsync("triage", new Dictionary<string, object?> { ["input"] = "Printer on fire" },
            progress: new Progress<ProgressNotificationValue>(p => Console.WriteLine(p.Message)));
        Console.WriteLine(((TextContentBlock)result.Content[0]).Text);                       // the run's output
        // docs/mcp.md end
    }

    /// <summary>
    /// C# blocks that are not code to compile, each with its reason: (page, the block's first line, why). Keep it short:
    /// a block that can compile belongs in a test between markers.
    /// </summary>
    private static readonly (string Page, string FirstLine, string Reason)[] s_notCompiled =
    [
    ];

    /// <summary>
    /// Every <c>```csharp</c> block of README.md and docs/*.md is the code between some <c>// page begin</c>/<c>end</c>
    /// markers of a C# file under tests/ or samples/ (so the build compiles it), or is exempted above with a reason.
    /// A new snippet that no test compiles fails here, naming its page and line.
    /// </summary>
    [Fact]
    public void EveryCSharpBlockOfTheDocs_IsCompiledCode_OrExemptedWithAReason()
    {
        var regions = DocsSnippets.AllRegions();
        var blocks = DocsSnippets.Pages().SelectMany(DocsSnippets.CSharpBlocks).ToArray();
        Assert.True(blocks.Length > 20, $"only {blocks.Length} C# blocks found: is the docs folder where it was?");

        var exempted = blocks.Where(b => s_notCompiled.Any(e => e.Page == b.Page && b.Lines.Count > 0 && e.FirstLine == b.Lines[0])).ToHashSet();
        var uncompiled = blocks.Where(b => !exempted.Contains(b) && !regions.Any(r => DocsSnippets.Shows(b, r))).ToArray();
        Assert.True(uncompiled.Length == 0,
            "C# blocks that no test compiles (put the code between // <page> begin and // <page> end markers in a test, or exempt it with a reason):\n"
            + string.Join("\n", uncompiled.Select(b => $"  {b}")));

        // The list stays honest: each exemption still names a block, and each region still shows one.
        Assert.All(s_notCompiled, e => Assert.True(blocks.Any(b => b.Page == e.Page && b.Lines.Count > 0 && b.Lines[0] == e.FirstLine),
            $"the exemption for {e.Page} \"{e.FirstLine}\" names no C# block any more"));
        Assert.All(regions, r => Assert.True(blocks.Any(b => DocsSnippets.Shows(b, r)),
            $"{r.Source}:{r.Line}: the code between the // {r.Page} markers is no C# block of {r.Page} (the page changed?)"));
    }

    private static string Lookup(string email) => email == "ada@example.com" ? "C-001" : "unknown";

    /// <summary>
    /// The page's first <c>```csharp</c> block under <paramref name="heading"/> is, line for line (indentation aside), the code
    /// between the markers <c>// docs/<paramref name="marker"/> begin</c> and <c>end</c> of <paramref name="source"/> (this file by default).
    /// </summary>
    private static void AssertPageShows(string page, string heading, string marker, string source = "tests/Bureau.Hosting.Tests/DocsCSharpSnippetTests.cs")
    {
        var block = DocsSnippets.CSharpBlocks("docs/" + page).FirstOrDefault(b => b.Heading == heading);
        Assert.True(block is not null, $"docs/{page} has no C# block under the heading {heading}");
        var regions = DocsSnippets.Regions(source).Where(r => r.Page == "docs/" + marker).ToArray();
        Assert.True(regions.Length > 0, $"{source} has no marker // docs/{marker} begin");
        if (regions.Length == 1) Assert.Equal(regions[0].Lines, block.Lines);
        Assert.Contains(regions, r => DocsSnippets.Shows(block, r));
    }
}
