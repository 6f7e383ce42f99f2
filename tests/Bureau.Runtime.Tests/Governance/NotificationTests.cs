using Bureau.Governance;
using Bureau.Storage.Sqlite;
using Bureau.Tests.Support;
using Bureau.Tests.Tools;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
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

    private async Task<(BureauEngine Engine, string RunId, long Step)> WaitingWithNotifierAsync(Uri url, int maxAttempts, Func<BureauEngine, string, long, Task>? beforeNotifierStarts = null)
    {
        _f.AddTool("refund", ToolEffect.Write);
        _f.AddAgent(tools: "refund");
        _f.UseModel((msgs, turn) => turn == 1 ? FakeModel.Call("refund", """{"key":"k"}""", "c1") : FakeModel.Text("done"));
        _f.Definitions.Policies = new PolicySet
        {
            Defaults = new Dictionary<ToolEffect, PolicyAction> { [ToolEffect.Write] = PolicyAction.RequireApproval },
            Notify = [new ApprovalNotifier("webhook", url, "whsec_" + Convert.ToBase64String("s3cret-key"u8.ToArray()))],
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
        var expected = ApprovalNotifications.Sign("whsec_" + Convert.ToBase64String("s3cret-key"u8.ToArray()), last.Headers["webhook-id"]!, last.Headers["webhook-timestamp"]!, last.Body);
        Assert.Equal(expected, last.Headers["webhook-signature"]);
        Assert.True((await ((IAuditLog)engine.Store).VerifyAuditAsync()).IsIntact);
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
