using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using Bureau.Tests.Support;
using Microsoft.Extensions.AI;
using Xunit;

namespace Bureau.Tests.Governance;

/// <summary>
/// Rollback: the completed writes of a run are compensated newest first, each journaled with its own
/// idempotency key; what cannot be compensated is listed; an interrupted compensation runs again
/// with the same key; a failed rollback can be retried without compensating anything twice.
/// </summary>
public sealed class RollbackTests : IAsyncDisposable
{
    private readonly EngineFixture _f = new();
    private readonly ConcurrentQueue<string> _undone = new();
    private readonly ConcurrentDictionary<string, int> _undoKeys = new();
    private volatile bool _undoFails;

    public ValueTask DisposeAsync() => _f.DisposeAsync();

    /// <summary>An agent that files two refunds and updates a ticket (no compensation), then fails (its model breaks).</summary>
    private void Setup(bool rollbackOnFailure)
    {
        _f.AddTool("refund", ToolEffect.Write);
        _f.AddTool("ticket", ToolEffect.Write);
        _f.Definitions.Add(new FunctionToolDefinition
        {
            Name = "cancel_refund",
            Effect = ToolEffect.Write,
            Function = AIFunctionFactory.Create((JsonObject arguments, string result) =>
            {
                var key = Bureau.Tools.BureauToolContext.Current!.IdempotencyKey;
                _undoKeys.AddOrUpdate(key, 1, (_, n) => n + 1);
                if (_undoFails) throw new InvalidOperationException("the payment provider is down");
                _undone.Enqueue($"{arguments["key"]}<-{result}");
                return "canceled " + arguments["key"];
            }, "cancel_refund"),
        });
        // The fixture's tools are immutable records: give refund its compensation.
        var refund = (FunctionToolDefinition)_f.Definitions.Tools["refund"];
        _f.Definitions.Add(new FunctionToolDefinition { Name = refund.Name, Effect = refund.Effect, Parameters = refund.Parameters, Function = refund.Function, Description = refund.Description, Compensate = "cancel_refund" });
        _f.Definitions.Add(new AgentDefinition { Name = "a", Model = "m", Tools = ["refund", "ticket"], RollbackOnFailure = rollbackOnFailure });
        _f.UseModel((msgs, turn) => turn switch
        {
            1 => FakeModel.Call("refund", """{"key":"r1"}""", "c1"),
            2 => FakeModel.Call("ticket", """{"key":"t1"}""", "c2"),
            3 => FakeModel.Call("refund", """{"key":"r2"}""", "c3"),
            _ => throw new InvalidOperationException("the model broke"),
        });
    }

    private static async Task<RunRecord> FinishedAsync(BureauEngine engine, string id)
    {
        for (var i = 0; i < 400; i++)
        {
            var run = (await engine.GetRunAsync(id))!;
            if (run.Status.IsTerminal()) return run;
            await Task.Delay(25, TestContext.Current.CancellationToken);
        }
        throw new TimeoutException($"run {id} did not finish");
    }

    private static async Task<RunRecord> RollbackOfAsync(BureauEngine engine, string id)
    {
        for (var i = 0; i < 400; i++)
        {
            var child = (await engine.ListRunsAsync(new RunQuery { ParentRunId = id })).Items.FirstOrDefault(r => r.Kind == RunKinds.Rollback);
            if (child is not null) return await FinishedAsync(engine, child.Id);
            await Task.Delay(25, TestContext.Current.CancellationToken);
        }
        throw new TimeoutException($"run {id} was never rolled back");
    }

    [Fact]
    public async Task RunFailsAfterWrites_WritesAreCompensatedNewestFirst_TheUncompensableOneIsListed()
    {
        Setup(rollbackOnFailure: true);
        var engine = await _f.StartAsync();
        var id = (await engine.SubmitAsync(new RunRequest("a", "x"))).Run.Id;
        Assert.Equal(RunStatus.Failed, (await FinishedAsync(engine, id)).Status);

        var rollback = await RollbackOfAsync(engine, id);
        Assert.Equal(RunStatus.Succeeded, rollback.Status);
        Assert.Equal(["r2<-refund:r2", "r1<-refund:r1"], _undone); // newest first, each told what it undoes
        Assert.Contains("compensated 2 of 3 writes", rollback.Output);
        Assert.Contains("not compensable (no compensation declared): step", rollback.Output);
        Assert.Contains("ticket", rollback.Output);
        var journal = (await engine.ReadJournalAsync(rollback.Id)).Select(r => r.Entry).ToList();
        var intents = journal.OfType<ToolIntent>().ToList();
        Assert.Equal(2, intents.Count);
        Assert.All(intents, i => Assert.StartsWith(rollback.Id + ":", i.IdempotencyKey));
        Assert.Equal(2, _undoKeys.Count); // one key per compensation
    }

