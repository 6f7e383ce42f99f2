using System.Text.Json;
using Bureau;
using Bureau.Tools;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
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

        // docs/tools.md begin ("C# function tools"; the refund returns a tuple here, so the anonymous object names its fields)
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
        // docs/tools.md end

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

        // docs/tools.md begin ("HTTP tools", in C#)
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
        // docs/tools.md end

        var tool = new ToolFactory().Create(definitions.Tools["echo"]);
        var validator = new ToolCallValidator(new Dictionary<string, BureauTool> { ["echo"] = tool });
        var agent = new AgentDefinition { Name = "a", Model = "m", Tools = ["echo"] };
        Assert.True(validator.Check(agent, "echo", """{"text":"hi"}""").IsValid);
        Assert.Contains("required property 'text' missing", validator.Check(agent, "echo", "{}").Error);
    }

    /// <summary>Answers every request, and remembers what it was sent.</summary>
    private sealed class RecordingHandler : HttpMessageHandler
    {
        public List<(HttpMethod Method, Uri? Uri, string? Key, string Body)> Requests { get; } = [];

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            var body = request.Content is null ? "" : await request.Content.ReadAsStringAsync(cancellationToken);
            Requests.Add((request.Method, request.RequestUri,
                request.Headers.TryGetValues("Idempotency-Key", out var keys) ? keys.Single() : null, body));
            return new HttpResponseMessage(System.Net.HttpStatusCode.OK) { Content = new StringContent("sent through your client") };
        }
    }

    [Fact]
    public async Task UseToolHttpClient_SendsHttpToolsThroughYourClient_AndKeepsEmitTools()
    {
        // docs/tools.md, "HTTP tools": "To add handlers (proxies, certificates, logging), pass your own client".
        var handler = new RecordingHandler();
        var services = new ServiceCollection();
        services.AddBureau().UseToolHttpClient(new HttpClient(handler) { Timeout = Timeout.InfiniteTimeSpan });
        await using var provider = services.BuildServiceProvider();
        var factory = provider.GetRequiredService<ToolFactory>();

        // Nothing listens on port 9: only the given client's handler can answer this call.
        var tool = factory.Create(new HttpToolDefinition { Name = "echo", Method = "POST", Url = new Uri("http://127.0.0.1:9/echo"), Effect = ToolEffect.Idempotent });
        var outcome = await tool.InvokeAsync(Invocation("echo", """{"text":"hi"}""", "run9", 3), TestContext.Current.CancellationToken);

        Assert.False(outcome.IsError, outcome.Content);
        Assert.Equal("sent through your client", outcome.Content);
        var request = Assert.Single(handler.Requests);
        Assert.Equal(HttpMethod.Post, request.Method);
        Assert.Equal(new Uri("http://127.0.0.1:9/echo"), request.Uri);
        Assert.Equal("run9:3", request.Key);
        Assert.Equal("""{"text":"hi"}""", request.Body);
        // The factory is still Bureau's own: emit tools get the event bus (a factory built by hand refuses them).
        Assert.NotNull(factory.Create(new EmitToolDefinition { Name = "announce", Topic = "bureau.test" }));
    }
}
