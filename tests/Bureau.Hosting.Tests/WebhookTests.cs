using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Bureau.Hosting.Tests;

/// <summary>
/// POST /v1/hooks/{trigger}: each signature scheme (valid, wrong secret, tampered body, stale timestamp, replayed
/// delivery), event filters, the mapping to the run's input, and the answer only once the run is durable.
/// </summary>
public sealed class WebhookTests : IAsyncDisposable
{
    private const string GitHubSecret = "gh-secret";
    private const string SlackSecret = "slack-signing-secret";
    private const string StandardSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    private const string HmacSecret = "hmac-secret";
    private const string Issue = """{"action":"opened","issue":{"number":7,"title":"Login fails","body":"Since today"}}""";

    private readonly TestHost _host = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask DisposeAsync() => _host.DisposeAsync();

    private Task StartAsync() => _host.StartAsync(b => b
        .AddTrigger(new WebhookTriggerDefinition
        {
            Name = "gh", Agent = "echo", Source = WebhookSource.GitHub, Secret = GitHubSecret,
            Events = ["issues.opened", "pull_request.*"], Input = "New issue {{$.issue.title}}: {{$.issue.body}}",
        })
        .AddTrigger(new WebhookTriggerDefinition { Name = "slack", Agent = "echo", Source = WebhookSource.Slack, Secret = SlackSecret, Events = ["app_mention"], Input = "{{$.event.text}}" })
        .AddTrigger(new WebhookTriggerDefinition { Name = "crm", Agent = "echo", Source = WebhookSource.Standard, Secret = StandardSecret, Input = "{{$.type}} {{$.data.ticket}}" })
        .AddTrigger(new WebhookTriggerDefinition { Name = "plain", Agent = "echo", Source = WebhookSource.Hmac, Secret = HmacSecret, SignatureHeader = "X-Sig" })
        .AddTrigger(new ScheduleTriggerDefinition { Name = "cron", Agent = "echo", Cron = "0 0 1 1 *" }));

    // ---- senders, signing as each source does ----

