using Bureau.Replay;
using Bureau.Tests.Support;
using Xunit;

namespace Bureau.Tests.Replay;

/// <summary>
/// The what-if of <c>POST /v1/runs/{id}/whatif</c> (decision 0043): a fork of a finished run goes on after step N with
/// another model, in its own throwaway store, without write tools unless allowed; a fork stopped by its caller answers
/// with the steps it took.
/// </summary>
public sealed class RunForkerTests : IAsyncDisposable
{
    private readonly EngineFixture _f = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask DisposeAsync() => _f.DisposeAsync();

    /// <summary>A finished run of agent <c>a</c> on model <c>m</c>: it refunds (a write tool), then answers.</summary>
    private async Task<(BureauEngine Engine, string Id, IReadOnlyList<JournalRecord> Journal)> RefundedRunAsync()
    {
        _f.UseModel((messages, call) => call == 0 ? FakeModel.Call("refund", """{"key":"7"}""") : FakeModel.Text("refunded"));
        _f.AddTool("refund", ToolEffect.Write);
        _f.AddAgent("a", tools: "refund");
        var engine = await _f.StartAsync();
        var id = (await engine.SubmitAsync(new RunRequest("a", "refund order 7"), Ct)).Run.Id;
        Assert.Equal(RunStatus.Succeeded, (await EngineFixture.WaitAsync(engine, id)).Status);
        return (engine, id, await engine.ReadJournalAsync(id, 0, Ct));
    }

    [Fact]
    public async Task AFork_GoesOnWithTheOtherModel_WithoutTheWriteTool_AndWritesNothingToTheHostsStore()
    {
        var (engine, id, journal) = await RefundedRunAsync();
        var other = _f.UseModel((_, _) => FakeModel.Text("no refund needed"), name: "m2");
        var refundsBefore = _f.Executions.Values.Sum();

        var fork = await new RunForker(_f.Definitions).ForkAsync(id, journal, new ForkRequest(1, "m2"), Ct);

        Assert.Equal((RunStatus.Succeeded, "no refund needed", "m2"), (fork.Run.Status, fork.Run.Output, fork.Model));
        Assert.Equal(["refund"], fork.WriteToolsLeftOut);
        Assert.Single(other.Requests); // the fork called the other model once, and went no further
        Assert.Equal(journal[0].Entry is RunStarted s ? s.Input : null, Assert.IsType<RunStarted>(fork.Journal[0].Entry).Input);
        Assert.IsType<RunFinished>(fork.Journal[^1].Entry);
        Assert.Equal(refundsBefore, _f.Executions.Values.Sum()); // the write tool never ran
        Assert.Null(await engine.GetRunAsync(fork.ForkId, Ct));   // the fork is not in the host's store
        Assert.Equal(journal.Count, (await engine.ReadJournalAsync(id, 0, Ct)).Count);
        Assert.Equal("a", _f.Definitions.Agents["a"].Name);
        Assert.Equal("m", _f.Definitions.Agents["a"].Model); // the host's agent is unchanged
    }

    [Fact]
    public async Task AForkOfARunThatRanAnHourAgo_IsNotOverItsTimeBudget_TheTimeSinceDoesNotCount()
    {
        _f.UseModel((messages, _) => messages.Any(m => m.Role == Microsoft.Extensions.AI.ChatRole.Tool) ? FakeModel.Text("refunded") : FakeModel.Call("refund", """{"key":"7"}"""));
        _f.AddTool("refund", ToolEffect.Write);
        _f.AddAgent("a", new AgentBudgets { MaxWallTime = TimeSpan.FromSeconds(60) }, tools: "refund");
        var engine = await _f.StartAsync();
        var id = (await engine.SubmitAsync(new RunRequest("a", "refund order 7"), Ct)).Run.Id;
        Assert.Equal(RunStatus.Succeeded, (await EngineFixture.WaitAsync(engine, id)).Status);
        var hourAgo = (await engine.ReadJournalAsync(id, 0, Ct)).Select(r => r with { At = r.At - TimeSpan.FromHours(1) }).ToList();
        _f.UseModel((_, _) => FakeModel.Text("no refund needed"), name: "m2");
        Assert.True(hourAgo.Count(r => r.Entry is ToolCompleted) == 1, string.Join(", ", hourAgo.Select(r => r.Entry.Kind)));
        var afterRefund = hourAgo.Single(r => r.Entry is ToolCompleted).N;

        var fork = await new RunForker(_f.Definitions).ForkAsync(id, hourAgo, new ForkRequest(afterRefund, "m2"), Ct);

        Assert.True(fork.Run.Status == RunStatus.Succeeded, $"{fork.Run.Status}: {fork.Run.Error}");
        Assert.Equal("no refund needed", fork.Run.Output);
        Assert.DoesNotContain(fork.Journal, r => r.Entry is BudgetExceeded);
    }

