using Bureau.Tests.Support;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Bureau.Tests.Memory;

/// <summary>The C# snippets of docs/memory.md, compiled and run so that the page stays true.</summary>
public sealed class MemoryDocsSnippetTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task Snippets_ConfigureAnAgentsMemory_AndWriteAndReadFactsFromCode()
    {
        var services = new ServiceCollection();
        IChatClient chatClient = new FakeModel((_, _) => FakeModel.Text("ok"));

        // docs/memory.md begin ("C#")
        services.AddBureau()
            .UseSqliteStorage("bureau.db")                       // long-term memory lives in the same file
            .AddChatClient("main", chatClient)
            .AddAgent(new AgentDefinition
            {
                Name = "billing",
                Model = "main",
                Instructions = "You answer billing questions. Recall what the team knows about the customer first.",
                Memory = new AgentMemory
                {
                    Scopes = [MemoryScopes.Team, MemoryScopes.User],
                    Team = "support-desk",
                    OnConflict = MemoryConflictRule.Reject,
                    Window = new ConversationWindow { MaxTokens = 8000, Overflow = WindowOverflow.Summarize },
                },
            });
        // docs/memory.md end
        services.Configure<Bureau.Storage.Sqlite.SqliteStoreOptions>(o => o.Path = _dir.File("bureau.db")); // the page's file, in a folder of the test's own

        await using var provider = services.BuildServiceProvider();
        await provider.GetRequiredService<IMemoryStore>().InitializeAsync(TestContext.Current.CancellationToken);
        // An import wrote the fact already: the page's write, expecting nobody did, is a conflict.
        var first = await provider.GetRequiredService<IMemoryStore>().WriteAsync(new MemoryWrite
        {
            Scope = "team:support-desk", Key = "customer-42-plan", Value = "platinum", ExpectedVersion = 0,
            Provenance = new MemoryProvenance(RunId: null, Step: null, Agent: null, At: DateTimeOffset.UtcNow, Actor: "crm-import"),
        });
        Assert.Equal(MemoryWriteOutcome.Written, first.Outcome);

        // docs/memory.md begin (IMemoryStore)
        var memory = provider.GetRequiredService<IMemoryStore>();
        var result = await memory.WriteAsync(new MemoryWrite
        {
            Scope = "team:support-desk",
            Key = "customer-42-plan",
            Value = "platinum",
            ExpectedVersion = 0,                                 // only if nobody wrote it yet
            Provenance = new MemoryProvenance(RunId: null, Step: null, Agent: null, At: DateTimeOffset.UtcNow, Actor: "crm-import"),
        });
        if (result.Outcome == MemoryWriteOutcome.Conflict)
            Console.WriteLine($"already at version {result.Current!.Version}: {result.Current.Value}");
        var versions = await memory.HistoryAsync("team:support-desk", "customer-42-plan");   // oldest first, with provenance
        // docs/memory.md end

        Assert.Equal((MemoryWriteOutcome.Conflict, 1L, "platinum"), (result.Outcome, result.Current!.Version, result.Current.Value));
        Assert.Equal("crm-import", Assert.Single(versions).Provenance.Actor);
        Assert.Equal(WindowOverflow.Summarize, provider.GetRequiredService<BureauDeployment>().Definitions.Agents["billing"].Memory!.Window!.Overflow);
    }
}
