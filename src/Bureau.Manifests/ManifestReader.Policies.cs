using System.Globalization;
using YamlDotNet.RepresentationModel;

namespace Bureau.Manifests;

/// <summary>The <c>policies:</c> section.</summary>
internal sealed partial class ManifestReader
{
    private static readonly string[] s_policyKeys = ["defaults", "approval", "rules", "notify"];
    private static readonly string[] s_notifyKeys = ["kind", "url", "secret", "signingSecret", "users", "includeArguments"];
    private static readonly string[] s_slackUserKeys = ["name", "roles"];
    private static readonly string[] s_ruleKeys2 = ["name", "when", "action", "reason", "approval"];
    private static readonly string[] s_policyWhenKeys = ["agent", "tool", "effect", "args", "confidence", "tokens", "cost", "trigger", "time"];
    private static readonly string[] s_approvalKeys = ["approvers", "timeout", "escalate", "onTimeout", "editableArgs", "required", "onReject"];
    private static readonly string[] s_levelKeys = ["approvers", "timeout"];
    private static readonly string[] s_policyActions = ["allow", "deny", "require_approval"];
    private static readonly string[] s_timeoutActions = ["reject", "approve", "fail"];
    private static readonly string[] s_numberOperators = [">=", "<=", "==", "!=", ">", "<"];

    private PolicySet? ReadPolicies(Entry entry, Names agentNames, Names toolNames)
    {
        var map = Map(entry, "'policies'", s_policyKeys, [], null);
        if (map is null) return null;
        var before = _diagnostics.Count;

        var defaults = new Dictionary<ToolEffect, PolicyAction>();
        if (map.TryGetValue("defaults", out var de) && Map(de, "'defaults'", s_effects, [], null) is { } dm)
        {
            foreach (var (effect, value) in dm)
                if (Choice(value, s_policyActions) is { } action) defaults[ParseEffect(effect)] = ParseAction(action);
        }
        var defaultApproval = map.TryGetValue("approval", out var ae) ? ReadApproval(ae) : new ApprovalSpec();

        var rules = new List<PolicyRule>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        if (map.TryGetValue("rules", out var re))
        {
            var items = Sequence(re);
            for (var i = 0; i < items.Count; i++)
            {
                var itemEntry = new Entry("rules", re.Key, items[i], $"{re.Path}[{i}]");
                if (Map(itemEntry, "a policy rule", s_ruleKeys2, ["name", "action"], null) is not { } rm) continue;
                var name = rm.TryGetValue("name", out var ne) ? RequiredText(ne) : null;
                if (name is not null && !names.Add(name)) Error(ne!.Value, ne.Path, $"policy rule '{name}' is defined twice (rule names are unique)");
                var action = rm.TryGetValue("action", out var ac) ? Choice(ac, s_policyActions) : null;
                var when = rm.TryGetValue("when", out var we) ? ReadConditions(we, agentNames, toolNames) : new PolicyConditions();
                var reason = rm.TryGetValue("reason", out var rr) ? Text(rr) : null;
                ApprovalSpec? approval = null;
                if (rm.TryGetValue("approval", out var ap))
                {
                    if (action is not null && action != "require_approval")
                        Error(ap.Key, ap.Path, $"policy rule '{name}': 'approval' applies to action require_approval, not {action}");
                    approval = ReadApproval(ap);
                }
                if (name is null || action is null || when is null) continue;
                rules.Add(new PolicyRule { Name = name, When = when, Action = ParseAction(action), Reason = reason, Approval = approval ?? defaultApproval });
            }
        }
        var notify = new List<ApprovalNotifier>();
        if (map.TryGetValue("notify", out var nf))
        {
            var items = Sequence(nf);
            for (var i = 0; i < items.Count; i++)
            {
                var itemEntry = new Entry("notify", nf.Key, items[i], $"{nf.Path}[{i}]");
                if (Map(itemEntry, "a notify target", s_notifyKeys, ["kind", "url"], null) is not { } nm) continue;
                var kind = nm.TryGetValue("kind", out var ke) ? Choice(ke, ["webhook", "slack"]) : null;
                var url = nm.TryGetValue("url", out var ue) ? AbsoluteUrl(ue) : null;
                var secret = nm.TryGetValue("secret", out var se) ? Text(se) : null;
                var signingSecret = nm.TryGetValue("signingSecret", out var ss) ? Text(ss) : null;
                if (ss is not null && kind is not null && kind != "slack")
                    Error(ss.Key, ss.Path, $"'signingSecret' applies to slack targets (the Slack app's Signing Secret, for the Approve and Reject buttons), not {kind}");
                var users = new Dictionary<string, SlackApprover>(StringComparer.Ordinal);
                if (nm.TryGetValue("users", out var ue2))
                {
                    if (kind is not null && kind != "slack")
                        Error(ue2.Key, ue2.Path, $"'users' applies to slack targets (who each Slack user answers as), not {kind}");
                    else if (string.IsNullOrEmpty(signingSecret))
                        Error(ue2.Key, ue2.Path, "'users' needs 'signingSecret': without the Slack app's Signing Secret the message has no buttons to answer with");
                    ReadSlackUsers(ue2, users);
                }
                if (kind is not null && url is not null)
                {
                    notify.Add(new ApprovalNotifier(kind, url, string.IsNullOrEmpty(secret) ? null : secret)
                    {
                        SigningSecret = string.IsNullOrEmpty(signingSecret) ? null : signingSecret,
                        Users = users,
                        IncludeArguments = nm.TryGetValue("includeArguments", out var ia) && Boolean(ia) == true,
                    });
                }
            }
        }
        if (_diagnostics.Count > before) return null;
        return new PolicySet { Rules = rules, Defaults = defaults, DefaultApproval = defaultApproval, Notify = notify };
    }

