using InteropSample;
using Microsoft.AspNetCore.Builder;
using Xunit;

namespace Bureau.Hosting.Tests;

/// <summary>samples/02-interop: its host on a loopback port, and each of its clients (OpenAI, A2A, AG-UI, MAF both ways) run against it.</summary>
public sealed class InteropSampleTests : IAsyncDisposable
{
    private const string Question = "Where is order 1042?";
    private const string Answer = "shipped on 2026-11-20";
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bureau-sample-tests", Guid.NewGuid().ToString("n"));
    private WebApplication? _app;
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private async Task<(Uri Bureau, string Key)> StartAsync()
    {
        Directory.CreateDirectory(_dir);
        _app = InteropHost.Build([], Path.Combine(_dir, "interop.db"));
        await _app.StartAsync(Ct);
        var bureau = InteropHost.Address(_app);
        Assert.True(bureau.IsLoopback);
        return (bureau, await InteropHost.CreateKeyAsync(bureau, Ct));
    }

    public async ValueTask DisposeAsync()
    {
        if (_app is not null)
        {
            await _app.StopAsync(CancellationToken.None);
            await _app.DisposeAsync();
        }
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    [Fact]
    public async Task OpenAIClient_AsksTheAgentByName()
    {
        var (bureau, key) = await StartAsync();
        Assert.Equal("Order status: " + Answer, await OpenAIClientSample.AskAsync(bureau, key, "orders", Question, Ct));
    }

    [Fact]
    public async Task A2AClient_ReadsTheCard_SendsAMessage_GetsTheCompletedTask()
    {
        var (bureau, key) = await StartAsync();
        var answer = await A2AClientSample.SendAsync(bureau, key, "orders", Question, Ct);
        Assert.StartsWith($"Order status: {Answer} (TASK_STATE_COMPLETED, task ", answer);
    }

    [Fact]
    public async Task AguiConsumer_ReadsTheRunAsAGuiEvents_FromStartToFinish()
    {
        var (bureau, key) = await StartAsync();
        var events = await AguiConsumerSample.StreamAsync(bureau, key, "orders", Question, Ct);
        Assert.Equal("RUN_STARTED", events[0].Type);
        Assert.Equal("RUN_FINISHED", events[^1].Type);
        Assert.Equal("success", (string?)events[^1].Data["outcome"]?["type"]);
        Assert.Contains(events, e => e.Type == "TOOL_CALL_START" && (string?)e.Data["toolCallName"] == "order_status");
        Assert.Contains(events, e => e.Type == "TOOL_CALL_RESULT" && ((string?)e.Data["content"])?.Contains(Answer) == true);
        Assert.Contains(Answer, string.Concat(events.Where(e => e.Type == "TEXT_MESSAGE_CONTENT").Select(e => (string?)e.Data["delta"])));
    }

    [Fact]
    public async Task AgentFramework_HostedAgent_RunsAsAJournaledBureauRun()
    {
        await StartAsync();
        var answer = await AgentFrameworkSamples.RunHostedAsync(_app!.Services, Question, Ct);
        Assert.StartsWith("Order status: " + Answer, answer);
        Assert.EndsWith(": run.started, model.response, tool.result, model.response, run.finished)", answer);
    }

    [Fact]
    public async Task AgentFramework_BureauAgentInAWorkflow_HandsItsAnswerToTheNextAgent()
    {
        await StartAsync();
        var answer = await AgentFrameworkSamples.RunWorkflowAsync(_app!.Services, Question, Ct);
        Assert.Equal($"orders: Order status: {Answer} | writer: (scripted) Dear customer, Order status: {Answer}", answer);
    }
}
