using System.Text.Json.Nodes;
using Bureau.Engine;
using Bureau.Governance;
using Bureau.Replay;
using Bureau.Storage.Sqlite;
using Bureau.Tests.Support;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace Bureau.Tests.Memory;

/// <summary>
/// A memory call that a policy requires an approval for waits like any tool call (decision 0052): it shows in the
/// approval inbox with its tool and arguments; approved, the fact is stored once (with the approver's edits when the
/// policy allows them), even across a restart or a crash; rejected or timed out, nothing is stored and the model is told.
/// </summary>
public sealed class MemoryApprovalTests : IAsyncDisposable
{
    private const string Proposed = """{"scope":"tenant","key":"plan","value":"gold"}""";

    private readonly EngineFixture _f = new();

    public ValueTask DisposeAsync() => _f.DisposeAsync();

    private void Setup(ApprovalSpec? approval = null, string arguments = Proposed)
    {
        _f.UseModel((messages, turn) => turn == 1
            ? FakeModel.Call("remember", arguments, "c1")
            : FakeModel.Text("after: " + FakeModel.LastToolResult(messages)));
        _f.Definitions.Add(new AgentDefinition { Name = "a", Model = "m", Memory = new AgentMemory { Tenant = "acme" } });
        _f.Definitions.Policies = new PolicySet
        {
            Rules =
            [
                new PolicyRule
                {
                    Name = "reviewed-facts", Action = PolicyAction.RequireApproval, Reason = "tenant facts are reviewed",
                    When = new PolicyConditions { Tools = ["remember"] },
                    Approval = approval ?? new ApprovalSpec { Levels = [new(["leads"], null)], EditableArguments = true },
                },
            ],
        };
    }

    private async Task<(BureauEngine Engine, string Id, ApprovalWait Wait)> WaitingAsync()
    {
        var engine = await _f.StartAsync();
        var id = (await engine.SubmitAsync(new RunRequest("a", "remember the plan"))).Run.Id;
        var run = await EngineFixture.WaitAsync(engine, id);
        Assert.Equal(RunStatus.Waiting, run.Status);
        return (engine, id, Assert.IsType<ApprovalWait>(run.WaitingFor));
    }

    private async Task<IReadOnlyList<MemoryFact>> HistoryAsync()
    {
        var store = new SqliteMemoryStore(new SqliteStoreOptions { Path = _f.DbPath });
        await store.InitializeAsync();
        return await store.HistoryAsync("tenant:acme", "plan");
    }

    private static async Task<List<JournalEntry>> JournalAsync(BureauEngine engine, string id) =>
        [.. (await engine.ReadJournalAsync(id)).Select(r => r.Entry)];

    [Fact]
    public async Task Remember_RequiringApproval_WaitsInTheInboxWithItsArguments_ApprovedTheFactIsStoredOnce()
    {
        Setup();
        var (engine, id, wait) = await WaitingAsync();

        Assert.Equal(("remember", Proposed, "reviewed-facts"), (wait.Tool, wait.Arguments, wait.Rule));
        Assert.Equal(["leads"], wait.Approvers);
        Assert.Contains("tenant facts are reviewed", wait.Question);
        var listed = Assert.Single(await engine.ListApprovalsAsync());
        Assert.Equal(($"{id}:{wait.Step}", "remember", Proposed), (listed.Id, listed.Wait.Tool, listed.Wait.Arguments));
        // What the notifier announces: the approval.asked audit entry names the memory tool.
        var asked = Assert.Single(await ((IAuditLog)engine.Store).ReadAuditAsync(), a => a.RunId == id && a.Action == "approval.asked");
        Assert.Equal("remember", (string?)JsonNode.Parse(asked.Detail!)!["tool"]);
        Assert.Empty(await HistoryAsync()); // nothing written while waiting
        var journal = await JournalAsync(engine, id);
        Assert.Equal((PolicyAction.RequireApproval, "reviewed-facts"), journal.OfType<PolicyApplied>().Select(p => (p.Action, p.Rule)).Single());
        Assert.DoesNotContain(journal, e => e is ToolCompleted);

        await engine.DecideApprovalAsync(id, wait.Step, new ApprovalDecision(true, "ok"), "lea", ["leads"]);
        var run = await EngineFixture.WaitAsync(engine, id);

        Assert.Equal(RunStatus.Succeeded, run.Status);
        Assert.Contains("\"ok\":true", run.Output);
        var fact = Assert.Single(await HistoryAsync());
        Assert.Equal(("gold", 1L, id), (fact.Value, fact.Version, fact.Provenance.RunId));
        journal = await JournalAsync(engine, id);
        Assert.Equal(MemoryWriteOutcome.Written, Assert.Single(journal.OfType<MemoryWritten>()).Outcome);
        Assert.Single(journal.OfType<ToolIntent>());
        Assert.Empty(await engine.ListApprovalsAsync());
    }

