using Bureau.Storage.Sqlite;
using Bureau.Tests.Support;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Bureau.Tests.Memory;

/// <summary>The memory tools pass the policy link like any tool: a deny on <c>remember</c> is journaled, told to the model and writes nothing.</summary>
public sealed class MemoryPolicyTests : IAsyncDisposable
{
    private readonly EngineFixture _f = new();

    public ValueTask DisposeAsync() => _f.DisposeAsync();

    private async Task<RunRecord> RunAsync(PolicySet policies)
    {
        _f.UseModel((messages, turn) => turn switch
        {
            1 => FakeModel.Call("remember", """{"scope":"tenant","key":"plan","value":"gold"}""", "c1"),
            2 => FakeModel.Call("recall", """{"key":"plan"}""", "c2"),
            _ => FakeModel.Text("last: " + FakeModel.LastToolResult(messages)),
        });
        _f.Definitions.Add(new AgentDefinition { Name = "a", Model = "m", Memory = new AgentMemory { Tenant = "acme" } });
        _f.Definitions.Policies = policies;
        var engine = await _f.StartAsync();
        var run = (await engine.SubmitAsync(new RunRequest("a", "remember the plan"))).Run;
        return await EngineFixture.WaitAsync(engine, run.Id);
    }

    private async Task<MemoryFact?> FactAsync()
    {
        var store = new SqliteMemoryStore(new SqliteStoreOptions { Path = _f.DbPath });
        await store.InitializeAsync();
        return await store.GetAsync("tenant:acme", "plan");
    }

    [Fact]
    public async Task Remember_DeniedByAPolicy_IsJournaledAndToldToTheModel_AndWritesNothing_WhileRecallStillRuns()
    {
        var done = await RunAsync(new PolicySet
        {
            Rules = [new PolicyRule { Name = "no-memory-writes", When = new PolicyConditions { Tools = ["remember"] }, Action = PolicyAction.Deny, Reason = "facts come from the CRM" }],
        });

        Assert.Equal(RunStatus.Succeeded, done.Status);
        var journal = await _f.Services.GetRequiredService<BureauEngine>().ReadJournalAsync(done.Id);
        var applied = Assert.IsType<PolicyApplied>(Assert.Single(journal, r => r.Entry is PolicyApplied).Entry);
        Assert.Equal(("remember", PolicyAction.Deny, "no-memory-writes"), (applied.Tool, applied.Action, applied.Rule));
        var result = journal.Select(r => r.Entry).OfType<ToolCompleted>().First(t => t.Tool == "remember");
        Assert.True(result.IsError);
        Assert.Contains("denied by policy 'no-memory-writes': facts come from the CRM", result.Content);
        Assert.DoesNotContain(journal, r => r.Entry is MemoryWritten);
        Assert.Contains(journal, r => r.Entry is MemoryRead); // recall is not denied
        Assert.Null(await FactAsync());
    }

    [Fact]
    public async Task Remember_UnderAPolicyThatAllowsIt_Writes()
    {
        var done = await RunAsync(new PolicySet
        {
            Rules = [new PolicyRule { Name = "other-agents", When = new PolicyConditions { Agents = ["someone-else"] }, Action = PolicyAction.Deny }],
        });

        Assert.Equal(RunStatus.Succeeded, done.Status);
        Assert.Equal("gold", (await FactAsync())!.Value);
    }
}