    [Fact]
    public async Task Rollback_OnDemand_OncePerRun_AndNothingIsCompensatedTwice()
    {
        Setup(rollbackOnFailure: false);
        var engine = await _f.StartAsync();
        var id = (await engine.SubmitAsync(new RunRequest("a", "x"))).Run.Id;
        await FinishedAsync(engine, id);
        Assert.Empty((await engine.ListRunsAsync(new RunQuery { ParentRunId = id })).Items); // not automatic here

        _undoFails = true;
        var first = await engine.RollbackAsync(id, "ops");
        var failed = await FinishedAsync(engine, first.Run.Id);
        Assert.Equal((RunStatus.Failed, "rollback-failed"), (failed.Status, failed.Outcome));
        Assert.Contains("the payment provider is down", failed.Error);

        _undoFails = false;
        var second = await engine.RollbackAsync(id, "ops");
        Assert.True(second.Created);
        var ok = await FinishedAsync(engine, second.Run.Id);
        Assert.Equal(RunStatus.Succeeded, ok.Status);
        Assert.Equal(second.Run.Id, (await engine.RollbackAsync(id, "ops")).Run.Id); // asking again: the same rollback
        Assert.Equal(["r2<-refund:r2", "r1<-refund:r1"], _undone);
    }

    [Fact]
    public async Task InterruptedCompensation_RunsAgainWithTheSameKey_Once()
    {
        Setup(rollbackOnFailure: false);
        var engine = await _f.StartAsync();
        var id = (await engine.SubmitAsync(new RunRequest("a", "x"))).Run.Id;
        await FinishedAsync(engine, id);
        var writes = (await engine.ReadJournalAsync(id)).Where(r => r.Entry is ToolIntent { Tool: "refund" }).Select(r => r.N).ToList();
        await _f.DisposeEnginesAsync();

        // A rollback that crashed after journaling the intent of its first compensation (step of the newest refund).
        var store = await _f.OpenStoreAsync();
        var rollbackId = "rb-crashed";
        await store.SubmitAsync(new NewRun { Id = rollbackId, Agent = "a", Input = id, Kind = RunKinds.Rollback, ParentRunId = id, RootRunId = id, Started = new RunStarted("a", id, "ops", RunKinds.Rollback, id, id), CreatedAt = DateTimeOffset.UtcNow });
        var args = new JsonObject { ["arguments"] = new JsonObject { ["key"] = "r2" }, ["result"] = "refund:r2" }.ToJsonString();
        await store.AppendAsync(new AppendRequest
        {
            RunId = rollbackId, ExpectedVersion = 1, At = DateTimeOffset.UtcNow,
            Entries = [new ToolIntent($"undo:{writes[^1]}", "cancel_refund", args, ToolEffect.Write, rollbackId + ":2")],
            Update = new RunUpdate { Status = RunStatus.Running },
        });
        await store.DisposeAsync();

        var again = await _f.StartAsync();
        var done = await FinishedAsync(again, rollbackId);
        Assert.Equal(RunStatus.Succeeded, done.Status);
        Assert.Equal(1, _undoKeys[rollbackId + ":2"]); // the interrupted one ran (again) with its key, once
        Assert.Equal(["r2<-refund:r2", "r1<-refund:r1"], _undone);
    }

