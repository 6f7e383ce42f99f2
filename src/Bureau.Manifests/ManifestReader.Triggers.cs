using Cronos;
using YamlDotNet.RepresentationModel;

namespace Bureau.Manifests;

/// <summary>The <c>triggers:</c> section: webhooks, schedules and topics, each starting an agent or a team.</summary>
internal sealed partial class ManifestReader
{
    private static readonly string[] s_triggerKinds = ["webhook", "schedule", "topic", "poll"];
    private static readonly string[] s_commonTriggerKeys = ["kind", "agent", "input", "description", "priority", "orderingKey", "workforce"];
    private static readonly Dictionary<string, string[]> s_triggerKindKeys = new(StringComparer.Ordinal)
    {
        ["webhook"] = ["source", "secret", "events", "signatureHeader", "idHeader", "tolerance"],
        ["schedule"] = ["cron", "every", "timeZone", "catchUp", "maxCatchUp", "overlap"],
        ["topic"] = ["topic"],
        ["poll"] = ["provider", "connectionString", "query", "cursorColumn", "every", "initialCursor", "eventType"],
    };
    private static readonly Dictionary<string, string[]> s_triggerKindRequired = new(StringComparer.Ordinal)
    {
        ["webhook"] = ["source", "secret"],
        ["schedule"] = [],
        ["topic"] = ["topic"],
        ["poll"] = ["provider", "connectionString", "query", "cursorColumn"],
    };
    private static readonly string[] s_webhookSources = ["github", "slack", "standard", "hmac"];
    private static readonly string[] s_catchUpPolicies = ["skip", "once", "all"];
    private static readonly string[] s_overlapPolicies = ["skip", "allow", "queue-one"];

    /// <summary>Agents and teams by name, read from the mappings as written (a team that failed to read still counts as a name).</summary>
    private static Names RunnableNames(List<Entry> agentEntries, Entry? teams)
    {
        var names = new Names(agentEntries.Select(e => e.Name));
        if (teams?.Value is YamlMappingNode map)
            names.AddRange(map.Children.Keys.OfType<YamlScalarNode>().Select(k => k.Value).OfType<string>());
        return names;
    }

    private void ReadTriggers(List<Entry> entries, BureauDefinitions definitions, Names runnable)
    {
        foreach (var e in entries)
            if (ReadTrigger(e, runnable) is { } trigger) definitions.Add(trigger);
    }

