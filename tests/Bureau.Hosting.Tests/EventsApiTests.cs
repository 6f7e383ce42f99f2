using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Xunit;

namespace Bureau.Hosting.Tests;

/// <summary>POST /v1/events: CloudEvents in structured and binary mode start every topic trigger subscribed to their type, once per event id.</summary>
public sealed class EventsApiTests : IAsyncDisposable
{
    private readonly TestHost _host = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask DisposeAsync() => _host.DisposeAsync();

    private Task StartAsync() => _host.StartAsync(b => b
        .AddTrigger(new TopicTriggerDefinition { Name = "escalate", Agent = "echo", Topic = "ticket.escalated", Input = "Escalated {{$.data.ticket}} from {{$.source}}" })
        .AddTrigger(new TopicTriggerDefinition { Name = "page", Agent = "pager", Topic = "ticket.escalated" })
        .AddTrigger(new TopicTriggerDefinition { Name = "other", Agent = "echo", Topic = "ticket.closed" }));

    private static HttpRequestMessage Structured(string json) =>
        new(HttpMethod.Post, "/v1/events") { Content = new StringContent(json, Encoding.UTF8, "application/cloudevents+json") };

    private const string Escalated = """{"specversion":"1.0","id":"ev-1","source":"/desk","type":"ticket.escalated","datacontenttype":"application/json","data":{"ticket":"T-9"}}""";

    private async Task<(HttpStatusCode Status, JsonObject Body)> SendAsync(HttpRequestMessage request)
    {
        using var res = await _host.Client.SendAsync(request, Ct);
        return (res.StatusCode, await Http.BodyAsync(res));
    }

    [Fact]
    public async Task Structured_StartsEverySubscribedTrigger_AsThatTrigger()
    {
        await StartAsync();
        var (status, body) = await SendAsync(Structured(Escalated));
        Assert.Equal(HttpStatusCode.Accepted, status);
        var runs = body["runs"]!.AsArray();
        Assert.Equal(["escalate", "page"], runs.Select(r => (string)r!["trigger"]!));
        var escalate = await _host.WaitAsync((string)runs[0]!["run"]!["id"]!);
        Assert.Equal(("echo", "Escalated T-9 from /desk", "trigger:escalate", "event:ev-1:escalate"), (escalate.Agent, escalate.Input, escalate.Actor, escalate.IdempotencyKey));
        var page = await _host.WaitAsync((string)runs[1]!["run"]!["id"]!);
        Assert.Equal(("pager", """{"ticket":"T-9"}"""), (page.Agent, page.Input));
    }

    [Fact]
    public async Task Structured_SameEventAgain_200SameRunsNothingNew()
    {
        await StartAsync();
        var (_, first) = await SendAsync(Structured(Escalated));
        var (status, again) = await SendAsync(Structured(Escalated));
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.All(again["runs"]!.AsArray(), r => Assert.True((bool)r!["duplicate"]!));
        Assert.Equal(first["runs"]!.AsArray().Select(r => (string)r!["run"]!["id"]!), again["runs"]!.AsArray().Select(r => (string)r!["run"]!["id"]!));
        Assert.Equal(2, (await _host.Engine.ListRunsAsync(new RunQuery(), Ct)).Items.Count);
    }

    [Fact]
    public async Task Binary_HeadersAndJsonBody_StartTheSubscribers()
    {
        await StartAsync();
        var req = new HttpRequestMessage(HttpMethod.Post, "/v1/events") { Content = new StringContent("""{"ticket":"T-10"}""", Encoding.UTF8, "application/json") };
        req.Headers.Add("ce-specversion", "1.0");
        req.Headers.Add("ce-id", "ev-2");
        req.Headers.Add("ce-source", "/crm");
        req.Headers.Add("ce-type", "ticket.escalated");
        var (status, body) = await SendAsync(req);
        Assert.Equal(HttpStatusCode.Accepted, status);
        var run = await _host.WaitAsync((string)body["runs"]![0]!["run"]!["id"]!);
        Assert.Equal(("Escalated T-10 from /crm", "event:ev-2:escalate"), (run.Input, run.IdempotencyKey));
    }

    [Fact]
    public async Task Binary_TextBody_IsTheData()
    {
        await StartAsync();
        var req = new HttpRequestMessage(HttpMethod.Post, "/v1/events") { Content = new StringContent("customer is angry", Encoding.UTF8, "text/plain") };
        foreach (var (h, v) in new[] { ("ce-specversion", "1.0"), ("ce-id", "ev-3"), ("ce-source", "/mail"), ("ce-type", "ticket.escalated") }) req.Headers.Add(h, v);
        var (_, body) = await SendAsync(req);
        var page = await _host.WaitAsync((string)body["runs"]![1]!["run"]!["id"]!);
        Assert.Equal("customer is angry", page.Input);
    }