    /// <summary><c>users: { U024BE7LH: grace, U0G9QF9C6: { name: ada, roles: [support-leads] } }</c>.</summary>
    private void ReadSlackUsers(Entry entry, Dictionary<string, SlackApprover> users)
    {
        if (Map(entry, "'users'", null, [], null) is not { } map) return;
        foreach (var (id, value) in map)
        {
            if (id.Length == 0 || !id.All(char.IsAsciiLetterOrDigit))
            {
                Error(value.Key, value.Path, $"'{id}' is not a Slack user id (letters and digits, such as U024BE7LH; a user's profile shows it under 'Copy member ID')");
                continue;
            }
            if (value.Value is YamlScalarNode)
            {
                if (RequiredText(value) is { } name) users[id] = new SlackApprover(name, []);
                continue;
            }
            if (Map(value, $"Slack user '{id}'", s_slackUserKeys, ["name"], null) is not { } um) continue;
            var approver = um.TryGetValue("name", out var ne) ? RequiredText(ne) : null;
            var roles = um.TryGetValue("roles", out var re) ? (re.Value is YamlSequenceNode ? StringItems(re) : RequiredText(re) is { } one ? [one] : null) : [];
            if (approver is not null && roles is not null) users[id] = new SlackApprover(approver, roles);
        }
    }

    private PolicyConditions? ReadConditions(Entry entry, Names agentNames, Names toolNames)
    {
        if (Map(entry, "'when'", s_policyWhenKeys, [], null) is not { } m) return null;
        List<string>? Names(string key, Names? known, string what)
        {
            if (!m.TryGetValue(key, out var e)) return null;
            var list = e.Value is YamlSequenceNode ? StringItems(e) ?? [] : RequiredText(e) is { } one ? [one] : [];
            if (known is not null)
            {
                foreach (var n in list)
                    if (!known.Contains(n)) Error(e.Value, e.Path, $"'when' names {what} '{n}', which is not defined{ReferenceHint(n, known)}");
            }
            return list;
        }
        var agents = Names("agent", agentNames, "agent");
        var tools = Names("tool", toolNames, "tool");
        var effectNames = Names("effect", null, "effect");
        List<ToolEffect>? effects = null;
        if (effectNames is not null)
        {
            effects = [];
            foreach (var e in effectNames)
            {
                if (s_effects.Contains(e)) effects.Add(ParseEffect(e));
                else Error(m["effect"].Value, m["effect"].Path, $"'effect' must be one of {string.Join(", ", s_effects)}, not '{e}'");
            }
        }
        var triggers = Names("trigger", null, "trigger");
        var args = new List<ArgumentCondition>();
        if (m.TryGetValue("args", out var ae))
        {
            var texts = ae.Value is YamlSequenceNode ? StringItems(ae) ?? [] : RequiredText(ae) is { } one ? [one] : [];
            foreach (var text in texts)
            {
                if (ArgumentCondition.Parse(text, out var error) is { } c) args.Add(c);
                else Error(ae.Value, ae.Path, error!);
            }
        }
        (TimeOnly, TimeOnly)? time = null;
        if (m.TryGetValue("time", out var te) && RequiredText(te) is { } window)
        {
            var parts = window.Split('-', 2, StringSplitOptions.TrimEntries);
            if (parts.Length == 2 && TimeOnly.TryParseExact(parts[0], "HH:mm", CultureInfo.InvariantCulture, DateTimeStyles.None, out var from)
                && TimeOnly.TryParseExact(parts[1], "HH:mm", CultureInfo.InvariantCulture, DateTimeStyles.None, out var to))
                time = (from, to);
            else
                Error(te.Value, te.Path, $"'time' must be a window of the day in UTC such as 09:00-17:00, not '{window}'");
        }
        return new PolicyConditions
        {
            Agents = agents,
            Tools = tools,
            Effects = effects,
            Triggers = triggers,
            Arguments = args,
            Confidence = m.TryGetValue("confidence", out var ce) ? Comparison(ce) : null,
            Tokens = m.TryGetValue("tokens", out var tk) ? Comparison(tk) : null,
            Cost = m.TryGetValue("cost", out var co) ? Comparison(co) : null,
            TimeOfDay = time,
        };
    }

