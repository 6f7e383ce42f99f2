using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Xunit;

namespace Bureau.Hosting.Tests;

/// <summary>
/// C# snippets of the docs that are not whole samples, compiled here as the pages show them: each test holds the
/// page's code between markers, checks the page still shows exactly these lines, and runs it far enough to see it
/// does what the page says. An API change that breaks a snippet breaks this build.
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

    private static string Lookup(string email) => email == "ada@example.com" ? "C-001" : "unknown";

    /// <summary>
    /// The page's first <c>```csharp</c> block after <paramref name="heading"/> is, line for line (indentation aside), the code
    /// between the markers of <paramref name="source"/> (this file by default).
    /// </summary>
    private static void AssertPageShows(string page, string heading, string marker, string source = "tests/Bureau.Hosting.Tests/DocsCSharpSnippetTests.cs")
    {
        var text = File.ReadAllText(Path.Combine(NodeTool.RepoRoot, "docs", page)).ReplaceLineEndings("\n");
        var at = text.IndexOf("\n" + heading + "\n", StringComparison.Ordinal);
        Assert.True(at >= 0, $"docs/{page} has no heading {heading}");
        at = text.IndexOf("```csharp\n", at, StringComparison.Ordinal) + "```csharp\n".Length;
        var shown = Lines(text[at..text.IndexOf("```", at, StringComparison.Ordinal)]);

        var code = File.ReadAllText(Path.Combine(NodeTool.RepoRoot, source)).ReplaceLineEndings("\n");
        var begin = code.IndexOf($"// docs/{marker} begin", StringComparison.Ordinal);
        Assert.True(begin >= 0, $"{source} has no marker // docs/{marker} begin");
        begin = code.IndexOf('\n', begin) + 1;
        var compiled = Lines(code[begin..code.IndexOf($"// docs/{marker} end", begin, StringComparison.Ordinal)]);

        Assert.Equal(compiled, shown);
    }

    private static string[] Lines(string code) =>
        code.Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0).ToArray();
}
