using Bureau.TestKit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Xunit;

namespace Bureau.Storage.PostgreSql.Tests;

/// <summary>The workforce store conformance suite on PostgreSQL; every store instance has its own pool (another node, as far as the store can tell).</summary>
public sealed class PostgreSqlWorkforceStoreTests : WorkforceStoreConformanceTests, IAsyncDisposable
{
    private readonly PostgreSqlTestDatabase _db = new();
    private readonly List<PostgreSqlWorkforceStore> _stores = [];

    protected override IWorkforceStore CreateStore()
    {
        var store = new PostgreSqlWorkforceStore(_db.Options);
        _stores.Add(store);
        return store;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var s in _stores) await s.DisposeAsync();
        await _db.DisposeAsync();
    }
}

/// <summary>A host composed with <c>UsePostgreSqlStorage</c> and a workforce starts (it has a workforce store) and its dispatcher runs a task to the end.</summary>
public sealed class WorkforceHostOnPostgreSqlTests : IAsyncDisposable
{
    private readonly PostgreSqlTestDatabase _db = new();
    private IHost? _host;

    public async ValueTask DisposeAsync()
    {
        if (_host is not null)
        {
            await _host.StopAsync(CancellationToken.None);
            _host.Dispose();
        }
        await _db.DisposeAsync();
    }

    [Fact]
    public async Task ATaskSubmittedToTheWorkforce_IsRoutedToTheMemberWithTheSkill_AndSucceedsWithItsRun()
    {
        var ct = TestContext.Current.CancellationToken;
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        var d = new BureauDefinitions();
        d.Add(new ScriptedModelDefinition { Name = "scripted", Rules = [new ScriptRule { Reply = "refunded {{input}}" }] });
        d.Add(new AgentDefinition { Name = "desk-billing", Model = "scripted" });
        d.Add(new AgentDefinition { Name = "desk-technical", Model = "scripted" });
        builder.Services.AddBureau(o => o.NodeId = "node-a").AddDefinitions(d)
            .AddWorkforceMember(new WorkforceMember { Name = "desk-billing", Skills = ["billing"], Concurrency = 2 })
            .AddWorkforceMember(new WorkforceMember { Name = "desk-technical", Skills = ["technical"] })
            .UsePostgreSqlStorage(o =>
            {
                o.ConnectionString = _db.ConnectionString;
                o.Schema = _db.Schema;
            });
        _host = builder.Build();
        await _host.StartAsync(ct); // refused before PostgreSQL had a workforce store

        Assert.IsType<PostgreSqlWorkforceStore>(_host.Services.GetRequiredService<IWorkforceStore>());
        var workforce = _host.Services.GetRequiredService<BureauWorkforce>();
        var sent = await workforce.SubmitAsync(new WorkforceTaskRequest("billing", "order 7", Id: "ticket-7", Source: "api", Actor: "alice"), ct);
        Assert.True(sent.Created);

        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        var task = await workforce.GetTaskAsync("ticket-7", ct);
        while (task is not { IsFinished: true })
        {
            Assert.True(DateTime.UtcNow < deadline, $"task ticket-7 did not finish within 60 s: {task}");
            await Task.Delay(50, ct);
            task = await workforce.GetTaskAsync("ticket-7", ct);
        }
        Assert.Equal((WorkforceTaskStatus.Succeeded, "desk-billing", "refunded order 7"), (task.Status, task.Agent, task.Output));
        var run = (await _host.Services.GetRequiredService<BureauEngine>().GetRunAsync(task.RunId!, ct))!;
        Assert.Equal(("desk-billing", RunStatus.Succeeded, "workforce:ticket-7", "alice"), (run.Agent, run.Status, run.IdempotencyKey, run.Actor));
        var status = await workforce.StatusAsync(ct);
        Assert.Equal((0, 0), (status.Queued, status.InProgress));
        Assert.Equal(1L, status.Agents.Single(a => a.Name == "desk-billing").Finished);
    }
}
