using System.Text.Json.Nodes;
using Microsoft.Extensions.AI;
using Xunit;

namespace Bureau.Models.Tests;

/// <summary>The C# snippets of docs/models.md, compiled and run so that the page stays true.</summary>
public sealed class DocsSnippetTests
{
    // docs/models.md begin ("A custom IChatClient in C#")
    internal sealed class UppercaseChatClient(IChatClient inner) : DelegatingChatClient(inner)
    {
        public override async Task<ChatResponse> GetResponseAsync(
            IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
        {
            var response = await base.GetResponseAsync(messages, options, cancellationToken);
            return new ChatResponse(new ChatMessage(ChatRole.Assistant, response.Text.ToUpperInvariant())) { Usage = response.Usage };
        }
    }
    // docs/models.md end

    [Fact]
    public async Task CustomClientSnippet_Runs()
    {
        // docs/models.md begin (then used as a model)
        var definitions = new BureauDefinitions()
            .Add(new ChatClientModelDefinition
            {
                Name = "shouty",
                Client = new UppercaseChatClient(new ScriptedChatClient(new ScriptedModelDefinition
                {
                    Name = "inner",
                    Rules = [new ScriptRule { Reply = "hello {{input}}" }],
                })),
            })
            .Add(new AgentDefinition { Name = "greeter", Model = "shouty" });

        IChatClient client = new ModelClientFactory().Create(definitions.Models["shouty"]);
        var answer = await client.GetResponseAsync("bob");
        // answer.Text == "HELLO BOB"
        // docs/models.md end

        Assert.Equal("HELLO BOB", answer.Text);
    }

    [Fact]
    public async Task FactorySnippet_TurnsADefinitionIntoItsClient()
    {
        var definitions = new BureauDefinitions().Add(new ScriptedModelDefinition { Name = "main", Rules = [new ScriptRule { Reply = "hi {{input}}" }] });

        // docs/models.md begin ("Models": the factory)
        var factory = new ModelClientFactory(httpClient: null, timeProvider: null);
        IChatClient client = factory.Create(definitions.Models["main"]);
        // docs/models.md end

        Assert.Equal("hi ada", (await client.GetResponseAsync("ada")).Text);
    }

    [Fact]
    public async Task ScriptedSnippet_Runs()
    {
        // docs/models.md begin ("Scripted" / "In C#")
        var model = new ScriptedModelDefinition
        {
            Name = "demo",
            Latency = TimeSpan.FromMilliseconds(50),
            Rules =
            [
                new ScriptRule
                {
                    When = new ScriptCondition { TurnFrom = 1, TurnTo = 1, Input = @"order (?<order>\d+)" },
                    Calls = [new ScriptToolCall { Tool = "lookup_order", Arguments = new JsonObject { ["order"] = "{{order}}" } }],
                },
                new ScriptRule { Reply = "Done: {{last}}" },
            ],
        };
        using var client = new ScriptedChatClient(model);
        // docs/models.md end

        var response = await client.GetResponseAsync("where is order 12?", cancellationToken: TestContext.Current.CancellationToken);
        Assert.Equal("lookup_order", Assert.IsType<FunctionCallContent>(Assert.Single(response.Messages[0].Contents)).Name);
    }

    [Fact]
    public async Task ScriptedYamlExample_BehavesAsDocumented()
    {
        // docs/models.md, the scripted YAML example, as definitions
        using var client = new ScriptedChatClient(new ScriptedModelDefinition
        {
            Name = "demo",
            Rules =
            [
                new ScriptRule
                {
                    When = new ScriptCondition { TurnFrom = 1, TurnTo = 1, Input = @"refund.*order (?<order>\d+)" },
                    Calls = [new ScriptToolCall { Tool = "lookup_customer", Arguments = new JsonObject { ["order"] = "{{order}}" } }],
                },
                new ScriptRule { When = new ScriptCondition { Tool = "lookup_customer", Match = @"""vip"":\s*true" }, Reply = "VIP customer, escalating." },
                new ScriptRule
                {
                    When = new ScriptCondition { TurnFrom = 2, TurnTo = 4, Input = @"order (?<order>\d+)", Match = @"""amount"":\s*(\d+(\.\d+)?)" },
                    Calls =
                    [
                        new ScriptToolCall
                        {
                            Tool = "file_refund",
                            Arguments = JsonNode.Parse("""{ "order": "{{order}}", "amount": "{{1}}", "meta": { "turn": "{{turn}}", "tags": ["auto", "{{order}}"] } }""")!.AsObject(),
                        },
                    ],
                },
                new ScriptRule { Reply = "Done: {{last}}" },
            ],
        });
        var ct = TestContext.Current.CancellationToken;
        List<ChatMessage> messages = [new(ChatRole.User, "please refund order 1234")];

        var first = await client.GetResponseAsync(messages, cancellationToken: ct);
        var lookup = Assert.IsType<FunctionCallContent>(Assert.Single(first.Messages[0].Contents));
        Assert.Equal("call_1_0", lookup.CallId);
        Assert.Equal("""{"order":1234}""", Json(lookup));

        messages.AddRange(first.Messages);
        messages.Add(new ChatMessage(ChatRole.Tool, [new FunctionResultContent("call_1_0", """{"vip": false, "amount": 25.5}""")]));
        var second = await client.GetResponseAsync(messages, cancellationToken: ct);
        var refund = Assert.IsType<FunctionCallContent>(Assert.Single(second.Messages[0].Contents));
        Assert.Equal("""{"order":1234,"amount":25.5,"meta":{"turn":2,"tags":["auto",1234]}}""", Json(refund));

        messages.AddRange(second.Messages);
        messages.Add(new ChatMessage(ChatRole.Tool, [new FunctionResultContent("call_2_0", "refund filed")]));
        var third = await client.GetResponseAsync(messages, cancellationToken: ct);
        Assert.Equal("Done: refund filed", third.Text);

        static string Json(FunctionCallContent call) => new JsonObject(call.Arguments!.Select(a =>
            new KeyValuePair<string, JsonNode?>(a.Key, JsonNode.Parse(((System.Text.Json.JsonElement)a.Value!).GetRawText())))).ToJsonString();
    }
}
