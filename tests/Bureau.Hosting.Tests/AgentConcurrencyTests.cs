using System.Net;
using System.Text.Json.Nodes;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Bureau.Hosting.Tests;

/// <summary>A <see cref="GateModel"/> that also counts the calls in flight at once (the executions of its agent's runs).</summary>
public sealed class MeteredGateModel : IChatClient
{
    private readonly GateModel _gate = new();
    private int _inFlight;
    private int _most;

    /// <summary>The most calls that were in flight at the same time.</summary>
    public int MostAtOnce => Volatile.Read(ref _most);

    public void Open(string input) => _gate.Open(input);

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var now = Interlocked.Increment(ref _inFlight);
        int seen;
        while (now > (seen = Volatile.Read(ref _most)) && Interlocked.CompareExchange(ref _most, now, seen) != seen) { }
        try
        {
            return await _gate.GetResponseAsync(messages, options, cancellationToken);
        }
        finally
        {
            Interlocked.Decrement(ref _inFlight);
        }
    }

    public IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
        throw new NotSupportedException();

    public object? GetService(Type serviceType, object? serviceKey = null) => null;

    public void Dispose() { }
}

/// <summary>Per-agent concurrency limits: an agent's runs beyond its limit wait in the queue, other agents' runs go on.</summary>
public sealed class AgentConcurrencyTests : IAsyncDisposable
{
    private readonly TestHost _host = new();
    private readonly MeteredGateModel _one = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask DisposeAsync() => _host.DisposeAsync();