    [Theory]
    [InlineData("""{"specversion":"1.0","id":"x","source":"/s"}""", "type")]
    [InlineData("""{"specversion":"0.3","id":"x","source":"/s","type":"t"}""", "specversion")]
    [InlineData("""{"specversion":"1.0","id":"","source":"/s","type":"t"}""", "id")]
    [InlineData("""{"specversion":"1.0","id":"a\u0000b","source":"/s","type":"ticket.escalated","data":{"ticket":"T-1"}}""", "id")]
    [InlineData("""{"specversion":"1.0","id":"line\nbreak","source":"/s","type":"ticket.escalated","data":{"ticket":"T-1"}}""", "id")]
    [InlineData("""{"specversion":"1.0","id":"x","source":"/s","type":"ticket.escalated","data_base64":"!!not base64!!"}""", "data_base64")]
    [InlineData("""{"specversion":"1.0","id":"x","source":"/s","type":"ticket.escalated","data_base64":123}""", "data_base64")]
    [InlineData("""{"specversion":"1.0","id":"x","source":"/s","type":"ticket.escalated","time":"yesterday","data":{"ticket":"T-1"}}""", "time")]
    [InlineData("""{"specversion":"1.0","id":"x","source":"/s","type":"ticket.escalated","subject":{"a":1},"data":{"ticket":"T-1"}}""", "subject")]
    public async Task Structured_MissingOrWrongAttribute_400NamingIt_NothingStarted(string json, string field)
    {
        await StartAsync();
        using var res = await _host.Client.SendAsync(Structured(json), Ct);
        await Http.ProblemAsync(res, 400, field: field);
        Assert.Empty((await _host.Engine.ListRunsAsync(new RunQuery(), Ct)).Items);
    }

    [Fact]
    public async Task Binary_TimeHeaderThatIsNotATimestamp_400NamingIt()
    {
        await StartAsync();
        var req = new HttpRequestMessage(HttpMethod.Post, "/v1/events") { Content = new StringContent("{}", Encoding.UTF8, "application/json") };
        foreach (var (h, v) in new[] { ("ce-specversion", "1.0"), ("ce-id", "ev-t"), ("ce-source", "/mail"), ("ce-type", "ticket.escalated"), ("ce-time", "12/07/2026") }) req.Headers.Add(h, v);
        using var res = await _host.Client.SendAsync(req, Ct);
        Assert.Contains("RFC 3339", (string?)(await Http.ProblemAsync(res, 400, field: "ce-time"))["detail"]);
        Assert.Empty((await _host.Engine.ListRunsAsync(new RunQuery(), Ct)).Items);
    }

    [Fact]
    public async Task Binary_MissingTypeHeader_400NamingIt()
    {
        await StartAsync();
        var req = new HttpRequestMessage(HttpMethod.Post, "/v1/events") { Content = new StringContent("{}", Encoding.UTF8, "application/json") };
        foreach (var (h, v) in new[] { ("ce-specversion", "1.0"), ("ce-id", "ev-4"), ("ce-source", "/s") }) req.Headers.Add(h, v);
        using var res = await _host.Client.SendAsync(req, Ct);
        await Http.ProblemAsync(res, 400, field: "ce-type");
    }

    [Fact]
    public async Task NotACloudEvent_415()
    {
        await StartAsync();
        using var res = await _host.Client.SendAsync(Http.Json(HttpMethod.Post, "/v1/events", """{"hello":1}"""), Ct);
        await Http.ProblemAsync(res, 415, field: "Content-Type");
    }

    [Fact]
    public async Task NoSubscriber_200NothingStarted()
    {
        await StartAsync();
        var (status, body) = await SendAsync(Structured("""{"specversion":"1.0","id":"ev-5","source":"/s","type":"nobody.cares"}"""));
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Empty(body["runs"]!.AsArray());
        Assert.Contains("no topic trigger is subscribed to 'nobody.cares'", (string?)body["detail"]);
    }

    [Fact]
    public async Task Events_WithApiKeysInTheStore_NeedAKey()
    {
        await StartAsync();
        var key = await _host.CreateKeyAsync(ApiKeyRole.Operator);
        using (var res = await _host.Client.SendAsync(Structured(Escalated), Ct))
            await Http.ProblemAsync(res, 401, field: "Authorization");
        var req = Structured(Escalated);
        req.Headers.Authorization = new("Bearer", key);
        var (status, _) = await SendAsync(req);
        Assert.Equal(HttpStatusCode.Accepted, status);
    }
}
