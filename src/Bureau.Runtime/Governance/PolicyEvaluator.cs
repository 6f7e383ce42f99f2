using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Bureau.Governance;

/// <summary>What a policy is evaluated on: one proposed tool call, in its run.</summary>
/// <param name="Agent">The agent proposing the call.</param>
/// <param name="Tool">The tool.</param>
/// <param name="Effect">The tool's effect class.</param>
/// <param name="Arguments">The call's arguments (JSON).</param>
/// <param name="Confidence">The model's stated confidence for the call (0 to 1), when it stated one.</param>
/// <param name="Tokens">The run's tokens so far.</param>
/// <param name="Cost">The run's cost so far, when its models have prices.</param>
/// <param name="Actor">Who started the run (<c>trigger:NAME</c> for a trigger).</param>
/// <param name="Now">The time of the call.</param>
public sealed record PolicyContext(string Agent, string Tool, ToolEffect Effect, string Arguments, double? Confidence = null,
    long Tokens = 0, decimal? Cost = null, string? Actor = null, DateTimeOffset Now = default);

/// <summary>A policy's verdict on a call, with the reasons.</summary>
/// <param name="Action">What to do.</param>
/// <param name="Rule">The rule that decided (<c>default:write</c> for an effect class default, <c>none</c> when there is no policy).</param>
/// <param name="Reason">The rule's reason.</param>
/// <param name="Approval">For <see cref="PolicyAction.RequireApproval"/>: how.</param>
/// <param name="Explanation">One line per rule looked at: why it did or did not match.</param>
public sealed record PolicyDecision(PolicyAction Action, string Rule, string? Reason, ApprovalSpec? Approval, IReadOnlyList<string> Explanation);

/// <summary>Evaluates a <see cref="PolicySet"/>: rules in order, the first whose conditions all hold wins; then the effect class's default; then allow. Pure and bounded.</summary>
public static class PolicyEvaluator
{
    /// <summary>The decision for <paramref name="call"/>.</summary>
    public static PolicyDecision Evaluate(PolicySet policies, PolicyContext call)
    {
        ArgumentNullException.ThrowIfNull(policies);
        ArgumentNullException.ThrowIfNull(call);
        var explanation = new List<string>();
        JsonNode? args = null;
        var argsRead = false;
        foreach (var rule in policies.Rules)
        {
            var miss = Mismatch(rule.When, call, ref args, ref argsRead);
            if (miss is null)
            {
                explanation.Add($"rule '{rule.Name}' matches: {Describe(rule.When, call, args)} -> {WireNames.Of(rule.Action)}");
                return new PolicyDecision(rule.Action, rule.Name, rule.Reason, rule.Action == PolicyAction.RequireApproval ? rule.Approval : null, explanation);
            }
            explanation.Add($"rule '{rule.Name}' does not match: {miss}");
        }
        if (policies.Defaults.TryGetValue(call.Effect, out var byEffect))
        {
            explanation.Add($"no rule matched; the default for {WireNames.Of(call.Effect)} tools is {WireNames.Of(byEffect)}");
            return new PolicyDecision(byEffect, "default:" + WireNames.Of(call.Effect), $"{WireNames.Of(call.Effect)} tools are {WireNames.Of(byEffect)} by default",
                byEffect == PolicyAction.RequireApproval ? policies.DefaultApproval : null, explanation);
        }
        explanation.Add(policies.IsEmpty ? "no policy: every call is allowed" : $"no rule matched and no default for {WireNames.Of(call.Effect)} tools: allowed");
        return new PolicyDecision(PolicyAction.Allow, policies.IsEmpty ? "none" : "default", null, null, explanation);
    }

    /// <summary>Why <paramref name="when"/> does not hold for the call, or null when it does.</summary>
    private static string? Mismatch(PolicyConditions when, PolicyContext call, ref JsonNode? args, ref bool argsRead)
    {
        if (when.Agents is { } agents && !agents.Contains(call.Agent, StringComparer.Ordinal))
            return $"the agent is {call.Agent}, not {string.Join(" or ", agents)}";
        if (when.Tools is { } tools && !tools.Contains(call.Tool, StringComparer.Ordinal))
            return $"the tool is {call.Tool}, not {string.Join(" or ", tools)}";
        if (when.Effects is { } effects && !effects.Contains(call.Effect))
            return $"the tool's effect is {WireNames.Of(call.Effect)}, not {string.Join(" or ", effects.Select(e => WireNames.Of(e)))}";
        if (when.Triggers is { } triggers)
        {
            var trigger = call.Actor is { } a && a.StartsWith("trigger:", StringComparison.Ordinal) ? a["trigger:".Length..] : null;
            if (trigger is null || !triggers.Contains(trigger, StringComparer.Ordinal))
                return trigger is null ? "the run was not started by a trigger" : $"the trigger is {trigger}, not {string.Join(" or ", triggers)}";
        }
        if (when.Confidence is { } confidence)
        {
            if (call.Confidence is not { } stated) return "the model stated no confidence";
            if (!confidence.Holds(stated)) return $"the confidence is {Num(stated)}, not {confidence}";
        }
        if (when.Tokens is { } tokens && !tokens.Holds(call.Tokens)) return $"the run has used {call.Tokens} tokens, not {tokens}";
        if (when.Cost is { } cost)
        {
            if (call.Cost is not { } spent) return "the run's cost is unknown (no prices)";
            if (!cost.Holds((double)spent)) return $"the run has cost {spent.ToString(CultureInfo.InvariantCulture)}, not {cost}";
        }
        if (when.TimeOfDay is { } window)
        {
            var now = TimeOnly.FromDateTime(call.Now.UtcDateTime);
            var inside = window.From <= window.To ? now >= window.From && now < window.To : now >= window.From || now < window.To;
            if (!inside) return $"the time is {now:HH\\:mm} UTC, outside {window.From:HH\\:mm}-{window.To:HH\\:mm}";
        }
        foreach (var condition in when.Arguments)
        {
            if (!argsRead)
            {
                args = ParseArguments(call.Arguments);
                argsRead = true;
            }
            if (ArgumentMismatch(condition, args) is { } why) return why;
        }
        return null;
    }

