using System.Text.Json.Serialization;

namespace Bureau;

/// <summary>What a policy does with a tool call.</summary>
public enum PolicyAction
{
    /// <summary>The call runs.</summary>
    [JsonStringEnumMemberName("allow")] Allow,

    /// <summary>The call does not run; the model is told why (as the call's result).</summary>
    [JsonStringEnumMemberName("deny")] Deny,

    /// <summary>The run waits for a person to approve (or edit, or reject) the call.</summary>
    [JsonStringEnumMemberName("require_approval")] RequireApproval,
}

/// <summary>What happens when nobody answers an approval by its last deadline.</summary>
public enum ApprovalTimeoutAction
{
    /// <summary>The call is rejected; the model is told so. The default.</summary>
    [JsonStringEnumMemberName("reject")] Reject,

    /// <summary>The call runs as proposed.</summary>
    [JsonStringEnumMemberName("approve")] Approve,

    /// <summary>The run fails (outcome <c>approval-timeout</c>).</summary>
    [JsonStringEnumMemberName("fail")] Fail,
}

/// <summary>One level of an approval: who may answer, and how long they have before it moves on.</summary>
/// <param name="Approvers">Roles, groups or names who may answer at this level.</param>
/// <param name="Timeout">How long this level waits; null waits for ever (only the last level may).</param>
public sealed record ApprovalLevel(IReadOnlyList<string> Approvers, TimeSpan? Timeout);

/// <summary>How an approval is asked for: its escalation chain, what happens at the end, and what the approver may do.</summary>
public sealed class ApprovalSpec
{
    /// <summary>The levels in order (the first is asked first; after its timeout, the next).</summary>
    public IReadOnlyList<ApprovalLevel> Levels { get; init; } = [new([], null)];

    /// <summary>After the last level's timeout. Default <see cref="ApprovalTimeoutAction.Reject"/>.</summary>
    public ApprovalTimeoutAction OnTimeout { get; init; } = ApprovalTimeoutAction.Reject;

    /// <summary>Whether the approver may change the call's arguments (validated against the tool's schema again).</summary>
    public bool EditableArguments { get; init; }

    /// <summary>How many distinct approvers must approve (four-eyes: 2). A single rejection rejects.</summary>
    public int Required { get; init; } = 1;

    /// <summary>
    /// When the call is rejected: false (the default) tells the model and the run goes on; true fails
    /// the run (outcome <c>rejected</c>), so that an agent with <c>rollbackOnFailure</c> compensates the
    /// writes it made before.
    /// </summary>
    public bool FailRunOnReject { get; init; }
}

/// <summary>
/// Where an approval is announced when it opens or escalates: a signed webhook (Standard Webhooks:
/// <c>webhook-id</c>, <c>webhook-timestamp</c>, <c>webhook-signature</c>) or a Slack incoming webhook.
/// </summary>
/// <param name="Kind"><c>webhook</c> or <c>slack</c>.</param>
/// <param name="Url">Where to POST.</param>
/// <param name="Secret">For <c>webhook</c>: the signing secret (raw text, or <c>whsec_</c> and base64).</param>
public sealed record ApprovalNotifier(string Kind, Uri Url, string? Secret = null)
{
    /// <summary>
    /// For <c>slack</c>: the Slack app's Signing Secret. With it the message carries Approve and Reject
    /// buttons, whose clicks Slack sends to <c>POST /v1/approvals/slack</c> (the app's interactivity
    /// Request URL), verified with this secret.
    /// </summary>
    public string? SigningSecret { get; init; }

    /// <summary>For <c>slack</c> with buttons: who each Slack user (by user id, <c>U…</c>) answers as. A user not listed may not answer.</summary>
    public IReadOnlyDictionary<string, SlackApprover> Users { get; init; } = new Dictionary<string, SlackApprover>();

