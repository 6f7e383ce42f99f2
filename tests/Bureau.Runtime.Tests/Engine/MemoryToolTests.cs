using Bureau.Engine;
using Bureau.Replay;
using Bureau.Storage.Sqlite;
using Bureau.Tests.Support;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Bureau.Tests.Engine;

/// <summary>
/// The built-in memory tools in runs (decision 0023): every read and write is journaled with what it saw or did,
/// writes are compare-and-set with the version the run last saw, a conflict goes back to the model with the current
/// value, a write interrupted by a crash is completed once, and a replay sees the recorded values.
/// </summary>
public sealed class MemoryToolTests : IAsyncDisposable
{
    private readonly EngineFixture _f = new();

    public ValueTask DisposeAsync() => _f.DisposeAsync();

    private void AddRememberingAgent(AgentMemory? memory = null) =>
        _f.Definitions.Add(new AgentDefinition { Name = "a", Model = "m", Instructions = "You remember things.", Memory = memory ?? new AgentMemory { Tenant = "acme" } });

    private async Task<SqliteMemoryStore> MemoryAsync()
    {
        var store = new SqliteMemoryStore(new SqliteStoreOptions { Path = _f.DbPath });
        await store.InitializeAsync();
        return store;
    }

    private static MemoryWrite OtherAgentWrites(string scope, string key, string value, long expected) => new()
    {
        Scope = scope, Key = key, Value = value, ExpectedVersion = expected,
        Provenance = new MemoryProvenance("run-other", 7, "billing", DateTimeOffset.UnixEpoch.AddDays(20000)),
    };

    [Fact]
    public async Task RememberThenRecall_JournalsTheWriteAndTheRead_AndTheFactCarriesTheRunsProvenance()
    {
        var model = _f.UseModel((messages, turn) => turn switch
        {
            1 => FakeModel.Call("remember", """{"scope":"tenant","key":"customer-42-plan","value":"gold"}""", "c1"),
            2 => FakeModel.Call("recall", """{"key":"customer-42-plan"}""", "c2"),
            _ => FakeModel.Text("the plan is " + FakeModel.LastToolResult(messages)),
        });
        AddRememberingAgent();
        var engine = await _f.StartAsync();

        var run = (await engine.SubmitAsync(new RunRequest("a", "what plan?", Actor: "alice"))).Run;
        var done = await EngineFixture.WaitAsync(engine, run.Id);

        Assert.Equal(RunStatus.Succeeded, done.Status);
        var journal = await engine.ReadJournalAsync(run.Id);
        Assert.Equal(
            ["run.started", "model.response", "tool.intent", "memory.write", "tool.result", "model.response", "memory.read", "tool.result", "model.response", "run.finished"],
            journal.Select(r => r.Entry.Kind));
        var intent = journal.Single(r => r.Entry is ToolIntent);
        var written = (MemoryWritten)journal.Single(r => r.Entry is MemoryWritten).Entry;
        Assert.Equal(("tenant:acme", "customer-42-plan", MemoryWriteOutcome.Written, 0L, intent.N), (written.Scope, written.Key, written.Outcome, written.ExpectedVersion!.Value, written.IntentStep));
        var read = (MemoryRead)journal.Single(r => r.Entry is MemoryRead).Entry;
        Assert.Equal(["agent:a", "tenant:acme", "user:alice"], read.Scopes.Order());
        var hit = Assert.Single(read.Hits);
        Assert.Equal(("gold", 1L), (hit.Fact.Value, hit.Fact.Version));

        var fact = await (await MemoryAsync()).GetAsync("tenant:acme", "customer-42-plan");
        Assert.Equal((run.Id, (long?)intent.N, "a", "alice"), (fact!.Provenance.RunId, fact.Provenance.Step, fact.Provenance.Agent, fact.Provenance.Actor));
        Assert.Contains("\"value\":\"gold\"", FakeModel.LastToolResult(model.Requests[^1]));
    }