    [Fact]
    public async Task Remember_Rejected_StoresNothing_AndTheModelGetsTheRejection()
    {
        Setup();
        var (engine, id, wait) = await WaitingAsync();

        await engine.DecideApprovalAsync(id, wait.Step, new ApprovalDecision(false, "the CRM owns plans"), "lea", ["leads"]);
        var run = await EngineFixture.WaitAsync(engine, id);

        Assert.Equal((RunStatus.Succeeded, "after: rejected by lea: the CRM owns plans; the call did not run"), (run.Status, run.Output));
        Assert.Empty(await HistoryAsync());
        var journal = await JournalAsync(engine, id);
        Assert.DoesNotContain(journal, e => e is ToolIntent or MemoryWritten);
        var result = Assert.Single(journal.OfType<ToolCompleted>());
        Assert.Equal(("remember", true, "policy"), (result.Tool, result.IsError, result.Failure));
    }

    [Fact]
    public async Task Remember_ApprovedWithEditedArguments_StoresTheEdit_AndTheIntentSaysSo()
    {
        Setup();
        var (engine, id, wait) = await WaitingAsync();

        await engine.DecideApprovalAsync(id, wait.Step, new ApprovalDecision(true, null, """{"scope":"tenant","key":"plan","value":"silver"}"""), "lea", ["leads"]);
        var run = await EngineFixture.WaitAsync(engine, id);

        Assert.Equal(RunStatus.Succeeded, run.Status);
        Assert.Equal("silver", Assert.Single(await HistoryAsync()).Value);
        var intent = Assert.Single((await JournalAsync(engine, id)).OfType<ToolIntent>());
        Assert.Contains("\"value\":\"silver\"", intent.Arguments); // the journal says what was written

        // A replay of the run (the approval and the edit come from its journal) reproduces it and writes nothing.
        var replay = await new RunReplayer(_f.Definitions).ReplayAsync(id, await engine.ReadJournalAsync(id), TestContext.Current.CancellationToken);
        Assert.True(replay.Reproduced, replay.Divergence?.ToString());
        Assert.Single(await HistoryAsync());
    }

    [Theory]
    [InlineData("""{"scope":"galaxy","key":"plan","value":"silver"}""", "scope 'galaxy' is not one of this agent's memory scopes")]
    [InlineData("""{"scope":"tenant","key":"plan"}""", "'value' is required")]
    [InlineData("""{"key":"plan","value":"silver","amount":3}""", "unexpected amount")]
    public async Task Remember_ApprovedWithAnInvalidEdit_StoresNothing_AndTheModelIsToldWhy(string edited, string error)
    {
        Setup();
        var (engine, id, wait) = await WaitingAsync();

        await engine.DecideApprovalAsync(id, wait.Step, new ApprovalDecision(true, null, edited), "lea", ["leads"]);
        var run = await EngineFixture.WaitAsync(engine, id);

        Assert.Equal(RunStatus.Succeeded, run.Status);
        Assert.StartsWith("after: the approver's edited arguments are not valid (invalid arguments for 'remember': ", run.Output);
        Assert.Contains(error, run.Output);
        Assert.Empty(await HistoryAsync());
        Assert.DoesNotContain(await JournalAsync(engine, id), e => e is ToolIntent or MemoryWritten);
    }

    [Fact]
    public async Task Remember_WithInvalidArguments_UnderAnApprovalRule_IsRejectedBackToTheModel_NobodyIsAsked()
    {
        Setup(arguments: """{"scope":"galaxy","key":"plan","value":"gold"}""");
        var engine = await _f.StartAsync();
        var run = await EngineFixture.WaitAsync(engine, (await engine.SubmitAsync(new RunRequest("a", "remember the plan"))).Run.Id);

        Assert.Equal(RunStatus.Succeeded, run.Status);
        Assert.Contains("scope 'galaxy' is not one of this agent's memory scopes", run.Output);
        var journal = await JournalAsync(engine, run.Id);
        Assert.Single(journal.OfType<ToolCallRejected>());
        Assert.DoesNotContain(journal, e => e is PolicyApplied or RunWaiting);
        Assert.Empty(await engine.ListApprovalsAsync());
    }

    [Theory]
    [InlineData(ApprovalTimeoutAction.Reject, RunStatus.Succeeded, "after: nobody approved the call before its last deadline; it did not run (policy 'reviewed-facts')", 0)]
    [InlineData(ApprovalTimeoutAction.Approve, RunStatus.Succeeded, null, 1)]
    [InlineData(ApprovalTimeoutAction.Fail, RunStatus.Failed, null, 0)]
    public async Task Remember_NobodyAnswersBeforeTheDeadline_OnTimeoutApplies(ApprovalTimeoutAction onTimeout, RunStatus status, string? output, int stored)
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        _f.Time = time;
        Setup(new ApprovalSpec { Levels = [new(["leads"], TimeSpan.FromMinutes(30))], OnTimeout = onTimeout });
        var (engine, id, wait) = await WaitingAsync();
        Assert.Equal(time.GetUtcNow().AddMinutes(30), wait.Deadline);

        var done = await AdvanceUntilAsync(engine, id, time, r => r.Status.IsTerminal());

