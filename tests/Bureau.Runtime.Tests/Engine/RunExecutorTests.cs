using Bureau.Tests.Support;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace Bureau.Tests.Engine;

public sealed class RunExecutorTests : IAsyncLifetime
{
    private readonly EngineFixture _f = new();

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;
    public ValueTask DisposeAsync() => _f.DisposeAsync();

    private static string[] Kinds(IReadOnlyList<JournalRecord> journal) => [.. journal.Select(j => j.Entry.Kind)];

    [Fact]
    public async Task Execute_ToolLoop_SucceedsWithEachStepJournaledInOrder()
    {
        _f.AddTool("lookup", ToolEffect.Read);
        _f.AddAgent(tools: "lookup");
        var model = _f.UseModel((msgs, turn) => turn switch
        {
            1 => FakeModel.Call("lookup", """{"key":"k1"}"""),
            _ => FakeModel.Text("done with " + FakeModel.LastToolResult(msgs)),
        });
        var engine = await _f.StartAsync();

        var submitted = await engine.SubmitAsync(new RunRequest("a", "hello", Actor: "tester"));
        var run = await EngineFixture.WaitAsync(engine, submitted.Run.Id);

        Assert.Equal(RunStatus.Succeeded, run.Status);
        Assert.Equal("done with lookup:k1", run.Output);
        Assert.Equal(new UsageRecord(20, 10), run.Usage);
        var journal = await engine.ReadJournalAsync(run.Id);
        Assert.Equal(["run.started", "model.response", "tool.result", "model.response", "run.finished"], Kinds(journal));
        Assert.Equal(Enumerable.Range(1, 5).Select(n => (long)n), journal.Select(j => j.N));
        // the model's arguments are journaled as compact JSON, as the model would send them
        Assert.Equal("""{"key":"k1"}""", Assert.Single(((ModelResponded)journal[1].Entry).ToolCalls).Arguments);
        Assert.Equal(2, model.Calls);
        // a read tool's key is the number of the step that records its result
        Assert.Equal([$"lookup|{run.Id}:3"], _f.Keys);
        // the model saw the system prompt, the input, its call and the tool result
        var second = model.Requests[1];
        Assert.Equal([ChatRole.System, ChatRole.User, ChatRole.Assistant, ChatRole.Tool], second.Select(m => m.Role));
    }

    [Fact]
    public async Task Execute_WriteTool_IntentIsDurableBeforeTheToolRuns()
    {
        IRunStore? store = null;
        string? runId = null;
        JournalRecord? seenByTool = null;
        _f.AddTool("ledger", ToolEffect.Write, async (key, ct) =>
        {
            seenByTool = (await store!.ReadJournalAsync(runId!, 0, ct)).Last();
            return "written " + key;
        });
        _f.AddAgent(tools: "ledger");
        _f.UseModel((_, turn) => turn == 1 ? FakeModel.Call("ledger", """{"key":"x"}""", "c1") : FakeModel.Text("ok"));
        store = await _f.OpenStoreAsync();
        var engine = await _f.StartAsync(store, start: false);
        runId = (await engine.SubmitAsync(new RunRequest("a", "go"))).Run.Id;
        await engine.StartAsync();
        var run = await EngineFixture.WaitAsync(engine, runId);

        Assert.Equal(RunStatus.Succeeded, run.Status);
        var intent = Assert.IsType<ToolIntent>(seenByTool!.Entry);
        Assert.Equal(3, seenByTool.N);
        Assert.Equal($"{runId}:3", intent.IdempotencyKey);
        Assert.Equal([$"ledger|{runId}:3"], _f.Keys);
        var journal = await engine.ReadJournalAsync(runId);
        Assert.Equal(["run.started", "model.response", "tool.intent", "tool.result", "model.response", "run.finished"], Kinds(journal));
        Assert.Equal(3, ((ToolCompleted)journal[3].Entry).IntentStep);
    }

