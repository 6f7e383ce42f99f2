using Bureau.Governance;
using Bureau.Storage.Sqlite;
using Bureau.Tests.Support;
using Bureau.Tests.Tools;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Time.Testing;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Xunit;

namespace Bureau.Tests.Governance;

/// <summary>
/// Approval notifications: announced to a signed webhook when an approval opens, retried when the
/// target fails, and every delivery or final failure recorded in the audit log (never silent).
/// </summary>
public sealed class NotificationTests : IAsyncDisposable
{
    private readonly EngineFixture _f = new();

    public ValueTask DisposeAsync() => _f.DisposeAsync();

    private async Task<(BureauEngine Engine, string RunId, long Step)> WaitingWithNotifierAsync(Uri url, int maxAttempts, Func<BureauEngine, string, long, Task>? beforeNotifierStarts = null,
        ApprovalSpec? approval = null, Func<Uri, IReadOnlyList<ApprovalNotifier>>? notify = null)
    {
        _f.AddTool("refund", ToolEffect.Write);
        _f.AddAgent(tools: "refund");
        _f.UseModel((msgs, turn) => turn == 1 ? FakeModel.Call("refund", """{"key":"k"}""", "c1") : FakeModel.Text("done"));
        _f.Definitions.Policies = new PolicySet
        {
            Defaults = new Dictionary<ToolEffect, PolicyAction> { [ToolEffect.Write] = PolicyAction.RequireApproval },
            Notify = notify?.Invoke(url) ?? [new ApprovalNotifier("webhook", url, "whsec_" + Convert.ToBase64String("s3cret-key"u8.ToArray()))],
            DefaultApproval = approval ?? new ApprovalSpec(),
        };
        _f.Configure = b => b.Services.AddSingleton(new ApprovalNotificationOptions
        {
            MaxAttempts = maxAttempts, FirstRetryDelay = TimeSpan.FromMilliseconds(20), PollInterval = TimeSpan.FromMilliseconds(50),
        });
        var engine = await _f.StartAsync();
        var notifier = engine.Services.GetServices<IHostedService>().OfType<ApprovalNotifications>().Single();
        if (beforeNotifierStarts is null) await notifier.StartAsync(TestContext.Current.CancellationToken);
        var id = (await engine.SubmitAsync(new RunRequest("a", "x"))).Run.Id;
        var run = await EngineFixture.WaitAsync(engine, id);
        if (beforeNotifierStarts is not null)
        {
            await beforeNotifierStarts(engine, id, run.WaitingFor!.Step);
            await notifier.StartAsync(TestContext.Current.CancellationToken);
        }
        return (engine, id, run.WaitingFor!.Step);
    }

    private static async Task<AuditRecord> AuditEntryAsync(BureauEngine engine, string action)
    {
        var audit = (IAuditLog)engine.Store;
        for (var i = 0; i < 400; i++)
        {
            if ((await audit.ReadAuditAsync()).FirstOrDefault(a => a.Action == action) is { } found) return found;
            await Task.Delay(25, TestContext.Current.CancellationToken);
        }
        throw new TimeoutException($"no {action} in the audit log");
    }

    [Fact]
    public async Task ApprovalOpens_SignedWebhookIsRetriedUntilAccepted_TheDeliveryIsAudited()
    {
        var calls = 0;
        await using var server = new LoopbackServer((ctx, _) => LoopbackServer.Respond(ctx, Interlocked.Increment(ref calls) <= 2 ? 503 : 200, "ok"));
        var (engine, runId, step) = await WaitingWithNotifierAsync(server.BaseAddress, maxAttempts: 5);

        var delivered = await AuditEntryAsync(engine, "approval.notified");
        var detail = JsonNode.Parse(delivered.Detail!)!;
        Assert.Equal((3, runId), ((int)detail["attempts"]!, delivered.RunId));
        Assert.Equal(3, server.Requests.Count);
        var last = server.Requests.Last();
        var payload = JsonNode.Parse(last.Body)!;
        Assert.Equal(("approval.asked", $"{runId}:{step}", "refund"), ((string)payload["type"]!, (string)payload["approval"]!, (string)payload["tool"]!));
        Assert.Equal($"/v1/approvals/{runId}:{step}/decision", (string)payload["decide"]!);
        AssertStandardWebhooksSignature(last, "s3cret-key"u8.ToArray());
        Assert.True((await ((IAuditLog)engine.Store).VerifyAuditAsync()).IsIntact);
    }