    private TriggerDefinition? ReadTrigger(Entry entry, Names runnable)
    {
        var what = $"trigger '{entry.Name}'";
        if (!NamePattern().IsMatch(entry.Name))
            Error(entry.Key, entry.Path, $"trigger name '{entry.Name}' must be 1 to 64 letters, digits, '_' or '-' (it is part of the webhook's address)");
        var kindEntry = Peek(entry.Value, "kind");
        var kind = kindEntry is null ? null : Choice(kindEntry with { Path = entry.Path + ".kind" }, s_triggerKinds);
        var allowed = kind is null
            ? [.. s_commonTriggerKeys, .. s_triggerKindKeys.Values.SelectMany(k => k).Distinct()]
            : s_commonTriggerKeys.Concat(s_triggerKindKeys[kind]).ToArray();
        var foreign = kind is null ? null : s_triggerKindKeys
            .Where(k => k.Key != kind)
            .SelectMany(k => k.Value.Select(key => (Key: key, Kind: k.Key)))
            .Where(k => !allowed.Contains(k.Key))
            .GroupBy(k => k.Key)
            .ToDictionary(g => g.Key, g => "kind " + string.Join(" or ", g.Select(k => k.Kind)), StringComparer.Ordinal);
        // A trigger starts an agent (or team), or adds tasks to the workforce's inbox: 'workforce' replaces 'agent'.
        var target = Peek(entry.Value, "workforce") is null ? "agent" : "workforce";
        var required = kind is null ? ["kind", target] : new[] { "kind", target }.Concat(s_triggerKindRequired[kind]).ToArray();
        var map = Map(entry, what, allowed, required, foreign);
        if (map is null || kind is null) return null;
        var before = _diagnostics.Count;

        string? agent = null;
        if (map.TryGetValue("agent", out var ae) && RequiredText(ae) is { } name)
        {
            if (runnable.Contains(name)) agent = name;
            else Error(ae.Value, ae.Path, $"{what} starts '{name}', which is neither an agent nor a team{ReferenceHint(name, runnable)}");
        }
        string? input = null;
        if (map.TryGetValue("input", out var ie) && RequiredText(ie) is { } template)
        {
            if (TriggerTemplate.Check(template) is { } problem) Error(ie.Value, ie.Path, $"{what}: 'input' {problem}");
            else input = template;
        }
        if (map.TryGetValue("description", out var de)) Text(de);
        var priority = map.TryGetValue("priority", out var pe) ? (int?)Integer(pe, -1000, 1000) : null;
        string? orderingKey = null;
        if (map.TryGetValue("orderingKey", out var oe) && RequiredText(oe) is { } ordering)
        {
            if (TriggerTemplate.Check(ordering) is { } problem) Error(oe.Value, oe.Path, $"{what}: 'orderingKey' {problem}");
            else orderingKey = ordering;
        }
        TriggerWorkforceTarget? workforce = null;
        if (map.TryGetValue("workforce", out var we))
        {
            workforce = ReadTriggerWorkforce(we, what);
            if (ae is not null)
                Error(we.Key, we.Path, $"{what} names both 'agent' and 'workforce'; keep one ('agent' starts a run per event, 'workforce' adds a task per event to the inbox)");
            if (pe is not null) Error(pe.Key, pe.Path, $"{what}: 'priority' applies to runs a trigger starts; a workforce task is routed by skill and load");
            if (oe is not null) Error(oe.Key, oe.Path, $"{what}: 'orderingKey' applies to runs a trigger starts; a workforce task is routed by skill and load");
            if (map.TryGetValue("overlap", out var ov))
                Error(ov.Key, ov.Path, $"{what}: 'overlap' applies to a schedule's runs; a workforce task waits in the inbox until a member has room");
            if (workforce is not null) agent = "";
        }
        var common = new TriggerCommon(priority ?? 0, orderingKey, workforce);

        TriggerDefinition? result = kind switch
        {
            "webhook" => ReadWebhook(map, what, entry.Name, agent, input, common),
            "schedule" => ReadSchedule(entry, map, what, agent, input, common),
            "poll" => ReadPoll(map, what, entry.Name, agent, input, common),
            _ => map.TryGetValue("topic", out var te) && RequiredText(te) is { } topic && agent is not null
                ? new TopicTriggerDefinition { Name = entry.Name, Agent = agent, Input = input, Topic = topic, Priority = common.Priority, OrderingKey = common.OrderingKey, Workforce = common.Workforce }
                : null,
        };
        return _diagnostics.Count > before ? null : result;
    }

    /// <summary>What every trigger kind has besides its name, agent and input.</summary>
    private readonly record struct TriggerCommon(int Priority, string? OrderingKey, TriggerWorkforceTarget? Workforce = null);

    /// <summary>Skills named by triggers' <c>workforce:</c>, checked once the <c>workforce:</c> section is read.</summary>
    private readonly List<(Entry Entry, string What, string Skill)> _triggerSkills = [];

    /// <summary><c>workforce: { skill: NAME }</c> or <c>{ skill: "{{$.path}}" }</c> (read from each event).</summary>
    private TriggerWorkforceTarget? ReadTriggerWorkforce(Entry entry, string what)
    {
        if (Map(entry, $"{what}: 'workforce'", ["skill"], ["skill"], null) is not { } map) return null;
        if (!map.TryGetValue("skill", out var se) || RequiredText(se) is not { } skill) return null;
        if (skill.Contains("{{", StringComparison.Ordinal))
        {
            if (TriggerTemplate.Check(skill) is { } problem)
            {
                Error(se.Value, se.Path, $"{what}: 'workforce.skill' {problem}");
                return null;
            }
        }
        else if (!IsWorkforceName(skill))
        {
            Error(se.Value, se.Path, $"{what}: skill '{skill}' must be letters, digits, '-', '_' or '.' (or a template such as {{{{$.category}}}})");
            return null;
        }
        else _triggerSkills.Add((se, what, skill));
        return new TriggerWorkforceTarget { Skill = skill };
    }

