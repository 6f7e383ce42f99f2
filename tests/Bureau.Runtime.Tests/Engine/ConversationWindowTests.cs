using Bureau.Engine;
using Bureau.Memory;
using Bureau.Replay;
using Bureau.Tests.Support;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Bureau.Tests.Engine;

/// <summary>
/// The short-term window (<c>memory.window</c>): token-counted requests that keep the system prompt, the input and
/// tool call/result pairs intact (drop-oldest), or stand a journaled summary in for the older messages (summarize),
/// which a resumed or replayed run uses instead of asking for a new one.
/// </summary>
public sealed class ConversationWindowTests : IAsyncDisposable
{
    private readonly EngineFixture _f = new();
    private static readonly Microsoft.ML.Tokenizers.Tokenizer Tokenizer = TokenCounter.For("o200k_base");

    public ValueTask DisposeAsync() => _f.DisposeAsync();

    private static string Long(int i) => string.Join(' ', Enumerable.Range(0, 60).Select(w => $"fact{i}-{w}"));

    private static int Tokens(IEnumerable<ChatMessage> request) => request.Sum(m => TokenCounter.Count(m, Tokenizer));

    private static bool IsSummaryRequest(IReadOnlyList<ChatMessage> messages) => messages[0].Text.StartsWith("You summarize", StringComparison.Ordinal);

    /// <summary>An agent that calls lookup <paramref name="calls"/> times (each result about 300 tokens), then answers.</summary>
    private (FakeModel Model, List<IReadOnlyList<ChatMessage>> AgentRequests) UseLookingModel(int calls, Func<int, string>? summary = null)
    {
        var agentRequests = new List<IReadOnlyList<ChatMessage>>();
        var summaries = 0;
        var model = _f.UseModel((messages, _) =>
        {
            if (IsSummaryRequest(messages)) return FakeModel.Text(summary?.Invoke(++summaries) ?? "summary");
            int n;
            lock (agentRequests)
            {
                agentRequests.Add(messages);
                n = agentRequests.Count;
            }
            return n <= calls ? FakeModel.Call("lookup", $$"""{"key":"k{{n}}"}""", "call" + n) : FakeModel.Text("done after " + calls);
        });
        _f.AddTool("lookup", ToolEffect.Read, (key, _) => Task.FromResult(Long(int.Parse(key[1..], System.Globalization.CultureInfo.InvariantCulture))));
        return (model, agentRequests);
    }

    private void AddAgent(ConversationWindow window) => _f.Definitions.Add(new AgentDefinition
    {
        Name = "a", Model = "m", Instructions = "You are a careful research agent.", Tools = ["lookup"],
        Memory = new AgentMemory { Tools = [], Window = window },
    });

    [Fact]
    public async Task DropOldest_EveryRequestFitsTheWindow_KeepsSystemPromptAndInput_AndNeverSplitsACallFromItsResult()
    {
        var (_, requests) = UseLookingModel(6);
        AddAgent(new ConversationWindow { MaxTokens = 1000, Overflow = WindowOverflow.DropOldest });
        var engine = await _f.StartAsync();

        var run = (await engine.SubmitAsync(new RunRequest("a", "find the facts"))).Run;
        Assert.Equal(RunStatus.Succeeded, (await EngineFixture.WaitAsync(engine, run.Id)).Status);

        Assert.Equal(7, requests.Count);
        foreach (var request in requests)
        {
            Assert.True(Tokens(request) <= 1000, $"a request of {Tokens(request)} tokens");
            Assert.Equal((ChatRole.System, "You are a careful research agent."), (request[0].Role, request[0].Text));
            Assert.Equal((ChatRole.User, "find the facts"), (request[1].Role, request[1].Text));
            var calls = request.SelectMany(m => m.Contents).OfType<FunctionCallContent>().Select(c => c.CallId).ToHashSet();
            var results = request.SelectMany(m => m.Contents).OfType<FunctionResultContent>().Select(r => r.CallId).ToHashSet();
            Assert.Equal(calls, results); // every result has its call, every call its result
        }
        // The last request left the oldest turns out, said so, and kept the newest result.
        var last = requests[^1];
        Assert.Contains(last, m => m.Role == ChatRole.System && m.Text.Contains("earlier messages of this conversation are left out", StringComparison.Ordinal));
        Assert.Equal(Long(6), FakeModel.LastToolResult(last));
        Assert.DoesNotContain(last.SelectMany(m => m.Contents).OfType<FunctionResultContent>(), r => r.CallId == "call1");
        // The journal records the request's size, smaller than the conversation.
        var answers = (await engine.ReadJournalAsync(run.Id)).Select(r => r.Entry).OfType<ModelResponded>().ToList();
        Assert.Equal(last.Count, answers[^1].RequestMessages);
    }