    [Fact]
    public async Task RejectedAfterAWrite_TheRunFails_AndTheEarlierWriteIsCompensated()
    {
        Setup(rollbackOnFailure: true);
        _f.UseModel((msgs, turn) => turn switch
        {
            1 => FakeModel.Call("refund", """{"key":"small"}""", "c1"),
            2 => FakeModel.Call("refund", """{"key":"big"}""", "c2"),
            _ => FakeModel.Text("done"),
        });
        _f.Definitions.Policies = new PolicySet
        {
            Rules =
            [
                new PolicyRule
                {
                    Name = "big", Action = PolicyAction.RequireApproval,
                    When = new PolicyConditions { Tools = ["refund"], Arguments = [ArgumentCondition.Parse("$.key == 'big'", out _)!] },
                    Approval = new ApprovalSpec { FailRunOnReject = true },
                },
            ],
        };
        var engine = await _f.StartAsync();
        var id = (await engine.SubmitAsync(new RunRequest("a", "x"))).Run.Id;
        var waiting = await EngineFixture.WaitAsync(engine, id);
        await engine.DecideApprovalAsync(id, waiting.WaitingFor!.Step, new Bureau.Governance.ApprovalDecision(false, "too much"), "lea");

        var run = await FinishedAsync(engine, id);
        Assert.Equal((RunStatus.Failed, "rejected"), (run.Status, run.Outcome));
        Assert.Contains("lea rejected the call of 'refund'", run.Error);
        var rollback = await RollbackOfAsync(engine, id);
        Assert.Equal(RunStatus.Succeeded, rollback.Status);
        Assert.Equal(["small<-refund:small"], _undone); // the write made before the rejection is undone
    }

    [Theory]
    [InlineData(ApprovalTimeoutAction.Reject)]
    [InlineData(ApprovalTimeoutAction.Fail)]
    public async Task ApprovalTimesOutAfterAWrite_OnTimeoutFailRollsItBack_OnTimeoutRejectOnlyTellsTheModel_EvenWithOnRejectFail(ApprovalTimeoutAction onTimeout)
    {
        Setup(rollbackOnFailure: true);
        _f.UseModel((msgs, turn) => turn switch
        {
            1 => FakeModel.Call("refund", """{"key":"small"}""", "c1"),
            2 => FakeModel.Call("refund", """{"key":"big"}""", "c2"),
            _ => FakeModel.Text("after: " + FakeModel.LastToolResult(msgs)),
        });
        _f.Definitions.Policies = new PolicySet
        {
            Rules =
            [
                new PolicyRule
                {
                    Name = "big", Action = PolicyAction.RequireApproval,
                    When = new PolicyConditions { Tools = ["refund"], Arguments = [ArgumentCondition.Parse("$.key == 'big'", out _)!] },
                    Approval = new ApprovalSpec { Levels = [new(["leads"], TimeSpan.FromSeconds(1))], OnTimeout = onTimeout, FailRunOnReject = true },
                },
            ],
        };
        var engine = await _f.StartAsync();
        var id = (await engine.SubmitAsync(new RunRequest("a", "x"))).Run.Id;
        var run = await FinishedAsync(engine, id); // nobody answers: the deadline passes

        if (onTimeout == ApprovalTimeoutAction.Fail)
        {
            Assert.Equal((RunStatus.Failed, "approval-timeout"), (run.Status, run.Outcome));
            var rollback = await RollbackOfAsync(engine, id);
            Assert.Equal(RunStatus.Succeeded, rollback.Status);
            Assert.Equal(["small<-refund:small"], _undone); // the write made before the approval is undone
        }
        else
        {
            // A timeout is not a person's rejection: onReject: fail does not apply, the run goes on and succeeds.
            Assert.Equal((RunStatus.Succeeded, "after: nobody approved the call before its last deadline; it did not run (policy 'big')"), (run.Status, run.Output));
            Assert.Empty((await engine.ListRunsAsync(new RunQuery { ParentRunId = id })).Items);
            Assert.Empty(_undone);
        }
        Assert.StartsWith("refund|", Assert.Single(_f.Keys)); // the small refund ran, once; the big one never did
    }

    [Fact]
    public async Task Rollback_OfAnUnfinishedRun_IsRefused()
    {
        Setup(rollbackOnFailure: false);
        var engine = await _f.StartAsync(start: false);
        var id = (await engine.SubmitAsync(new RunRequest("a", "x"))).Run.Id;
        var ex = await Assert.ThrowsAsync<RunStateConflictException>(() => engine.RollbackAsync(id));
        Assert.Contains("only a finished run can be rolled back", ex.Message);
    }
}
