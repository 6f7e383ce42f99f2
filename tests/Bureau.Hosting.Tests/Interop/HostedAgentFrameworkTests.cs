using System.Collections.Concurrent;
using Bureau.Engine;
using Bureau.Governance;
using Microsoft.Agents.AI;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Bureau.Hosting.Tests;

/// <summary>
/// A Microsoft Agent Framework agent (a <see cref="ChatClientAgent"/> with a function tool) hosted in Bureau
/// (<see cref="AgentFrameworkHostingExtensions.AddAgentFrameworkAgent(BureauBuilder, AgentDefinition, Func{IChatClient, IReadOnlyList{AITool}, AIAgent})"/>):
/// a durable run whose model and tool calls are journaled, governed by policies, and not repeated when the run resumes
/// after a crash or a restart of the host on the same database.
/// </summary>
public sealed class HostedAgentFrameworkTests : IAsyncDisposable
{
    private const string Question = "Where is order 42?";
    private readonly TestHost _host = new();
    private readonly ConcurrentQueue<string> _toolKeys = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask DisposeAsync() => _host.DisposeAsync();

    /// <summary>The model of the hosted agent: asks for <c>lookup</c>, then answers with its result; records what it was asked.</summary>
    private sealed class LookupModel : IChatClient
    {
        public ConcurrentQueue<(IReadOnlyList<ChatMessage> Messages, ChatOptions? Options)> Requests { get; } = new();

        public Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
        {
            var list = messages.ToList();
            Requests.Enqueue((list, options));
            var result = list.SelectMany(m => m.Contents).OfType<FunctionResultContent>().LastOrDefault();
            var answer = result is null
                ? new ChatMessage(ChatRole.Assistant, [new FunctionCallContent("call-1", "lookup", new Dictionary<string, object?> { ["order"] = "42" })])
                : new ChatMessage(ChatRole.Assistant, $"(scripted) {result.Result}");
            return Task.FromResult(new ChatResponse(answer) { Usage = new UsageDetails { InputTokenCount = 10, OutputTokenCount = 2, TotalTokenCount = 12 } });
        }

        public IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
            throw new NotSupportedException("the hosted agent is run without streaming");

        public object? GetService(Type serviceType, object? serviceKey = null) => null;

        public void Dispose() { }
    }

    private sealed class CrashOnce(string point) : ICrashPoints
    {
        private int _crashed;
        public bool Crashed => Volatile.Read(ref _crashed) == 1;

        public void Hit(string name)
        {
            if (name == point && Interlocked.Exchange(ref _crashed, 1) == 0)
                throw new InvalidOperationException($"simulated crash at {name}");
        }
    }

    /// <summary>Deploys the MAF agent <c>maf</c>: a ChatClientAgent over Bureau's durable chat client, with Bureau's <c>lookup</c> tool (a write).</summary>
    private Action<BureauBuilder> Configure(LookupModel model, Action<BureauBuilder>? more = null) => b =>
    {
        b.AddChatClient("lookup-model", model)
            .AddTool(AIFunctionFactory.Create((string order) =>
            {
                _toolKeys.Enqueue(Bureau.Tools.BureauToolContext.Current?.IdempotencyKey ?? "?");
                return $"order {order} shipped on Monday";
            }, "lookup", "Looks an order up."), ToolEffect.Write)
            .AddAgentFrameworkAgent(new AgentDefinition { Name = "maf", Model = "lookup-model", Tools = ["lookup"], Description = "A MAF agent hosted in Bureau." },
                (chat, tools) => new ChatClientAgent(chat, instructions: "Answer questions about orders.", name: "maf", tools: [.. tools]));
        more?.Invoke(b);
    };

    private async Task<IReadOnlyList<JournalEntry>> JournalAsync(string runId) => [.. (await _host.Engine.ReadJournalAsync(runId, cancellationToken: Ct)).Select(r => r.Entry)];

    [Fact]
    public async Task ChatClientAgent_WithAFunctionTool_RunsAsABureauRun_EachStepJournaled()
    {
        var model = new LookupModel();
        await _host.StartAsync(Configure(model));

        var run = (await _host.Engine.SubmitAsync(new RunRequest("maf", Question), Ct)).Run;
        var done = await _host.WaitAsync(run.Id);

        Assert.Equal(RunStatus.Succeeded, done.Status);
        Assert.Equal("(scripted) order 42 shipped on Monday", done.Output);
        Assert.Equal(24, done.Usage.TotalTokens);
        var journal = await JournalAsync(run.Id);
        Assert.Equal(["run.started", "model.response", "tool.intent", "tool.result", "model.response", "run.finished"], journal.Select(e => e.Kind));
        var intent = journal.OfType<ToolIntent>().Single();
        Assert.Equal(("lookup", """{"order":"42"}""", $"{run.Id}:3"), (intent.Tool, intent.Arguments, intent.IdempotencyKey));
        Assert.Equal([intent.IdempotencyKey], _toolKeys); // the tool ran once, through Bureau's pipeline, with the intent's key
        // The agent's own setup reached the model: its instructions, and Bureau's tool declared under its name.
        var (messages, options) = model.Requests.First();
        Assert.Equal("Answer questions about orders.", options?.Instructions);
        Assert.Equal(["lookup"], options?.Tools?.Select(t => t.Name));
        Assert.Equal(Question, messages[^1].Text);
    }

