using Bureau.Tests.Support;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Xunit;

namespace Bureau.Tests.Workforce;

/// <summary>The C# snippet of docs/workforce.md, compiled and run in a generic host (its dispatcher a hosted service), so that the page stays true.</summary>
public sealed class WorkforceDocsSnippetTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task Snippet_AddsAMember_AndATaskSubmittedInCodeIsDoneByIt()
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        var services = builder.Services;
        IChatClient chatClient = new FakeModel((_, _) => FakeModel.Text("refunded"));

        // docs/workforce.md begin ("Sending tasks", C#)
        services.AddBureau()
            .UseSqliteStorage("bureau.db")                         // the inbox lives in the same file
            .AddChatClient("main", chatClient)
            .AddAgent(new AgentDefinition { Name = "desk-billing", Model = "main" })
            .AddWorkforceMember(new WorkforceMember { Name = "desk-billing", Skills = ["billing"], Concurrency = 2 });
        // docs/workforce.md end
        services.Configure<Bureau.Storage.Sqlite.SqliteStoreOptions>(o => o.Path = _dir.File("bureau.db")); // the page's file, in a folder of the test's own
        using var app = builder.Build();
        await app.StartAsync(TestContext.Current.CancellationToken);

        // docs/workforce.md begin (then, the app started)
        var workforce = app.Services.GetRequiredService<BureauWorkforce>();
        var sent = await workforce.SubmitAsync(new WorkforceTaskRequest("billing", "Refund order 7", Id: "ticket-7"));
        var task = await workforce.GetTaskAsync("ticket-7");      // Status, Agent, RunId, Output
        // docs/workforce.md end

        Assert.True(sent.Created);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (task is not { IsFinished: true })
        {
            Assert.True(DateTime.UtcNow < deadline, $"task ticket-7 did not finish within 60 s: {task}");
            await Task.Delay(25, TestContext.Current.CancellationToken);
            task = await workforce.GetTaskAsync("ticket-7");
        }
        Assert.Equal((WorkforceTaskStatus.Succeeded, "desk-billing", "refunded"), (task.Status, task.Agent, task.Output));
        await app.StopAsync(TestContext.Current.CancellationToken);
    }

    [Fact]
    public async Task TriggerSnippet_PutsTheWebhooksEventsInTheInbox_AndPassesTheDeploymentChecks()
    {
        var services = new ServiceCollection();
        var builder = services.AddBureau()
            .UseSqliteStorage(_dir.File("bureau.db"))
            .AddChatClient("main", new FakeModel((_, _) => FakeModel.Text("ok")))
            .AddAgent(new AgentDefinition { Name = "desk-billing", Model = "main" })
            .AddWorkforceMember(new WorkforceMember { Name = "desk-billing", Skills = ["billing"] });
        var secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

        // docs/workforce.md begin ("Tasks from a trigger", C#)
        builder.AddTrigger(new WebhookTriggerDefinition
        {
            Name = "invoices", Source = WebhookSource.Standard, Secret = secret,
            Workforce = new TriggerWorkforceTarget { Skill = "billing" },
            Input = "Invoice {{$.data.number}} disputed by {{$.data.customer}}",
        });
        // docs/workforce.md end

        await using var provider = services.BuildServiceProvider();
        var definitions = provider.GetRequiredService<BureauEngine>().Definitions;
        Bureau.Triggers.TriggerChecks.Check(definitions);
        var trigger = definitions.Triggers["invoices"];
        Assert.Equal(("billing", ""), (trigger.Workforce!.Skill, trigger.Agent));
    }
}