    [Fact]
    public async Task AFailedForkOfAnAgentThatRollsBack_FailsCleanly_WithoutTryingARollbackRun()
    {
        _f.UseModel((messages, _) => messages.Any(m => m.Role == Microsoft.Extensions.AI.ChatRole.Tool) ? FakeModel.Text("refunded") : FakeModel.Call("refund", """{"key":"7"}"""));
        _f.AddTool("refund", ToolEffect.Write);
        _f.Definitions.Add(new AgentDefinition { Name = "a", Model = "m", Instructions = "You are a test agent.", Tools = ["refund"], RollbackOnFailure = true });
        var engine = await _f.StartAsync();
        var id = (await engine.SubmitAsync(new RunRequest("a", "refund order 7"), Ct)).Run.Id;
        Assert.Equal(RunStatus.Succeeded, (await EngineFixture.WaitAsync(engine, id)).Status);
        var journal = await engine.ReadJournalAsync(id, 0, Ct);
        _f.UseModel((_, _) => throw new InvalidOperationException("the other model is broken"), new RetrySettings { MaxAttempts = 1 }, name: "broken");
        var logs = new CapturingLoggerProvider();
        using var loggers = new Microsoft.Extensions.Logging.LoggerFactory([logs]);

        var fork = await new RunForker(_f.Definitions, loggerFactory: loggers)
            .ForkAsync(id, journal, new ForkRequest(journal.Single(r => r.Entry is ToolCompleted).N, "broken"), Ct);

        Assert.Equal(RunStatus.Failed, fork.Run.Status);
        Assert.DoesNotContain(logs.Records, r => r.Level >= Microsoft.Extensions.Logging.LogLevel.Warning && r.Message.Contains("canceling its children failed", StringComparison.Ordinal)); // the refused rollback run
    }

    [Fact]
    public async Task ARequestThatCannotRun_IsRefused_NamingTheField()
    {
        var (_, id, journal) = await RefundedRunAsync();
        var forker = new RunForker(_f.Definitions);

        Assert.Equal("fromStep", Assert.Throws<ForkRequestException>(() => forker.Check(id, journal, new ForkRequest(0))).Field);
        Assert.Equal("fromStep", Assert.Throws<ForkRequestException>(() => forker.Check(id, journal, new ForkRequest(journal.Count))).Field);
        var model = Assert.Throws<ForkRequestException>(() => forker.Check(id, journal, new ForkRequest(1, "nope")));
        Assert.Equal("model", model.Field);
        Assert.Contains("models: m", model.Message);
    }

    [Fact]
    public async Task AForkStoppedByItsCaller_AnswersWithTheStepsItTook()
    {
        var (_, id, journal) = await RefundedRunAsync();
        var slow = _f.UseModel((_, _) => FakeModel.Text("too late"), name: "slow");
        slow.BeforeAnswer = (_, _, ct) => Task.Delay(Timeout.Infinite, ct);
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        limit.CancelAfter(TimeSpan.FromSeconds(1));

        var fork = await new RunForker(_f.Definitions).ForkAsync(id, journal, new ForkRequest(1, "slow"), limit.Token).WaitAsync(TimeSpan.FromSeconds(60), Ct);

        Assert.False(fork.Run.Status.IsTerminal());
        Assert.Contains("stopped", fork.Run.Error);
        Assert.IsType<RunStarted>(Assert.Single(fork.Journal).Entry);
    }
}