    [Theory]
    [InlineData("after-model-journal")]
    [InlineData("after-result")]
    public async Task Crash_AfterAJournaledStep_Resumes_WithoutRepeatingTheModelCallOrTheToolCall(string point)
    {
        var model = new LookupModel();
        var crash = new CrashOnce(point);
        await _host.StartAsync(Configure(model, b => b.Services.AddSingleton<ICrashPoints>(crash)));

        var run = (await _host.Engine.SubmitAsync(new RunRequest("maf", Question), Ct)).Run;
        var done = await _host.WaitAsync(run.Id);

        Assert.True(crash.Crashed);
        Assert.Equal(RunStatus.Succeeded, done.Status);
        Assert.Equal("(scripted) order 42 shipped on Monday", done.Output);
        var journal = await JournalAsync(run.Id);
        Assert.Contains(journal, e => e is RunResumed);
        Assert.Equal(2, journal.OfType<ModelResponded>().Count());
        Assert.Equal(2, model.Requests.Count); // the journaled model answer was given to the agent again, not asked for again
        Assert.Single(journal.OfType<ToolCompleted>());
        Assert.Single(_toolKeys); // the tool ran once
    }

    [Fact]
    public async Task ApprovalAndRestart_OnTheSameDatabase_TheResumedAgentIsAnsweredFromTheJournal()
    {
        var before = new LookupModel();
        void Approvals(BureauBuilder b) => b.AddPolicyDefault(ToolEffect.Write, PolicyAction.RequireApproval);
        await _host.StartAsync(Configure(before, Approvals));
        var run = (await _host.Engine.SubmitAsync(new RunRequest("maf", Question), Ct)).Run;
        var waiting = await _host.WaitAsync(run.Id);
        Assert.Equal(RunStatus.Waiting, waiting.Status);
        var approval = Assert.IsType<ApprovalWait>(waiting.WaitingFor);
        Assert.Equal(("lookup", """{"order":"42"}"""), (approval.Tool, approval.Arguments));
        Assert.Empty(_toolKeys); // nothing ran before the approval
        Assert.Single(before.Requests);

        var after = new LookupModel();
        await _host.RestartAsync(Configure(after, Approvals));
        await _host.Engine.DecideApprovalAsync(run.Id, approval.Step, new ApprovalDecision(true), "alice", cancellationToken: Ct);
        var done = await _host.WaitAsync(run.Id);

        Assert.Equal(RunStatus.Succeeded, done.Status);
        Assert.Equal("(scripted) order 42 shipped on Monday", done.Output);
        Assert.Single(after.Requests); // only the answer after the tool's result: the first turn came from the journal
        Assert.Single(_toolKeys);
        var journal = await JournalAsync(run.Id);
        Assert.Equal(2, journal.OfType<ModelResponded>().Count());
        Assert.Contains(journal, e => e is PolicyApplied { Action: PolicyAction.RequireApproval, Tool: "lookup" });
    }

    [Fact]
    public async Task DeniedByPolicy_TheAgentIsToldWhy_AndTheToolDoesNotRun()
    {
        var model = new LookupModel();
        await _host.StartAsync(Configure(model, b => b.AddPolicyDefault(ToolEffect.Write, PolicyAction.Deny)));

        var run = (await _host.Engine.SubmitAsync(new RunRequest("maf", Question), Ct)).Run;
        var done = await _host.WaitAsync(run.Id);

        Assert.Equal(RunStatus.Succeeded, done.Status);
        Assert.Contains("denied by policy", done.Output);
        Assert.Empty(_toolKeys);
    }

    [Fact]
    public async Task AToolBureauDidNotHandTheAgent_FailsTheRun_NamingIt()
    {
        var model = new LookupModel();
        await _host.StartAsync(b =>
        {
            Configure(model)(b);
            b.AddAgentFrameworkAgent(new AgentDefinition { Name = "rogue", Model = "lookup-model", Tools = ["lookup"] },
                (chat, tools) => new ChatClientAgent(chat, name: "rogue", tools: [.. tools, AIFunctionFactory.Create(() => "secret", "side_door")]));
        });

        var run = (await _host.Engine.SubmitAsync(new RunRequest("rogue", Question), Ct)).Run;
        var done = await _host.WaitAsync(run.Id);

        Assert.Equal(RunStatus.Failed, done.Status);
        Assert.Contains("tool 'side_door', which Bureau did not hand it", done.Error);
        Assert.Empty(model.Requests);
    }

    [Fact]
    public async Task HostingAnAgentThatIsNotDefined_StopsTheStart_NamingIt()
    {
        var ex = await Assert.ThrowsAnyAsync<Exception>(() => _host.StartAsync(b => b.AddAgentFrameworkAgent("ghost", (chat, tools) => new ChatClientAgent(chat))));
        Assert.Contains("no agent 'ghost' is defined", ex.ToString());
    }
}