    /// <summary>
    /// Whether the announcement carries the call's arguments (their JSON text, cut to
    /// <see cref="ArgumentsPreviewChars"/> characters), so an approver can decide from the message. Off by default: the
    /// arguments may hold personal data the target (a chat service) should not receive; without them the message names
    /// the tool, and the arguments are in the approval inbox.
    /// </summary>
    public bool IncludeArguments { get; init; }

    /// <summary>The most characters of arguments an announcement carries (longer ones end with <c>…</c>).</summary>
    public const int ArgumentsPreviewChars = 2000;
}

/// <summary>Who a Slack user answers approvals as: an approver name, and the roles or groups it belongs to (matched against a level's approvers).</summary>
/// <param name="Name">The approver's name (journaled as who answered).</param>
/// <param name="Roles">Roles and groups, such as <c>support-leads</c>.</param>
public sealed record SlackApprover(string Name, IReadOnlyList<string> Roles);

/// <summary>A comparison on the call's arguments: <c>$.amount &gt; 100</c>.</summary>
/// <param name="Path">A JSONPath into the arguments (<c>$.a.b</c>, <c>$.items[0].price</c>).</param>
/// <param name="Operator">One of <c>== != &gt; &gt;= &lt; &lt;=</c>, or <c>exists</c>.</param>
/// <param name="Value">The literal compared with (a number, a string, true, false or null, as JSON).</param>
/// <param name="Text">As written.</param>
public sealed record ArgumentCondition(string Path, string Operator, string? Value, string Text)
{
    private static readonly string[] s_operators = [">=", "<=", "==", "!=", ">", "<"];

    /// <summary>Reads <c>$.path OP literal</c> (or <c>$.path exists</c>); null with <paramref name="error"/> when it is not one.</summary>
    public static ArgumentCondition? Parse(string text, out string? error)
    {
        error = null;
        var t = text.Trim();
        if (!t.StartsWith('$'))
        {
            error = $"'{text}' must start with a JSONPath such as $.amount";
            return null;
        }
        if (t.EndsWith(" exists", StringComparison.Ordinal))
        {
            var p = t[..^" exists".Length].Trim();
            return ValidPath(p, text, out error) ? new ArgumentCondition(p, "exists", null, text) : null;
        }
        foreach (var op in s_operators)
        {
            var at = t.IndexOf(op, StringComparison.Ordinal);
            if (at <= 0) continue;
            var path = t[..at].Trim();
            var literal = t[(at + op.Length)..].Trim();
            if (!ValidPath(path, text, out error)) return null;
            if (literal.Length == 0)
            {
                error = $"'{text}' compares {path} with nothing";
                return null;
            }
            var json = literal switch
            {
                "true" or "false" or "null" => literal,
                _ when double.TryParse(literal, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var n) && double.IsFinite(n) => literal,
                _ when literal.Length >= 2 && (literal[0] == '\'' && literal[^1] == '\'' || literal[0] == '"' && literal[^1] == '"') =>
                    System.Text.Json.JsonSerializer.Serialize(literal[1..^1]),
                _ => null,
            };
            if (json is null)
            {
                error = $"'{text}': {literal} must be a number, a quoted string, true, false or null";
                return null;
            }
            if (op is ">" or ">=" or "<" or "<=" && json is "true" or "false" or "null")
            {
                error = $"'{text}': {op} compares numbers or strings, not {literal}";
                return null;
            }
            return new ArgumentCondition(path, op, json, text);
        }
        error = $"'{text}' needs a comparison: one of {string.Join(" ", s_operators)} or 'exists'";
        return null;
    }

    private static bool ValidPath(string path, string text, out string? error)
    {
        error = null;
        if (System.Text.RegularExpressions.Regex.IsMatch(path, @"^\$(\.[A-Za-z_][A-Za-z0-9_-]*|\[\d+\])*$")) return true;
        error = $"'{text}': {path} is not a JSONPath of names and indexes ($.a.b[0])";
        return false;
    }
}

