using Bureau.Tests.Support;
using Microsoft.Extensions.AI;
using Xunit;

namespace Bureau.Tests.Resilience;

/// <summary>The new journal entries as stored, journals written before them, and the C# snippet of docs/resilience.md.</summary>
public sealed class ResilienceJournalTests : IAsyncDisposable
{
    private readonly EngineFixture _f = new();

    public ValueTask DisposeAsync() => _f.DisposeAsync();

    public static TheoryData<JournalEntry> NewEntries() => new()
    {
        new AttemptFailed("tool:charge", 2, "connection reset", "crash", 1000, "run1:3"),
        new AttemptFailed("model:main", 6, "HTTP 429: slow down", "rate-limited", null, GaveUp: "all 6 attempts failed"),
        new DependencyWaited("model:main", "requests-per-minute", 1500),
        new ModelFallback("main", "backup", "model 'main' failed after 2 attempt(s)"),
        new ModelResponded(1, "gpt", "openai", "hi", [], new UsageRecord(10, 5), "stop", 2, 12.5, 0.00002, "backup", 3),
        new ToolCompleted("c1", "lookup", "HTTP 503", true, 4, null, null, "unavailable", 3),
        new RunFinished(RunStatus.Failed, null, "boom", "error", new RunFailure("model", "unavailable", 8, "model:main", 6, "check the endpoint")),
    };

    [Theory]
    [MemberData(nameof(NewEntries))]
    public void Entry_RoundTripsWithItsStableKind(JournalEntry entry)
    {
        var bytes = BureauJson.SerializeEntry(entry);

        Assert.StartsWith($$"""{"kind":"{{entry.Kind}}""", System.Text.Encoding.UTF8.GetString(bytes));
        var back = BureauJson.DeserializeEntry(bytes);
        Assert.Equal(BureauJson.SerializeEntry(entry), BureauJson.SerializeEntry(back));
    }

    [Fact]
    public void Entries_WrittenBeforeResilience_StillRead()
    {
        var answer = (ModelResponded)BureauJson.DeserializeEntry("""{"kind":"model.response","turn":1,"model":"m","provider":"custom","toolCalls":[],"usage":{"inputTokens":1,"outputTokens":2},"requestMessages":2,"durationMs":3}"""u8);
        var finished = (RunFinished)BureauJson.DeserializeEntry("""{"kind":"run.finished","status":"failed","error":"x","outcome":"loop"}"""u8);

        Assert.Equal((null, null, null), (answer.Cost, answer.AnsweredBy, answer.Attempts));
        Assert.Null(finished.Failure);
    }

    [Fact]
    public async Task DocsSnippet_ResilienceMdDefinitions_Deploy()
    {
        _f.AddAgent();
        _f.Configure = builder =>
        {
            // docs/resilience.md begin
            builder.AddModel(new OpenAIModelDefinition
            {
                Name = "main", Endpoint = new("https://api.openai.com/v1"), Model = "gpt-4.1-mini",
                Retry = new RetrySettings { MaxAttempts = 4, Delay = TimeSpan.FromSeconds(2) },
                CircuitBreaker = new CircuitBreakerSettings { BreakDuration = TimeSpan.FromMinutes(1) },
                RequestsPerMinute = 500, Fallback = ["backup"], Price = new ModelPrice(0.40, 1.60),
            });
            builder.AddTool(new HttpToolDefinition
            {
                Name = "create_ticket", Url = new("https://tickets.example/api"), Effect = ToolEffect.Write,
                Retry = new RetrySettings { MaxAttempts = 3, OnlyBefore = RetryBoundary.Send },
                MaxConcurrency = 4,
            });
            // docs/resilience.md end
            builder.AddChatClient("backup", new FakeModel((_, _) => FakeModel.Text("backup")));
            builder.AddAgent(new AgentDefinition { Name = "desk", Model = "main", Tools = ["create_ticket"] });
        };

        var engine = await _f.StartAsync();

        Assert.Contains("desk", engine.Definitions.Agents.Keys);
    }
}