    [Theory]
    [InlineData("lookup", """{"key":42}""", "/key")]
    [InlineData("lookup", """{"key":"a","extra":1}""", "extra")]
    [InlineData("lookup", """{"key":""", "not valid JSON")]
    [InlineData("delete_all", """{"key":"a"}""", "delete_all")]
    public async Task Execute_InvalidToolCall_GoesBackToTheModelAndNeverRuns(string tool, string args, string expectedInError)
    {
        _f.AddTool("lookup", ToolEffect.Read);
        _f.AddTool("delete_all", ToolEffect.Write);
        _f.AddAgent(tools: "lookup");
        var model = _f.UseModel((msgs, turn) => turn == 1
            ? new ChatResponse(new ChatMessage(ChatRole.Assistant, [RawCall(tool, args)]))
            : FakeModel.Text("model saw: " + FakeModel.LastToolResult(msgs)));
        var engine = await _f.StartAsync();

        var run = await EngineFixture.WaitAsync(engine, (await engine.SubmitAsync(new RunRequest("a", "x"))).Run.Id);

        Assert.Empty(_f.Keys);
        Assert.Equal(RunStatus.Succeeded, run.Status);
        Assert.Contains(expectedInError, run.Output);
        var rejected = Assert.IsType<ToolCallRejected>((await engine.ReadJournalAsync(run.Id))[2].Entry);
        Assert.Contains(expectedInError, rejected.Error);
    }

    private static FunctionCallContent RawCall(string tool, string args)
    {
        try
        {
            return new FunctionCallContent("c1", tool, FakeModel.Args(args));
        }
        catch (System.Text.Json.JsonException ex)
        {
            return new FunctionCallContent("c1", tool) { Exception = ex };
        }
    }

    [Fact]
    public async Task Resume_ModelAnswerAlreadyJournaled_IsNotRequestedAgain()
    {
        _f.AddTool("lookup", ToolEffect.Read);
        _f.AddAgent(tools: "lookup");
        var model = _f.UseModel((msgs, turn) => turn == 1 ? throw new InvalidOperationException("turn 1 must come from the journal") : FakeModel.Text("final " + FakeModel.LastToolResult(msgs)));
        var store = await _f.OpenStoreAsync();
        await store.SubmitAsync(new NewRun { Id = "run1", Agent = "a", Input = "in", Started = new RunStarted("a", "in"), CreatedAt = DateTimeOffset.UtcNow });
        await store.AppendAsync(new AppendRequest
        {
            RunId = "run1", ExpectedVersion = 1, At = DateTimeOffset.UtcNow,
            Entries = [new ModelResponded(1, "fake", "custom", null, [new ToolCallRecord("c1", "lookup", """{"key":"from-journal"}""")], new UsageRecord(1, 1), null, 2, 1)],
            Update = new RunUpdate { Status = RunStatus.Running },
        });

        var engine = await _f.StartAsync(store);
        var run = await EngineFixture.WaitAsync(engine, "run1");

        Assert.Equal(RunStatus.Succeeded, run.Status);
        Assert.Equal("final lookup:from-journal", run.Output);
        Assert.Equal(1, model.Calls);
        Assert.Equal(["run.started", "model.response", "run.resumed", "tool.result", "model.response", "run.finished"], Kinds(await engine.ReadJournalAsync("run1")));
    }

    private async Task<IRunStore> StoreWithIntentAsync(string tool, ToolEffect effect)
    {
        var store = await _f.OpenStoreAsync();
        await store.SubmitAsync(new NewRun { Id = "run1", Agent = "a", Input = "in", Started = new RunStarted("a", "in"), CreatedAt = DateTimeOffset.UtcNow });
        await store.AppendAsync(new AppendRequest
        {
            RunId = "run1", ExpectedVersion = 1, At = DateTimeOffset.UtcNow,
            Entries =
            [
                new ModelResponded(1, "fake", "custom", null, [new ToolCallRecord("c1", tool, """{"key":"k"}""")], new UsageRecord(1, 1), null, 2, 1),
                new ToolIntent("c1", tool, """{"key":"k"}""", effect, "run1:3"),
            ],
            Update = new RunUpdate { Status = RunStatus.Running },
        });
        return store;
    }

