using System.Text.Json;
using Bureau.Tools;
using Microsoft.Extensions.AI;
using Xunit;
using static Bureau.Tests.Tools.ToolTestSupport;

namespace Bureau.Tests.Tools;

/// <summary>The C# snippets of docs/tools.md, compiled and run so that the page stays true.</summary>
public sealed class DocsSnippetTests
{
    /// <summary>Stands in for the payment provider of the page's example.</summary>
    private sealed class Payments
    {
        public List<(string Order, decimal Amount, string? Key)> Calls { get; } = [];

        public Task<(string Id, string Status)> RefundAsync(string orderId, decimal amount, string? idempotencyKey, CancellationToken ct)
        {
            Calls.Add((orderId, amount, idempotencyKey));
            return Task.FromResult(("R-1", "filed"));
        }
    }

    [Fact]
    public async Task FunctionToolSnippet_PassesTheCallsIdempotencyKeyOnAndReturnsJson()
    {
        var definitions = new BureauDefinitions();
        var payments = new Payments();

        // docs/tools.md, "A C# function tool" (the refund returns a tuple here, so the anonymous object names its fields)
        definitions.Add(new FunctionToolDefinition
        {
            Name = "refund",
            Description = "Refund an order",
            Effect = ToolEffect.Write,
            Timeout = TimeSpan.FromSeconds(10),
            Function = AIFunctionFactory.Create(async (string orderId, decimal amount, CancellationToken ct) =>
            {
                // The same key on every retry of this call: pass it on to the payment provider.
                var key = BureauToolContext.Current?.IdempotencyKey;
                var refund = await payments.RefundAsync(orderId, amount, idempotencyKey: key, ct);
                return new { refund.Id, refund.Status };          // returned to the model as JSON
            }, "refund"),
        });

        var tool = new ToolFactory().Create(definitions.Tools["refund"]);
        var outcome = await tool.InvokeAsync(Invocation("refund", """{"orderId":"1042","amount":30}""", "run9", 5), TestContext.Current.CancellationToken);

        Assert.False(outcome.IsError, outcome.Content);
        Assert.Equal([("1042", 30m, (string?)"run9:5")], payments.Calls);
        Assert.Equal("""{"id":"R-1","status":"filed"}""", outcome.Content.Replace(" ", "").Replace("\n", ""));
        using var json = JsonDocument.Parse(outcome.Content);
        Assert.Equal("R-1", json.RootElement.GetProperty("id").GetString());
        Assert.Equal("filed", json.RootElement.GetProperty("status").GetString());
    }

    [Fact]
    public void HttpToolSnippet_BuildsAValidTool()
    {
        var definitions = new BureauDefinitions();
        var token = "secret";

        // docs/tools.md, "An HTTP tool in C#"
        definitions.Add(new HttpToolDefinition
        {
            Name = "echo",
            Method = "POST",
            Url = new Uri("http://127.0.0.1:8090/echo"),
            Effect = ToolEffect.Idempotent,
            Timeout = TimeSpan.FromSeconds(5),
            Headers = new Dictionary<string, string> { ["Authorization"] = "Bearer " + token },
            Parameters = JsonDocument.Parse("""{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}""").RootElement,
        });

        var tool = new ToolFactory().Create(definitions.Tools["echo"]);
        var validator = new ToolCallValidator(new Dictionary<string, BureauTool> { ["echo"] = tool });
        var agent = new AgentDefinition { Name = "a", Model = "m", Tools = ["echo"] };
        Assert.True(validator.Check(agent, "echo", """{"text":"hi"}""").IsValid);
        Assert.Contains("required property 'text' missing", validator.Check(agent, "echo", "{}").Error);
    }
}