    private async Task StartedAsync(string runId)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(20));
        try
        {
            await foreach (var e in _host.Engine.WatchAsync(runId, includeActivity: true, cancellationToken: timeout.Token))
                if (e.Activity == "model.started") return;
        }
        catch (OperationCanceledException) when (!Ct.IsCancellationRequested)
        {
        }
        throw new TimeoutException($"run {runId} did not call its model within 20 s; it is {(await _host.Engine.GetRunAsync(runId, Ct))?.Status}");
    }

    private async Task<RunStatus> StatusAsync(string runId) => (await _host.Engine.GetRunAsync(runId, Ct))!.Status;

    private async Task<DateTimeOffset> FirstStepAtAsync(string runId) =>
        (await _host.Engine.ReadJournalAsync(runId, cancellationToken: Ct)).Skip(1).First().At;

    private async Task<(string A1, string A2, string A3, string B1, string B2)> SubmitAsync()
    {
        var a1 = await _host.Engine.SubmitAsync(new RunRequest("one", "a1"), Ct);
        var a2 = await _host.Engine.SubmitAsync(new RunRequest("one", "a2"), Ct);
        var a3 = await _host.Engine.SubmitAsync(new RunRequest("one", "a3"), Ct);
        var b1 = await _host.Engine.SubmitAsync(new RunRequest("slow", "b1"), Ct);
        var b2 = await _host.Engine.SubmitAsync(new RunRequest("slow", "b2"), Ct);
        return (a1.Run.Id, a2.Run.Id, a3.Run.Id, b1.Run.Id, b2.Run.Id);
    }

    /// <summary>Runs of "one" (limit 1) one after another in arrival order; runs of "slow" take the other slots meanwhile.</summary>
    private async Task AssertOneAtATimeAsync((string A1, string A2, string A3, string B1, string B2) runs)
    {
        // Global limit 4: a1 executes, a2 and a3 wait, and the free slots go to b1 and b2 although they came later.
        await StartedAsync(runs.A1);
        await StartedAsync(runs.B1);
        await StartedAsync(runs.B2);
        Assert.Equal((RunStatus.Queued, RunStatus.Queued), (await StatusAsync(runs.A2), await StatusAsync(runs.A3)));

        _one.Open("a1");
        var first = await _host.WaitAsync(runs.A1);
        await StartedAsync(runs.A2);
        Assert.Equal(RunStatus.Queued, await StatusAsync(runs.A3));
        _one.Open("a2");
        var second = await _host.WaitAsync(runs.A2);
        await StartedAsync(runs.A3);
        _one.Open("a3");
        var third = await _host.WaitAsync(runs.A3);

        Assert.Equal([RunStatus.Succeeded, RunStatus.Succeeded, RunStatus.Succeeded], new[] { first.Status, second.Status, third.Status });
        Assert.Equal(1, _one.MostAtOnce);
        // From the journals: each run's first step came after the previous one ended.
        Assert.True(await FirstStepAtAsync(runs.A2) >= first.UpdatedAt, "a2 started before a1 ended");
        Assert.True(await FirstStepAtAsync(runs.A3) >= second.UpdatedAt, "a3 started before a2 ended");

        // The other agent was never held up: both its runs are still executing, and finish when let go.
        Assert.Equal((RunStatus.Running, RunStatus.Running), (await StatusAsync(runs.B1), await StatusAsync(runs.B2)));
        _host.Gate.Open("b1");
        _host.Gate.Open("b2");
        Assert.Equal(RunStatus.Succeeded, (await _host.WaitAsync(runs.B1)).Status);
        Assert.Equal(RunStatus.Succeeded, (await _host.WaitAsync(runs.B2)).Status);
    }

    [Fact]
    public async Task MaxConcurrentRuns_FromTheAgent_ItsRunsNeverOverlap_OtherAgentsProceed()
    {
        await _host.StartAsync(b =>
        {
            b.Services.Configure<BureauOptions>(o => o.MaxConcurrentRuns = 4);
            b.AddChatClient("metered", _one).AddAgent(new AgentDefinition { Name = "one", Model = "metered", MaxConcurrentRuns = 1 });
        });
        await AssertOneAtATimeAsync(await SubmitAsync());
    }

    [Fact]
    public async Task AgentConcurrencyLimits_FromConfiguration_OverrideTheManifest()
    {
        await _host.StartAsync(b =>
        {
            b.Services.Configure<BureauOptions>(o =>
            {
                o.MaxConcurrentRuns = 4;
                o.AgentConcurrencyLimits["one"] = 1;
            });
            b.AddChatClient("metered", _one).AddAgent(new AgentDefinition { Name = "one", Model = "metered", MaxConcurrentRuns = 3 });
        });
        await AssertOneAtATimeAsync(await SubmitAsync());
    }

    [Fact]
    public async Task MaxConcurrentRuns_RunsFoundQueuedAtStart_AlsoOneAtATime()
    {
        // Runs accepted before a restart and never executed: the new host claims them from the store (their agent read there).
        await _host.StartAsync(b =>
        {
            b.Services.Configure<BureauOptions>(o =>
            {
                o.MaxConcurrentRuns = 1;
                o.ShutdownGrace = TimeSpan.Zero;
            });
            b.AddChatClient("metered", _one).AddAgent(new AgentDefinition { Name = "one", Model = "metered", MaxConcurrentRuns = 1 });
        });
        var hold = await _host.Engine.SubmitAsync(new RunRequest("slow", "hold"), Ct);
        await StartedAsync(hold.Run.Id);
        var runs = await SubmitAsync(); // all queued behind "hold"
        await _host.Engine.StopAsync(Ct); // nothing new starts from here on
        _host.Gate.Open("hold");
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (_host.Engine.ActiveRuns > 0)
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"run {hold.Run.Id} ('hold') was still executing 20 s after its gate opened");
            await Task.Delay(20, Ct);
        }
        foreach (var id in new[] { runs.A1, runs.A2, runs.A3, runs.B1, runs.B2 }) Assert.Equal(RunStatus.Queued, await StatusAsync(id));

        await _host.RestartAsync(b =>
        {
            b.Services.Configure<BureauOptions>(o => o.MaxConcurrentRuns = 4);
            b.AddChatClient("metered", _one).AddAgent(new AgentDefinition { Name = "one", Model = "metered", MaxConcurrentRuns = 1 });
        });
        await AssertOneAtATimeAsync(runs);
    }

    [Fact]
    public async Task MaxConcurrentRuns_ARunWaitingForAnApproval_HoldsNoSlot()
    {
        var refunds = 0;
        await _host.StartAsync(b => b
            .AddModel(new ScriptedModelDefinition
            {
                Name = "script",
                Rules =
                [
                    new ScriptRule { When = new ScriptCondition { TurnFrom = 1, TurnTo = 1 }, Calls = [new ScriptToolCall { Tool = "refund", Arguments = new JsonObject { ["amount"] = 250 } }] },
                    new ScriptRule { Reply = "done: {{last}}" },
                ],
            })
            .AddTool(AIFunctionFactory.Create((int amount) => { Interlocked.Increment(ref refunds); return "refunded " + amount; }, "refund"), ToolEffect.Write)
            .AddAgent(new AgentDefinition { Name = "refunder", Model = "script", Tools = ["refund"], MaxConcurrentRuns = 1 })
            .AddPolicy(new PolicyRule
            {
                Name = "refunds", When = new PolicyConditions { Tools = ["refund"] }, Action = PolicyAction.RequireApproval, Reason = "a person checks refunds",
                Approval = new ApprovalSpec { Levels = [new(["support-leads"], TimeSpan.FromMinutes(30))] },
            }));

        // Limit 1: the second run reaches its approval only if the first one, waiting for its own, let the slot go.
        var first = await _host.Engine.SubmitAsync(new RunRequest("refunder", "order 1"), Ct);
        var second = await _host.Engine.SubmitAsync(new RunRequest("refunder", "order 2"), Ct);
        var waiting = new[] { await _host.WaitAsync(first.Run.Id), await _host.WaitAsync(second.Run.Id) };
        Assert.All(waiting, r => Assert.Equal(RunStatus.Waiting, r.Status));
        Assert.Equal(0, Volatile.Read(ref refunds));

        foreach (var run in waiting)
        {
            using var res = await _host.Client.SendAsync(Http.Json(HttpMethod.Post, $"/v1/approvals/{run.Id}:{run.WaitingFor!.Step}/decision", """{"decision":"approve"}"""), Ct);
            Assert.Equal(HttpStatusCode.Accepted, res.StatusCode);
        }
        Assert.Equal(RunStatus.Succeeded, (await _host.WaitAsync(first.Run.Id)).Status);
        Assert.Equal(RunStatus.Succeeded, (await _host.WaitAsync(second.Run.Id)).Status);
        Assert.Equal(2, Volatile.Read(ref refunds));
    }

    [Fact]
    public void Options_BadAgentConcurrencyLimit_NamesTheKey()
    {
        var options = new BureauOptions { MaxConcurrentRunsPerAgent = 0 };
        options.AgentConcurrencyLimits["triage"] = -1;
        var problems = options.Problems().ToList();
        Assert.Contains("Bureau:MaxConcurrentRunsPerAgent must be at least 1 (is 0)", problems);
        Assert.Contains("Bureau:AgentConcurrencyLimits:triage must be at least 1 (is -1)", problems);
    }
}
