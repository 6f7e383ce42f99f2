using Bureau.Storage.Sqlite;
using Bureau.Tests.Support;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit;

namespace Bureau.Tests.Workforce;

/// <summary>
/// The workforce's inbox and dispatcher (docs/workforce.md, decision 0039): tasks are routed by skill to the
/// least-loaded member below its concurrency limit, each task becomes exactly one run (idempotency key
/// workforce:ID) whatever races, and its state follows the run.
/// </summary>
public sealed class BureauWorkforceTests : IAsyncDisposable
{
    private static readonly TimeSpan Deadline = WorkforceHarness.Deadline;
    private readonly WorkforceHarness _h = new();
    private EngineFixture _f => _h.Fixture;
    private TaskCompletionSource _release => _h.Release;
    private int _inModel, _maxInModel;
    private readonly Dictionary<string, int> _maxByAgent = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _inByAgent = new(StringComparer.Ordinal);

    public ValueTask DisposeAsync() => _h.DisposeAsync();

    /// <summary>A model whose answers wait for <see cref="_release"/> when <paramref name="hold"/>, counting the calls in flight per agent.</summary>
    private void UseHoldingModel(bool hold)
    {
        var model = _f.UseModel((messages, _) => FakeModel.Text("done: " + messages.Last(m => m.Role == Microsoft.Extensions.AI.ChatRole.User).Text));
        model.BeforeAnswer = async (messages, _, ct) =>
        {
            var agent = messages[0].Text!; // the system prompt is the agent's name
            lock (_maxByAgent)
            {
                _inModel++;
                _maxInModel = Math.Max(_maxInModel, _inModel);
                _inByAgent[agent] = _inByAgent.GetValueOrDefault(agent) + 1;
                _maxByAgent[agent] = Math.Max(_maxByAgent.GetValueOrDefault(agent), _inByAgent[agent]);
            }
            try
            {
                if (hold) await _release.Task.WaitAsync(ct);
            }
            finally
            {
                lock (_maxByAgent)
                {
                    _inModel--;
                    _inByAgent[agent]--;
                }
            }
        };
    }

    private void AddMember(string name, int concurrency, params string[] skills) => _h.AddMember(name, concurrency, false, skills);

    private Task<(BureauEngine Engine, BureauWorkforce Workforce, IWorkforceStore Store)> StartAsync(bool dispatch) => _h.StartAsync(dispatch);

    private static Task<T> UntilAsync<T>(Func<Task<T>> read, Func<T, bool> done, string what) => WorkforceHarness.UntilAsync(read, done, what);

    private static Task<WorkforceTask> FinishedAsync(IWorkforceStore store, string id) =>
        UntilAsync(async () => (await store.GetAsync(id))!, t => t.IsFinished, $"task {id} finished");

    [Fact]
    public async Task Submit_RoutesByTheSkill_AndTheTaskFollowsItsRunToSucceeded()
    {
        UseHoldingModel(hold: false);
        AddMember("billing", 1, "billing");
        AddMember("technical", 1, "technical", "outage");
        var (engine, workforce, store) = await StartAsync(dispatch: true);

        var sent = await workforce.SubmitAsync(new WorkforceTaskRequest("outage", "the site is down", "t1", "api", "alice"));
        Assert.True(sent.Created);
        Assert.Equal(WorkforceTaskStatus.Queued, sent.Task.Status); // durable in the inbox before it is routed

        var task = await FinishedAsync(store, "t1");
        Assert.Equal((WorkforceTaskStatus.Succeeded, "technical", "done: the site is down"), (task.Status, task.Agent, task.Output));
        var run = (await engine.GetRunAsync(task.RunId!))!;
        Assert.Equal(("technical", RunStatus.Succeeded, "workforce:t1", "alice"), (run.Agent, run.Status, run.IdempotencyKey, run.Actor));
    }

    [Fact]
    public async Task Submit_AnUnknownSkill_IsRefusedNamingTheSkills_AndNothingIsWritten()
    {
        UseHoldingModel(hold: false);
        AddMember("billing", 1, "billing");
        var (_, workforce, store) = await StartAsync(dispatch: false);

        var ex = await Assert.ThrowsAsync<UnknownSkillException>(() => workforce.SubmitAsync(new WorkforceTaskRequest("biling", "refund please", "t1")));
        Assert.Contains("did you mean 'billing'", ex.Message);
        await Assert.ThrowsAsync<ArgumentException>(() => workforce.SubmitAsync(new WorkforceTaskRequest("billing", "  ", "t1")));
        await Assert.ThrowsAsync<ArgumentException>(() => workforce.SubmitAsync(new WorkforceTaskRequest("billing", "refund", "bad id with spaces")));
        Assert.Null(await store.GetAsync("t1"));
        Assert.Empty(await store.ListAsync(WorkforceTaskStatus.Queued, 10));
    }