    /// <summary>Every fixed skill a trigger targets is a skill of a workforce member.</summary>
    private void CheckTriggerSkills(BureauDefinitions definitions)
    {
        var skills = definitions.Workforce.Skills;
        foreach (var (entry, what, skill) in _triggerSkills)
        {
            if (skills.Contains(skill, StringComparer.Ordinal)) continue;
            Error(entry.Value, entry.Path, skills.Count == 0
                ? $"{what} targets the workforce's skill '{skill}', but no workforce member is defined (add 'workforce: members:' with an agent that has it)"
                : $"{what} targets skill '{skill}', which no workforce member has{ReferenceHint(skill, new Names(skills))}");
        }
    }

    private PollTriggerDefinition? ReadPoll(Dictionary<string, Entry> map, string what, string name, string? agent, string? input, TriggerCommon common)
    {
        var provider = map.TryGetValue("provider", out var pr) ? RequiredText(pr) : null;
        var connection = map.TryGetValue("connectionString", out var cs) ? RequiredText(cs) : null;
        var query = map.TryGetValue("query", out var qe) ? RequiredText(qe) : null;
        if (query is not null && !query.Contains("@cursor", StringComparison.Ordinal))
        {
            Error(qe!.Value, qe.Path, $"{what}: 'query' must use the parameter @cursor (the last cursor value accepted), e.g. SELECT id, title FROM tickets WHERE id > @cursor ORDER BY id LIMIT 100");
            query = null;
        }
        var cursor = map.TryGetValue("cursorColumn", out var cc) ? RequiredText(cc) : null;
        TimeSpan? every = null;
        if (map.TryGetValue("every", out var ee) && Duration(ee, allowZero: false) is { } interval)
        {
            if (interval < TimeSpan.FromSeconds(1)) Error(ee.Value, ee.Path, $"{what}: 'every' must be at least 1s");
            else every = interval;
        }
        var initial = map.TryGetValue("initialCursor", out var ic) ? RequiredText(ic) : null;
        var type = map.TryGetValue("eventType", out var et) ? RequiredText(et) : null;
        if (agent is null || provider is null || connection is null || query is null || cursor is null) return null;
        return new PollTriggerDefinition
        {
            Name = name, Agent = agent, Input = input, Priority = common.Priority, OrderingKey = common.OrderingKey, Workforce = common.Workforce,
            Provider = provider, ConnectionString = connection, Query = query, CursorColumn = cursor,
            Every = every ?? TimeSpan.FromSeconds(30), InitialCursor = initial ?? "0", EventType = type ?? "bureau.poll.row",
        };
    }