    /// <summary><c>&lt; 0.7</c>, <c>&gt;= 1000</c>.</summary>
    private NumberCondition? Comparison(Entry entry)
    {
        var text = RequiredText(entry);
        if (text is null) return null;
        var t = text.Trim();
        foreach (var op in s_numberOperators)
        {
            if (!t.StartsWith(op, StringComparison.Ordinal)) continue;
            if (double.TryParse(t[op.Length..].Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && double.IsFinite(v))
                return new NumberCondition(op, v);
            break;
        }
        Error(entry.Value, entry.Path, $"'{entry.Name}' must be a comparison such as '< 0.7' or '>= 1000', not '{text}'");
        return null;
    }

    private ApprovalSpec ReadApproval(Entry entry)
    {
        if (Map(entry, "'approval'", s_approvalKeys, [], null) is not { } m) return new ApprovalSpec();
        var levels = new List<ApprovalLevel>
        {
            new(m.TryGetValue("approvers", out var ap) ? StringItems(ap) ?? [] : [], m.TryGetValue("timeout", out var to) ? Duration(to, allowZero: false) : null),
        };
        if (m.TryGetValue("escalate", out var es))
        {
            var items = Sequence(es);
            for (var i = 0; i < items.Count; i++)
            {
                var itemEntry = new Entry("escalate", es.Key, items[i], $"{es.Path}[{i}]");
                if (Map(itemEntry, "an escalation level", s_levelKeys, ["approvers"], null) is not { } lm) continue;
                levels.Add(new ApprovalLevel(lm.TryGetValue("approvers", out var la) ? StringItems(la) ?? [] : [],
                    lm.TryGetValue("timeout", out var lt) ? Duration(lt, allowZero: false) : null));
            }
        }
        for (var i = 0; i < levels.Count - 1; i++)
        {
            if (levels[i].Timeout is null)
                Error(entry.Key, entry.Path, $"approval level {i + 1} has no timeout, so the escalation after it could never happen; give it a 'timeout'");
        }
        var onTimeout = m.TryGetValue("onTimeout", out var ot) ? Choice(ot, s_timeoutActions) : null;
        var required = m.TryGetValue("required", out var rq) ? Integer(rq, 1, 10) : null;
        return new ApprovalSpec
        {
            Levels = levels,
            OnTimeout = onTimeout switch { "approve" => ApprovalTimeoutAction.Approve, "fail" => ApprovalTimeoutAction.Fail, _ => ApprovalTimeoutAction.Reject },
            EditableArguments = m.TryGetValue("editableArgs", out var ed) && Boolean(ed) == true,
            Required = required is { } r ? (int)r : 1,
            FailRunOnReject = m.TryGetValue("onReject", out var orj) && Choice(orj, ["tell-model", "fail"]) == "fail",
        };
    }

    private static PolicyAction ParseAction(string action) => action switch
    {
        "deny" => PolicyAction.Deny,
        "require_approval" => PolicyAction.RequireApproval,
        _ => PolicyAction.Allow,
    };

    private static ToolEffect ParseEffect(string effect) => effect switch
    {
        "write" => ToolEffect.Write,
        "idempotent" => ToolEffect.Idempotent,
        _ => ToolEffect.Read,
    };
}
