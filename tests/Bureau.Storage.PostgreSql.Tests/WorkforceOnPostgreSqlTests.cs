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

/// <summary>
/// Hosts composed with <c>UsePostgreSqlStorage</c> and a workforce start (they have a workforce store) and their
/// dispatchers run tasks to the end; two nodes on one database run each task once.
/// </summary>
public sealed class WorkforceHostOnPostgreSqlTests : IAsyncDisposable
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);
    private readonly PostgreSqlTestDatabase _db = new();
    private readonly List<IHost> _hosts = [];

    public async ValueTask DisposeAsync()
    {
        foreach (var h in _hosts)
        {
            await h.StopAsync(CancellationToken.None);
            h.Dispose();
        }
        await _db.DisposeAsync();
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>A node: the engine, its hosted services (the workforce's dispatcher among them) on the shared database.</summary>
    private async Task<IHost> StartNodeAsync(string node)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        var d = new BureauDefinitions();
        d.Add(new ScriptedModelDefinition { Name = "scripted", Rules = [new ScriptRule { Reply = "refunded {{input}}" }] });
        d.Add(new AgentDefinition { Name = "desk-billing", Model = "scripted" });
        d.Add(new AgentDefinition { Name = "desk-technical", Model = "scripted" });
        builder.Services.AddBureau(o => o.NodeId = node).AddDefinitions(d)
            .AddWorkforceMember(new WorkforceMember { Name = "desk-billing", Skills = ["billing"], Concurrency = 2 })
            .AddWorkforceMember(new WorkforceMember { Name = "desk-technical", Skills = ["technical"] })
            .UsePostgreSqlStorage(o =>
            {
                o.ConnectionString = _db.ConnectionString;
                o.Schema = _db.Schema;
            });
        var host = builder.Build();
        _hosts.Add(host);
        await host.StartAsync(Ct); // refused before PostgreSQL had a workforce store
        return host;
    }

    private static async Task<WorkforceTask> FinishedAsync(BureauWorkforce workforce, string id)
    {
        var deadline = DateTime.UtcNow + Deadline;
        var task = await workforce.GetTaskAsync(id, Ct);
        while (task is not { IsFinished: true })
        {
            Assert.True(DateTime.UtcNow < deadline, $"task {id} did not finish within {Deadline.TotalSeconds} s: {task}");
            await Task.Delay(50, Ct);
            task = await workforce.GetTaskAsync(id, Ct);
        }
        return task;
    }

    [Fact]
    public async Task ATaskSubmittedToTheWorkforce_IsRoutedToTheMemberWithTheSkill_AndSucceedsWithItsRun()
    {
        var host = await StartNodeAsync("node-a");

        Assert.IsType<PostgreSqlWorkforceStore>(host.Services.GetRequiredService<IWorkforceStore>());
        var workforce = host.Services.GetRequiredService<BureauWorkforce>();
        var sent = await workforce.SubmitAsync(new WorkforceTaskRequest("billing", "order 7", Id: "ticket-7", Source: "api", Actor: "alice"), Ct);
        Assert.True(sent.Created);

        var task = await FinishedAsync(workforce, "ticket-7");
        Assert.Equal((WorkforceTaskStatus.Succeeded, "desk-billing", "refunded order 7"), (task.Status, task.Agent, task.Output));
        var run = (await host.Services.GetRequiredService<BureauEngine>().GetRunAsync(task.RunId!, Ct))!;
        Assert.Equal(("desk-billing", RunStatus.Succeeded, "workforce:ticket-7", "alice"), (run.Agent, run.Status, run.IdempotencyKey, run.Actor));
        var status = await workforce.StatusAsync(Ct);
        Assert.Equal((0, 0), (status.Queued, status.InProgress));
        Assert.Equal(1L, status.Agents.Single(a => a.Name == "desk-billing").Finished);
    }

    [Fact]
    public async Task TwoNodesDispatchingOneInbox_RunEachTaskOnce_AndNeverHoldAMemberBeyondItsLimit()
    {
        var nodes = new[] { await StartNodeAsync("node-a"), await StartNodeAsync("node-b") };
        var workforces = nodes.Select(n => n.Services.GetRequiredService<BureauWorkforce>()).ToArray();
        var store = nodes[0].Services.GetRequiredService<IWorkforceStore>();

        const int tasks = 12;
        for (var i = 0; i < tasks; i++)
        {
            // Each task sent to both nodes (a retried request): one task, whichever node stores it first.
            var skill = i % 3 == 0 ? "technical" : "billing";
            var sent = await Task.WhenAll(workforces.Select(w => w.SubmitAsync(new WorkforceTaskRequest(skill, $"order {i}", Id: $"t{i}"), Ct)));
            Assert.Single(sent, s => s.Created);
        }
        var limits = new Dictionary<string, int> { ["desk-billing"] = 2, ["desk-technical"] = 1 };
        var deadline = DateTime.UtcNow + Deadline;
        while ((await store.ListAsync(WorkforceTaskStatus.Succeeded, 100, Ct)).Count < tasks)
        {
            Assert.True(DateTime.UtcNow < deadline, "the tasks did not all succeed within 60 s");
            Assert.All(await store.LoadsAsync(Ct), l => Assert.InRange(l.InProgress, 0, limits[l.Agent]));
            await Task.Delay(20, Ct);
        }

        var runs = (await nodes[1].Services.GetRequiredService<IRunStore>().ListRunsAsync(new RunQuery { IdempotencyKeyPrefix = "workforce:", Limit = 100 }, Ct)).Items;
        Assert.Equal(tasks, runs.Count); // one run per task, none twice
        for (var i = 0; i < tasks; i++)
        {
            var t = (await store.GetAsync($"t{i}", Ct))!;
            Assert.Equal(($"refunded order {i}", i % 3 == 0 ? "desk-technical" : "desk-billing"), (t.Output, t.Agent));
            Assert.Equal(t.RunId, Assert.Single(runs, r => r.IdempotencyKey == $"workforce:t{i}").Id);
        }
    }
}