    private static string Describe(PolicyConditions when, PolicyContext call, JsonNode? args)
    {
        var parts = new List<string>();
        if (when.Agents is not null) parts.Add($"agent {call.Agent}");
        if (when.Tools is not null) parts.Add($"tool {call.Tool}");
        if (when.Effects is not null) parts.Add($"effect {WireNames.Of(call.Effect)}");
        if (when.Triggers is not null) parts.Add($"started by {call.Actor}");
        if (when.Confidence is not null) parts.Add($"confidence {Num(call.Confidence ?? 0)} {when.Confidence}");
        if (when.Tokens is not null) parts.Add($"tokens {call.Tokens} {when.Tokens}");
        if (when.Cost is not null) parts.Add($"cost {call.Cost?.ToString(CultureInfo.InvariantCulture)} {when.Cost}");
        if (when.TimeOfDay is { } w) parts.Add($"time within {w.From:HH\\:mm}-{w.To:HH\\:mm} UTC");
        foreach (var c in when.Arguments) parts.Add($"{c.Text} ({c.Path} is {Lookup(args, c.Path)?.ToJsonString() ?? "missing"})");
        return parts.Count == 0 ? "no conditions (every call)" : string.Join("; ", parts);
    }

    private static JsonNode? ParseArguments(string json)
    {
        try
        {
            return JsonNode.Parse(json, documentOptions: new JsonDocumentOptions { MaxDepth = 64 });
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static string? ArgumentMismatch(ArgumentCondition c, JsonNode? args)
    {
        var value = Lookup(args, c.Path);
        if (c.Operator == "exists") return value is null ? $"{c.Path} is missing" : null;
        var expected = c.Value is null ? null : JsonNode.Parse(c.Value);
        if (value is null && expected is not null) return $"{c.Path} is missing";
        bool holds;
        if (value is JsonValue v && expected is JsonValue e && TryNumber(v, out var x) && TryNumber(e, out var y))
        {
            holds = new NumberCondition(c.Operator, y).Holds(x);
        }
        else if (value is JsonValue sv && sv.TryGetValue<string>(out var s) && expected is JsonValue se && se.TryGetValue<string>(out var t))
        {
            var cmp = string.CompareOrdinal(s, t);
            holds = c.Operator switch { "==" => cmp == 0, "!=" => cmp != 0, ">" => cmp > 0, ">=" => cmp >= 0, "<" => cmp < 0, "<=" => cmp <= 0, _ => false };
        }
        else
        {
            var same = JsonNode.DeepEquals(value, expected);
            holds = c.Operator switch { "==" => same, "!=" => !same, _ => false };
        }
        return holds ? null : $"{c.Text} does not hold ({c.Path} is {value?.ToJsonString() ?? "null"})";
    }

    private static bool TryNumber(JsonValue v, out double number)
    {
        if (v.GetValueKind() == JsonValueKind.Number) return double.TryParse(v.ToJsonString(), NumberStyles.Float, CultureInfo.InvariantCulture, out number);
        number = 0;
        return false;
    }

    /// <summary>The node at <paramref name="path"/> (<c>$.a.b[0]</c>), or null.</summary>
    internal static JsonNode? Lookup(JsonNode? root, string path)
    {
        var node = root;
        var i = 1; // after '$'
        while (i < path.Length && node is not null)
        {
            if (path[i] == '.')
            {
                var end = i + 1;
                while (end < path.Length && path[end] != '.' && path[end] != '[') end++;
                node = node is JsonObject o && o.TryGetPropertyValue(path[(i + 1)..end], out var child) ? child : null;
                i = end;
            }
            else if (path[i] == '[')
            {
                var end = path.IndexOf(']', i);
                var index = int.Parse(path[(i + 1)..end], CultureInfo.InvariantCulture);
                node = node is JsonArray a && index < a.Count ? a[index] : null;
                i = end + 1;
            }
            else
            {
                return null;
            }
        }
        return node;
    }

    private static string Num(double x) => x.ToString("0.###", CultureInfo.InvariantCulture);
}