    private WebhookTriggerDefinition? ReadWebhook(Dictionary<string, Entry> map, string what, string name, string? agent, string? input, TriggerCommon common)
    {
        var source = map.TryGetValue("source", out var se) ? Choice(se, s_webhookSources) : null;
        string? secret = null;
        if (map.TryGetValue("secret", out var sec))
        {
            secret = Text(sec);
            if (string.IsNullOrEmpty(secret))
            {
                Error(sec.Value, sec.Path, $"{what}: 'secret' is empty (an unsigned webhook would accept anyone's requests); set it, for example from the environment: ${{WEBHOOK_SECRET}}");
                secret = null;
            }
            else if (source == "standard" && !StandardSecretIsValid(secret))
            {
                Error(sec.Value, sec.Path, $"{what}: a Standard Webhooks secret is 'whsec_' followed by base64 (the signing key), as the sender shows it");
                secret = null;
            }
        }
        var events = map.TryGetValue("events", out var ee) ? StringItems(ee) ?? [] : [];
        if (ee is not null && source == "github")
        {
            var items = Sequence(ee);
            for (var i = 0; i < events.Count && i < items.Count; i++)
                if (events[i].Split('.') is { Length: > 2 } || events[i].StartsWith('.') || events[i].EndsWith('.'))
                    Error(items[i], $"{ee.Path}[{i}]", $"{what}: GitHub event filter '{events[i]}' must be EVENT, EVENT.ACTION or EVENT.* (issues, issues.opened, pull_request.*)");
        }
        var signatureHeader = map.TryGetValue("signatureHeader", out var sh) ? RequiredText(sh) : null;
        var idHeader = map.TryGetValue("idHeader", out var ih) ? RequiredText(ih) : null;
        if (signatureHeader is not null && !IsHeaderName(signatureHeader))
            Error(sh!.Value, sh.Path, $"{what}: 'signatureHeader' '{signatureHeader}' is not an HTTP header name (letters, digits and !#$%&'*+-.^_`|~, no spaces or ':')");
        if (idHeader is not null && !IsHeaderName(idHeader))
            Error(ih!.Value, ih.Path, $"{what}: 'idHeader' '{idHeader}' is not an HTTP header name (letters, digits and !#$%&'*+-.^_`|~, no spaces or ':')");
        if (source != "hmac")
        {
            if (sh is not null) Error(sh.Key, sh.Path, $"{what}: 'signatureHeader' applies to source hmac only (source {source} has its own headers)");
            if (ih is not null) Error(ih.Key, ih.Path, $"{what}: 'idHeader' applies to source hmac only (source {source} has its own headers)");
        }
        var tolerance = map.TryGetValue("tolerance", out var to) ? Duration(to, allowZero: false) : null;
        if (to is not null && source is "github" or "hmac")
            Error(to.Key, to.Path, $"{what}: 'tolerance' applies to sources slack and standard (source {source} signs no timestamp)");
        if (agent is null || source is null || secret is null) return null;
        return new WebhookTriggerDefinition
        {
            Name = name,
            Agent = agent,
            Input = input,
            Source = source switch { "github" => WebhookSource.GitHub, "slack" => WebhookSource.Slack, "standard" => WebhookSource.Standard, _ => WebhookSource.Hmac },
            Secret = secret,
            Events = events,
            SignatureHeader = signatureHeader ?? WebhookTriggerDefinition.DefaultSignatureHeader,
            IdHeader = idHeader,
            Tolerance = tolerance ?? WebhookTriggerDefinition.DefaultTolerance,
            Priority = common.Priority,
            OrderingKey = common.OrderingKey,
            Workforce = common.Workforce,
        };
    }

    private static bool StandardSecretIsValid(string secret)
    {
        if (!secret.StartsWith("whsec_", StringComparison.Ordinal)) return false;
        var key = secret["whsec_".Length..];
        return key.Length > 0 && Convert.TryFromBase64String(key, new byte[key.Length], out _);
    }