    [Fact]
    public async Task Remember_AFactAnotherAgentChanged_IsAConflictWithTheCurrentValue_AndASecondTryAfterItSupersedesIt()
    {
        var memory = await MemoryAsync();
        await memory.WriteAsync(OtherAgentWrites("agent:a", "plan", "silver", 0));
        var model = _f.UseModel((messages, turn) => turn switch
        {
            1 => FakeModel.Call("remember", """{"scope":"agent","key":"plan","value":"gold"}""", "c1"),
            2 => FakeModel.Call("remember", """{"scope":"agent","key":"plan","value":"gold, was silver"}""", "c2"),
            _ => FakeModel.Text("done"),
        });
        AddRememberingAgent();
        var engine = await _f.StartAsync();

        var run = (await engine.SubmitAsync(new RunRequest("a", "remember the plan"))).Run;
        Assert.Equal(RunStatus.Succeeded, (await EngineFixture.WaitAsync(engine, run.Id)).Status);

        // The model saw the conflict as a tool error that names the current value, its version and its writer.
        var conflictSeen = FakeModel.LastToolResult(model.Requests[1])!;
        Assert.Contains("\"error\":\"conflict\"", conflictSeen);
        Assert.Contains("\"value\":\"silver\"", conflictSeen);
        Assert.Contains("agent billing, run run-other step 7", conflictSeen);
        Assert.Contains("expectedVersion 1", conflictSeen);
        var journal = await engine.ReadJournalAsync(run.Id);
        var writes = journal.Select(r => r.Entry).OfType<MemoryWritten>().ToList();
        Assert.Equal([MemoryWriteOutcome.Conflict, MemoryWriteOutcome.Written], writes.Select(w => w.Outcome));
        Assert.Equal(("silver", 1L), (writes[0].Current!.Value, writes[0].Current!.Version));
        Assert.True(journal.Select(r => r.Entry).OfType<ToolCompleted>().First().IsError);
        // The second write expected the version the conflict showed (the run's journal remembers it), and superseded it.
        Assert.Equal(1, writes[1].ExpectedVersion);
        var history = await memory.HistoryAsync("agent:a", "plan");
        Assert.Equal([("silver", "billing", (long?)2), ("gold, was silver", "a", null)], history.Select(h => (h.Value!, h.Provenance.Agent!, h.SupersededBy)));
    }

    [Fact]
    public async Task Remember_InterruptedAfterTheStoreWroteIt_IsCompletedOnResume_WithoutASecondWrite()
    {
        _f.UseModel((messages, turn) => turn switch
        {
            1 => FakeModel.Call("remember", """{"scope":"agent","key":"plan","value":"gold"}""", "c1"),
            _ => FakeModel.Text("done: " + FakeModel.LastToolResult(messages)),
        });
        AddRememberingAgent();
        var crash = new CrashOnce("after-tool");
        _f.Configure = b => b.Services.AddSingleton<ICrashPoints>(crash);
        var engine = await _f.StartAsync();

        var run = (await engine.SubmitAsync(new RunRequest("a", "remember the plan"))).Run;
        var done = await EngineFixture.WaitAsync(engine, run.Id, 60);

        Assert.Equal(RunStatus.Succeeded, done.Status);
        Assert.True(crash.Crashed);
        var journal = (await engine.ReadJournalAsync(run.Id)).Select(r => r.Entry).ToList();
        Assert.Contains(journal, e => e is RunResumed);
        Assert.Single(journal.OfType<ToolIntent>());
        var written = Assert.Single(journal.OfType<MemoryWritten>());
        Assert.True(written.Repeated);
        Assert.Equal(1, written.Fact!.Version);
        var history = await (await MemoryAsync()).HistoryAsync("agent:a", "plan");
        Assert.Equal(("gold", run.Id), (Assert.Single(history).Value, history[0].Provenance.RunId));
    }

