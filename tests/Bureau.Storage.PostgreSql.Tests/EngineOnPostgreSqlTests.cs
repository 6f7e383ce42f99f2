using System.Text.Json.Nodes;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Bureau.Storage.PostgreSql.Tests;

/// <summary>The engine composed as applications compose it (<c>AddBureau().UsePostgreSqlStorage(...)</c>) runs agents to the end, and a second engine (another node) resumes what the first left.</summary>
public sealed class EngineOnPostgreSqlTests : IAsyncDisposable
{
    private readonly PostgreSqlTestDatabase _db = new();
    private readonly List<ServiceProvider> _providers = [];

    public async ValueTask DisposeAsync()
    {
        foreach (var p in _providers) await p.DisposeAsync();
        await _db.DisposeAsync();
    }

    private static BureauDefinitions Definitions(int steps)
    {
        var d = new BureauDefinitions();
        d.Add(new ScriptedModelDefinition
        {
            Name = "scripted",
            Rules =
            [
                new ScriptRule
                {
                    When = new ScriptCondition { TurnFrom = 1, TurnTo = steps - 1 },
                    Calls = [new ScriptToolCall { Tool = "lookup", Arguments = new JsonObject { ["key"] = "{{input}}-{{turnIndex}}" } }],
                },
                new ScriptRule { When = new ScriptCondition { TurnFrom = steps }, Reply = "done {{input}}" },
            ],
        });
        d.Add(new FunctionToolDefinition
        {
            Name = "lookup",
            Effect = ToolEffect.Read,
            Description = "Look a key up",
            Parameters = System.Text.Json.JsonDocument.Parse("""{"type":"object","properties":{"key":{"type":"string"}},"required":["key"]}""").RootElement.Clone(),
            Function = AIFunctionFactory.Create((string key) => "value-" + key, "lookup"),
        });
        d.Add(new AgentDefinition { Name = "loop", Model = "scripted", Tools = ["lookup"], Instructions = "Look keys up, then say done." });
        return d;
    }

    private async Task<BureauEngine> StartAsync(string node, bool start = true)
    {
        var services = new ServiceCollection();
        services.AddBureau(o =>
        {
            o.NodeId = node;
            o.ClaimLease = TimeSpan.FromSeconds(3); // a dead node's runs move on after this
        }).AddDefinitions(Definitions(3)).UsePostgreSqlStorage(o =>
        {
            o.ConnectionString = _db.ConnectionString;
            o.Schema = _db.Schema;
        });
        var provider = services.BuildServiceProvider();
        _providers.Insert(0, provider);
        await provider.GetRequiredService<IRunStore>().InitializeAsync(TestContext.Current.CancellationToken);
        var engine = provider.GetRequiredService<BureauEngine>();
        if (start) await engine.StartAsync(TestContext.Current.CancellationToken);
        return engine;
    }

    [Fact]
    public async Task Runs_GoToTheEnd_WithEveryStepJournaled()
    {
        var engine = await StartAsync("node-a");
        var ids = new List<string>();
        for (var i = 0; i < 20; i++) ids.Add((await engine.SubmitAsync(new RunRequest("loop", i.ToString(System.Globalization.CultureInfo.InvariantCulture)), TestContext.Current.CancellationToken)).Run.Id);
        for (var i = 0; i < ids.Count; i++)
        {
            var run = await engine.WaitAsync(ids[i]).WaitAsync(TimeSpan.FromSeconds(60), TestContext.Current.CancellationToken);
            Assert.Equal((RunStatus.Succeeded, $"done {i}"), (run.Status, run.Output));
            var journal = await engine.ReadJournalAsync(ids[i]);
            Assert.Equal(Enumerable.Range(1, journal.Count).Select(n => (long)n), journal.Select(j => j.N));
            Assert.Equal(3, journal.Count(j => j.Entry is ModelResponded));
            Assert.Equal(2, journal.Count(j => j.Entry is ToolCompleted { IsError: false }));
        }
    }

    [Fact]
    public async Task ARunClaimedByANodeThatDied_IsFinishedByAnotherNodeOnceTheLeaseLapses()
    {
        // Node a accepts (and so claims) the run, then goes away without executing it or releasing its claim, as a killed process would.
        var a = await StartAsync("node-a", start: false);
        var id = (await a.SubmitAsync(new RunRequest("loop", "7"), TestContext.Current.CancellationToken)).Run.Id;
        await _providers[0].DisposeAsync();
        _providers.RemoveAt(0);

        var b = await StartAsync("node-b");
        var run = await b.WaitAsync(id).WaitAsync(TimeSpan.FromSeconds(60), TestContext.Current.CancellationToken);
        Assert.Equal((RunStatus.Succeeded, "done 7"), (run.Status, run.Output));
    }
}
