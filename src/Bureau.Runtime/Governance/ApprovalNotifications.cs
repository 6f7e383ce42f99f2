using System.Globalization;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Bureau.Governance;

/// <summary>How approval notifications are retried.</summary>
public sealed class ApprovalNotificationOptions
{
    /// <summary>Attempts per notification and target before it is recorded as failed. Default 5.</summary>
    public int MaxAttempts { get; set; } = 5;

    /// <summary>The first wait between attempts; it doubles. Default 1 s.</summary>
    public TimeSpan FirstRetryDelay { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>How often the audit log is looked at for approvals to announce. Default 1 s.</summary>
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>The timeout of one attempt. Default 10 s.</summary>
    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(10);
}

/// <summary>The action ids of the Slack message's buttons (their value is the approval id, <c>RUN:STEP</c>).</summary>
internal static class SlackActions
{
    public const string Approve = "bureau.approve";
    public const string Reject = "bureau.reject";
}

/// <summary>
/// Announces approvals when they open or escalate, to the policy's <c>notify</c> targets. It works
/// from the audit log (where <c>approval.asked</c> and <c>approval.escalated</c> are written in the
/// same transaction as the wait), so an approval asked just before a crash is announced after the
/// restart. Each delivery is recorded in the audit log too: <c>approval.notified</c> with the target
/// and the attempts, or, after the last attempt, <c>approval.notify-failed</c> with the error. Never
/// silent; at least once (a crash between sending and recording sends again).
/// </summary>
internal sealed partial class ApprovalNotifications(BureauDeployment deployment, IRunStore store, ApprovalNotificationOptions options, TimeProvider time,
    ILoggerFactory loggers) : BackgroundService
{
    private readonly ILogger logger = loggers.CreateLogger("Bureau.Approvals");
    private static readonly HttpClient Http = new() { Timeout = Timeout.InfiniteTimeSpan };
    private readonly IReadOnlyList<ApprovalNotifier> _targets = deployment.Definitions.Policies.Notify;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (_targets.Count == 0 || store is not IAuditLog audit) return;
        var done = new HashSet<(long Seq, string Target)>();
        long after = 0;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                var page = await audit.ReadAuditAsync(after, 1000, stoppingToken);
                foreach (var e in page)
                {
                    if (e.Action is "approval.notified" or "approval.notify-failed" && e.Detail is not null && JsonNode.Parse(e.Detail) is JsonObject d
                        && (long?)d["entry"] is { } seq && (string?)d["target"] is { } target)
                        done.Add((seq, target));
                }
                foreach (var e in page.Where(e => e.Action is "approval.asked" or "approval.escalated"))
                {
                    if (await OpenWaitAsync(e, stoppingToken) is not { } wait) continue; // answered, expired or moved on since: nothing to announce
                    foreach (var target in _targets)
                    {
                        if (done.Contains((e.Seq, target.Url.ToString()))) continue;
                        await DeliverAsync(audit, e, target, target.IncludeArguments ? wait.Arguments : null, stoppingToken);
                        done.Add((e.Seq, target.Url.ToString()));
                    }
                }
                if (page.Count > 0) after = page[^1].Seq;
                if (page.Count < 1000) await Task.Delay(options.PollInterval, time, stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                Log.Failed(logger, ex);
                await Task.Delay(options.PollInterval, time, stoppingToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
        }
    }

    /// <summary>The approval the entry announces, while its run still waits for it at that level; null once answered, expired or escalated.</summary>
    private async Task<ApprovalWait?> OpenWaitAsync(AuditRecord entry, CancellationToken ct)
    {
        if (entry.RunId is null || entry.Detail is null || JsonNode.Parse(entry.Detail) is not JsonObject d) return null;
        var run = await store.GetRunAsync(entry.RunId, ct);
        return run?.WaitingFor is ApprovalWait wait && wait.Step == (long?)d["approval"] && wait.Level == ((int?)d["level"] ?? 0) ? wait : null;
    }

    private async Task DeliverAsync(IAuditLog audit, AuditRecord entry, ApprovalNotifier target, string? arguments, CancellationToken ct)
    {
        var payload = Payload(entry);
        if (arguments is not null) payload["arguments"] = ArgumentsPreview(arguments);
        string? error = null;
        var attempts = 0;
        for (var delay = options.FirstRetryDelay; attempts < options.MaxAttempts; delay *= 2)
        {
            attempts++;
            error = await SendAsync(target, entry, payload, ct);
            if (error is null) break;
            Log.AttemptFailed(logger, target.Url.ToString(), entry.RunId ?? "", attempts, error);
            if (attempts < options.MaxAttempts) await Task.Delay(delay, time, ct);
        }
        var detail = new JsonObject { ["entry"] = entry.Seq, ["target"] = target.Url.ToString(), ["kind"] = target.Kind, ["attempts"] = attempts, ["error"] = error }.ToJsonString();
        await audit.AppendAuditAsync(time.GetUtcNow(), "bureau:notifier", error is null ? "approval.notified" : "approval.notify-failed", entry.RunId, entry.Step, detail, ct);
        if (error is not null) Log.GaveUp(logger, target.Url.ToString(), entry.RunId ?? "", attempts, error);
    }

    private static JsonObject Payload(AuditRecord entry)
    {
        var detail = entry.Detail is null ? new JsonObject() : JsonNode.Parse(entry.Detail) as JsonObject ?? new JsonObject();
        var step = (long?)detail["approval"];
        var id = $"{entry.RunId}:{step}";
        return new JsonObject
        {
            ["type"] = entry.Action,
            ["approval"] = id,
            ["runId"] = entry.RunId,
            ["tool"] = detail["tool"]?.DeepClone(),
            ["level"] = detail["level"]?.DeepClone(),
            ["approvers"] = detail["approvers"]?.DeepClone(),
            ["deadline"] = detail["deadline"]?.DeepClone(),
            ["decide"] = $"/v1/approvals/{id}/decision",
            ["at"] = entry.At,
        };
    }

    /// <summary>The arguments' JSON text, cut to <see cref="ApprovalNotifier.ArgumentsPreviewChars"/> characters (ending with <c>…</c> when cut).</summary>
    internal static string ArgumentsPreview(string arguments) =>
        arguments.Length <= ApprovalNotifier.ArgumentsPreviewChars ? arguments : string.Concat(arguments.AsSpan(0, ApprovalNotifier.ArgumentsPreviewChars), "…");

    /// <summary>One attempt; null when the target accepted it (2xx), else what went wrong.</summary>
    private async Task<string?> SendAsync(ApprovalNotifier target, AuditRecord entry, JsonObject payload, CancellationToken ct)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(options.Timeout);
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, target.Url);
            string body;
            if (target.Kind == "slack")
            {
                body = SlackMessage(entry, payload, buttons: target.SigningSecret is not null).ToJsonString();
            }
            else
            {
                body = payload.ToJsonString();
                var msgId = $"bureau-{entry.Seq}";
                var stamp = time.GetUtcNow().ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture);
                request.Headers.Add("webhook-id", msgId);
                request.Headers.Add("webhook-timestamp", stamp);
                if (target.Secret is { } secret) request.Headers.Add("webhook-signature", Sign(secret, msgId, stamp, body));
            }
            request.Content = new StringContent(body, Encoding.UTF8);
            request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
            using var response = await Http.SendAsync(request, timeout.Token);
            return response.IsSuccessStatusCode ? null : $"HTTP {(int)response.StatusCode} {response.ReasonPhrase}";
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            return $"no answer within {options.Timeout.TotalSeconds:0.#} s";
        }
        catch (HttpRequestException ex)
        {
            return ex.Message;
        }
    }

    /// <summary>
    /// The Slack message: what is asked, and how to decide. With the app's Signing Secret configured, an
    /// actions block with Approve and Reject buttons whose value is the approval id (Slack posts a click to
    /// <c>POST /v1/approvals/slack</c>); the text stays as the notification's fallback.
    /// </summary>
    internal static JsonObject SlackMessage(AuditRecord entry, JsonObject payload, bool buttons)
    {
        var id = (string)payload["approval"]!;
        var arguments = (string?)payload["arguments"] is { } args ? $" with `{args.Replace('`', '\'')}`" : "";
        var text = $"Approval {(entry.Action == "approval.escalated" ? "escalated" : "needed")}: run {payload["runId"]} wants to call {payload["tool"]}{arguments} "
            + $"(level {((int?)payload["level"] ?? 0) + 1}, approvers: {payload["approvers"]?.ToJsonString() ?? "any"}). ";
        if (!buttons) return new JsonObject { ["text"] = text + $"Decide: POST {payload["decide"]} or `bureau approvals approve|reject {id}`" };
        static JsonObject Button(string label, string action, string value, string style) => new()
        {
            ["type"] = "button", ["text"] = new JsonObject { ["type"] = "plain_text", ["text"] = label }, ["action_id"] = action, ["value"] = value, ["style"] = style,
        };
        return new JsonObject
        {
            ["text"] = text + $"Approve or reject here, or `bureau approvals approve|reject {id}`",
            ["blocks"] = new JsonArray(
                new JsonObject { ["type"] = "section", ["text"] = new JsonObject { ["type"] = "mrkdwn", ["text"] = text + $"Approval `{id}`" } },
                new JsonObject
                {
                    ["type"] = "actions",
                    ["block_id"] = "bureau-approval",
                    ["elements"] = new JsonArray(Button("Approve", SlackActions.Approve, id, "primary"), Button("Reject", SlackActions.Reject, id, "danger")),
                }),
        };
    }

    /// <summary>Standard Webhooks: <c>v1,</c> base64 HMAC-SHA256 of <c>id.timestamp.body</c>; a <c>whsec_</c> secret is base64.</summary>
    internal static string Sign(string secret, string id, string timestamp, string body)
    {
        var key = secret.StartsWith("whsec_", StringComparison.Ordinal) ? Convert.FromBase64String(secret["whsec_".Length..]) : Encoding.UTF8.GetBytes(secret);
        return "v1," + Convert.ToBase64String(HMACSHA256.HashData(key, Encoding.UTF8.GetBytes($"{id}.{timestamp}.{body}")));
    }

    private static partial class Log
    {
        [LoggerMessage(70, LogLevel.Warning, "Approval notification to {Target} for run {RunId} failed (attempt {Attempt}): {Error}")]
        public static partial void AttemptFailed(ILogger logger, string target, string runId, int attempt, string error);

        [LoggerMessage(71, LogLevel.Error, "Approval notification to {Target} for run {RunId} failed {Attempts} times ({Error}); recorded as approval.notify-failed in the audit log")]
        public static partial void GaveUp(ILogger logger, string target, string runId, int attempts, string error);

        [LoggerMessage(72, LogLevel.Warning, "Reading the audit log for approval notifications failed; trying again")]
        public static partial void Failed(ILogger logger, Exception ex);
    }
}