    [Fact]
    public async Task Replay_OfARunThatUsedMemory_SeesTheRecordedValues_EvenAfterTheStoreChanged()
    {
        _f.UseModel((messages, turn) => turn switch
        {
            1 => FakeModel.Call("recall", """{"query":"customer plan"}""", "c1"),
            2 => FakeModel.Call("remember", """{"scope":"agent","key":"plan","value":"gold"}""", "c2"),
            _ => FakeModel.Text("saw " + FakeModel.LastToolResult(messages)),
        });
        AddRememberingAgent();
        var memory = await MemoryAsync();
        await memory.WriteAsync(OtherAgentWrites("tenant:acme", "note", "the customer plan was bronze", 0));
        var engine = await _f.StartAsync();
        var run = (await engine.SubmitAsync(new RunRequest("a", "go"))).Run;
        Assert.Equal(RunStatus.Succeeded, (await EngineFixture.WaitAsync(engine, run.Id)).Status);
        var journal = await engine.ReadJournalAsync(run.Id);
        await memory.WriteAsync(OtherAgentWrites("tenant:acme", "note", "the customer plan is now platinum", 1));
        await memory.WriteAsync(OtherAgentWrites("agent:a", "plan", "changed since", 1));

        var result = await new RunReplayer(_f.Definitions).ReplayAsync(run.Id, journal, TestContext.Current.CancellationToken);

        Assert.True(result.Reproduced, result.Divergence?.ToString());
        Assert.Equal(journal.Count, result.StepsReproduced);
        Assert.Equal(2, (await memory.HistoryAsync("agent:a", "plan")).Count); // the replay wrote nothing
    }

    [Theory]
    [InlineData("""{"scope":"galaxy","key":"k","value":"v"}""", "scope 'galaxy' is not one of this agent's memory scopes")]
    [InlineData("""{"scope":"agent","value":"v"}""", "'key' is required")]
    [InlineData("""{"scope":"agent","key":"k","value":"v","expectedVersion":-1}""", "'expectedVersion' must be an integer, 0 or more")]
    [InlineData("""{"scope":"agent","key":"k","value":"v","extra":1}""", "unexpected extra")]
    public async Task Remember_WithInvalidArguments_IsRejectedBackToTheModel_AndWritesNothing(string arguments, string error)
    {
        var model = _f.UseModel((messages, turn) => turn == 1 ? FakeModel.Call("remember", arguments, "c1") : FakeModel.Text("ok"));
        AddRememberingAgent();
        var engine = await _f.StartAsync();

        var run = (await engine.SubmitAsync(new RunRequest("a", "go"))).Run;
        Assert.Equal(RunStatus.Succeeded, (await EngineFixture.WaitAsync(engine, run.Id)).Status);

        var rejected = (await engine.ReadJournalAsync(run.Id)).Select(r => r.Entry).OfType<ToolCallRejected>().Single();
        Assert.Contains(error, rejected.Error);
        Assert.Contains(error, FakeModel.LastToolResult(model.Requests[^1]));
        Assert.Empty(await (await MemoryAsync()).ListAsync("agent:a"));
    }

    [Fact]
    public async Task Recall_OfTheTeamScope_OutsideATeam_TellsTheModelWhy()
    {
        var model = _f.UseModel((messages, turn) => turn == 1 ? FakeModel.Call("recall", """{"scope":"team","key":"k"}""", "c1") : FakeModel.Text("ok"));
        AddRememberingAgent();
        var engine = await _f.StartAsync();

        var run = (await engine.SubmitAsync(new RunRequest("a", "go"))).Run;
        await EngineFixture.WaitAsync(engine, run.Id);

        Assert.Contains("is not a member of a team", FakeModel.LastToolResult(model.Requests[^1]));
    }

    [Fact]
    public async Task Agent_WithMemory_DeclaresOnlyItsMemoryTools_ToTheModel()
    {
        var options = new List<ChatOptions?>();
        _f.Definitions.Add(new ChatClientModelDefinition { Name = "m", Client = new OptionsRecorder(options) });
        AddRememberingAgent(new AgentMemory { Tools = ["recall"], Scopes = ["team", "tenant"] });
        var engine = await _f.StartAsync();

        await EngineFixture.WaitAsync(engine, (await engine.SubmitAsync(new RunRequest("a", "go"))).Run.Id);

        var tool = Assert.Single(options.Single()!.Tools!);
        Assert.Equal("recall", tool.Name);
        Assert.Contains("\"enum\":[\"team\",\"tenant\"]", ((AIFunctionDeclaration)tool).JsonSchema.GetRawText().Replace(" ", ""));
    }


    private sealed class OptionsRecorder(List<ChatOptions?> seen) : IChatClient
    {
        public Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
        {
            lock (seen) seen.Add(options);
            return Task.FromResult(new ChatResponse(new ChatMessage(ChatRole.Assistant, "ok")));
        }

        public IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
            throw new NotSupportedException();

        public object? GetService(Type serviceType, object? serviceKey = null) => null;

        public void Dispose() { }
    }
}
