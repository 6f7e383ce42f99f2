using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Bureau.Governance;
using Npgsql;
using Xunit;

namespace Bureau.Storage.PostgreSql.Tests;

/// <summary>
/// Two nodes (engines with their own service provider, pool and node id) on one PostgreSQL database, as
/// <c>AddBureau().UsePostgreSqlStorage(...)</c> composes them: a watcher on one sees every event of a run the other
/// executes, in order and once, also across a lost LISTEN connection; a cancel asked of one stops the executor on the
/// other; an approval or an in-doubt resolution answered on one lets the run go on.
/// </summary>
public sealed class ClusterEventsTests : IAsyncDisposable
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);
    private readonly PostgreSqlTestDatabase _db = new();
    private readonly List<ServiceProvider> _providers = [];
    // The "gate" tool waits here until the test opens it (or its call is canceled).
    private readonly TaskCompletionSource _gate = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _gateEntered = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _gateCanceled = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _refunds;

    public async ValueTask DisposeAsync()
    {
        _gate.TrySetResult();
        foreach (var p in _providers) await p.DisposeAsync();
        await _db.DisposeAsync();
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private BureauDefinitions Definitions()
    {
        var d = new BureauDefinitions();
        // Turn 1 and 2 look keys up, turn 3 passes the gate, turn 4 answers.
        d.Add(new ScriptedModelDefinition
        {
            Name = "scripted",
            Rules =
            [
                new ScriptRule
                {
                    When = new ScriptCondition { TurnFrom = 1, TurnTo = 2 },
                    Calls = [new ScriptToolCall { Tool = "lookup", Arguments = new JsonObject { ["key"] = "{{input}}-{{turnIndex}}" } }],
                },
                new ScriptRule { When = new ScriptCondition { TurnFrom = 3, TurnTo = 3 }, Calls = [new ScriptToolCall { Tool = "gate", Arguments = new JsonObject { ["key"] = "g" } }] },
                new ScriptRule { When = new ScriptCondition { TurnFrom = 4 }, Reply = "done {{input}}" },
            ],
        });
        d.Add(new ScriptedModelDefinition
        {
            Name = "refunder",
            Rules =
            [
                new ScriptRule { When = new ScriptCondition { TurnFrom = 1, TurnTo = 1 }, Calls = [new ScriptToolCall { Tool = "refund", Arguments = new JsonObject { ["key"] = "big" } }] },
                new ScriptRule { When = new ScriptCondition { TurnFrom = 2 }, Reply = "refunded" },
            ],
        });
        var keyed = System.Text.Json.JsonDocument.Parse("""{"type":"object","properties":{"key":{"type":"string"}},"required":["key"]}""").RootElement.Clone();
        d.Add(new FunctionToolDefinition
        {
            Name = "lookup", Effect = ToolEffect.Read, Description = "Look a key up", Parameters = keyed,
            Function = AIFunctionFactory.Create((string key) => "value-" + key, "lookup"),
        });
        d.Add(new FunctionToolDefinition
        {
            Name = "gate", Effect = ToolEffect.Read, Description = "Wait for the gate", Parameters = keyed,
            Function = AIFunctionFactory.Create(async (string key, CancellationToken ct) =>
            {
                _gateEntered.TrySetResult();
                try
                {
                    await _gate.Task.WaitAsync(ct);
                }
                catch (OperationCanceledException)
                {
                    _gateCanceled.TrySetResult();
                    throw;
                }
                return "passed";
            }, "gate"),
        });
        d.Add(new FunctionToolDefinition
        {
            Name = "refund", Effect = ToolEffect.Write, Description = "Refund", Parameters = keyed,
            Function = AIFunctionFactory.Create((string key) => { Interlocked.Increment(ref _refunds); return "refunded " + key; }, "refund"),
        });
        d.Add(new AgentDefinition { Name = "loop", Model = "scripted", Tools = ["lookup", "gate"], Instructions = "Look keys up, pass the gate, then say done." });
        d.Add(new AgentDefinition { Name = "refunds", Model = "refunder", Tools = ["refund"], Instructions = "Refund." });
        d.Policies = new PolicySet
        {
            Rules =
            [
                new PolicyRule
                {
                    Name = "refunds-need-a-lead", Action = PolicyAction.RequireApproval, Reason = "refunds need a lead",
                    When = new PolicyConditions { Tools = ["refund"] },
                    Approval = new ApprovalSpec { Levels = [new(["leads"], null)] },
                },
            ],
        };
        return d;
    }

    private async Task<BureauEngine> NodeAsync(string node, bool start = true)
    {
        var services = new ServiceCollection();
        services.AddBureau(o =>
        {
            o.NodeId = node;
            o.ClaimLease = TimeSpan.FromSeconds(30);
        }).AddDefinitions(Definitions()).UsePostgreSqlStorage(o =>
        {
            o.ConnectionString = _db.ConnectionString;
            o.Schema = _db.Schema;
        });
        var provider = services.BuildServiceProvider();
        _providers.Insert(0, provider);
        await provider.GetRequiredService<IRunStore>().InitializeAsync(Ct);
        var engine = provider.GetRequiredService<BureauEngine>();
        Assert.IsType<PostgreSqlRunEventBus>(engine.Events);
        if (start) await engine.StartAsync(Ct);
        return engine;
    }

    /// <summary>Collects what a bus delivers for one run.</summary>
    private sealed class Collector
    {
        private readonly ConcurrentQueue<JournalRecord> _records = new();
        private readonly TaskCompletionSource _finished = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public void On(RunEvent e)
        {
            if (e.Record is not { } r) return;
            _records.Enqueue(r);
            if (r.Entry is RunFinished) _finished.TrySetResult();
        }

        public Task Finished => _finished.Task;

        public List<long> Steps => [.. _records.Select(r => r.N)];

        public List<string> Kinds => [.. _records.Select(r => r.Entry.Kind)];
    }

    private static async Task<long> RunningVersionAsync(BureauEngine engine, string id)
    {
        var run = await engine.GetRunAsync(id, Ct);
        return run!.Version;
    }

    [Fact]
    public async Task AWatcherOnNodeB_SeesEveryEventOfARunExecutingOnNodeA_InOrderAndOnce()
    {
        var a = await NodeAsync("node-a");
        var b = await NodeAsync("node-b", start: false); // watches only: every run executes on a
        var id = (await a.SubmitAsync(new RunRequest("loop", "7"), Ct)).Run.Id;
        await _gateEntered.Task.WaitAsync(Patience, Ct);

        var raw = new Collector();
        using var sub = b.Events.Subscribe(id, raw.On);
        await ((PostgreSqlRunEventBus)b.Events).Listening.WaitAsync(Patience, Ct);
        var subscribedAt = await RunningVersionAsync(b, id);
        var watched = new List<JournalRecord>();
        var watching = Task.Run(async () =>
        {
            await foreach (var e in b.WatchAsync(id, cancellationToken: Ct))
            {
                if (e.Record is { } r) watched.Add(r);
            }
        }, Ct);

        _gate.TrySetResult();
        var run = await a.WaitAsync(id).WaitAsync(Patience, Ct);
        Assert.Equal((RunStatus.Succeeded, "done 7"), (run.Status, run.Output));
        await raw.Finished.WaitAsync(Patience, Ct);
        await watching.WaitAsync(Patience, Ct);

        var journal = await b.ReadJournalAsync(id, 0, Ct);
        // The endpoint's stream (WatchAsync): the whole journal, in order, once.
        Assert.Equal(journal.Select(j => (j.N, j.Entry.Kind)), watched.Select(j => (j.N, j.Entry.Kind)));
        // The bus alone: every step committed after the subscription, in order, none twice, none missing.
        var steps = raw.Steps;
        Assert.NotEmpty(steps);
        Assert.True(steps[0] <= subscribedAt + 1, $"the first step delivered was {steps[0]}, the run was at {subscribedAt} when subscribed");
        Assert.Equal(Enumerable.Range((int)steps[0], (int)(run.Version - steps[0] + 1)).Select(n => (long)n), steps);
        Assert.Equal(journal.Where(j => j.N >= steps[0]).Select(j => j.Entry.Kind), raw.Kinds);
    }

    [Fact]
    public async Task AWatcherOfEveryRunOnNodeB_SeesRunsOfNodeAStartAndFinish()
    {
        var a = await NodeAsync("node-a");
        var b = await NodeAsync("node-b", start: false);
        var lifecycle = new ConcurrentQueue<(string Run, long Step, string Kind)>();
        using var sub = b.Events.SubscribeAll(e => { if (e.Record is { } r) lifecycle.Enqueue((e.RunId, r.N, r.Entry.Kind)); });
        await ((PostgreSqlRunEventBus)b.Events).Listening.WaitAsync(Patience, Ct);
        _gate.TrySetResult();

        var ids = new List<string>();
        for (var i = 0; i < 5; i++) ids.Add((await a.SubmitAsync(new RunRequest("loop", i.ToString(System.Globalization.CultureInfo.InvariantCulture)), Ct)).Run.Id);
        foreach (var id in ids) Assert.Equal(RunStatus.Succeeded, (await a.WaitAsync(id).WaitAsync(Patience, Ct)).Status);

        await WaitUntilAsync(() => ids.All(id => lifecycle.Any(l => l.Run == id && l.Kind == RunFinished.KindName)));
        foreach (var id in ids)
        {
            // The appends with a lifecycle record (not every step), in order, each once.
            var steps = lifecycle.Where(l => l.Run == id).Select(l => (l.Step, l.Kind)).ToList();
            Assert.Equal((1L, RunStarted.KindName), steps[0]);
            Assert.Equal(RunFinished.KindName, steps[^1].Kind);
            Assert.Equal(steps.Select(s => s.Step).Order(), steps.Select(s => s.Step));
            Assert.Equal(steps.Count, steps.Select(s => s.Step).Distinct().Count());
            var journal = await b.ReadJournalAsync(id, 0, Ct);
            Assert.All(steps, s => Assert.Equal(journal[(int)s.Step - 1].Entry.Kind, s.Kind));
            Assert.True(steps.Count < journal.Count, $"{steps.Count} of {journal.Count} steps were delivered: only the appends with a lifecycle record should be");
        }
    }

    [Fact]
    public async Task AWatcherWhoseListenConnectionWasCut_CatchesUpFromTheLastStepDelivered()
    {
        var a = await NodeAsync("node-a");
        var b = await NodeAsync("node-b", start: false);
        var id = (await a.SubmitAsync(new RunRequest("loop", "9"), Ct)).Run.Id;
        await _gateEntered.Task.WaitAsync(Patience, Ct);
        var bus = (PostgreSqlRunEventBus)b.Events;
        var raw = new Collector();
        using var sub = b.Events.Subscribe(id, raw.On);
        await bus.Listening.WaitAsync(Patience, Ct);

        // Cut b's LISTEN connection and keep it away until the run has finished on a: every notice of its end is lost.
        var reconnect = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        bus.BeforeReconnect = () => reconnect.Task;
        await TerminateListenerAsync(bus);
        await WaitUntilAsync(() => !bus.Listening.IsCompleted);
        _gate.TrySetResult();
        var run = await a.WaitAsync(id).WaitAsync(Patience, Ct);
        Assert.Equal(RunStatus.Succeeded, run.Status);
        Assert.False(raw.Finished.IsCompleted);

        reconnect.TrySetResult();
        await raw.Finished.WaitAsync(Patience, Ct);
        Assert.True(bus.Reconnects >= 1);
        var steps = raw.Steps;
        Assert.Equal(Enumerable.Range((int)steps[0], (int)(run.Version - steps[0] + 1)).Select(n => (long)n), steps);
    }

    [Fact]
    public async Task ACancelAskedOfNodeB_StopsTheExecutorOnNodeA_WhichJournalsIt()
    {
        var a = await NodeAsync("node-a");
        var b = await NodeAsync("node-b");
        b.RemoteCancelAnswerWait = Patience; // a loaded machine may answer late; without an answer b would journal the cancel itself
        var id = (await a.SubmitAsync(new RunRequest("loop", "3"), Ct)).Run.Id;
        await _gateEntered.Task.WaitAsync(Patience, Ct);

        var status = await b.CancelAsync(id, actor: "ops", reason: "not needed", Ct);

        Assert.Equal(RunStatus.Canceled, status);
        await _gateCanceled.Task.WaitAsync(Patience, Ct); // the tool call on a was stopped, not left to finish
        var journal = await b.ReadJournalAsync(id, 0, Ct);
        var canceled = Assert.Single(journal.Select(j => j.Entry).OfType<RunCanceled>());
        Assert.Equal(("ops", "not needed"), (canceled.Actor, canceled.Reason));
        Assert.Contains("tool 'gate'", Assert.Single(canceled.InFlight)); // journaled by the executor on a, which knew what it stopped
        Assert.IsType<RunFinished>(journal[^1].Entry);
        Assert.DoesNotContain(journal.Select(j => j.Entry), e => e is ToolCompleted { Tool: "gate" });
        Assert.Equal(RunStatus.Canceled, (await a.GetRunAsync(id, Ct))!.Status);
    }

    [Fact]
    public async Task AnApprovalGivenOnNodeB_LetsARunThatWaitedOnNodeAGoOn_AndNodeASeesItFinish()
    {
        var a = await NodeAsync("node-a");
        var b = await NodeAsync("node-b");
        var id = (await a.SubmitAsync(new RunRequest("refunds", "please"), Ct)).Run.Id;
        var waiting = await a.WaitAsync(id).WaitAsync(Patience, Ct);
        var wait = Assert.IsType<ApprovalWait>(waiting.WaitingFor);
        var watchedOnA = Task.Run(async () =>
        {
            var kinds = new List<string>();
            await foreach (var e in a.WatchAsync(id, waiting.Version, cancellationToken: Ct)) kinds.Add(e.Record!.Entry.Kind);
            return kinds;
        }, Ct);

        await b.DecideApprovalAsync(id, wait.Step, new ApprovalDecision(true, "ok"), "lea", ["leads"], Ct);

        var kinds = await watchedOnA.WaitAsync(Patience, Ct);
        Assert.Equal(RunFinished.KindName, kinds[^1]);
        var run = await a.GetRunAsync(id, Ct);
        Assert.Equal((RunStatus.Succeeded, "refunded"), (run!.Status, run.Output));
        Assert.Equal(1, _refunds);
    }

    [Fact]
    public async Task AnInDoubtWriteResolvedOnNodeB_LetsTheRunGoOnWithoutRepeatingTheWrite()
    {
        var a = await NodeAsync("node-a", start: false);
        // What a node that died mid-call leaves: the intent of a write and no result.
        await a.Store.SubmitAsync(new NewRun { Id = "run-doubt", Agent = "refunds", Input = "in", Started = new RunStarted("refunds", "in"), CreatedAt = DateTimeOffset.UtcNow }, Ct);
        await a.Store.AppendAsync(new AppendRequest
        {
            RunId = "run-doubt", ExpectedVersion = 1, At = DateTimeOffset.UtcNow,
            Entries =
            [
                new ModelResponded(1, "refunder", "scripted", null, [new ToolCallRecord("c1", "refund", """{"key":"big"}""")], new UsageRecord(1, 1), null, 2, 1),
                new ToolIntent("c1", "refund", """{"key":"big"}""", ToolEffect.Write, "run-doubt:3"),
            ],
            Update = new RunUpdate { Status = RunStatus.Running },
        }, Ct);
        await a.StartAsync(Ct);
        var waiting = await a.WaitAsync("run-doubt").WaitAsync(Patience, Ct);
        var doubt = Assert.IsType<InDoubtWait>(waiting.WaitingFor);
        var b = await NodeAsync("node-b");
        var watchedOnA = Task.Run(async () =>
        {
            var kinds = new List<string>();
            await foreach (var e in a.WatchAsync("run-doubt", waiting.Version, cancellationToken: Ct)) kinds.Add(e.Record!.Entry.Kind);
            return kinds;
        }, Ct);

        await b.ResolveAsync("run-doubt", doubt.Step, StepResolution.Done, "refunded big", "ops", Ct);

        var kinds = await watchedOnA.WaitAsync(Patience, Ct);
        Assert.Equal(StepResolved.KindName, kinds[0]);
        Assert.Equal(RunFinished.KindName, kinds[^1]);
        var run = await b.GetRunAsync("run-doubt", Ct);
        Assert.Equal((RunStatus.Succeeded, "refunded"), (run!.Status, run.Output));
        Assert.Equal(0, _refunds); // resolved as done: the write is not made again
    }

    private async Task TerminateListenerAsync(PostgreSqlRunEventBus bus)
    {
        await using var c = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(_db.ConnectionString) { Pooling = false }.ConnectionString);
        await c.OpenAsync(Ct);
        await using var cmd = new NpgsqlCommand("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1", c);
        cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = bus.ListenerName });
        Assert.Equal(1L, await cmd.ExecuteScalarAsync(Ct));
    }

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + Patience;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "the condition did not hold within a minute");
            await Task.Delay(50, Ct);
        }
    }
}