    private static string Hex(string secret, byte[] data) => Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(secret), data));

    private static HttpRequestMessage GitHub(string body, string ev = "issues", string delivery = "d-1", string secret = GitHubSecret, string? sentBody = null)
    {
        var req = new HttpRequestMessage(HttpMethod.Post, "/v1/hooks/gh") { Content = new StringContent(sentBody ?? body, Encoding.UTF8, "application/json") };
        req.Headers.Add("X-Hub-Signature-256", "sha256=" + Hex(secret, Encoding.UTF8.GetBytes(body)));
        req.Headers.Add("X-GitHub-Event", ev);
        req.Headers.Add("X-GitHub-Delivery", delivery);
        return req;
    }

    private static HttpRequestMessage Slack(string body, DateTimeOffset? at = null, string secret = SlackSecret, int? retry = null, string? sentBody = null, string trigger = "slack")
    {
        var ts = (at ?? DateTimeOffset.UtcNow).ToUnixTimeSeconds().ToString(System.Globalization.CultureInfo.InvariantCulture);
        var req = new HttpRequestMessage(HttpMethod.Post, "/v1/hooks/" + trigger) { Content = new StringContent(sentBody ?? body, Encoding.UTF8, "application/json") };
        req.Headers.Add("X-Slack-Request-Timestamp", ts);
        req.Headers.Add("X-Slack-Signature", "v0=" + Hex(secret, Encoding.UTF8.GetBytes($"v0:{ts}:{body}")));
        if (retry is { } n) req.Headers.Add("X-Slack-Retry-Num", n.ToString(System.Globalization.CultureInfo.InvariantCulture));
        return req;
    }

    private static HttpRequestMessage Standard(string body, string id = "msg_1", DateTimeOffset? at = null, string secret = StandardSecret, string? sentBody = null)
    {
        var ts = (at ?? DateTimeOffset.UtcNow).ToUnixTimeSeconds().ToString(System.Globalization.CultureInfo.InvariantCulture);
        var key = Convert.FromBase64String(secret["whsec_".Length..]);
        var sig = Convert.ToBase64String(HMACSHA256.HashData(key, Encoding.UTF8.GetBytes($"{id}.{ts}.{body}")));
        var req = new HttpRequestMessage(HttpMethod.Post, "/v1/hooks/crm") { Content = new StringContent(sentBody ?? body, Encoding.UTF8, "application/json") };
        req.Headers.Add("webhook-id", id);
        req.Headers.Add("webhook-timestamp", ts);
        req.Headers.TryAddWithoutValidation("webhook-signature", $"v1,{Convert.ToBase64String(new byte[32])} v1,{sig}");
        return req;
    }

    private static HttpRequestMessage Plain(string body, string secret = HmacSecret, string? sentBody = null)
    {
        var req = new HttpRequestMessage(HttpMethod.Post, "/v1/hooks/plain") { Content = new StringContent(sentBody ?? body, Encoding.UTF8, "text/plain") };
        req.Headers.Add("X-Sig", "sha256=" + Hex(secret, Encoding.UTF8.GetBytes(body)));
        return req;
    }

    private async Task<(HttpStatusCode Status, JsonObject Body)> SendAsync(HttpRequestMessage request)
    {
        using var res = await _host.Client.SendAsync(request, Ct);
        return (res.StatusCode, await Http.BodyAsync(res));
    }

    private async Task<int> RunCountAsync() => (await _host.Engine.ListRunsAsync(new RunQuery { Limit = 1000 }, Ct)).Items.Count;

    /// <summary>Dead letters, retried ones included: a refused request must not leave one either.</summary>
    private async Task<int> DeadLetterCountAsync() =>
        (await _host.App.Services.GetRequiredService<IEventStore>().ListDeadLettersAsync(includeRetried: true, cancellationToken: Ct)).Count;

    // ---- GitHub ----

    [Fact]
    public async Task GitHub_Signed_StartsTheAgentWithTheMappedInputAsTheTrigger()
    {
        await StartAsync();
        var (status, body) = await SendAsync(GitHub(Issue));
        Assert.Equal(HttpStatusCode.Accepted, status);
        Assert.Equal(("accepted", "d-1"), ((string?)body["status"], (string?)body["eventId"]));
        var run = await _host.WaitAsync((string)body["run"]!["id"]!);
        Assert.Equal(("echo", "New issue Login fails: Since today", "trigger:gh", "trigger:gh:d-1"), (run.Agent, run.Input, run.Actor, run.IdempotencyKey));
        Assert.Equal((RunStatus.Succeeded, "echo: New issue Login fails: Since today"), (run.Status, run.Output));
    }

    [Fact]
    public async Task GitHub_RedeliveredDelivery_SameRunAnd200_NothingNewStarted()
    {
        await StartAsync();
        var (first, a) = await SendAsync(GitHub(Issue));
        var (again, b) = await SendAsync(GitHub(Issue));
        Assert.Equal((HttpStatusCode.Accepted, HttpStatusCode.OK), (first, again));
        Assert.Equal("duplicate", (string?)b["status"]);
        Assert.Equal((string?)a["run"]!["id"], (string?)b["run"]!["id"]);
        Assert.Equal(1, await RunCountAsync());
    }

    [Fact]
    public async Task GitHub_WrongSecret_401NamingTheHeader_NothingStarted()
    {
        await StartAsync();
        using var res = await _host.Client.SendAsync(GitHub(Issue, secret: "not-the-secret"), Ct);
        var problem = await Http.ProblemAsync(res, 401, field: "X-Hub-Signature-256");
        Assert.Contains("webhook 'gh' (github)", (string?)problem["detail"]);
        Assert.Equal(0, await RunCountAsync());
    }

    [Fact]
    public async Task GitHub_TamperedBody_401()
    {
        await StartAsync();
        using var res = await _host.Client.SendAsync(GitHub(Issue, sentBody: Issue.Replace("Login", "Logout", StringComparison.Ordinal)), Ct);
        await Http.ProblemAsync(res, 401, field: "X-Hub-Signature-256");
        Assert.Equal(0, await RunCountAsync());
    }

    [Fact]
    public async Task GitHub_Unsigned_401()
    {
        await StartAsync();
        var req = GitHub(Issue);
        req.Headers.Remove("X-Hub-Signature-256");
        using var res = await _host.Client.SendAsync(req, Ct);
        var problem = await Http.ProblemAsync(res, 401, field: "X-Hub-Signature-256");
        Assert.Contains("no X-Hub-Signature-256 header", (string?)problem["detail"]);
    }

    [Fact]
    public async Task GitHub_MissingDelivery_400NamingTheHeader()
    {
        await StartAsync();
        var req = GitHub(Issue);
        req.Headers.Remove("X-GitHub-Delivery");
        using var res = await _host.Client.SendAsync(req, Ct);
        await Http.ProblemAsync(res, 400, field: "X-GitHub-Delivery");
    }

    [Theory]
    [InlineData("issues", "closed", false)]
    [InlineData("issue_comment", "created", false)]
    [InlineData("pull_request", "synchronize", true)]
    public async Task GitHub_EventFilters_StartOnlyTheEventsAsked(string ev, string action, bool starts)
    {
        await StartAsync();
        var (status, body) = await SendAsync(GitHub("{\"action\":\"" + action + "\",\"issue\":{\"title\":\"t\",\"body\":\"b\"}}", ev: ev));
        Assert.Equal(starts ? HttpStatusCode.Accepted : HttpStatusCode.OK, status);
        Assert.Equal(starts ? "accepted" : "ignored", (string?)body["status"]);
        Assert.Equal(starts ? 1 : 0, await RunCountAsync());
    }

    [Fact]
    public async Task GitHub_Ping_AnsweredWithoutARun()
    {
        await StartAsync();
        var (status, body) = await SendAsync(GitHub("""{"zen":"Keep it logically awesome."}""", ev: "ping"));
        Assert.Equal((HttpStatusCode.OK, "pong"), (status, (string?)body["status"]));
        Assert.Equal(0, await RunCountAsync());
    }

    [Fact]
    public async Task GitHub_FormEncodedDelivery_SignedAsSent_ReadsThePayloadField()
    {
        await StartAsync();
        var form = "payload=" + Uri.EscapeDataString(Issue);
        var req = GitHub(form);
        req.Content = new StringContent(form, Encoding.UTF8, "application/x-www-form-urlencoded");
        var (status, body) = await SendAsync(req);
        Assert.Equal(HttpStatusCode.Accepted, status);
        var run = await _host.WaitAsync((string)body["run"]!["id"]!);
        Assert.Equal("New issue Login fails: Since today", run.Input);
    }

    [Fact]
    public async Task GitHub_PathsMissingFromThePayload_RenderEmpty()
    {
        await StartAsync();
        var (status, body) = await SendAsync(GitHub("""{"action":"opened","repository":{}}"""));
        Assert.Equal(HttpStatusCode.Accepted, status);
        Assert.Equal("New issue : ", (string?)body["run"]!["input"]);
    }

    [Fact]
    public async Task Webhook_WithApiKeysInTheStore_NeedsNoKeyButItsSignature()
    {
        await StartAsync();
        await _host.CreateKeyAsync(ApiKeyRole.Admin);
        using (var runs = await _host.Client.SendAsync(Http.Json(HttpMethod.Post, "/v1/runs", """{"agent":"echo","input":"x"}"""), Ct))
            Assert.Equal(HttpStatusCode.Unauthorized, runs.StatusCode);
        var (status, _) = await SendAsync(GitHub(Issue));
        Assert.Equal(HttpStatusCode.Accepted, status);
    }

    [Theory]
    [InlineData("nope")]
    [InlineData("cron")]
    public async Task Webhook_UnknownOrNotAWebhook_404(string name)
    {
        await StartAsync();
        using var res = await _host.Client.SendAsync(new HttpRequestMessage(HttpMethod.Post, $"/v1/hooks/{name}") { Content = new StringContent("{}") }, Ct);
        var problem = await Http.ProblemAsync(res, 404, field: "trigger");
        Assert.Equal($"no webhook trigger named '{name}' is deployed", (string?)problem["detail"]);
    }

    // ---- Slack ----

    private const string Mention = """{"type":"event_callback","event_id":"Ev1","event":{"type":"app_mention","text":"<@U1> where is my invoice?"}}""";

    [Fact]
    public async Task Slack_UrlVerification_AnswersTheChallenge()
    {
        await StartAsync();
        var (status, body) = await SendAsync(Slack("""{"type":"url_verification","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}"""));
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", (string?)body["challenge"]);
        Assert.Equal(0, await RunCountAsync());
    }

    [Fact]
    public async Task Slack_Mention_StartsARun_AndItsRetriesStartNothing()
    {
        await StartAsync();
        var (first, a) = await SendAsync(Slack(Mention));
        Assert.Equal(HttpStatusCode.Accepted, first);
        var run = await _host.WaitAsync((string)a["run"]!["id"]!);
        Assert.Equal(("<@U1> where is my invoice?", "trigger:slack:Ev1"), (run.Input, run.IdempotencyKey));
        var (retry, b) = await SendAsync(Slack(Mention, retry: 1));
        Assert.Equal(HttpStatusCode.OK, retry);
        Assert.Equal(run.Id, (string?)b["run"]!["id"]);
        Assert.Equal(1, await RunCountAsync());
    }

    [Fact]
    public async Task Slack_TimestampOlderThanFiveMinutes_401()
    {
        await StartAsync();
        using var res = await _host.Client.SendAsync(Slack(Mention, at: DateTimeOffset.UtcNow.AddMinutes(-6)), Ct);
        var problem = await Http.ProblemAsync(res, 401, field: "X-Slack-Request-Timestamp");
        Assert.Contains("more than the trigger's tolerance of 300 s", (string?)problem["detail"]);
        Assert.Equal(0, await RunCountAsync());
    }

    [Fact]
    public async Task Slack_WrongSecret_401()
    {
        await StartAsync();
        using var res = await _host.Client.SendAsync(Slack(Mention, secret: "other"), Ct);
        await Http.ProblemAsync(res, 401, field: "X-Slack-Signature");
    }

    [Fact]
    public async Task Slack_TamperedBody_401_NothingStored()
    {
        await StartAsync();
        using var res = await _host.Client.SendAsync(Slack(Mention, sentBody: Mention.Replace("invoice", "refund", StringComparison.Ordinal)), Ct);
        await Http.ProblemAsync(res, 401, field: "X-Slack-Signature");
        Assert.Equal((0, 0), (await RunCountAsync(), await DeadLetterCountAsync()));
    }

    [Fact]
    public async Task Slack_AcknowledgedBeforeTheAgentRuns_RunFinishesAfterTheAck()
    {
        // The agent is gated on its input: it cannot finish before the test opens the gate, so the 202 cannot wait for it.
        await _host.StartAsync(b => b.AddTrigger(new WebhookTriggerDefinition
        {
            Name = "slack-slow", Agent = "slow", Source = WebhookSource.Slack, Secret = SlackSecret, Events = ["app_mention"], Input = "{{$.event.text}}",
        }));
        const string mention = """{"type":"event_callback","event_id":"Ev7","event":{"type":"app_mention","text":"<@U1> slow question"}}""";
        using var answered = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        answered.CancelAfter(TimeSpan.FromSeconds(30)); // a deadline against a hang (an ack that waited for the run), not a speed check
        HttpResponseMessage res;
        try
        {
            res = await _host.Client.SendAsync(Slack(mention, trigger: "slack-slow"), answered.Token);
        }
        catch (OperationCanceledException) when (!Ct.IsCancellationRequested)
        {
            throw new TimeoutException("Slack's request got no answer within 30 s while its run was held: the ack waits for the agent");
        }
        using var _ = res;
        Assert.Equal(HttpStatusCode.Accepted, res.StatusCode);
        var runId = (string)(await Http.BodyAsync(res))["run"]!["id"]!;

        // Acknowledged: the run is durable, and still unfinished.
        var atAck = await _host.Engine.GetRunAsync(runId, Ct);
        Assert.NotNull(atAck);
        Assert.False(atAck.Status.IsTerminal(), $"run {runId} was already {atAck.Status} when Slack got its answer");

        _host.Gate.Open("<@U1> slow question");
        var done = await _host.WaitAsync(runId);
        Assert.Equal((RunStatus.Succeeded, "opened: <@U1> slow question"), (done.Status, done.Output));
        Assert.True(done.UpdatedAt >= atAck.CreatedAt);
    }

    // ---- Standard Webhooks ----

    private const string Ticket = """{"type":"ticket.created","data":{"ticket":"T-42"}}""";

    [Fact]
    public async Task Standard_Signed_StartsARun_AndTheSameIdAgainStartsNothing()
    {
        await StartAsync();
        var (first, a) = await SendAsync(Standard(Ticket));
        Assert.Equal(HttpStatusCode.Accepted, first);
        var run = await _host.WaitAsync((string)a["run"]!["id"]!);
        Assert.Equal(("ticket.created T-42", "trigger:crm:msg_1"), (run.Input, run.IdempotencyKey));
        var (again, b) = await SendAsync(Standard(Ticket));
        Assert.Equal((HttpStatusCode.OK, run.Id), (again, (string?)b["run"]!["id"]));
    }

    [Fact]
    public async Task Standard_TamperedBody_401()
    {
        await StartAsync();
        using var res = await _host.Client.SendAsync(Standard(Ticket, sentBody: Ticket.Replace("T-42", "T-43", StringComparison.Ordinal)), Ct);
        await Http.ProblemAsync(res, 401, field: "webhook-signature");
        Assert.Equal(0, await RunCountAsync());
    }

    [Fact]
    public async Task Standard_WrongSecret_401()
    {
        await StartAsync();
        using var res = await _host.Client.SendAsync(Standard(Ticket, secret: "whsec_" + Convert.ToBase64String(new byte[24])), Ct);
        await Http.ProblemAsync(res, 401, field: "webhook-signature");
    }

    [Fact]
    public async Task Standard_StaleTimestamp_401()
    {
        await StartAsync();
        using var res = await _host.Client.SendAsync(Standard(Ticket, at: DateTimeOffset.UtcNow.AddHours(-1)), Ct);
        await Http.ProblemAsync(res, 401, field: "webhook-timestamp");
    }

    // ---- plain HMAC ----

    [Fact]
    public async Task Hmac_SignedInTheConfiguredHeader_StartsARunWithTheBodyAsInput()
    {
        await StartAsync();
        var (status, body) = await SendAsync(Plain("disk almost full on db-3"));
        Assert.Equal(HttpStatusCode.Accepted, status);
        var run = await _host.WaitAsync((string)body["run"]!["id"]!);
        Assert.Equal("disk almost full on db-3", run.Input);
        Assert.StartsWith("trigger:plain:sha256-", run.IdempotencyKey);
        var (again, _) = await SendAsync(Plain("disk almost full on db-3"));
        Assert.Equal(HttpStatusCode.OK, again);
    }

    [Fact]
    public async Task Hmac_TamperedBody_401_NothingStored()
    {
        await StartAsync();
        using var res = await _host.Client.SendAsync(Plain("disk almost full on db-3", sentBody: "disk almost full on db-4"), Ct);
        await Http.ProblemAsync(res, 401, field: "X-Sig");
        Assert.Equal((0, 0), (await RunCountAsync(), await DeadLetterCountAsync()));
    }

    [Fact]
    public async Task Hmac_WrongSecret_401()
    {
        await StartAsync();
        using var res = await _host.Client.SendAsync(Plain("x", secret: "nope"), Ct);
        await Http.ProblemAsync(res, 401, field: "X-Sig");
    }

    // ---- signed bodies whose JSON cannot be read: 400 naming the field, not a 500 after the signature was accepted ----

    private static byte[] Bytes(string before, byte[] middle, string after) => [.. Encoding.UTF8.GetBytes(before), .. middle, .. Encoding.UTF8.GetBytes(after)];

    private static HttpRequestMessage SignedBytes(string trigger, byte[] body, string secret, string header, string prefix)
    {
        var req = new HttpRequestMessage(HttpMethod.Post, "/v1/hooks/" + trigger) { Content = new ByteArrayContent(body) };
        req.Content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
        req.Headers.Add(header, prefix + Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(secret), body)));
        return req;
    }

    public static TheoryData<string, byte[], string, string> UnreadableBodies => new()
    {
        // trigger, signed body, field named, what the detail says
        { "gh", Bytes("{\"action\":\"opened\",\"issue\":{\"title\":\"", [0xFF, 0xFE], "\"}}"), "issue.title", "not valid UTF-8" },
        { "gh", Encoding.UTF8.GetBytes("""{"action":"\ud800","issue":{"title":"t"}}"""), "action", "lone surrogate" },
        { "gh", Encoding.UTF8.GetBytes("""{"action":"opened","issue":{"title":"a"},"issue":{"title":"b"}}"""), "issue", "given twice" },
        { "plain", Bytes("{\"type\":\"", [0xC3, 0x28], "\"}"), "type", "not valid UTF-8" },
    };

    [Theory]
    [MemberData(nameof(UnreadableBodies))]
    public async Task SignedBody_WhoseJsonCannotBeRead_400NamingTheField_NothingStored(string trigger, byte[] body, string field, string says)
    {
        await StartAsync();
        var req = trigger == "gh" ? SignedBytes("gh", body, GitHubSecret, "X-Hub-Signature-256", "sha256=") : SignedBytes("plain", body, HmacSecret, "X-Sig", "");
        if (trigger == "gh")
        {
            req.Headers.Add("X-GitHub-Event", "issues");
            req.Headers.Add("X-GitHub-Delivery", "d-unreadable");
        }
        using var res = await _host.Client.SendAsync(req, Ct);
        var problem = await Http.ProblemAsync(res, 400, field: field);
        Assert.Contains(says, (string?)problem["detail"]);
        Assert.Contains($"webhook '{trigger}'", (string?)problem["detail"]);
        Assert.Equal((0, 0), (await RunCountAsync(), await DeadLetterCountAsync()));
    }

    [Fact]
    public async Task Hmac_TriggerInCSharp_WithASignatureHeaderNoRequestCanCarry_RefusedAtStart()
    {
        var ex = await Assert.ThrowsAnyAsync<Exception>(() => _host.StartAsync(b => b.AddTrigger(
            new WebhookTriggerDefinition { Name = "sig", Agent = "echo", Source = WebhookSource.Hmac, Secret = HmacSecret, SignatureHeader = "X Sig" })));
        Assert.Contains("trigger 'sig': SignatureHeader 'X Sig' or IdHeader '' is not an HTTP header name", ex.ToString());
    }

    [Fact]
    public async Task Trigger_OfAnUnknownAgent_RefusedAtStart()
    {
        var ex = await Assert.ThrowsAnyAsync<Exception>(() => _host.StartAsync(b => b.AddTrigger(new TopicTriggerDefinition { Name = "t", Agent = "ghost", Topic = "x" })));
        Assert.Contains("trigger 't': 'ghost' is neither an agent nor a team", ex.ToString());
    }
}
