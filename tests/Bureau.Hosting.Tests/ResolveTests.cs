using System.Net;
using Bureau.Storage.Sqlite;
using Microsoft.Extensions.AI;
using Xunit;

namespace Bureau.Hosting.Tests;

/// <summary>POST /v1/runs/{id}/resolve on a run that really waits: a write left in doubt by a crash.</summary>
public sealed class ResolveTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;
    private const string RunId = "01inbdoubtrun00001";

    /// <summary>Writes what a process killed between the write's intent and its result leaves behind.</summary>
    private static async Task CrashBetweenIntentAndResultAsync(string db)
    {
        await using var store = new SqliteRunStore(new SqliteStoreOptions { Path = db });
        await store.InitializeAsync(Ct);
        await store.SubmitAsync(new NewRun { Id = RunId, Agent = "writer", Input = "record it", Started = new RunStarted("writer", "record it"), CreatedAt = DateTimeOffset.UtcNow }, Ct);
        await store.AppendAsync(new AppendRequest
        {
            RunId = RunId,
            ExpectedVersion = 1,
            At = DateTimeOffset.UtcNow,
            Entries =
            [
                new ModelResponded(1, "echo", "custom", null, [new ToolCallRecord("c1", "ledger", "{}")], new UsageRecord(3, 2), "tool_calls", 2, 1),
                new ToolIntent("c1", "ledger", "{}", ToolEffect.Write, $"{RunId}:3"),
            ],
            Update = new RunUpdate { Status = RunStatus.Running },
        }, Ct);
    }

    [Theory]
    [InlineData("done", false)]
    [InlineData("failed", true)]
    public async Task Resolve_InDoubtWrite_Returns202AndTheRunFinishesWithoutRunningTheToolAgain(string decision, bool isError)
    {
        await using var host = new TestHost();
        await CrashBetweenIntentAndResultAsync(host.Db);
        var ran = 0;
        await host.StartAsync(b => b
            .AddTool(AIFunctionFactory.Create(() => { Interlocked.Increment(ref ran); return "written"; }, "ledger"), ToolEffect.Write)
            .AddAgent(new AgentDefinition { Name = "writer", Model = "echo", Tools = ["ledger"] }));

        var waiting = await host.WaitAsync(RunId); // resumed at start: the write is in doubt, so it waits
        Assert.Equal(RunStatus.Waiting, waiting.Status);
        Assert.Equal(("in-doubt", 3L, "ledger"), (waiting.WaitingFor!.Reason, waiting.WaitingFor.Step, Assert.IsType<InDoubtWait>(waiting.WaitingFor).Tool));

        using var res = await host.Client.SendAsync(
            Http.Json(HttpMethod.Post, $"/v1/runs/{RunId}/resolve", $$"""{"step":3,"as":"{{decision}}","result":"checked by hand"}"""), Ct);
        Assert.Equal(HttpStatusCode.Accepted, res.StatusCode);

        var run = await host.WaitAsync(RunId);
        Assert.Equal(RunStatus.Succeeded, run.Status);
        Assert.Equal("echo: record it", run.Output);
        Assert.Equal(0, ran); // a person decided: the write never ran again
        var journal = await host.Engine.ReadJournalAsync(RunId, 0, Ct);
        var resolved = Assert.Single(journal.Select(j => j.Entry).OfType<StepResolved>());
        Assert.Equal(3, resolved.Step);
        var result = Assert.Single(journal.Select(j => j.Entry).OfType<ToolCompleted>());
        Assert.Equal(isError, result.IsError);
        if (!isError) Assert.Equal("checked by hand", result.Content);

        using var again = await host.Client.SendAsync(
            Http.Json(HttpMethod.Post, $"/v1/runs/{RunId}/resolve", """{"step":3,"as":"done"}"""), Ct);
        await Http.ProblemAsync(again, 409, runId: RunId); // nothing is waiting any more
    }
}