    [Fact]
    public async Task ApprovalOpens_ATargetWithIncludeArguments_GetsTheCallsArguments_OthersOnlyTheTool()
    {
        await using var server = new LoopbackServer((ctx, _) => LoopbackServer.Respond(ctx, 200, "ok"));
        var (engine, runId, _) = await WaitingWithNotifierAsync(server.BaseAddress, maxAttempts: 3, notify: url =>
        [
            new ApprovalNotifier("webhook", new Uri(url, "with")) { IncludeArguments = true },
            new ApprovalNotifier("webhook", new Uri(url, "without")),
        ]);

        for (var i = 0; i < 400 && server.Requests.Count < 2; i++) await Task.Delay(25, TestContext.Current.CancellationToken);
        var byPath = server.Requests.ToDictionary(r => r.Url.AbsolutePath, r => JsonNode.Parse(r.Body)!);
        Assert.Equal("""{"key":"k"}""", (string)byPath["/with"]["arguments"]!);
        Assert.Equal("refund", (string)byPath["/without"]["tool"]!);
        Assert.Null(byPath["/without"]["arguments"]);   // off by default: arguments may hold personal data
        Assert.Equal(runId, (string)byPath["/with"]["runId"]!);
    }

    [Fact]
    public void Announcement_LongArguments_AreCut_AndSlackShowsThem()
    {
        var long1 = "{\"note\":\"" + new string('x', 3000) + "\"}";
        var preview = ApprovalNotifications.ArgumentsPreview(long1);
        Assert.Equal(ApprovalNotifier.ArgumentsPreviewChars + 1, preview.Length);
        Assert.EndsWith("…", preview);
        Assert.Equal("""{"key":"k"}""", ApprovalNotifications.ArgumentsPreview("""{"key":"k"}"""));

        var entry = new AuditRecord(7, DateTimeOffset.UnixEpoch, "policy", "approval.asked", "r1", 3, null, "h", "p");
        var payload = new JsonObject { ["approval"] = "r1:3", ["runId"] = "r1", ["tool"] = "refund", ["level"] = 0, ["arguments"] = """{"amount":`30`}""" };
        var text = (string)ApprovalNotifications.SlackMessage(entry, payload, buttons: false)["text"]!;
        Assert.Contains("wants to call refund with `{\"amount\":'30'}`", text);   // backticks cannot end the code span
    }

    /// <summary>
    /// Checks a request as a Standard Webhooks receiver would, without Bureau's code: the signature header
    /// holds <c>v1,</c> + base64 HMAC-SHA256, keyed with the secret's bytes, over <c>webhook-id.webhook-timestamp.body</c>;
    /// the timestamp is Unix seconds.
    /// </summary>
    private static void AssertStandardWebhooksSignature(LoopbackServer.Received request, byte[] key)
    {
        var id = request.Headers["webhook-id"];
        var timestamp = request.Headers["webhook-timestamp"];
        Assert.False(string.IsNullOrEmpty(id));
        Assert.True(long.TryParse(timestamp, out var seconds), $"webhook-timestamp '{timestamp}' is not Unix seconds");
        Assert.InRange(seconds, DateTimeOffset.UtcNow.AddDays(-1).ToUnixTimeSeconds(), DateTimeOffset.UtcNow.AddDays(1).ToUnixTimeSeconds());
        var expected = "v1," + Convert.ToBase64String(HMACSHA256.HashData(key, Encoding.UTF8.GetBytes($"{id}.{timestamp}.{request.Body}")));
        // The header may carry several space-separated signatures (key rotation); one must be ours.
        Assert.Contains(expected, (request.Headers["webhook-signature"] ?? "").Split(' '));
    }

