using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace Bureau.Models.Tests;

public sealed class ScriptedChatClientTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static ScriptedChatClient Client(params ScriptRule[] rules) =>
        new(new ScriptedModelDefinition { Name = "demo", Rules = rules });

    private static ScriptRule Rule(ScriptCondition? when, string? reply = null, params ScriptToolCall[] calls) =>
        new() { When = when, Reply = reply, Calls = calls };

    private static ScriptToolCall Call(string tool, string argsJson) =>
        new() { Tool = tool, Arguments = JsonNode.Parse(argsJson)!.AsObject() };

    /// <summary>A conversation: the user's input, then (tool, result) exchanges, one assistant call each.</summary>
    private static List<ChatMessage> Conversation(string input, params (string Tool, string Result)[] exchanges)
    {
        List<ChatMessage> messages = [new(ChatRole.System, "Be helpful."), new(ChatRole.User, input)];
        for (var i = 0; i < exchanges.Length; i++)
        {
            var id = $"call_{i + 1}_0";
            messages.Add(new ChatMessage(ChatRole.Assistant, [new FunctionCallContent(id, exchanges[i].Tool, new Dictionary<string, object?>())]));
            messages.Add(new ChatMessage(ChatRole.Tool, [new FunctionResultContent(id, exchanges[i].Result)]));
        }
        return messages;
    }

    private static FunctionCallContent SingleCall(ChatResponse response) =>
        Assert.Single(response.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>());

    private static string ArgsJson(FunctionCallContent call) =>
        JsonNode.Parse(JsonSerializer.Serialize(call.Arguments, AIJsonUtilities.DefaultOptions.GetTypeInfo(typeof(IDictionary<string, object?>))))!.ToJsonString();

    [Fact]
    public async Task GetResponseAsync_TurnNumber_MatchesOnlyThatTurn()
    {
        using var client = Client(
            Rule(new ScriptCondition { TurnFrom = 1, TurnTo = 1 }, "first"),
            Rule(null, "later"));

        Assert.Equal("first", (await client.GetResponseAsync(Conversation("hi"), cancellationToken: Ct)).Text);
        Assert.Equal("later", (await client.GetResponseAsync(Conversation("hi", ("t", "r")), cancellationToken: Ct)).Text);
    }

    [Theory]
    [InlineData(0, "other")]
    [InlineData(1, "two-to-four")]
    [InlineData(2, "two-to-four")]
    [InlineData(3, "two-to-four")]
    [InlineData(4, "five-plus")]
    [InlineData(9, "five-plus")]
    public async Task GetResponseAsync_TurnRanges_MatchInclusively(int exchanges, string expected)
    {
        using var client = Client(
            Rule(new ScriptCondition { TurnFrom = 2, TurnTo = 4 }, "two-to-four"),
            Rule(new ScriptCondition { TurnFrom = 5 }, "five-plus"),
            Rule(null, "other"));
        var conversation = Conversation("go", [.. Enumerable.Range(0, exchanges).Select(i => ("t", $"r{i}"))]);

        var response = await client.GetResponseAsync(conversation, cancellationToken: Ct);

        Assert.Equal(expected, response.Text);
    }

    [Fact]
    public async Task GetResponseAsync_InputRegexNamedCapture_FillsArguments()
    {
        using var client = Client(Rule(
            new ScriptCondition { TurnFrom = 1, TurnTo = 1, Input = @"refund.*order (?<order>\d+)" },
            null,
            Call("file_refund", """{ "order": "{{order}}", "note": "order {{order}} for {{input}}" }""")));

        var response = await client.GetResponseAsync(Conversation("please refund my order 1234"), cancellationToken: Ct);

        var call = SingleCall(response);
        Assert.Equal("file_refund", call.Name);
        Assert.Equal("call_1_0", call.CallId);
        Assert.Equal("""{"order":1234,"note":"order 1234 for please refund my order 1234"}""", ArgsJson(call));
        Assert.Equal(ChatFinishReason.ToolCalls, response.FinishReason);
    }

    [Fact]
    public async Task GetResponseAsync_InputRegexDoesNotMatch_FallsThrough()
    {
        using var client = Client(
            Rule(new ScriptCondition { Input = "refund" }, "refund"),
            Rule(null, "fallback"));

        var response = await client.GetResponseAsync(Conversation("hello"), cancellationToken: Ct);

        Assert.Equal("fallback", response.Text);
    }

    [Fact]
    public async Task GetResponseAsync_UserRegex_MatchesLatestUserMessage()
    {
        using var client = Client(
            Rule(new ScriptCondition { User = "^thanks" }, "you're welcome"),
            Rule(null, "noted"));
        var conversation = Conversation("hello");
        conversation.Add(new ChatMessage(ChatRole.Assistant, "hi!"));
        conversation.Add(new ChatMessage(ChatRole.User, "thanks a lot"));

        Assert.Equal("you're welcome", (await client.GetResponseAsync(conversation, cancellationToken: Ct)).Text);
        Assert.Equal("noted", (await client.GetResponseAsync(Conversation("hello first"), cancellationToken: Ct)).Text);
    }

    [Fact]
    public async Task GetResponseAsync_ToolCondition_MatchesResultOfThatToolOnly()
    {
        using var client = Client(
            Rule(new ScriptCondition { Tool = "lookup_customer" }, "looked up: {{last}}"),
            Rule(null, "other"));

        Assert.Equal("looked up: {\"vip\":false}", (await client.GetResponseAsync(Conversation("x", ("lookup_customer", """{"vip":false}""")), cancellationToken: Ct)).Text);
        Assert.Equal("other", (await client.GetResponseAsync(Conversation("x", ("file_refund", "ok")), cancellationToken: Ct)).Text);
        Assert.Equal("other", (await client.GetResponseAsync(Conversation("x"), cancellationToken: Ct)).Text);
    }

    [Fact]
    public async Task GetResponseAsync_ToolAndMatch_RegexOnThatToolsResult()
    {
        using var client = Client(
            Rule(new ScriptCondition { Tool = "lookup_customer", Match = "\"vip\":\\s*true" }, "VIP customer, escalating."),
            Rule(new ScriptCondition { Tool = "lookup_customer" }, "regular customer"));

        Assert.Equal("VIP customer, escalating.", (await client.GetResponseAsync(Conversation("x", ("lookup_customer", """{"vip": true}""")), cancellationToken: Ct)).Text);
        Assert.Equal("regular customer", (await client.GetResponseAsync(Conversation("x", ("lookup_customer", """{"vip": false}""")), cancellationToken: Ct)).Text);
    }

    [Fact]
    public async Task GetResponseAsync_ToolResultAsJsonElement_MatchedAsJsonText()
    {
        using var client = Client(Rule(new ScriptCondition { Match = @"""balance"":(\d+)" }, "balance is {{1}}"));
        var conversation = Conversation("x");
        conversation.Add(new ChatMessage(ChatRole.Assistant, [new FunctionCallContent("c1", "account", null)]));
        conversation.Add(new ChatMessage(ChatRole.Tool, [new FunctionResultContent("c1", JsonDocument.Parse("""{"balance":77}""").RootElement)]));

        Assert.Equal("balance is 77", (await client.GetResponseAsync(conversation, cancellationToken: Ct)).Text);
    }

    [Fact]
    public async Task GetResponseAsync_MatchRegex_AppliesToLatestMessageOfAnyRole()
    {
        using var client = Client(
            Rule(new ScriptCondition { Match = @"order (\d+)" }, "latest mentions {{1}}"),
            Rule(null, "nothing"));

        Assert.Equal("latest mentions 9", (await client.GetResponseAsync(Conversation("about order 9"), cancellationToken: Ct)).Text);
        Assert.Equal("latest mentions 5", (await client.GetResponseAsync(Conversation("about order 9", ("t", "found order 5")), cancellationToken: Ct)).Text);
        Assert.Equal("nothing", (await client.GetResponseAsync(Conversation("about order 9", ("t", "no match here")), cancellationToken: Ct)).Text);
    }

    [Fact]
    public async Task GetResponseAsync_NameClashAcrossRegexes_LatestRegexWins()
    {
        using var client = Client(Rule(
            new ScriptCondition { Input = @"(?<id>a\d)", User = @"(?<id>\w+)", Match = @"(?<id>m\d)" },
            "id={{id}} one={{1}}"));
        var conversation = Conversation("a1 ok");
        conversation.Add(new ChatMessage(ChatRole.Assistant, [new FunctionCallContent("c", "t", null)]));
        conversation.Add(new ChatMessage(ChatRole.Tool, [new FunctionResultContent("c", "m7")]));

        var response = await client.GetResponseAsync(conversation, cancellationToken: Ct);

        // named groups are also numbered (after unnamed ones, as .NET does): {{1}} is `id` of the latest regex
        Assert.Equal("id=m7 one=m7", response.Text);
    }

    [Fact]
    public async Task GetResponseAsync_NumberedCaptures_FromEarlierRegexWhenLaterHasNone()
    {
        using var client = Client(Rule(
            new ScriptCondition { Input = @"(\w+) (\w+)", Match = "done" },
            "first={{1}} second={{2}} whole={{0}}"));

        var response = await client.GetResponseAsync(Conversation("alpha beta", ("t", "done")), cancellationToken: Ct);

        Assert.Equal("first=alpha second=beta whole=done", response.Text);
    }

    [Fact]
    public async Task GetResponseAsync_TemplatesInNestedArgs_RenderedWithNumberCoercion()
    {
        using var client = Client(Rule(
            new ScriptCondition { Input = @"pay (?<amount>[\d.]+) to (?<who>\w+) ref (?<ref>\w+)" },
            null,
            Call("pay", """
                {
                  "amount": "{{amount}}",
                  "amountText": "{{amount}} EUR",
                  "ref": "{{ref}}",
                  "literal": "42",
                  "flag": true,
                  "count": 3,
                  "none": null,
                  "turn": "{{turn}}",
                  "turnIndex": "{{turnIndex}}",
                  "payee": { "name": "{{who}}", "tags": ["{{who}}", "{{ amount }}", { "deep": "{{2}}" }] },
                  "unknown": "[{{nope}}]"
                }
                """)));

        var response = await client.GetResponseAsync(Conversation("pay 12.50 to bob ref 007"), cancellationToken: Ct);

        var json = JsonNode.Parse(ArgsJson(SingleCall(response)))!;
        Assert.Equal(JsonValueKind.Number, json["amount"]!.GetValueKind());
        Assert.Equal(12.5m, json["amount"]!.GetValue<decimal>());
        Assert.Equal("12.50 EUR", (string?)json["amountText"]);
        Assert.Equal("007", (string?)json["ref"]);                  // not a JSON number (leading zero): stays a string
        Assert.Equal("42", (string?)json["literal"]);               // a literal, not a placeholder: stays a string
        Assert.True((bool)json["flag"]!);
        Assert.Equal(3, (int)json["count"]!);
        Assert.Null(json["none"]);
        Assert.Equal(1, (int)json["turn"]!);
        Assert.Equal(0, (int)json["turnIndex"]!);
        Assert.Equal("bob", (string?)json["payee"]!["name"]);
        Assert.Equal("bob", (string?)json["payee"]!["tags"]![0]);
        Assert.Equal(12.5m, json["payee"]!["tags"]![1]!.GetValue<decimal>());
        Assert.Equal("bob", (string?)json["payee"]!["tags"]![2]!["deep"]);
        Assert.Equal("[]", (string?)json["unknown"]);
    }

    [Fact]
    public async Task GetResponseAsync_BuiltIns_InputTurnLast()
    {
        using var client = Client(Rule(null, "in={{input}} turn={{turn}} last={{last}} gone={{missing}}."));

        var response = await client.GetResponseAsync(Conversation("start", ("a", "r1"), ("b", "r2")), cancellationToken: Ct);

        Assert.Equal("in=start turn=3 last=r2 gone=.", response.Text);
    }

    [Fact]
    public async Task GetResponseAsync_SeveralCalls_IdsByTurnAndIndex()
    {
        using var client = Client(Rule(null, "working on it", Call("a", "{}"), Call("b", """{"x":"{{turn}}"}""")));

        var response = await client.GetResponseAsync(Conversation("go", ("t", "r")), cancellationToken: Ct);

        var calls = response.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>().ToList();
        Assert.Equal(["call_2_0", "call_2_1"], calls.Select(c => c.CallId));
        Assert.Equal(["a", "b"], calls.Select(c => c.Name));
        Assert.Equal("""{"x":2}""", ArgsJson(calls[1]));
        Assert.Equal("working on it", response.Text);
    }

    [Fact]
    public async Task GetResponseAsync_NoRuleMatches_RepliesWithVisibleError()
    {
        using var client = Client(Rule(new ScriptCondition { Input = "never" }, "x"));

        var response = await client.GetResponseAsync(Conversation("hello", ("lookup", "line one\nline two")), cancellationToken: Ct);

        Assert.Equal("scripted model 'demo': no rule matched turn 2 (latest message: 'line one line two')", response.Text);
        Assert.Equal(ChatFinishReason.Stop, response.FinishReason);
        Assert.Empty(response.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>());
    }

    [Fact]
    public async Task GetResponseAsync_Usage_EstimatedAsCharactersOverFour()
    {
        using var client = Client(Rule(null, "abcde"));   // 5 characters -> 2 tokens
        List<ChatMessage> messages = [new(ChatRole.System, "12345678"), new(ChatRole.User, "123")];   // 11 characters -> 3 tokens

        var response = await client.GetResponseAsync(messages, cancellationToken: Ct);

        Assert.Equal(3, response.Usage?.InputTokenCount);
        Assert.Equal(2, response.Usage?.OutputTokenCount);
        Assert.Equal(5, response.Usage?.TotalTokenCount);
    }

    [Fact]
    public async Task GetResponseAsync_Usage_CountsToolCallsAndResults()
    {
        using var client = Client(Rule(null, null, Call("lookup", """{"k":"v"}""")));   // "lookup" + {"k":"v"} = 6 + 9 = 15 -> 4 tokens

        var bare = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "x")], cancellationToken: Ct);
        var longer = await client.GetResponseAsync(Conversation("x", ("lookup", new string('r', 400))), cancellationToken: Ct);

        Assert.Equal(4, bare.Usage?.OutputTokenCount);
        Assert.True(longer.Usage?.InputTokenCount >= 100, $"input tokens {longer.Usage?.InputTokenCount} count the 400-character tool result");
    }

    [Fact]
    public async Task GetResponseAsync_Latency_WaitsOnTheTimeProvider()
    {
        var clock = new FakeTimeProvider();
        using var client = new ScriptedChatClient(new ScriptedModelDefinition { Name = "slow", Latency = TimeSpan.FromSeconds(2), Rules = [Rule(null, "done")] }, clock);

        var pending = client.GetResponseAsync(Conversation("x"), cancellationToken: Ct);
        Assert.False(pending.IsCompleted);
        clock.Advance(TimeSpan.FromSeconds(1));
        Assert.False(pending.IsCompleted);
        clock.Advance(TimeSpan.FromSeconds(1));

        Assert.Equal("done", (await pending).Text);
    }

    [Fact]
    public async Task GetResponseAsync_CancelledDuringLatency_Throws()
    {
        var clock = new FakeTimeProvider();
        using var client = new ScriptedChatClient(new ScriptedModelDefinition { Name = "slow", Latency = TimeSpan.FromSeconds(2), Rules = [Rule(null, "done")] }, clock);
        using var cts = new CancellationTokenSource();

        var pending = client.GetResponseAsync(Conversation("x"), cancellationToken: cts.Token);
        await cts.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => pending);
    }

    [Fact]
    public async Task GetStreamingResponseAsync_YieldsWordChunksThenCallsThenUsage()
    {
        using var client = Client(Rule(null, "I will look that up now", Call("lookup", """{"q":"{{input}}"}""")));

        var updates = new List<ChatResponseUpdate>();
        await foreach (var update in client.GetStreamingResponseAsync(Conversation("cats"), cancellationToken: Ct)) updates.Add(update);
        var response = updates.ToChatResponse();

        Assert.True(updates.Count(u => u.Contents.OfType<TextContent>().Any()) >= 3, "the text comes in several chunks");
        Assert.IsType<UsageContent>(Assert.Single(updates[^1].Contents));
        Assert.Equal("I will look that up now", response.Text);
        var call = SingleCall(response);
        Assert.Equal("call_1_0", call.CallId);
        Assert.Equal("""{"q":"cats"}""", ArgsJson(call));
        Assert.Equal(ChatFinishReason.ToolCalls, response.FinishReason);
        Assert.NotNull(response.Usage?.InputTokenCount);
        Assert.Equal(response.Usage!.InputTokenCount + response.Usage.OutputTokenCount, response.Usage.TotalTokenCount);
        Assert.All(updates, u => Assert.Equal("scripted:demo", u.ModelId));
        Assert.Equal("scripted:demo", response.ModelId);
        Assert.Equal(true, response.AdditionalProperties?[ScriptedChatClient.ScriptedProperty]);
    }

    [Fact]
    public async Task GetStreamingResponseAsync_Latency_WaitsBeforeFirstChunk()
    {
        var clock = new FakeTimeProvider();
        using var client = new ScriptedChatClient(new ScriptedModelDefinition { Name = "slow", Latency = TimeSpan.FromMilliseconds(500), Rules = [Rule(null, "ok")] }, clock);

        await using var updates = client.GetStreamingResponseAsync(Conversation("x"), cancellationToken: Ct).GetAsyncEnumerator(Ct);
        var first = updates.MoveNextAsync().AsTask();
        Assert.False(first.IsCompleted);
        clock.Advance(TimeSpan.FromMilliseconds(500));

        Assert.True(await first);
        Assert.Equal("ok", updates.Current.Text);
    }

    [Fact]
    public async Task GetResponseAsync_EveryResponse_LabelledScripted()
    {
        using var client = Client(Rule(null, "hi"));

        var response = await client.GetResponseAsync(Conversation("x"), cancellationToken: Ct);

        Assert.Equal("scripted:demo", response.ModelId);
        Assert.Equal(true, response.AdditionalProperties?["bureau.scripted"]);
    }

    [Fact]
    public void GetService_Metadata_NamesScriptedProvider()
    {
        using var client = Client(Rule(null, "hi"));

        var metadata = client.GetService<ChatClientMetadata>();

        Assert.NotNull(metadata);
        Assert.Equal("scripted", metadata.ProviderName);
        Assert.Equal("scripted:demo", metadata.DefaultModelId);
        Assert.Same(client, client.GetService<ScriptedChatClient>());
        Assert.Null(client.GetService<ChatClientMetadata>("some key"));
    }

    [Fact]
    public void Constructor_InvalidRegex_ThrowsNamingModelRuleAndKey()
    {
        var model = new ScriptedModelDefinition
        {
            Name = "demo",
            Rules = [Rule(null, "ok"), new ScriptRule { When = new ScriptCondition { User = "(unclosed" }, Reply = "x", Source = "bureau.yaml:12:9" }],
        };

        var ex = Assert.Throws<ArgumentException>(() => new ScriptedChatClient(model));

        Assert.Contains("'demo'", ex.Message);
        Assert.Contains("rule 2 (bureau.yaml:12:9)", ex.Message);
        Assert.Contains("'user' regex '(unclosed'", ex.Message);
    }

    [Theory]
    [InlineData(0, null, "turn must be 1 or more")]
    [InlineData(4, 2, "turn range 4-2 is empty")]
    public void Constructor_BadTurnRange_Throws(int from, int? to, string message)
    {
        var model = new ScriptedModelDefinition { Name = "demo", Rules = [Rule(new ScriptCondition { TurnFrom = from, TurnTo = to }, "x")] };

        var ex = Assert.Throws<ArgumentException>(() => new ScriptedChatClient(model));

        Assert.Contains(message, ex.Message);
    }

    [Fact]
    public void Constructor_RuleWithoutReplyOrCalls_Throws()
    {
        var ex = Assert.Throws<ArgumentException>(() => Client(new ScriptRule { When = new ScriptCondition { TurnFrom = 1 } }));

        Assert.Contains("rule 1 has neither a reply nor calls", ex.Message);
    }

    [Fact]
    public async Task GetResponseAsync_ManyConcurrentRuns_EachAnsweredFromItsOwnConversation()
    {
        using var client = Client(
            Rule(new ScriptCondition { TurnFrom = 1, TurnTo = 1, Input = @"run (?<n>\d+)" }, null, Call("lookup", """{"n":"{{n}}"}""")),
            Rule(new ScriptCondition { Tool = "lookup", Match = @"value-(\d+)" }, "done {{1}}"));

        await Parallel.ForEachAsync(Enumerable.Range(0, 500), new ParallelOptions { CancellationToken = Ct }, async (n, ct) =>
        {
            var first = await client.GetResponseAsync(Conversation($"run {n}"), cancellationToken: ct);
            Assert.Equal($$"""{"n":{{n}}}""", ArgsJson(SingleCall(first)));
            var second = await client.GetResponseAsync(Conversation($"run {n}", ("lookup", $"value-{n}")), cancellationToken: ct);
            Assert.Equal($"done {n}", second.Text);
        });
    }
}
