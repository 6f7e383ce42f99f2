using Microsoft.Agents.AI;
using Microsoft.Extensions.AI;
using Xunit;

namespace Bureau.Hosting.Tests;

/// <summary>
/// A Bureau agent as a Microsoft Agent Framework <see cref="AIAgent"/> (<see cref="BureauAgentFrameworkExtensions.AsAIAgent"/>):
/// each call a durable run; sessions carry the conversation (and survive serialization); a waiting run answers what it
/// waits for; a failed run throws naming the run.
/// </summary>
public sealed class AgentFrameworkTests : IAsyncDisposable
{
    private readonly TestHost _host = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask DisposeAsync() => _host.DisposeAsync();

    [Fact]
    public async Task RunAsync_StartsADurableRun_AnswersItsOutputUsageAndId()
    {
        await _host.StartAsync(OpenAiApiTests.Configure);
        var agent = _host.Engine.AsAIAgent("echo");
        Assert.Equal(("echo", "Answers with its input."), (agent.Name, agent.Description));

        var response = await agent.RunAsync("hello from MAF", cancellationToken: Ct);
        Assert.Equal("echo: hello from MAF", response.Text);
        Assert.Equal(5, response.Usage?.TotalTokenCount);
        Assert.Equal("succeeded", response.AdditionalProperties?[BureauAIAgent.StatusProperty]);
        var run = await _host.Engine.GetRunAsync(response.ResponseId!, Ct);
        Assert.Equal((RunStatus.Succeeded, "hello from MAF", "maf"), (run!.Status, run.Input, run.Actor));
    }

    [Fact]
    public async Task Session_CarriesTheConversation_AlsoAfterSerialization()
    {
        await _host.StartAsync(OpenAiApiTests.Configure);
        var agent = _host.Engine.AsAIAgent("echo");
        var session = await agent.CreateSessionAsync(Ct);
        await agent.RunAsync("My order is 42.", session, cancellationToken: Ct);
        var second = await agent.RunAsync("Where is it?", session, cancellationToken: Ct);
        var run = await _host.Engine.GetRunAsync(second.ResponseId!, Ct);
        Assert.Equal("Earlier in this conversation:\n[user] My order is 42.\n[assistant] echo: My order is 42.\n\nThe message to answer:\nWhere is it?", run!.Input);

        var saved = await agent.SerializeSessionAsync(session, cancellationToken: Ct);
        var restored = await agent.DeserializeSessionAsync(saved, cancellationToken: Ct);
        var third = await agent.RunAsync("Thanks.", restored, cancellationToken: Ct);
        var thirdRun = await _host.Engine.GetRunAsync(third.ResponseId!, Ct);
        Assert.StartsWith("Earlier in this conversation:\n[user] My order is 42.", thirdRun!.Input);
        Assert.Contains("[user] Where is it?", thirdRun.Input);
        Assert.EndsWith("The message to answer:\nThanks.", thirdRun.Input);
    }

    [Fact]
    public async Task RunStreamingAsync_AnswerThenUsage()
    {
        await _host.StartAsync(OpenAiApiTests.Configure);
        var agent = _host.Engine.AsAIAgent("echo");
        var updates = new List<AgentResponseUpdate>();
        await foreach (var u in agent.RunStreamingAsync("stream from MAF", cancellationToken: Ct)) updates.Add(u);
        var response = updates.ToAgentResponse();
        Assert.Equal("echo: stream from MAF", response.Text);
        Assert.Equal(5, response.Usage?.TotalTokenCount);
        Assert.Equal(RunStatus.Succeeded, (await _host.Engine.GetRunAsync(response.ResponseId!, Ct))!.Status);
    }

    [Fact]
    public async Task WaitingRun_AnswersWithTheApproval_FailedRunThrowsNamingTheRun_UnknownAgentThrows()
    {
        await _host.StartAsync(OpenAiApiTests.Configure);
        var waiting = await _host.Engine.AsAIAgent("refunder").RunAsync("refund order 7", cancellationToken: Ct);
        var approvalId = (string)waiting.AdditionalProperties![BureauAIAgent.WaitingForProperty]!;
        Assert.Equal("waiting", waiting.AdditionalProperties[BureauAIAgent.StatusProperty]);
        Assert.Contains(approvalId, waiting.Text);
        Assert.Equal(RunStatus.Waiting, (await _host.Engine.GetRunAsync(waiting.ResponseId!, Ct))!.Status);

        var failed = await Assert.ThrowsAsync<BureauRunFailedException>(() => _host.Engine.AsAIAgent("spinner").RunAsync("spin", cancellationToken: Ct));
        Assert.Equal((RunStatus.Failed, "budget"), (failed.Status, failed.Outcome));
        Assert.Equal(RunStatus.Failed, (await _host.Engine.GetRunAsync(failed.RunId, Ct))!.Status);

        Assert.Throws<UnknownAgentException>(() => _host.Engine.AsAIAgent("nobody"));
    }
}