    [Fact]
    public void Sign_MatchesTheStandardWebhooksTestVector()
    {
        // The example of the Standard Webhooks specification (and its reference libraries' tests).
        Assert.Equal("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ApprovalNotifications.Sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", """{"test": 2432232314}"""));
    }

    [Fact]
    public async Task ApprovalEscalates_TheNextLevelIsAnnouncedAsApprovalEscalated_WithItsApprovers_AndAudited()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        _f.Time = time;
        await using var server = new LoopbackServer((ctx, _) => LoopbackServer.Respond(ctx, 200, "ok"));
        var (engine, runId, step) = await WaitingWithNotifierAsync(server.BaseAddress, maxAttempts: 3,
            approval: new ApprovalSpec { Levels = [new(["oncall"], TimeSpan.FromMinutes(30)), new(["leads"], null)] });

        async Task<(LoopbackServer.Received Request, JsonNode Payload)> AnnouncedAsync(string type)
        {
            for (var i = 0; i < 800; i++)
            {
                foreach (var r in server.Requests)
                {
                    var payload = JsonNode.Parse(r.Body)!;
                    if ((string?)payload["type"] == type) return (r, payload);
                }
                time.Advance(TimeSpan.FromSeconds(1)); // the notifier polls on the engine's clock
                await Task.Delay(10, TestContext.Current.CancellationToken);
            }
            throw new TimeoutException($"no {type} notification; got: {string.Join(" | ", server.Requests.Select(r => r.Body))}");
        }

        var (_, asked) = await AnnouncedAsync("approval.asked");
        Assert.Equal((0, "oncall"), ((int)asked["level"]!, (string?)asked["approvers"]![0]));

        time.Advance(TimeSpan.FromMinutes(31)); // level 1's deadline passes: it moves on to the leads
        var (request, escalated) = await AnnouncedAsync("approval.escalated");
        Assert.Equal(($"{runId}:{step}", runId, "refund", 1), ((string)escalated["approval"]!, (string)escalated["runId"]!, (string)escalated["tool"]!, (int)escalated["level"]!));
        Assert.Equal(["leads"], escalated["approvers"]!.AsArray().Select(a => (string)a!));
        Assert.Equal($"/v1/approvals/{runId}:{step}/decision", (string)escalated["decide"]!);
        AssertStandardWebhooksSignature(request, "s3cret-key"u8.ToArray());

        var audit = await ((IAuditLog)engine.Store).ReadAuditAsync();
        var escalation = Assert.Single(audit, a => a.Action == "approval.escalated" && a.RunId == runId);
        for (var i = 0; i < 400 && !(await ((IAuditLog)engine.Store).ReadAuditAsync()).Any(a => a.Action == "approval.notified" && (long?)JsonNode.Parse(a.Detail!)!["entry"] == escalation.Seq); i++)
            await Task.Delay(25, TestContext.Current.CancellationToken);
        Assert.Contains(await ((IAuditLog)engine.Store).ReadAuditAsync(), a => a.Action == "approval.notified" && (long?)JsonNode.Parse(a.Detail!)!["entry"] == escalation.Seq);
    }

    [Fact]
    public async Task TargetKeepsFailing_AfterTheLastAttempt_TheFailureIsAuditedWithTheError()
    {
        await using var server = new LoopbackServer((ctx, _) => LoopbackServer.Respond(ctx, 500, "down"));
        var (engine, runId, _) = await WaitingWithNotifierAsync(server.BaseAddress, maxAttempts: 3);

        var failed = await AuditEntryAsync(engine, "approval.notify-failed");
        var detail = JsonNode.Parse(failed.Detail!)!;
        Assert.Equal(3, (int)detail["attempts"]!);
        Assert.Contains("HTTP 500", (string)detail["error"]!);
        Assert.Equal(runId, failed.RunId);
        Assert.Equal(3, server.Requests.Count);
    }

    [Fact]
    public async Task ApprovalAnsweredBeforeItsNotificationWentOut_IsNotAnnounced()
    {
        await using var server = new LoopbackServer((ctx, _) => LoopbackServer.Respond(ctx, 200, "ok"));
        var (engine, runId, _) = await WaitingWithNotifierAsync(server.BaseAddress, maxAttempts: 3,
            (e, id, step) => e.DecideApprovalAsync(id, step, new ApprovalDecision(false, "no"), "lea"));

        // The notifier reads the audit log (approval.asked is there), finds the approval answered, sends nothing.
        await EngineFixture.WaitAsync(engine, runId);
        await Task.Delay(500, TestContext.Current.CancellationToken); // several poll intervals
        Assert.Empty(server.Requests);
        Assert.DoesNotContain(await ((IAuditLog)engine.Store).ReadAuditAsync(), a => a.Action.StartsWith("approval.notif", StringComparison.Ordinal));
    }
}