    [Fact]
    public async Task Resume_WriteIntentWithoutResult_WaitsForAPersonAndNeverReruns()
    {
        _f.AddTool("ledger", ToolEffect.Write);
        _f.AddAgent(tools: "ledger");
        _f.UseModel((msgs, _) => FakeModel.Text("after: " + FakeModel.LastToolResult(msgs)));
        var engine = await _f.StartAsync(await StoreWithIntentAsync("ledger", ToolEffect.Write));

        var run = await EngineFixture.WaitAsync(engine, "run1");

        Assert.Equal(RunStatus.Waiting, run.Status);
        Assert.Equal(new InDoubtWait { Step = 3, Tool = "ledger", Key = "run1:3", Arguments = """{"key":"k"}""" }, run.WaitingFor);
        Assert.Empty(_f.Keys);

        await engine.ResolveAsync("run1", 3, StepResolution.Done, "ledger entry 7 exists", actor: "ops@example.com");
        run = await EngineFixture.WaitAsync(engine, "run1");
        Assert.Equal(RunStatus.Succeeded, run.Status);
        Assert.Equal("after: ledger entry 7 exists", run.Output);
        Assert.Empty(_f.Keys);
        var journal = await engine.ReadJournalAsync("run1");
        Assert.Contains(journal, j => j.Entry is StepResolved { Step: 3, Resolution: StepResolution.Done, Actor: "ops@example.com" });
    }

    [Fact]
    public async Task Resolve_Retry_RerunsTheWriteWithTheSameKey()
    {
        _f.AddTool("ledger", ToolEffect.Write);
        _f.AddAgent(tools: "ledger");
        _f.UseModel((msgs, _) => FakeModel.Text("after: " + FakeModel.LastToolResult(msgs)));
        var engine = await _f.StartAsync(await StoreWithIntentAsync("ledger", ToolEffect.Write));
        await EngineFixture.WaitAsync(engine, "run1");

        await engine.ResolveAsync("run1", 3, StepResolution.Retry);
        var run = await EngineFixture.WaitAsync(engine, "run1");

        Assert.Equal(RunStatus.Succeeded, run.Status);
        Assert.Equal(["ledger|run1:3"], _f.Keys);
    }

    [Fact]
    public async Task Resolve_WrongStepOrNotWaiting_IsAConflictAndChangesNothing()
    {
        _f.AddTool("ledger", ToolEffect.Write);
        _f.AddAgent(tools: "ledger");
        _f.UseModel((_, _) => FakeModel.Text("x"));
        var engine = await _f.StartAsync(await StoreWithIntentAsync("ledger", ToolEffect.Write));
        var before = await EngineFixture.WaitAsync(engine, "run1");

        var ex = await Assert.ThrowsAsync<RunStateConflictException>(() => engine.ResolveAsync("run1", 2, StepResolution.Done));
        Assert.Contains("waits on step 3", ex.Message);
        await Assert.ThrowsAsync<RunNotFoundException>(() => engine.ResolveAsync("nope", 3, StepResolution.Done));
        Assert.Equal(before.Version, (await engine.GetRunAsync("run1"))!.Version);
    }

    [Fact]
    public async Task Resume_IdempotentIntentWithoutResult_RerunsWithTheSameKey()
    {
        _f.AddTool("charge", ToolEffect.Idempotent);
        _f.AddAgent(tools: "charge");
        _f.UseModel((msgs, _) => FakeModel.Text("after: " + FakeModel.LastToolResult(msgs)));
        var engine = await _f.StartAsync(await StoreWithIntentAsync("charge", ToolEffect.Idempotent));

        var run = await EngineFixture.WaitAsync(engine, "run1");

        Assert.Equal(RunStatus.Succeeded, run.Status);
        Assert.Equal(["charge|run1:3"], _f.Keys);
        Assert.Equal("after: charge:k", run.Output);
    }

    [Fact]
    public async Task Budget_MaxSteps_StopsWithABudgetOutcome()
    {
        _f.AddTool("lookup", ToolEffect.Read);
        _f.AddAgent(budgets: new AgentBudgets { MaxSteps = 5 }, tools: "lookup");
        _f.UseModel((_, turn) => FakeModel.Call("lookup", $$"""{"key":"k{{turn}}"}"""));
        var engine = await _f.StartAsync();

        var run = await EngineFixture.WaitAsync(engine, (await engine.SubmitAsync(new RunRequest("a", "x"))).Run.Id);

        Assert.Equal((RunStatus.Failed, "budget"), (run.Status, run.Outcome));
        Assert.Contains("steps", run.Error);
        var journal = await engine.ReadJournalAsync(run.Id);
        var stop = Assert.Single(journal.Select(j => j.Entry).OfType<BudgetExceeded>());
        Assert.Equal(("steps", 5.0, 5.0), (stop.Budget, stop.Limit, stop.Used));
        Assert.Equal(5, journal.Count(j => j.Entry is ModelResponded or ToolCompleted));
    }

