using Bureau.Storage.Sqlite;
using Bureau.Tests.Engine;
using Bureau.Tests.Support;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Xunit;

namespace Bureau.Tests.Teams;

/// <summary>
/// A child that ends right after its parent (a team, or an agent that delegated to it) journaled its wait, and before
/// the parent's second look, wakes the parent itself: the parent's second look then finds the wait answered already and
/// stops quietly (its next execution goes on).
/// </summary>
public sealed class TeamWaitRaceTests : IAsyncDisposable
{
    private readonly EngineFixture _f = new();

    public ValueTask DisposeAsync() => _f.DisposeAsync();

    [Theory]
    [InlineData("crew")] // a team whose member is the child
    [InlineData("lead")] // an agent that delegates to the child
    public async Task AChildEndingBetweenItsParentsWaitAndItsSecondLook_WakesTheParentOnce_WithoutAStaleWriterWarning(string parent)
    {
        var memberMayAnswer = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _f.Definitions.Add(new AgentDefinition { Name = "member", Model = "m", Instructions = "member" });
        _f.Definitions.Add(new AgentDefinition { Name = "lead", Model = "m", Instructions = "lead", Delegates = ["member"] });
        _f.Definitions.Add(new TeamDefinition { Name = "crew", Pattern = TeamPattern.Sequential, Members = ["member"] });
        static bool IsMember(IReadOnlyList<ChatMessage> msgs) => msgs.First(m => m.Role == ChatRole.System).Text == "member";
        var model = _f.UseModel((msgs, turn) => IsMember(msgs) || turn > 1 ? FakeModel.Text("done") : FakeModel.Call("member", """{"task":"t"}""", "c1"));
        model.BeforeAnswer = (msgs, _, ct) => IsMember(msgs) ? memberMayAnswer.Task.WaitAsync(ct) : Task.CompletedTask;

        var store = new CountingStore(new SqliteRunStore(new SqliteStoreOptions { Path = _f.DbPath }));
        string? teamId = null, memberId = null;
        long waitVersion = 0;
        var delayed = 0;
        store.AfterAppend = request =>
        {
            foreach (var entry in request.Entries)
            {
                if (entry is ChildRunStarted started) (teamId, memberId) = (request.RunId, started.ChildRunId);
            }
            if (request.RunId == teamId && request.Update?.WaitingFor is ChildRunsWait)
            {
                waitVersion = request.ExpectedVersion + request.Entries.Count;
                memberMayAnswer.TrySetResult(); // the member ends now, after the team's wait is journaled
            }
            return Task.CompletedTask;
        };
        store.BeforeGetRun = async runId =>
        {
            // The team's second look at its member waits until the member's end has answered the team's wait.
            if (runId != memberId || waitVersion == 0 || Interlocked.Exchange(ref delayed, 1) == 1) return;
            var deadline = DateTime.UtcNow.AddSeconds(20);
            while ((await store.ReadJournalAsync(teamId!, waitVersion)).Count == 0 && DateTime.UtcNow < deadline) await Task.Delay(10);
        };
        var logs = new CapturingLoggerProvider();
        _f.Configure = b =>
        {
            b.UseCountingStorage(store);
            b.Services.AddSingleton<ILoggerFactory>(new LoggerFactory([logs]));
        };
        var engine = await _f.StartAsync();

        var team = (await engine.SubmitAsync(new RunRequest(parent, "x"))).Run.Id;
        RunRecord run;
        var until = DateTime.UtcNow.AddSeconds(30);
        while (!(run = (await engine.GetRunAsync(team))!).Status.IsTerminal() && DateTime.UtcNow < until) await Task.Delay(20, TestContext.Current.CancellationToken);

        Assert.Equal(1, delayed); // the race happened: the second look came after the member's answer
        Assert.Equal((RunStatus.Succeeded, "done"), (run.Status, run.Output));
        var answers = (await engine.ReadJournalAsync(team)).Select(r => r.Entry).OfType<WaitAnswered>().ToList();
        Assert.Equal(["child run"], answers.Select(a => a.Actor)); // answered once, by the member's end
        Assert.DoesNotContain(logs.At(LogLevel.Warning), m => m.Contains("another executor appended first", StringComparison.Ordinal));
    }
}
