using System.Collections.Concurrent;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Bureau.Governance;
using Bureau.Tests.Tools;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Bureau.Hosting.Tests;

/// <summary>
/// Slack approval buttons: the notification carries Approve and Reject buttons whose value is the
/// approval id; a click posted to POST /v1/approvals/slack is verified with the Slack app's Signing
/// Secret, the Slack user is mapped to an approver, and the decision goes through the engine's
/// first-wins path. Refused requests decide nothing.
/// </summary>
public sealed class SlackApprovalTests : IAsyncDisposable
{
    private const string SigningSecret = "8f742231b10e8888abcd99yyyzzz85a5";
    private readonly TestHost _host = new();
    private readonly ConcurrentQueue<JsonObject> _slackMessages = new();
    private readonly ConcurrentQueue<JsonObject> _responses = new();
    private readonly SemaphoreSlim _messageArrived = new(0), _responseArrived = new(0);
    private LoopbackServer? _slack;
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask DisposeAsync()
    {
        await _host.DisposeAsync();
        if (_slack is not null) await _slack.DisposeAsync();
    }

    /// <summary>A host whose approvals are announced to a fake Slack (incoming webhook and response_url on one loopback server).</summary>
    private async Task StartAsync()
    {
        _slack = new LoopbackServer(async (ctx, body) =>
        {
            var json = JsonNode.Parse(body)!.AsObject();
            if (ctx.Request.Url!.AbsolutePath == "/incoming") { _slackMessages.Enqueue(json); _messageArrived.Release(); }
            else { _responses.Enqueue(json); _responseArrived.Release(); }
            await LoopbackServer.Respond(ctx, 200, "ok");
        });
        await _host.StartAsync(b =>
        {
            b.AddModel(new ScriptedModelDefinition
            {
                Name = "script",
                Rules =
                [
                    new ScriptRule { When = new ScriptCondition { TurnFrom = 1, TurnTo = 1 }, Calls = [new ScriptToolCall { Tool = "refund", Arguments = new JsonObject { ["amount"] = 250 } }] },
                    new ScriptRule { Reply = "done: {{last}}" },
                ],
            })
            .AddTool(AIFunctionFactory.Create((int amount) => "refunded " + amount, "refund"), ToolEffect.Write)
            .AddAgent(new AgentDefinition { Name = "refunder", Model = "script", Tools = ["refund"] })
            .AddPolicy(new PolicyRule
            {
                Name = "big-refunds",
                When = new PolicyConditions { Tools = ["refund"] },
                Action = PolicyAction.RequireApproval,
                Approval = new ApprovalSpec { Levels = [new(["support-leads"], TimeSpan.FromMinutes(30)), new(["finance"], TimeSpan.FromMinutes(90))] },
            })
            .AddDefinitions(new BureauDefinitions
            {
                Policies = new PolicySet
                {
                    Notify =
                    [
                        new ApprovalNotifier("slack", new Uri(_slack.BaseAddress, "incoming"))
                        {
                            SigningSecret = SigningSecret,
                            Users = new Dictionary<string, SlackApprover>
                            {
                                ["U024BE7LH"] = new("grace", ["support-leads"]),
                                ["U0G9QF9C6"] = new("ada", ["finance"]),
                            },
                        },
                    ],
                },
            });
            b.Services.AddSingleton(new ApprovalNotificationOptions { PollInterval = TimeSpan.FromMilliseconds(50), FirstRetryDelay = TimeSpan.FromMilliseconds(20) });
            b.Services.AddSingleton(new SlackApprovalOptions { ResponseHosts = ["127.0.0.1"] });
        });
    }

    private async Task<(string RunId, string ApprovalId)> WaitingRunAsync()
    {
        using var res = await _host.Client.SendAsync(Http.Json(HttpMethod.Post, "/v1/runs", """{"agent":"refunder","input":"refund order 7"}"""), Ct);
        var runId = (string)(await Http.BodyAsync(res))["id"]!;
        var run = await _host.WaitAsync(runId);
        Assert.Equal(RunStatus.Waiting, run.Status);
        return (runId, $"{runId}:{((ApprovalWait)run.WaitingFor!).Step}");
    }

    private static async Task<T> NextAsync<T>(SemaphoreSlim arrived, ConcurrentQueue<T> queue, string what)
    {
        if (!await arrived.WaitAsync(TimeSpan.FromSeconds(20), Ct)) throw new TimeoutException($"no {what} reached the fake Slack within 20 s");
        Assert.True(queue.TryDequeue(out var item));
        return item;
    }