/// <summary>A number compared with a threshold: <c>&lt; 0.7</c>.</summary>
/// <param name="Operator">One of <c>&gt; &gt;= &lt; &lt;=</c>.</param>
/// <param name="Value">The threshold.</param>
public sealed record NumberCondition(string Operator, double Value)
{
    /// <summary>Whether <paramref name="x"/> satisfies the comparison.</summary>
    public bool Holds(double x) => Operator switch
    {
        ">" => x > Value,
        ">=" => x >= Value,
        "<" => x < Value,
        "<=" => x <= Value,
        "==" => x == Value,
        "!=" => x != Value,
        _ => false,
    };

    /// <inheritdoc />
    public override string ToString() => $"{Operator} {Value.ToString(System.Globalization.CultureInfo.InvariantCulture)}";
}

/// <summary>When a rule applies: every condition given must hold (an absent one always holds).</summary>
public sealed class PolicyConditions
{
    /// <summary>The agent is one of these.</summary>
    public IReadOnlyList<string>? Agents { get; init; }

    /// <summary>The tool is one of these.</summary>
    public IReadOnlyList<string>? Tools { get; init; }

    /// <summary>The tool's effect class is one of these.</summary>
    public IReadOnlyList<ToolEffect>? Effects { get; init; }

    /// <summary>Comparisons on the arguments; all must hold.</summary>
    public IReadOnlyList<ArgumentCondition> Arguments { get; init; } = [];

    /// <summary>The model's stated confidence (0 to 1) for the call; a call with no stated confidence does not match.</summary>
    public NumberCondition? Confidence { get; init; }

    /// <summary>The run's spend so far in tokens (input plus output).</summary>
    public NumberCondition? Tokens { get; init; }

    /// <summary>The run's spend so far in its price unit (models with prices only).</summary>
    public NumberCondition? Cost { get; init; }

    /// <summary>The trigger that started the run is one of these (its actor is <c>trigger:NAME</c>).</summary>
    public IReadOnlyList<string>? Triggers { get; init; }

    /// <summary>The time of day (UTC) is within [From, To); To before From wraps past midnight.</summary>
    public (TimeOnly From, TimeOnly To)? TimeOfDay { get; init; }
}

/// <summary>A policy rule: when its conditions hold, its action applies (the first matching rule wins).</summary>
public sealed class PolicyRule
{
    /// <summary>The rule's name (shown in decisions, the journal and <c>bureau policy test</c>).</summary>
    public required string Name { get; init; }

    /// <summary>When it applies.</summary>
    public PolicyConditions When { get; init; } = new();

    /// <summary>What it does.</summary>
    public required PolicyAction Action { get; init; }

    /// <summary>Why (told to the model on a deny, shown to the approver on an approval).</summary>
    public string? Reason { get; init; }

    /// <summary>For <see cref="PolicyAction.RequireApproval"/>: the chain, timeouts and what the approver may do.</summary>
    public ApprovalSpec Approval { get; init; } = new();
}

/// <summary>
/// The tool-call policy: rules in order (first match wins), then a default per effect class. Without
/// any policy every call is allowed, as before policies existed.
/// </summary>
public sealed class PolicySet
{
    /// <summary>The rules, in order.</summary>
    public IReadOnlyList<PolicyRule> Rules { get; init; } = [];

    /// <summary>What applies when no rule matches, per effect class (absent: allow).</summary>
    public IReadOnlyDictionary<ToolEffect, PolicyAction> Defaults { get; init; } = new Dictionary<ToolEffect, PolicyAction>();

    /// <summary>The approval asked for by a default of <see cref="PolicyAction.RequireApproval"/>.</summary>
    public ApprovalSpec DefaultApproval { get; init; } = new();

    /// <summary>Where to announce approvals when they open or escalate.</summary>
    public IReadOnlyList<ApprovalNotifier> Notify { get; init; } = [];

    /// <summary>True when there is nothing to evaluate (every call is allowed).</summary>
    public bool IsEmpty => Rules.Count == 0 && Defaults.Count == 0;
}
