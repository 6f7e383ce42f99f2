using System.Text.Json.Nodes;
using Microsoft.Extensions.AI;
using Xunit;

namespace Bureau.Models.Tests;

/// <summary>The C# snippets of docs/models.md, compiled and run so that the page stays true.</summary>
public sealed class DocsSnippetTests
{
    // docs/models.md, "A custom IChatClient in C#"
    private sealed class UppercaseChatClient(IChatClient inner) : DelegatingChatClient(inner)
    {
        public override async Task<ChatResponse> GetResponseAsync(
            IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
        {
            var response = await base.GetResponseAsync(messages, options, cancellationToken);
            return new ChatResponse(new ChatMessage(ChatRole.Assistant, response.Text.ToUpperInvariant())) { Usage = response.Usage };
        }
    }

    [Fact]
    public async Task CustomClientSnippet_Runs()
    {
        // --- snippet: custom client ---
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
        var answer = await client.GetResponseAsync("bob", cancellationToken: TestContext.Current.CancellationToken);
        // answer.Text == "HELLO BOB"
        // --- end snippet ---

        Assert.Equal("HELLO BOB", answer.Text);
    }

    [Fact]
    public async Task ScriptedSnippet_Runs()
    {
        // --- snippet: scripted in C# ---
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
        // --- end snippet ---

        var response = await client.GetResponseAsync("where is order 12?", cancellationToken: TestContext.Current.CancellationToken);
        Assert.Equal("lookup_order", Assert.IsType<FunctionCallContent>(Assert.Single(response.Messages[0].Contents)).Name);
    }
}