    [Fact]
    public async Task Dispatch_GoesToTheLeastLoadedMemberWithTheSkill_AndQueuesBeyondEveryLimit()
    {
        UseHoldingModel(hold: true);
        AddMember("ann", 2, "billing");
        AddMember("bob", 2, "billing", "technical");
        AddMember("cid", 3, "technical");
        var (_, workforce, store) = await StartAsync(dispatch: false);

        for (var i = 1; i <= 5; i++) await workforce.SubmitAsync(new WorkforceTaskRequest("billing", $"invoice question {i}", $"b{i}"));
        await workforce.SubmitAsync(new WorkforceTaskRequest("technical", "login fails", "t1"));
        await workforce.PassAsync(CancellationToken.None);

        // billing alternates between ann and bob (least loaded first) until both are at 2; the fifth waits in the inbox.
        var tasks = new Dictionary<string, WorkforceTask>();
        foreach (var id in new[] { "b1", "b2", "b3", "b4", "b5", "t1" }) tasks[id] = (await store.GetAsync(id))!;
        Assert.Equal(["ann", "bob", "ann", "bob"], new[] { "b1", "b2", "b3", "b4" }.Select(id => tasks[id].Agent));
        Assert.Equal((WorkforceTaskStatus.Queued, (string?)null), (tasks["b5"].Status, tasks["b5"].Agent));
        Assert.Equal("cid", tasks["t1"].Agent); // bob is full: the technical task goes to cid, though bob has the skill

        var status = await workforce.StatusAsync();
        Assert.Equal((1, 5), (status.Queued, status.InProgress));
        var byName = status.Agents.ToDictionary(a => a.Name);
        Assert.Equal((2, 2, 1), (byName["ann"].InProgress, byName["ann"].Concurrency, byName["ann"].Inbox));
        Assert.Equal((2, 1), (byName["bob"].InProgress, byName["bob"].Inbox)); // bob could take the queued billing task
        Assert.Equal((1, 0), (byName["cid"].InProgress, byName["cid"].Inbox));

        // When the runs finish, the dispatcher gives the queued task to whoever has room.
        _release.SetResult();
        _h.StartDispatching(workforce);
        var b5 = await FinishedAsync(store, "b5");
        Assert.Equal(WorkforceTaskStatus.Succeeded, b5.Status);
        Assert.Contains(b5.Agent, new[] { "ann", "bob" });
    }

    [Fact]
    public async Task Dispatch_NeverRunsAMemberBeyondItsConcurrencyLimit()
    {
        UseHoldingModel(hold: false);
        AddMember("solo", 1, "billing");
        AddMember("pair", 2, "technical");
        var (_, workforce, store) = await StartAsync(dispatch: true);

        for (var i = 0; i < 6; i++)
        {
            await workforce.SubmitAsync(new WorkforceTaskRequest("billing", $"b {i}", $"b{i}"));
            await workforce.SubmitAsync(new WorkforceTaskRequest("technical", $"t {i}", $"t{i}"));
        }
        for (var i = 0; i < 6; i++)
        {
            Assert.Equal(WorkforceTaskStatus.Succeeded, (await FinishedAsync(store, $"b{i}")).Status);
            Assert.Equal(WorkforceTaskStatus.Succeeded, (await FinishedAsync(store, $"t{i}")).Status);
        }
        lock (_maxByAgent)
        {
            Assert.Equal(1, _maxByAgent["solo"]);
            Assert.InRange(_maxByAgent["pair"], 1, 2);
        }
        var loads = (await store.LoadsAsync()).ToDictionary(l => l.Agent);
        Assert.Equal((0, 6L), (loads["solo"].InProgress, loads["solo"].Finished));
    }