    [Fact]
    public async Task Budget_MaxTokens_StopsAfterTheAnswerThatCrossesIt()
    {
        _f.AddTool("lookup", ToolEffect.Read);
        _f.AddAgent(budgets: new AgentBudgets { MaxTokens = 40 }, tools: "lookup");
        _f.UseModel((_, turn) => FakeModel.Call("lookup", $$"""{"key":"k{{turn}}"}""")); // 15 tokens per answer
        var engine = await _f.StartAsync();

        var run = await EngineFixture.WaitAsync(engine, (await engine.SubmitAsync(new RunRequest("a", "x"))).Run.Id);

        Assert.Equal((RunStatus.Failed, "budget"), (run.Status, run.Outcome));
        Assert.Equal(45, run.Usage.TotalTokens); // overshoot at most one model answer
        Assert.Equal(2, _f.Keys.Count);
    }

    [Fact]
    public async Task Budget_WallTime_StopsWhenActiveTimeRunsOut()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        _f.Time = time;
        _f.AddTool("lookup", ToolEffect.Read);
        _f.AddAgent(budgets: new AgentBudgets { MaxWallTime = TimeSpan.FromSeconds(25) }, tools: "lookup");
        var model = _f.UseModel((_, turn) => FakeModel.Call("lookup", $$"""{"key":"k{{turn}}"}"""));
        model.BeforeAnswer = (_, _, _) => { time.Advance(TimeSpan.FromSeconds(10)); return Task.CompletedTask; };
        var engine = await _f.StartAsync();

        var run = await EngineFixture.WaitAsync(engine, (await engine.SubmitAsync(new RunRequest("a", "x"))).Run.Id);