        Assert.Equal(status, done.Status);
        if (output is not null) Assert.Equal(output, done.Output);
        if (status == RunStatus.Failed) Assert.Equal("approval-timeout", done.Outcome);
        Assert.Equal(stored, (await HistoryAsync()).Count);
        Assert.Single((await JournalAsync(engine, id)).OfType<WaitExpired>());
    }

    [Fact]
    public async Task Remember_WaitingAcrossARestart_ThenApproved_IsStoredOnce()
    {
        Setup();
        var (engine, id, wait) = await WaitingAsync();
        await engine.StopAsync();
        await _f.DisposeEnginesAsync();

        var again = await _f.StartAsync(); // the run store and the memory store reopened from the same database
        var listed = Assert.Single(await again.ListApprovalsAsync());
        Assert.Equal((id, "remember", Proposed), (listed.Run.Id, listed.Wait.Tool, listed.Wait.Arguments));
        await again.DecideApprovalAsync(id, wait.Step, new ApprovalDecision(true), "lea", ["leads"]);
        var run = await EngineFixture.WaitAsync(again, id);

        Assert.Equal(RunStatus.Succeeded, run.Status);
        Assert.Equal("gold", Assert.Single(await HistoryAsync()).Value);
        Assert.Single((await JournalAsync(again, id)).OfType<MemoryWritten>());
    }

    [Fact]
    public async Task Remember_Approved_ThenACrashAfterTheStoreWroteIt_IsCompletedOnResume_WithoutASecondWrite()
    {
        Setup();
        var crash = new CrashOnce("after-tool");
        _f.Configure = b => b.Services.AddSingleton<ICrashPoints>(crash);
        var (engine, id, wait) = await WaitingAsync();

        await engine.DecideApprovalAsync(id, wait.Step, new ApprovalDecision(true), "lea", ["leads"]);
        var run = await EngineFixture.WaitAsync(engine, id, 60);

        Assert.Equal(RunStatus.Succeeded, run.Status);
        Assert.True(crash.Crashed);
        var journal = await JournalAsync(engine, id);
        Assert.Contains(journal, e => e is RunResumed);
        Assert.Single(journal.OfType<PolicyApplied>()); // not asked again
        Assert.Single(journal.OfType<ToolIntent>());
        Assert.True(Assert.Single(journal.OfType<MemoryWritten>()).Repeated);
        Assert.Equal("gold", Assert.Single(await HistoryAsync()).Value);
    }

    [Fact]
    public async Task Recall_RequiringApproval_Waits_ApprovedWithAnEditedKey_ReadsThatKey()
    {
        var memory = new SqliteMemoryStore(new SqliteStoreOptions { Path = _f.DbPath });
        await memory.InitializeAsync();
        await memory.WriteAsync(new MemoryWrite
        {
            Scope = "tenant:acme", Key = "plan", Value = "gold", ExpectedVersion = 0,
            Provenance = new MemoryProvenance("run-other", 3, "billing", DateTimeOffset.UnixEpoch.AddDays(20000)),
        });
        _f.UseModel((messages, turn) => turn == 1
            ? FakeModel.Call("recall", """{"key":"salaries"}""", "c1")
            : FakeModel.Text("after: " + FakeModel.LastToolResult(messages)));
        _f.Definitions.Add(new AgentDefinition { Name = "a", Model = "m", Memory = new AgentMemory { Tenant = "acme" } });
        _f.Definitions.Policies = new PolicySet
        {
            Defaults = new Dictionary<ToolEffect, PolicyAction> { [ToolEffect.Read] = PolicyAction.RequireApproval },
            DefaultApproval = new ApprovalSpec { EditableArguments = true },
        };
        var (engine, id, wait) = await WaitingAsync();
        Assert.Equal(("recall", """{"key":"salaries"}""", "default:read"), (wait.Tool, wait.Arguments, wait.Rule));
        Assert.DoesNotContain(await JournalAsync(engine, id), e => e is MemoryRead);

        await engine.DecideApprovalAsync(id, wait.Step, new ApprovalDecision(true, null, """{"key":"plan"}"""), "lea");
        var run = await EngineFixture.WaitAsync(engine, id);

        Assert.Equal(RunStatus.Succeeded, run.Status);
        Assert.Contains("\"value\":\"gold\"", run.Output);
        Assert.Equal("plan", Assert.Single((await JournalAsync(engine, id)).OfType<MemoryRead>()).Key);
    }

    private static async Task<RunRecord> AdvanceUntilAsync(BureauEngine engine, string id, FakeTimeProvider time, Func<RunRecord, bool> done)
    {
        // The fake clock moves a minute at a time; real time bounds the wait (generous, for a loaded machine).
        var until = DateTime.UtcNow.AddSeconds(60);
        while (DateTime.UtcNow < until)
        {
            var run = (await engine.GetRunAsync(id))!;
            if (done(run)) return run;
            time.Advance(TimeSpan.FromMinutes(1));
            await Task.Delay(10, TestContext.Current.CancellationToken);
        }
        throw new TimeoutException($"run {id} never reached the state");
    }

}