    [Fact]
    public async Task ATaskSubmittedTwiceAndDispatchedByRacingDispatchers_HasExactlyOneRun()
    {
        UseHoldingModel(hold: false);
        AddMember("ann", 2, "billing");
        AddMember("bob", 2, "billing");
        var (engine, workforce, store) = await StartAsync(dispatch: false);
        // A second dispatcher over the same database (its own store connection), as a second host would be.
        var otherStore = new SqliteWorkforceStore(new SqliteStoreOptions { Path = _f.DbPath });
        await otherStore.InitializeAsync();
        var other = new BureauWorkforce(engine, otherStore, null, TimeProvider.System, NullLoggerFactory.Instance);

        const int tasks = 12;
        var submissions = Enumerable.Range(0, tasks).SelectMany(i => Enumerable.Range(0, 3).Select(_ => (i, w: _ % 2 == 0 ? workforce : other)))
            .Select(x => Task.Run(() => x.w.SubmitAsync(new WorkforceTaskRequest("billing", $"question {x.i}", $"q{x.i}"))));
        var results = await Task.WhenAll(submissions);
        Assert.Equal(tasks, results.Count(r => r.Created)); // each id added once

        // Racing passes until everything is done: each pass may assign, start and finish tasks.
        var deadline = DateTime.UtcNow + Deadline;
        while ((await store.ListAsync(WorkforceTaskStatus.Queued, 100)).Count + (await store.ListAsync(WorkforceTaskStatus.Assigned, 100)).Count
            + (await store.ListAsync(WorkforceTaskStatus.Running, 100)).Count > 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "tasks did not finish in time");
            await Task.WhenAll(Enumerable.Range(0, 4).Select(i => Task.Run(() => (i % 2 == 0 ? workforce : other).PassAsync(CancellationToken.None))));
            var loads = await store.LoadsAsync();
            Assert.All(loads, l => Assert.InRange(l.InProgress, 0, 2)); // never beyond a member's limit, even with two dispatchers
            await Task.Delay(20);
        }

        var runs = await engine.ListRunsAsync(new RunQuery { Limit = 1000 });
        Assert.Equal(tasks, runs.Items.Count); // one run per task, none twice
        Assert.Equal(tasks, runs.Items.Select(r => r.IdempotencyKey).Distinct().Count());
        for (var i = 0; i < tasks; i++)
        {
            var t = (await store.GetAsync($"q{i}"))!;
            Assert.Equal(WorkforceTaskStatus.Succeeded, t.Status);
            Assert.Equal(t.RunId, Assert.Single(runs.Items, r => r.IdempotencyKey == $"workforce:q{i}").Id);
        }
    }

    [Fact]
    public async Task Delegate_AMemberHandsATaskToAnotherThroughTheBoard_OnceForItsKey()
    {
        _f.UseModel((messages, turn) => (messages[0].Text, turn) switch
        {
            ("triage", 1) => FakeModel.Call("delegate", """{"skill":"billing","task":"refund order 7 for alice"}""", "c1"),
            ("triage", _) => FakeModel.Text("passed on: " + FakeModel.LastToolResult(messages)),
            _ => FakeModel.Text("refunded order 7"),
        });
        AddMember("triage", 1, "triage");
        _f.Definitions.Workforce.Add(new WorkforceMember { Name = "triage", Skills = ["triage"], CanDelegate = true });
        AddMember("billing", 1, "billing");
        var (engine, workforce, store) = await StartAsync(dispatch: true);
        Assert.Contains("delegate", engine.Definitions.Agents["triage"].Tools); // the built-in tool of a member that delegates
        Assert.DoesNotContain("delegate", engine.Definitions.Agents["billing"].Tools);

        await workforce.SubmitAsync(new WorkforceTaskRequest("triage", "alice wants her money back for order 7", "t1", "api", "alice"));
        var t1 = await FinishedAsync(store, "t1");
        Assert.Equal(WorkforceTaskStatus.Succeeded, t1.Status);
        var intent = (await engine.ReadJournalAsync(t1.RunId!)).Single(r => r.Entry is ToolIntent);
        var delegatedId = $"d-{t1.RunId}:{intent.N}";
        Assert.Contains(delegatedId, t1.Output);

        var delegated = await FinishedAsync(store, delegatedId);
        Assert.Equal((WorkforceTaskStatus.Succeeded, "billing", "billing", "agent:triage", "alice", "refunded order 7"),
            (delegated.Status, delegated.Skill, delegated.Agent, delegated.Source, delegated.Actor, delegated.Output));
        var boards = _f.Services.GetRequiredService<IBoardStore>();
        var onBoard = await UntilAsync(async () => (await boards.ReadAsync(WorkforceDefinition.DefaultBoard)).Tasks.Single(),
            t => t.Status == BoardTaskStatus.Done, "the delegated task done on the board");
        Assert.Equal((delegatedId, "triage", "billing", "refunded order 7"), (onBoard.Id, onBoard.CreatedBy, onBoard.ClaimedBy, onBoard.Note));

        // The call re-run with the same key (after a crash) adds nothing.
        var again = await workforce.DelegateAsync(t1.RunId!, $"{t1.RunId}:{intent.N}", "billing", "refund order 7 for alice", CancellationToken.None);
        Assert.False(again.Created);
        Assert.Equal(2, (await engine.ListRunsAsync(new RunQuery { Limit = 10 })).Items.Count);
    }
}
