using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;

namespace Bureau.Governance;

/// <summary>
/// Policy changes in the audit log: at each start the deployed policy's fingerprint is compared with
/// the last one recorded; the first start records <c>policy.loaded</c>, a different policy
/// <c>policy.changed</c> (with the rule names and both fingerprints). Secrets are not part of it.
/// </summary>
internal static class PolicyAudit
{
    public static async Task RecordAsync(PolicySet policies, IAuditLog audit, string source, DateTimeOffset now, CancellationToken ct)
    {
        var description = Describe(policies);
        var fingerprint = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(description.ToJsonString())));
        var changed = await audit.LastAuditAsync("policy.changed", ct);
        var loaded = await audit.LastAuditAsync("policy.loaded", ct);
        var last = changed is null || (loaded is not null && loaded.Seq > changed.Seq) ? loaded : changed;
        var previous = last?.Detail is { } d && JsonNode.Parse(d) is JsonObject o ? (string?)o["fingerprint"] : null;
        if (previous == fingerprint) return;
        description["fingerprint"] = fingerprint;
        if (previous is not null) description["previous"] = previous;
        description["source"] = source;
        await audit.AppendAuditAsync(now, "bureau:start", previous is null ? "policy.loaded" : "policy.changed", null, null, description.ToJsonString(), ct);
    }

    /// <summary>What the policy decides, in a stable order: rules (name, action, conditions, approval), defaults, notify targets (no secrets).</summary>
    internal static JsonObject Describe(PolicySet p)
    {
        var rules = new JsonArray();
        foreach (var r in p.Rules)
        {
            var w = r.When;
            rules.Add(new JsonObject
            {
                ["name"] = r.Name,
                ["action"] = WireNames.Of(r.Action),
                ["reason"] = r.Reason,
                ["agents"] = w.Agents is null ? null : string.Join(",", w.Agents),
                ["tools"] = w.Tools is null ? null : string.Join(",", w.Tools),
                ["effects"] = w.Effects is null ? null : string.Join(",", w.Effects.Select(e => WireNames.Of(e))),
                ["args"] = string.Join(" && ", w.Arguments.Select(a => a.Text)),
                ["confidence"] = w.Confidence?.ToString(),
                ["tokens"] = w.Tokens?.ToString(),
                ["cost"] = w.Cost?.ToString(),
                ["triggers"] = w.Triggers is null ? null : string.Join(",", w.Triggers),
                ["time"] = w.TimeOfDay is { } t ? $"{t.From:HH\\:mm}-{t.To:HH\\:mm}" : null,
                ["approval"] = r.Action == PolicyAction.RequireApproval ? Approval(r.Approval) : null,
            });
        }
        var defaults = new JsonObject();
        foreach (var (effect, action) in p.Defaults.OrderBy(d => d.Key)) defaults[WireNames.Of(effect)] = WireNames.Of(action);
        return new JsonObject
        {
            ["rules"] = rules,
            ["defaults"] = defaults,
            ["defaultApproval"] = Approval(p.DefaultApproval),
            ["notify"] = new JsonArray([.. p.Notify.Select(n => (JsonNode?)Notify(n))]),
        };
    }

    /// <summary>A target without its secrets; with Slack buttons, who each Slack user answers as (who may approve is policy).</summary>
    private static string Notify(ApprovalNotifier n) =>
        n.SigningSecret is null
            ? $"{n.Kind} {n.Url}"
            : $"{n.Kind} {n.Url} buttons; users {string.Join(", ", n.Users.OrderBy(u => u.Key, StringComparer.Ordinal).Select(u => $"{u.Key}={u.Value.Name}[{string.Join(",", u.Value.Roles)}]"))}";

    private static string Approval(ApprovalSpec a) =>
        string.Join(" -> ", a.Levels.Select(l => $"[{string.Join(",", l.Approvers)}] {l.Timeout?.ToString() ?? "no deadline"}"))
        + $"; then {WireNames.Of(a.OnTimeout)}; required {a.Required}; editable {a.EditableArguments}; fail on reject {a.FailRunOnReject}";
}
