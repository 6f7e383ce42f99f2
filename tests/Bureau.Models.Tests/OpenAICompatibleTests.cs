using System.ClientModel;
using System.Text.Json;
using System.Text.Json.Nodes;
using Bureau.Models.Tests.Support;
using Microsoft.Extensions.AI;
using Xunit;
using static Bureau.Models.Tests.Support.ChatCompletionsServer;

namespace Bureau.Models.Tests;

/// <summary>The OpenAI-compatible provider against a real Chat Completions server on 127.0.0.1.</summary>
public sealed class OpenAICompatibleTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static OpenAIModelDefinition Model(ChatCompletionsServer server, string? apiKey = "sk-test-key", int maxRetries = 3, TimeSpan? timeout = null,
        float? temperature = null, int? maxOutputTokens = null) => new()
    {
        Name = "main",
        Endpoint = server.Endpoint,
        Model = "gpt-test",
        ApiKey = apiKey,
        MaxRetries = maxRetries,
        Timeout = timeout ?? TimeSpan.FromSeconds(10),
        Temperature = temperature,
        MaxOutputTokens = maxOutputTokens,
    };

    private static readonly JsonElement LookupSchema = JsonDocument.Parse(
        """{"type":"object","properties":{"key":{"type":"string","description":"what to look up"}},"required":["key"]}""").RootElement.Clone();

    [Fact]
    public async Task GetResponseAsync_PlainAnswer_ReturnsTextAndUsage()
    {
        await using var server = Start(Json(Completion("Hello there", promptTokens: 12, completionTokens: 3)));
        using var http = new HttpClient();
        using var client = new ModelClientFactory(http).Create(Model(server));

        var response = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "hi")], cancellationToken: Ct);

        Assert.Equal("Hello there", response.Text);
        Assert.Equal("gpt-test", response.ModelId);
        Assert.Equal(ChatFinishReason.Stop, response.FinishReason);
        Assert.Equal(12, response.Usage?.InputTokenCount);
        Assert.Equal(3, response.Usage?.OutputTokenCount);
        Assert.Equal(15, response.Usage?.TotalTokenCount);
        var request = Assert.Single(server.Requests);
        Assert.Equal("POST", request.Method);
        Assert.Equal("/v1/chat/completions", request.Path);
        Assert.Equal("gpt-test", (string?)request.Json["model"]);
        Assert.Equal("hi", (string?)request.Json["messages"]![0]!["content"]);
    }

    [Fact]
    public async Task GetResponseAsync_EndpointWithTrailingSlash_PostsToSamePath()
    {
        await using var server = Start(Json(Completion("ok")));
        var model = Model(server);
        using var client = new ModelClientFactory().Create(new OpenAIModelDefinition { Name = model.Name, Endpoint = new Uri(server.Endpoint + "/"), Model = model.Model });

        await client.GetResponseAsync([new ChatMessage(ChatRole.User, "hi")], cancellationToken: Ct);

        Assert.Equal("/v1/chat/completions", Assert.Single(server.Requests).Path);
    }

    [Fact]
    public async Task GetResponseAsync_ApiKey_SentAsBearerToken()
    {
        await using var server = Start(Json(Completion("ok")));
        using var client = new ModelClientFactory().Create(Model(server, apiKey: "sk-secret-123"));

        await client.GetResponseAsync([new ChatMessage(ChatRole.User, "hi")], cancellationToken: Ct);

        Assert.Equal("Bearer sk-secret-123", Assert.Single(server.Requests).Authorization);
    }

    [Fact]
    public async Task GetResponseAsync_NoApiKey_SendsPlaceholder()
    {
        await using var server = Start(Json(Completion("ok")));
        using var client = new ModelClientFactory().Create(Model(server, apiKey: null));

        await client.GetResponseAsync([new ChatMessage(ChatRole.User, "hi")], cancellationToken: Ct);

        Assert.Equal("Bearer unused", Assert.Single(server.Requests).Authorization);
    }

    [Fact]
    public async Task GetResponseAsync_ToolCallRoundTrip_SendsToolsAndToolResult()
    {
        await using var server = Start(
            Json("""
                {"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"gpt-test",
                 "choices":[{"index":0,"message":{"role":"assistant","content":null,
                   "tool_calls":[{"id":"call_abc","type":"function","function":{"name":"lookup","arguments":"{\"key\":\"42\"}"}}]},
                   "finish_reason":"tool_calls","logprobs":null}],
                 "usage":{"prompt_tokens":30,"completion_tokens":9,"total_tokens":39}}
                """),
            Json(Completion("The answer is 42.", promptTokens: 50, completionTokens: 6)));
        using var client = new ModelClientFactory().Create(Model(server));
        var options = new ChatOptions { Tools = [AIFunctionFactory.CreateDeclaration("lookup", "Look a key up", LookupSchema)], ToolMode = ChatToolMode.Auto };
        List<ChatMessage> messages = [new(ChatRole.System, "You look things up."), new(ChatRole.User, "what is 42?")];

        var first = await client.GetResponseAsync(messages, options, Ct);

        Assert.Equal(ChatFinishReason.ToolCalls, first.FinishReason);
        var call = Assert.Single(first.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>());
        Assert.Equal("call_abc", call.CallId);
        Assert.Equal("lookup", call.Name);
        Assert.Equal("42", call.Arguments!["key"]?.ToString());
        Assert.Equal(39, first.Usage?.TotalTokenCount);

        messages.AddRange(first.Messages);
        messages.Add(new ChatMessage(ChatRole.Tool, [new FunctionResultContent("call_abc", "value-42")]));
        var second = await client.GetResponseAsync(messages, options, Ct);

        Assert.Equal("The answer is 42.", second.Text);
        Assert.Equal(2, server.Requests.Count);
        var body = server.Requests[1].Json;
        var sent = body["messages"]!.AsArray();
        var assistant = sent.Single(m => (string?)m!["role"] == "assistant")!;
        Assert.Equal("call_abc", (string?)assistant["tool_calls"]![0]!["id"]);
        Assert.Equal("lookup", (string?)assistant["tool_calls"]![0]!["function"]!["name"]);
        var tool = sent.Single(m => (string?)m!["role"] == "tool")!;
        Assert.Equal("call_abc", (string?)tool["tool_call_id"]);
        Assert.Contains("value-42", tool["content"]!.ToJsonString());
        var function = Assert.Single(body["tools"]!.AsArray())!["function"]!;
        Assert.Equal("lookup", (string?)function["name"]);
        Assert.Equal("Look a key up", (string?)function["description"]);
        Assert.Equal("string", (string?)function["parameters"]!["properties"]!["key"]!["type"]);
        Assert.Equal("key", (string?)function["parameters"]!["required"]![0]);
    }

    [Fact]
    public async Task GetStreamingResponseAsync_TextToolCallAndUsageChunks_AssembleIntoResponse()
    {
        const string head = """{"id":"c1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-test","choices":[{"index":0,"delta":""";
        await using var server = Start(Sse(
            head + """{"role":"assistant","content":"Looking "},"finish_reason":null}]}""",
            head + """{"content":"it up."},"finish_reason":null}]}""",
            head + """{"tool_calls":[{"index":0,"id":"call_s1","type":"function","function":{"name":"lookup","arguments":"{\"ke"}}]},"finish_reason":null}]}""",
            head + """{"tool_calls":[{"index":0,"function":{"arguments":"y\":\"7\"}"}}]},"finish_reason":null}]}""",
            head + """{},"finish_reason":"tool_calls"}]}""",
            """{"id":"c1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-test","choices":[],"usage":{"prompt_tokens":20,"completion_tokens":8,"total_tokens":28}}"""));
        using var client = new ModelClientFactory().Create(Model(server));
        var options = new ChatOptions { Tools = [AIFunctionFactory.CreateDeclaration("lookup", "Look a key up", LookupSchema)] };

        var updates = new List<ChatResponseUpdate>();
        await foreach (var update in client.GetStreamingResponseAsync([new ChatMessage(ChatRole.User, "look 7 up")], options, Ct)) updates.Add(update);
        var response = updates.ToChatResponse();

        Assert.True(updates.Count >= 3);
        Assert.Equal("Looking it up.", response.Text);
        var call = Assert.Single(response.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>());
        Assert.Equal("call_s1", call.CallId);
        Assert.Equal("lookup", call.Name);
        Assert.Equal("7", call.Arguments!["key"]?.ToString());
        Assert.Equal(ChatFinishReason.ToolCalls, response.FinishReason);
        Assert.Equal(20, response.Usage?.InputTokenCount);
        Assert.Equal(8, response.Usage?.OutputTokenCount);
        Assert.Equal(28, response.Usage?.TotalTokenCount);
        Assert.True((bool?)Assert.Single(server.Requests).Json["stream"]);
    }

    [Fact]
    public async Task GetResponseAsync_429WithRetryAfter_WaitsAsToldThenSucceeds()
    {
        await using var server = Start(Error(429, ("Retry-After", "7")), Json(Completion("after the wait")));
        var clock = new InstantTimeProvider();
        using var client = new ModelClientFactory(timeProvider: clock).Create(Model(server));

        var response = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "hi")], cancellationToken: Ct);

        Assert.Equal("after the wait", response.Text);
        Assert.Equal(2, server.Requests.Count);
        Assert.Equal(TimeSpan.FromSeconds(7), Assert.Single(clock.Waits));
    }

    [Fact]
    public async Task GetResponseAsync_503WithRetryAfter_WaitsAsTold()
    {
        await using var server = Start(Error(503, ("Retry-After", "5")), Json(Completion("back")));
        var clock = new InstantTimeProvider();
        using var client = new ModelClientFactory(timeProvider: clock).Create(Model(server));

        var response = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "hi")], cancellationToken: Ct);

        Assert.Equal("back", response.Text);
        Assert.Equal(TimeSpan.FromSeconds(5), Assert.Single(clock.Waits));
    }

    [Fact]
    public async Task GetResponseAsync_500ThenSuccess_RetriesWithBackoff()
    {
        await using var server = Start(Error(500), Json(Completion("recovered")));
        var clock = new InstantTimeProvider();
        using var client = new ModelClientFactory(timeProvider: clock).Create(Model(server));

        var response = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "hi")], cancellationToken: Ct);

        Assert.Equal("recovered", response.Text);
        Assert.Equal(2, server.Requests.Count);
        Assert.True(Assert.Single(clock.Waits) > TimeSpan.Zero);
    }

    [Fact]
    public async Task GetResponseAsync_500Persistently_ThrowsAfterMaxRetriesPlusOneAttempts()
    {
        await using var server = Start(Error(500));
        var clock = new InstantTimeProvider();
        using var client = new ModelClientFactory(timeProvider: clock).Create(Model(server, maxRetries: 2));

        var ex = await Assert.ThrowsAsync<ClientResultException>(() => client.GetResponseAsync([new ChatMessage(ChatRole.User, "hi")], cancellationToken: Ct));

        Assert.Equal(500, ex.Status);
        Assert.Equal(3, server.Requests.Count);
        Assert.Equal(2, clock.Waits.Count);
        Assert.True(clock.Waits[1] > clock.Waits[0], $"backoff grows: {string.Join(", ", clock.Waits)}");
    }

    [Theory]
    [InlineData(408)]
    [InlineData(429)]
    [InlineData(500)]
    [InlineData(502)]
    [InlineData(503)]
    [InlineData(504)]
    public async Task GetResponseAsync_RetriableStatus_Retried(int status)
    {
        await using var server = Start(Error(status), Json(Completion("ok")));
        var clock = new InstantTimeProvider();
        using var client = new ModelClientFactory(timeProvider: clock).Create(Model(server));

        var response = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "hi")], cancellationToken: Ct);

        Assert.Equal("ok", response.Text);
        Assert.Equal(2, server.Requests.Count);
    }

    [Fact]
    public async Task GetResponseAsync_AttemptTimesOut_RetriedThenSucceeds()
    {
        // The timeout leaves a busy machine time to deliver the request; the slow answer never comes before it.
        await using var server = Start(Slow(TimeSpan.FromSeconds(60), Json(Completion("too late"))), Json(Completion("in time")));
        var clock = new InstantTimeProvider();
        using var client = new ModelClientFactory(timeProvider: clock).Create(Model(server, maxRetries: 1, timeout: TimeSpan.FromSeconds(2)));

        var response = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "hi")], cancellationToken: Ct);

        Assert.Equal("in time", response.Text);
        Assert.Equal(2, server.Requests.Count);
    }

    [Fact]
    public async Task GetResponseAsync_400_NotRetried()
    {
        await using var server = Start(Error(400));
        using var client = new ModelClientFactory(timeProvider: new InstantTimeProvider()).Create(Model(server));

        var ex = await Assert.ThrowsAsync<ClientResultException>(() => client.GetResponseAsync([new ChatMessage(ChatRole.User, "hi")], cancellationToken: Ct));

        Assert.Equal(400, ex.Status);
        Assert.Single(server.Requests);
    }

    [Fact]
    public async Task GetResponseAsync_AnswerSlowerThanTimeout_ThrowsTimeoutNamingTheModel()
    {
        await using var server = Start(Slow(TimeSpan.FromSeconds(60), Json(Completion("too late"))));
        using var client = new ModelClientFactory().Create(Model(server, maxRetries: 0, timeout: TimeSpan.FromSeconds(2)));

        var ex = await Assert.ThrowsAsync<TimeoutException>(() => client.GetResponseAsync([new ChatMessage(ChatRole.User, "hi")], cancellationToken: Ct));

        Assert.Contains("'main'", ex.Message);
        Assert.Contains("within 2s", ex.Message);
        Assert.Single(await server.WaitForRequestsAsync(1));   // sent once: no retry with maxRetries 0
    }

    [Fact]
    public async Task GetResponseAsync_ModelDefaults_AppliedOnlyWhenOptionsLeaveThemUnset()
    {
        await using var server = Start(Json(Completion("ok")));
        using var client = new ModelClientFactory().Create(Model(server, temperature: 0.25f, maxOutputTokens: 64));
        var shared = new ChatOptions { MaxOutputTokens = 10 };

        await client.GetResponseAsync([new ChatMessage(ChatRole.User, "a")], cancellationToken: Ct);
        await client.GetResponseAsync([new ChatMessage(ChatRole.User, "b")], shared, Ct);

        var first = server.Requests[0].Json;
        Assert.Equal(0.25, (double)first["temperature"]!, 3);
        Assert.Equal(64, MaxTokens(first));
        var second = server.Requests[1].Json;
        Assert.Equal(0.25, (double)second["temperature"]!, 3);
        Assert.Equal(10, MaxTokens(second));
        Assert.Null(shared.Temperature);   // the caller's options are left alone

        static int MaxTokens(JsonObject body) => (int)(body["max_completion_tokens"] ?? body["max_tokens"])!;
    }

    [Fact]
    public void GetService_Metadata_NamesProviderAndModel()
    {
        var model = new OpenAIModelDefinition { Name = "main", Endpoint = new Uri("http://127.0.0.1:1/v1"), Model = "gpt-test" };
        using var client = new ModelClientFactory().Create(model);

        var metadata = client.GetService<ChatClientMetadata>();

        Assert.NotNull(metadata);
        Assert.Equal("gpt-test", metadata.DefaultModelId);
    }
}