        Assert.Equal((RunStatus.Failed, "budget"), (run.Status, run.Outcome));
        var stop = Assert.Single((await engine.ReadJournalAsync(run.Id)).Select(j => j.Entry).OfType<BudgetExceeded>());
        Assert.Equal("time", stop.Budget);
        Assert.Equal(3, model.Calls);
    }

    [Fact]
    public async Task Loop_SameCallRepeated_StopsBeforeTheThirdExecution()
    {
        _f.AddTool("lookup", ToolEffect.Read);
        _f.AddAgent(tools: "lookup");
        _f.UseModel((_, _) => FakeModel.Call("lookup", """{"key":"same"}"""));
        var engine = await _f.StartAsync();

        var run = await EngineFixture.WaitAsync(engine, (await engine.SubmitAsync(new RunRequest("a", "x"))).Run.Id);

        Assert.Equal((RunStatus.Failed, "loop"), (run.Status, run.Outcome));
        Assert.Equal(2, _f.Keys.Count);
        Assert.Contains("same arguments 3 times", run.Error);
    }

    [Fact]
    public async Task Loop_Warn_TellsTheModelOnceThenStops()
    {
        _f.AddTool("lookup", ToolEffect.Read);
        _f.AddAgent(loop: new LoopDetectionSettings { MaxRepeatedCalls = 2, Action = LoopAction.Warn }, tools: "lookup");
        var model = _f.UseModel((_, _) => FakeModel.Call("lookup", """{"key":"same"}"""));
        var engine = await _f.StartAsync();

        var run = await EngineFixture.WaitAsync(engine, (await engine.SubmitAsync(new RunRequest("a", "x"))).Run.Id);

        Assert.Equal((RunStatus.Failed, "loop"), (run.Status, run.Outcome));
        Assert.Single(_f.Keys);
        var loops = (await engine.ReadJournalAsync(run.Id)).Select(j => j.Entry).OfType<LoopDetected>().ToList();
        Assert.Equal([LoopAction.Warn, LoopAction.Stop], loops.Select(l => l.Action));
        Assert.Contains(model.Requests[^1], m => m.Contents.OfType<FunctionResultContent>().Any(r => r.Result!.ToString()!.Contains("loop detection")));
    }

    [Fact]
    public async Task Loop_NoNewInformation_StopsAfterMTurns()
    {
        _f.AddTool("lookup", ToolEffect.Read, (_, _) => Task.FromResult("always the same"));
        _f.AddAgent(loop: new LoopDetectionSettings { MaxTurnsWithoutProgress = 3 }, tools: "lookup");
        _f.UseModel((_, turn) => FakeModel.Call("lookup", $$"""{"key":"k{{turn}}"}"""));
        var engine = await _f.StartAsync();

        var run = await EngineFixture.WaitAsync(engine, (await engine.SubmitAsync(new RunRequest("a", "x"))).Run.Id);

        Assert.Equal((RunStatus.Failed, "loop"), (run.Status, run.Outcome));
        Assert.Contains("no new information", run.Error);
        Assert.Equal(4, _f.Keys.Count); // the first result was new; three turns without progress follow
    }

    [Fact]
    public async Task Cancel_WhileAToolRuns_StopsItAndJournalsWhatWasInFlight()
    {
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var toolCanceled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _f.AddTool("slow", ToolEffect.Read, async (_, ct) =>
        {
            started.TrySetResult();
            try { await Task.Delay(Timeout.Infinite, ct); }
            catch (OperationCanceledException) { toolCanceled.TrySetResult(); throw; }
            return "never";
        });
        _f.AddAgent(tools: "slow");
        _f.UseModel((_, _) => FakeModel.Call("slow", """{"key":"k"}"""));
        var engine = await _f.StartAsync();
        var id = (await engine.SubmitAsync(new RunRequest("a", "x"))).Run.Id;
        await started.Task.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);

        var status = await engine.CancelAsync(id, actor: "alice", reason: "not needed");

        Assert.Equal(RunStatus.Canceled, status);
        // The tool's token was canceled (the tool stage may let go of it before its own catch has run).
        await toolCanceled.Task.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
        var run = await engine.GetRunAsync(id);
        Assert.Equal((RunStatus.Canceled, "canceled by alice: not needed"), (run!.Status, run.Error));
        var canceled = Assert.Single((await engine.ReadJournalAsync(id)).Select(j => j.Entry).OfType<RunCanceled>());
        Assert.Contains(canceled.InFlight, f => f.Contains("slow"));
        await Assert.ThrowsAsync<RunStateConflictException>(() => engine.CancelAsync(id));
    }

    [Fact]
    public async Task Cancel_QueuedRun_IsJournaledWithoutAnExecutor()
    {
        _f.AddAgent();
        var model = _f.UseModel((_, _) => FakeModel.Text("x"));
        var engine = await _f.StartAsync(start: false);
        var id = (await engine.SubmitAsync(new RunRequest("a", "x"))).Run.Id;

        Assert.Equal(RunStatus.Canceled, await engine.CancelAsync(id));
        await engine.StartAsync();
        var run = await EngineFixture.WaitAsync(engine, id);
        Assert.Equal(RunStatus.Canceled, run.Status);
        Assert.Equal(["run.started", "run.canceled", "run.finished"], Kinds(await engine.ReadJournalAsync(id)));
        Assert.Equal(0, model.Calls); // the row kept from the submission was dropped by the cancellation: nothing executed on it
    }

    [Fact]
    public async Task Execute_ModelThrows_RunFailsWithTheReasonRunAndStep()
    {
        _f.AddAgent();
        _f.UseModel((_, _) => throw new HttpRequestException("HTTP 500 from the model"), retry: new RetrySettings { MaxAttempts = 1 });
        var engine = await _f.StartAsync();

        var run = await EngineFixture.WaitAsync(engine, (await engine.SubmitAsync(new RunRequest("a", "x"))).Run.Id);

        Assert.Equal((RunStatus.Failed, "error"), (run.Status, run.Outcome));
        Assert.Contains("HTTP 500", run.Error);
        Assert.Contains(run.Id, run.Error);
        Assert.Contains("step 2", run.Error);
    }

    [Fact]
    public async Task Submit_UnknownAgent_ThrowsAndWritesNothing()
    {
        _f.AddAgent();
        var engine = await _f.StartAsync();
        var ex = await Assert.ThrowsAsync<UnknownAgentException>(() => engine.SubmitAsync(new RunRequest("nobody", "x")));
        Assert.Contains("deployed agents: a", ex.Message);
        Assert.Empty((await engine.ListRunsAsync(new RunQuery())).Items);
    }

    [Fact]
    public async Task Submit_AMistypedAgent_SuggestsTheClosestName_AndListsTheTeamsThatCanBeStartedToo()
    {
        _f.AddAgent("triage");
        _f.AddAgent("billing");
        _f.Definitions.Add(new TeamDefinition { Name = "resolution", Pattern = TeamPattern.Sequential, Members = ["triage", "billing"] });
        var engine = await _f.StartAsync();

        var ex = await Assert.ThrowsAsync<UnknownAgentException>(() => engine.SubmitAsync(new RunRequest("triagee", "x")));

        Assert.Equal("agent 'triagee' is not deployed (did you mean 'triage'?); deployed agents: billing, resolution, triage", ex.Message);
        var far = await Assert.ThrowsAsync<UnknownAgentException>(() => engine.SubmitAsync(new RunRequest("zzzzzzzz", "x")));
        Assert.DoesNotContain("did you mean", far.Message);
        Assert.Empty((await engine.ListRunsAsync(new RunQuery())).Items);
    }

    [Fact]
    public async Task TwoExecutors_RaceOnOneRun_OnlyOneAppendsAndTheWriteRunsOnce()
    {
        _f.AddTool("ledger", ToolEffect.Write);
        _f.AddAgent(tools: "ledger");
        using var bothAsked = new Barrier(2);
        var model = _f.UseModel((_, turn) => turn == 1 ? FakeModel.Call("ledger", """{"key":"once"}""", "c1") : FakeModel.Text("ok"));
        model.BeforeAnswer = (_, turn, _) =>
        {
            if (turn == 1) bothAsked.SignalAndWait(TimeSpan.FromSeconds(5)); // both executors hold the same version
            return Task.CompletedTask;
        };
        var engine = await _f.StartAsync(start: false);
        var id = (await engine.SubmitAsync(new RunRequest("a", "x"))).Run.Id;

        var results = await Task.WhenAll(
            Task.Run(() => engine.ExecuteHereAsync(new RunExecution(id))),
            Task.Run(() => engine.ExecuteHereAsync(new RunExecution(id))));

        Assert.Equal([$"ledger|{id}:{(await engine.ReadJournalAsync(id)).Single(j => j.Entry is ToolIntent).N}"], _f.Keys); // a late executor may journal run.resumed first
        var journal = await engine.ReadJournalAsync(id);
        Assert.Equal(Enumerable.Range(1, journal.Count).Select(n => (long)n), journal.Select(j => j.N));
        Assert.Single(journal, j => j.Entry is ToolIntent);
        Assert.Equal(RunStatus.Succeeded, (await engine.GetRunAsync(id))!.Status);
    }

    [Fact]
    public async Task Start_UnfinishedRunsInTheStore_AreResumed()
    {
        _f.AddAgent();
        _f.UseModel((msgs, _) => FakeModel.Text("answer to " + msgs[1].Text));
        var store = await _f.OpenStoreAsync();
        for (var i = 0; i < 5; i++) await store.SubmitAsync(new NewRun { Id = "q" + i, Agent = "a", Input = "q" + i, Started = new RunStarted("a", "q" + i), CreatedAt = DateTimeOffset.UtcNow });

        var engine = await _f.StartAsync(store);

        for (var i = 0; i < 5; i++)
        {
            var run = await EngineFixture.WaitAsync(engine, "q" + i);
            Assert.Equal(("answer to q" + i, RunStatus.Succeeded), (run.Output, run.Status));
        }
    }

    [Fact]
    public async Task Watch_FromAStep_YieldsEveryLaterEntryOnceInOrder()
    {
        _f.AddTool("lookup", ToolEffect.Read);
        _f.AddAgent(tools: "lookup");
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var model = _f.UseModel((_, turn) => turn < 4 ? FakeModel.Call("lookup", $$"""{"key":"k{{turn}}"}""") : FakeModel.Text("done"));
        model.BeforeAnswer = async (_, turn, ct) => { if (turn == 2) await gate.Task.WaitAsync(ct); };
        var engine = await _f.StartAsync();
        var id = (await engine.SubmitAsync(new RunRequest("a", "x"))).Run.Id;

        var seen = new List<long>();
        var watch = Task.Run(async () =>
        {
            await foreach (var e in engine.WatchAsync(id, afterStep: 1)) seen.Add(e.Record!.N);
        });
        gate.SetResult();
        await watch.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);

        var total = (await engine.GetRunAsync(id))!.Version;
        Assert.Equal(Enumerable.Range(2, (int)total - 1).Select(n => (long)n), seen);
    }
}