    /// <summary>A click as Slack sends it: payload=URL-ENCODED-JSON, signed v0 with the timestamp.</summary>
    private HttpRequestMessage Click(string approvalId, string action, string user, string secret = SigningSecret, DateTimeOffset? at = null)
    {
        var payload = new JsonObject
        {
            ["type"] = "block_actions",
            ["user"] = new JsonObject { ["id"] = user, ["username"] = "someone" },
            ["response_url"] = new Uri(_slack!.BaseAddress, "response").ToString(),
            ["actions"] = new JsonArray(new JsonObject { ["action_id"] = action, ["block_id"] = "bureau-approval", ["value"] = approvalId, ["type"] = "button" }),
        };
        var body = "payload=" + Uri.EscapeDataString(payload.ToJsonString());
        var ts = (at ?? DateTimeOffset.UtcNow).ToUnixTimeSeconds().ToString(System.Globalization.CultureInfo.InvariantCulture);
        var req = new HttpRequestMessage(HttpMethod.Post, "/v1/approvals/slack") { Content = new StringContent(body, Encoding.UTF8, "application/x-www-form-urlencoded") };
        req.Headers.Add("X-Slack-Request-Timestamp", ts);
        req.Headers.Add("X-Slack-Signature", "v0=" + Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(secret), Encoding.UTF8.GetBytes($"v0:{ts}:{body}"))));
        return req;
    }

    /// <summary>A signed click whose payload is <paramref name="json"/> as written (escapes and all).</summary>
    private static HttpRequestMessage RawClick(string json)
    {
        var body = "payload=" + Uri.EscapeDataString(json);
        var ts = DateTimeOffset.UtcNow.ToUnixTimeSeconds().ToString(System.Globalization.CultureInfo.InvariantCulture);
        var req = new HttpRequestMessage(HttpMethod.Post, "/v1/approvals/slack") { Content = new StringContent(body, Encoding.UTF8, "application/x-www-form-urlencoded") };
        req.Headers.Add("X-Slack-Request-Timestamp", ts);
        req.Headers.Add("X-Slack-Signature", "v0=" + Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(SigningSecret), Encoding.UTF8.GetBytes($"v0:{ts}:{body}"))));
        return req;
    }

    [Theory]
    [InlineData("""{"type":"block_actions","user":{"id":"\ud800"},"actions":[]}""", "payload.user.id", "lone surrogate")]
    [InlineData("""{"type":"block_actions","type":"view_submission"}""", "payload.type", "given twice")]
    public async Task SignedPayload_WhoseJsonCannotBeRead_400NamingTheField_NothingDecided(string json, string field, string says)
    {
        await StartAsync();
        var (runId, _) = await WaitingRunAsync();
        using var res = await _host.Client.SendAsync(RawClick(json), Ct);
        Assert.Contains(says, (string?)(await Http.ProblemAsync(res, 400, field: field))["detail"]);
        Assert.Equal(RunStatus.Waiting, (await _host.Engine.GetRunAsync(runId))!.Status);
    }

    private async Task<JsonObject> ClickAsync(HttpRequestMessage click)
    {
        using var res = await _host.Client.SendAsync(click, Ct);
        Assert.Equal(HttpStatusCode.OK, res.StatusCode);
        return await Http.BodyAsync(res);
    }

    [Fact]
    public async Task Notification_HasButtonsCarryingTheApprovalId_ClickByMappedLead_ApprovesAndTheRunGoesOn()
    {
        await StartAsync();
        var (runId, approvalId) = await WaitingRunAsync();

        var message = await NextAsync(_messageArrived, _slackMessages, "approval message");
        var buttons = message["blocks"]!.AsArray().Select(b => b!["elements"]).OfType<JsonArray>().Single();
        Assert.Equal([("bureau.approve", approvalId), ("bureau.reject", approvalId)], buttons.Select(e => ((string)e!["action_id"]!, (string)e["value"]!)).ToList());
        Assert.Contains(approvalId, (string)message["text"]!);

        var answer = await ClickAsync(Click((string)buttons[0]!["value"]!, (string)buttons[0]!["action_id"]!, "U024BE7LH"));
        Assert.Equal($"Approval {approvalId} approved by grace (<@U024BE7LH>).", (string)answer["text"]!);
        Assert.True((bool)answer["replace_original"]!);
        var posted = await NextAsync(_responseArrived, _responses, "response_url answer");
        Assert.Equal(answer.ToJsonString(), posted.ToJsonString());

        var run = await _host.WaitAsync(runId);
        Assert.Equal((RunStatus.Succeeded, "done: refunded 250"), (run.Status, run.Output));
        var answered = (await _host.Engine.ReadJournalAsync(runId)).Select(r => r.Entry).OfType<WaitAnswered>().Single();
        Assert.Equal("grace", answered.Actor);
        Assert.Contains("in Slack (user U024BE7LH)", answered.Answer);
    }

    [Fact]
    public async Task WrongSecret_StaleTimestamp_401_AndNothingDecided()
    {
        await StartAsync();
        var (runId, approvalId) = await WaitingRunAsync();

        using (var wrong = await _host.Client.SendAsync(Click(approvalId, "bureau.approve", "U024BE7LH", secret: "not-the-signing-secret"), Ct))
            Assert.Contains("does not match", (string?)(await Http.ProblemAsync(wrong, 401, field: "X-Slack-Signature"))["detail"]);
        using (var stale = await _host.Client.SendAsync(Click(approvalId, "bureau.approve", "U024BE7LH", at: DateTimeOffset.UtcNow.AddMinutes(-6)), Ct))
            Assert.Contains("more than the tolerance of 300 s", (string?)(await Http.ProblemAsync(stale, 401, field: "X-Slack-Request-Timestamp"))["detail"]);
        using (var unsigned = new HttpRequestMessage(HttpMethod.Post, "/v1/approvals/slack") { Content = new StringContent("payload=%7B%7D", Encoding.UTF8, "application/x-www-form-urlencoded") })
        using (var res = await _host.Client.SendAsync(unsigned, Ct))
            await Http.ProblemAsync(res, 401, field: "X-Slack-Request-Timestamp");

        var run = (await _host.Engine.GetRunAsync(runId))!;
        Assert.Equal(RunStatus.Waiting, run.Status);
        Assert.Empty((await _host.Engine.ReadJournalAsync(runId)).Select(r => r.Entry).OfType<WaitAnswered>());
        Assert.True(_responses.IsEmpty);
    }

    [Fact]
    public async Task UnmappedUser_OrNotAnApproverAtThisLevel_EphemeralRefusal_NothingDecided()
    {
        await StartAsync();
        var (runId, approvalId) = await WaitingRunAsync();

        var unmapped = await ClickAsync(Click(approvalId, "bureau.approve", "U999STRANGER"));
        Assert.Equal(("ephemeral", false), ((string)unmapped["response_type"]!, (bool)unmapped["replace_original"]!));
        Assert.Contains("Slack user U999STRANGER", (string)unmapped["text"]!);
        Assert.Contains("not an approver", (string)unmapped["text"]!);
        Assert.Equal(unmapped.ToJsonString(), (await NextAsync(_responseArrived, _responses, "response_url answer")).ToJsonString());

        var finance = await ClickAsync(Click(approvalId, "bureau.reject", "U0G9QF9C6")); // ada is finance: level 2, not yet
        Assert.Equal("ephemeral", (string)finance["response_type"]!);
        Assert.Contains("ada may not answer", (string)finance["text"]!);

        Assert.Equal(RunStatus.Waiting, (await _host.Engine.GetRunAsync(runId))!.Status);
        Assert.Empty((await _host.Engine.ReadJournalAsync(runId)).Select(r => r.Entry).OfType<WaitAnswered>());
    }

    [Fact]
    public async Task AlreadyAnswered_ClickSaysWhoAnsweredFirst_TheFirstAnswerStands()
    {
        await StartAsync();
        var (runId, approvalId) = await WaitingRunAsync();
        using (var first = await _host.Client.SendAsync(Http.Json(HttpMethod.Post, $"/v1/approvals/{approvalId}/decision", """{"decision":"reject","reason":"already refunded"}"""), Ct))
            Assert.Equal(HttpStatusCode.Accepted, first.StatusCode);

        var late = await ClickAsync(Click(approvalId, "bureau.approve", "U024BE7LH"));
        Assert.Equal(("ephemeral", false), ((string)late["response_type"]!, (bool)late["replace_original"]!));
        Assert.Contains($"approval {approvalId} was already answered by", (string)late["text"]!);
        Assert.Contains("(rejected)", (string)late["text"]!);

        var run = await _host.WaitAsync(runId);
        var answers = (await _host.Engine.ReadJournalAsync(runId)).Select(r => r.Entry).OfType<WaitAnswered>().ToList();
        Assert.Single(answers);
        Assert.NotEqual("grace", answers[0].Actor);
        Assert.Contains("rejected", run.Output);
    }
}