    private ScheduleTriggerDefinition? ReadSchedule(Entry entry, Dictionary<string, Entry> map, string what, string? agent, string? input, TriggerCommon common)
    {
        map.TryGetValue("cron", out var ce);
        map.TryGetValue("every", out var ee);
        if (ce is null && ee is null) Error(entry.Key, entry.Path, $"{what} needs 'cron' (a cron expression) or 'every' (an interval such as 10m)");
        if (ce is not null && ee is not null) Error(ee.Key, ee.Path, $"{what} has both 'cron' and 'every'; keep one");
        string? cron = null;
        if (ce is not null && RequiredText(ce) is { } expression)
        {
            if (TryParseCron(expression, out var problem) is not null) cron = expression.Trim();
            else Error(ce.Value, ce.Path, $"{what}: 'cron' {problem}");
        }
        TimeSpan? every = null;
        if (ee is not null && Duration(ee, allowZero: false) is { } interval)
        {
            if (interval.Ticks % TimeSpan.TicksPerSecond != 0)
                Error(ee.Value, ee.Path, $"{what}: 'every' must be whole seconds (1s or more), not {interval.TotalMilliseconds}ms");
            else every = interval;
        }
        string? zone = null;
        if (map.TryGetValue("timeZone", out var ze) && RequiredText(ze) is { } zoneId)
        {
            if (ce is null) Error(ze.Key, ze.Path, $"{what}: 'timeZone' applies to 'cron' ('every' counts in UTC)");
            else if (!TimeZoneInfo.TryFindSystemTimeZoneById(zoneId, out _)) Error(ze.Value, ze.Path, $"{what}: unknown time zone '{zoneId}' (an IANA id such as Europe/Paris or America/New_York, or UTC)");
            else zone = zoneId;
        }
        var catchUp = map.TryGetValue("catchUp", out var cu) ? Choice(cu, s_catchUpPolicies) : null;
        var maxCatchUp = map.TryGetValue("maxCatchUp", out var mc) ? Integer(mc, 1, 10_000) : null;
        if (mc is not null && catchUp != "all")
            Error(mc.Key, mc.Path, $"{what}: 'maxCatchUp' applies to catchUp: all (catchUp is {catchUp ?? "skip"})");
        var overlap = map.TryGetValue("overlap", out var ov) ? Choice(ov, s_overlapPolicies) : null;
        if (agent is null || (cron is null && every is null)) return null;
        return new ScheduleTriggerDefinition
        {
            Name = entry.Name,
            Agent = agent,
            Input = input,
            Cron = cron,
            Every = every,
            TimeZone = zone,
            CatchUp = catchUp switch { "once" => CatchUpPolicy.Once, "all" => CatchUpPolicy.All, _ => CatchUpPolicy.Skip },
            MaxCatchUp = maxCatchUp is { } m ? (int)m : ScheduleTriggerDefinition.DefaultMaxCatchUp,
            Overlap = overlap switch { "allow" => OverlapPolicy.Allow, "queue-one" => OverlapPolicy.QueueOne, _ => OverlapPolicy.Skip },
            Priority = common.Priority,
            OrderingKey = common.OrderingKey,
            Workforce = common.Workforce,
        };
    }

    /// <summary>A cron expression of five fields (minute first) or six (seconds first), or null with the problem.</summary>
    internal static CronExpression? TryParseCron(string expression, out string? problem)
    {
        problem = null;
        var fields = expression.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).Length;
        if (fields is not (5 or 6) && !expression.TrimStart().StartsWith('@'))
        {
            problem = $"'{expression}' has {fields} fields; expected 5 (minute hour day month weekday) or 6 (seconds first)";
            return null;
        }
        if (CronExpression.TryParse(expression.Trim(), fields == 6 ? CronFormat.IncludeSeconds : CronFormat.Standard, out var cron))
        {
            // A day that no month has (0 0 31 2 *, 0 0 30 FEB *): valid syntax, but the schedule would never fire.
            if (cron.GetNextOccurrence(new DateTime(2000, 1, 1, 0, 0, 0, DateTimeKind.Utc)) is not null) return cron;
            problem = $"'{expression}' never fires: no month has the day it names";
            return null;
        }
        problem = $"'{expression}' is not a valid cron expression (minute hour day month weekday, for example '0 9 * * MON-FRI')";
        return null;
    }

    /// <summary>
    /// Whether <paramref name="name"/> can be an HTTP header's name (an RFC 9110 token: letters, digits and
    /// <c>!#$%&amp;'*+-.^_`|~</c>): a header a sender can never send would refuse every request.
    /// </summary>
    internal static bool IsHeaderName(string name) =>
        name.Length is > 0 and <= 256 && name.All(c => char.IsAsciiLetterOrDigit(c) || "!#$%&'*+-.^_`|~".Contains(c, StringComparison.Ordinal));
}