    [Fact]
    public async Task Window_WithRoomForEverything_SendsTheWholeConversation()
    {
        var (_, requests) = UseLookingModel(2);
        AddAgent(new ConversationWindow { MaxTokens = 100_000 });
        var engine = await _f.StartAsync();

        var run = (await engine.SubmitAsync(new RunRequest("a", "find"))).Run;
        await EngineFixture.WaitAsync(engine, run.Id);

        Assert.Equal([2, 4, 6], requests.Select(r => r.Count));
    }

    [Fact]
    public async Task Summarize_JournalsTheSummary_SendsItInPlaceOfTheOlderMessages_AndAResumeDoesNotAskAgain()
    {
        var summaryCalls = 0;
        var (_, requests) = UseLookingModel(5, n => $"SUMMARY {Interlocked.Increment(ref summaryCalls)}: facts 1 to {n} were found");
        AddAgent(new ConversationWindow { MaxTokens = 1000, Overflow = WindowOverflow.Summarize });
        var crash = new CrashOnce("after-summary");
        _f.Configure = b => b.Services.AddSingleton<ICrashPoints>(crash);
        var engine = await _f.StartAsync();

        var run = (await engine.SubmitAsync(new RunRequest("a", "find the facts"))).Run;
        Assert.Equal(RunStatus.Succeeded, (await EngineFixture.WaitAsync(engine, run.Id, 60)).Status);

        Assert.True(crash.Crashed);
        var journal = (await engine.ReadJournalAsync(run.Id)).Select(r => r.Entry).ToList();
        var summaries = journal.OfType<ConversationSummarized>().ToList();
        Assert.NotEmpty(summaries);
        Assert.Equal(summaries.Count, Volatile.Read(ref summaryCalls)); // the crash right after the first summary did not make a second one for the same turn
        Assert.Contains(journal, e => e is RunResumed);
        Assert.All(summaries, s => Assert.StartsWith("SUMMARY", s.Summary));
        // After the first summary, requests carry it (as the system message after the prompt) instead of what it covers.
        var first = summaries[0];
        var after = requests.Where(r => r.Any(m => m.Text.Contains(first.Summary, StringComparison.Ordinal))).ToList();
        Assert.NotEmpty(after);
        Assert.All(after, r =>
        {
            Assert.Equal(ChatRole.System, r[2].Role);
            Assert.True(Tokens(r) <= 1000, $"a request of {Tokens(r)} tokens");
            Assert.DoesNotContain(r.SelectMany(m => m.Contents).OfType<FunctionResultContent>(), x => x.CallId == "call1");
        });
        // The summary's tokens count toward the run's usage.
        var run2 = await engine.GetRunAsync(run.Id);
        Assert.Equal(journal.OfType<ModelResponded>().Sum(m => m.Usage.TotalTokens) + summaries.Sum(s => s.Usage.TotalTokens), run2!.Usage.TotalTokens);

        var replay = await new RunReplayer(_f.Definitions).ReplayAsync(run.Id, await engine.ReadJournalAsync(run.Id), TestContext.Current.CancellationToken);
        Assert.True(replay.Reproduced, replay.Divergence?.ToString());
    }

    [Fact]
    public void Apply_TheNewestUnitAloneOverTheWindow_IsStillSent_WithTheHead()
    {
        List<ChatMessage> conversation =
        [
            new(ChatRole.System, "prompt"),
            new(ChatRole.User, "input"),
            new(ChatRole.Assistant, [new FunctionCallContent("c1", "lookup", new Dictionary<string, object?> { ["key"] = "x" })]),
            new(ChatRole.Tool, [new FunctionResultContent("c1", Long(1))]),
            new(ChatRole.Assistant, [new FunctionCallContent("c2", "lookup", new Dictionary<string, object?> { ["key"] = "y" }), new FunctionCallContent("c3", "lookup", new Dictionary<string, object?> { ["key"] = "z" })]),
            new(ChatRole.Tool, [new FunctionResultContent("c2", Long(2))]),
            new(ChatRole.Tool, [new FunctionResultContent("c3", Long(3))]),
        ];

        var w = ContextWindow.Apply(conversation, new ConversationWindow { MaxTokens = 100 }, null, Tokenizer);

        Assert.Equal(4, w.FirstKept);
        Assert.Equal(2, w.Dropped);
        Assert.Equal(["prompt", "input"], w.Messages.Take(2).Select(m => m.Text));
        Assert.Equal(conversation.Skip(4), w.Messages.Skip(3)); // both calls of the newest answer with both results
    }

}
