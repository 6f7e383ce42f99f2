using System.Collections;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace Bureau.Manifests;

/// <summary>
/// Walks a manifest's YAML nodes into definitions, collecting every problem (with its line and column)
/// instead of stopping at the first.
/// </summary>
internal sealed partial class ManifestReader(string file, string baseDirectory, string sourcePath, IReadOnlyDictionary<string, string?> environment, ManifestLimits limits)
{
    private static readonly string[] s_topKeys = ["version", "models", "tools", "agents", "teams", "policies", "triggers", "workforce"];
    private static readonly string[] s_reservedTopKeys = ["memory"];
    private static readonly string[] s_providers = ["openai", "scripted"];
    private static readonly string[] s_modelResilienceKeys = ["retry", "circuitBreaker", "maxConcurrency", "maxQueue", "requestsPerMinute", "tokensPerMinute", "maxRateLimitWait", "attemptTimeout", "stepTimeout", "fallback", "price"];
    private static readonly string[] s_openAIKeys = ["provider", "endpoint", "model", "apiKey", "temperature", "maxOutputTokens", "timeout", "maxRetries", .. s_modelResilienceKeys];
    private static readonly string[] s_scriptedKeys = ["provider", "rules", "latency", .. s_modelResilienceKeys];
    private static readonly string[] s_retryKeys = ["maxAttempts", "delay", "maxDelay", "maxTotalTime", "jitter", "onlyBefore"];
    private static readonly string[] s_breakerKeys = ["enabled", "failureRatio", "minimumThroughput", "samplingDuration", "breakDuration"];
    private static readonly string[] s_priceKeys = ["input", "output"];
    private static readonly string[] s_retryBoundaries = ["send"];
    private static readonly string[] s_toolKinds = ["process", "http", "emit", "mcp", "a2a"];
    private static readonly string[] s_emitToolKeys = ["kind", "topic", "source", "description", "timeout"];
    private static readonly string[] s_commonToolKeys = ["kind", "effect", "timeout", "description", "parameters", "onInDoubt", "inDoubtTimeout", "compensate", "retry", "circuitBreaker", "maxConcurrency", "maxQueue", "stepTimeout"];
    private static readonly string[] s_processToolKeys = [.. s_commonToolKeys, "command", "env", "maxOutputBytes", "sandbox"];
    private static readonly string[] s_httpToolKeys = [.. s_commonToolKeys, "method", "url", "headers", "maxResponseBytes"];
    private static readonly string[] s_a2aToolKeys = [.. s_commonToolKeys.Where(k => k != "parameters"), "url", "headers", "maxResultChars"]; // the arguments are A2A's: message, contextId
    private static readonly string[] s_effects = ["read", "idempotent", "write"];
    private static readonly string[] s_inDoubtActions = ["wait", "retry", "fail"];
    private static readonly string[] s_httpMethods = ["GET", "POST", "PUT", "PATCH", "DELETE"];
    private static readonly string[] s_agentKeys = ["model", "instructions", "description", "tools", "budgets", "loop", "allowEmptyInput", "rollbackOnFailure", "stateConfidence", "delegates", "retention", "memory", "maxConcurrentRuns"];
    private static readonly string[] s_retentionKeys = ["keepDays", "keepRuns", "keepFailedDays", "exportTo"];
    private static readonly string[] s_budgetKeys = ["maxSteps", "maxTokens", "maxWallTime", "maxQueueTime", "maxCost"];
    private static readonly string[] s_loopKeys = ["maxRepeatedCalls", "maxTurnsWithoutProgress", "action"];
    private static readonly string[] s_loopActions = ["stop", "warn"];
    private static readonly string[] s_ruleKeys = ["when", "reply", "calls"];
    private static readonly string[] s_whenKeys = ["turn", "input", "user", "tool", "match"];
    private static readonly string[] s_callKeys = ["tool", "args"];
    private static readonly string[] s_builtInPlaceholders = ["input", "turn", "turnIndex", "last"];
    private static readonly TimeSpan s_regexTimeout = TimeSpan.FromSeconds(1);
    private static readonly JsonSerializerOptions s_jsonOptions = new() { MaxDepth = ManifestLimits.MaxDepthCeiling + 1 };

    [GeneratedRegex(@"^[A-Za-z0-9_-]{1,64}$", RegexOptions.CultureInvariant)]
    private static partial Regex NamePattern();

    [GeneratedRegex(@"\{\{(\w+)\}\}", RegexOptions.CultureInvariant)]
    private static partial Regex PlaceholderPattern();

    [GeneratedRegex(@"^\s*(\d+)\s*(?:(-)\s*(\d+)|(\+))?\s*$", RegexOptions.CultureInvariant)]
    private static partial Regex TurnPattern();

    private readonly List<ManifestDiagnostic> _diagnostics = [];
    private readonly List<(string Tool, Entry Compensate)> _compensations = [];

    // The manifest's format version (decision 0041): 2 sandboxes write process tools unless they say sandbox: false.
    private long _version = 1;

    /// <summary>The characters of keys and values produced so far, aliases expanded and <c>${VAR}</c> substituted.</summary>
    private long _expandedChars;

    /// <summary>The problems found, in file order.</summary>
    public IReadOnlyList<ManifestDiagnostic> Diagnostics =>
        [.. _diagnostics.OrderBy(d => d.Line).ThenBy(d => d.Column)];

    /// <summary>A key and its value in a mapping, with the value's manifest path.</summary>
    private sealed record Entry(string Name, YamlScalarNode Key, YamlNode Value, string Path);

    public BureauDefinitions? Read(string yaml)
    {
        try
        {
            return ReadCore(yaml);
        }
        catch (ManifestLimitException ex)
        {
            // A limit stops the reading at once: what would follow is what the limit exists to prevent.
            Add(ex.At, ex.Message, ex.Path);
            return null;
        }
    }

    private BureauDefinitions? ReadCore(string yaml)
    {
        var stream = new YamlStream();
        var parser = new TrackingParser(new Parser(new StringReader(yaml)), limits);
        try
        {
            stream.Load(parser);
        }
        catch (YamlException ex)
        {
            var message = ex.Message.StartsWith("Duplicate key", StringComparison.Ordinal)
                ? $"duplicate key '{ex.Message["Duplicate key".Length..].Trim()}' (each key may appear once in a mapping)"
                : "YAML syntax error: " + ex.Message;
            // "found invalid tab as indentation" comes with the enclosing mapping's start (1:1 for the root), not the tab's:
            // the tab is on the first line after the last node read that is indented with one.
            var at = ex.Message.Contains("invalid tab", StringComparison.Ordinal) && TabIndentation(yaml, parser.LastPosition.Line) is { } tab ? tab : ex.Start;
            Add(at, message, null);
            return null;
        }
        catch (Exception ex) when (ex is InvalidOperationException or ArgumentException)
        {
            // YamlDotNet throws these without a position for some malformed flow collections ("[1, 2" never closed).
            Add(parser.LastPosition, "YAML syntax error: malformed or unterminated flow collection ([...] or {...}) or block here", null);
            return null;
        }

        _expandedChars = parser.ExpandedChars;

        if (stream.Documents.Count == 0 || YamlJson.IsNull(stream.Documents[0].RootNode))
        {
            _diagnostics.Add(new ManifestDiagnostic(file, 1, 1, "the manifest is empty; expected a mapping with 'models', 'tools' and 'agents'", null));
            return null;
        }
        if (stream.Documents.Count > 1)
            Error(stream.Documents[1].RootNode, null, "a manifest holds one YAML document; remove this second one (or the '---' before it)");

        var root = stream.Documents[0].RootNode;
        if (root is not YamlMappingNode rootMap)
        {
            Error(root, null, $"the manifest must be a mapping with 'models', 'tools' and 'agents', not {Describe(root)}");
            return null;
        }

        var top = new Dictionary<string, Entry>(StringComparer.Ordinal);
        foreach (var (keyNode, value) in rootMap.Children)
        {
            if (keyNode is not YamlScalarNode { Value: { } key } scalarKey)
            {
                Error(keyNode, null, "keys must be plain names");
                continue;
            }
            if (s_reservedTopKeys.Contains(key))
                Error(keyNode, key, $"'{key}' is not supported yet in this version of Bureau (supported: {string.Join(", ", s_topKeys)})");
            else if (!s_topKeys.Contains(key))
                Error(keyNode, key, $"unknown top-level key '{key}'{Hint(key, s_topKeys)}");
            else
                top[key] = new Entry(key, scalarKey, value, key);
        }

        if (top.TryGetValue("version", out var version) && Integer(version, long.MinValue, long.MaxValue) is { } v)
        {
            if (v is not (1 or 2)) Error(version.Value, "version", $"unsupported manifest version {v}; this Bureau reads versions 1 and 2");
            else _version = v;
        }

        var definitions = new BureauDefinitions { SourcePath = sourcePath };
        var modelEntries = top.TryGetValue("models", out var m) ? NameMap(m, "model") : [];
        var toolEntries = top.TryGetValue("tools", out var t) ? NameMap(t, "tool") : [];
        var agentEntries = top.TryGetValue("agents", out var a) ? NameMap(a, "agent") : [];
        var modelNames = new Names(modelEntries.Select(e => e.Name));
        var toolNames = new Names(toolEntries.Select(e => e.Name));

        foreach (var e in modelEntries)
            if (ReadModel(e, modelNames) is { } model) definitions.Add(model);
        foreach (var e in toolEntries)
            if (ReadTool(e) is { } tool) definitions.Add(tool);
        foreach (var (tool, c) in _compensations)
        {
            var name = Text(c);
            if (name is not null && !toolNames.Contains(name))
                Error(c.Value, c.Path, $"tool '{tool}' is compensated by '{name}', which is not defined under 'tools'{ReferenceHint(name, toolNames)}");
            else if (name == tool)
                Error(c.Value, c.Path, $"tool '{tool}' cannot compensate itself");
        }
        foreach (var e in agentEntries)
            if (ReadAgent(e, modelNames, toolNames) is { } agent) definitions.Add(agent);
        var agentNameSet = new Names(agentEntries.Select(e => e.Name));
        foreach (var e in agentEntries)
        {
            if (!definitions.Agents.TryGetValue(e.Name, out var agent) || Peek(e.Value, "delegates") is not { } de) continue;
            foreach (var name in agent.Delegates)
            {
                if (!agentNameSet.Contains(name))
                    Error(de.Value, $"{e.Path}.delegates", $"agent '{e.Name}' delegates to '{name}', which is not an agent{ReferenceHint(name, agentNameSet)}");
                else if (name == e.Name)
                    Error(de.Value, $"{e.Path}.delegates", $"agent '{e.Name}' cannot delegate to itself");
                else if (agent.Tools.Contains(name))
                    Error(de.Value, $"{e.Path}.delegates", $"agent '{e.Name}' has a tool named '{name}' too: a delegate is called by its name, so the names must differ");
            }
        }
        CheckDelegationCycles(agentEntries, definitions);
        if (top.TryGetValue("policies", out var policies) && ReadPolicies(policies, new Names(agentEntries.Select(e => e.Name)), toolNames) is { } policySet)
            definitions.Policies = policySet;
        if (top.TryGetValue("teams", out var teams))
            ReadTeams(NameMap(teams, "team"), definitions, new Names(agentEntries.Select(e => e.Name)));
        if (top.TryGetValue("triggers", out var triggers))
            ReadTriggers(NameMap(triggers, "trigger"), definitions, RunnableNames(agentEntries, teams));
        if (top.TryGetValue("workforce", out var workforce))
            ReadWorkforce(workforce, definitions, new Names(agentEntries.Select(e => e.Name)));
        CheckTriggerSkills(definitions);

        return _diagnostics.Count == 0 ? definitions : null;
    }

    /// <summary>
    /// Refuses agents that delegate to each other, directly (a to b, b to a) or round a longer loop:
    /// each call would start the next, without end. Each loop is reported once, at the
    /// <c>delegates</c> of the first agent on it in manifest order, naming every agent on it.
    /// </summary>
    private void CheckDelegationCycles(List<Entry> agentEntries, BureauDefinitions definitions)
    {
        var reported = new HashSet<string>(StringComparer.Ordinal);
        foreach (var e in agentEntries)
        {
            if (!definitions.Agents.TryGetValue(e.Name, out var start) || Peek(e.Value, "delegates") is not { } de) continue;
            // The shortest way back to the start, breadth first over delegates (self-delegation is refused above).
            var from = new Dictionary<string, string>(StringComparer.Ordinal);
            var queue = new Queue<string>();
            foreach (var d in start.Delegates.Where(d => d != e.Name && from.TryAdd(d, e.Name))) queue.Enqueue(d);
            List<string>? loop = null;
            while (loop is null && queue.Count > 0)
            {
                var name = queue.Dequeue();
                if (!definitions.Agents.TryGetValue(name, out var agent)) continue;
                foreach (var next in agent.Delegates)
                {
                    if (next == e.Name)
                    {
                        loop = [e.Name];
                        for (var at = name; at != e.Name; at = from[at]) loop.Insert(1, at);
                        break;
                    }
                    if (from.TryAdd(next, name)) queue.Enqueue(next);
                }
            }
            if (loop is null) continue;
            // Report each loop once, at the first of its agents found in manifest order.
            if (!reported.Add(string.Join(" ", loop.Order(StringComparer.Ordinal)))) continue;
            var path = string.Join(" -> ", loop.Append(e.Name));
            var who = loop.Count == 2 ? $"agents '{loop[0]}' and '{loop[1]}' delegate to each other" : $"agents {string.Join(", ", loop.Select(n => $"'{n}'"))} delegate round a loop";
            Error(de.Value, $"{e.Path}.delegates", $"{who} ({path}): each call would start the next without end; remove one of these delegates");
        }
    }

    // ---- models ----

    private ModelDefinition? ReadModel(Entry entry, Names modelNames)
    {
        var what = $"model '{entry.Name}'";
        var provider = Peek(entry.Value, "provider");
        var providerName = provider is null ? null : Choice(provider, s_providers);
        var (allowed, required) = providerName switch
        {
            "openai" => (s_openAIKeys, new[] { "provider", "endpoint", "model" }),
            "scripted" => (s_scriptedKeys, new[] { "provider" }),
            _ => (s_openAIKeys.Union(s_scriptedKeys).ToArray(), new[] { "provider" }),
        };
        var foreign = providerName switch
        {
            "openai" => Foreign(s_scriptedKeys, s_openAIKeys, "provider 'scripted'"),
            "scripted" => Foreign(s_openAIKeys, s_scriptedKeys, "provider 'openai'"),
            _ => null,
        };
        var map = Map(entry, what, allowed, required, foreign);
        if (map is null || providerName is null) return null;
        var r = ReadModelResilience(map, entry.Name, modelNames);

        if (providerName == "openai")
        {
            var endpoint = map.TryGetValue("endpoint", out var ep) ? AbsoluteUrl(ep) : null;
            var modelId = map.TryGetValue("model", out var mid) ? RequiredText(mid) : null;
            var apiKey = map.TryGetValue("apiKey", out var key) ? Text(key) : null;
            var temperature = map.TryGetValue("temperature", out var temp) ? Number(temp, 0, 2) : null;
            var maxOutput = map.TryGetValue("maxOutputTokens", out var mo) ? Integer(mo, 1, int.MaxValue) : null;
            var timeout = map.TryGetValue("timeout", out var to) ? Duration(to, allowZero: false) : null;
            var retries = map.TryGetValue("maxRetries", out var mr) ? Integer(mr, 0, 100) : null;
            if (endpoint is null || modelId is null) return null;
            return new OpenAIModelDefinition
            {
                Name = entry.Name,
                Endpoint = endpoint,
                Model = modelId,
                ApiKey = string.IsNullOrEmpty(apiKey) ? null : apiKey,
                Temperature = temperature is { } tv ? (float)tv : null,
                MaxOutputTokens = maxOutput is { } mv ? (int)mv : null,
                Timeout = timeout ?? OpenAIModelDefinition.DefaultTimeout,
                MaxRetries = retries is { } rv ? (int)rv : OpenAIModelDefinition.DefaultMaxRetries,
                Retry = r.Retry, CircuitBreaker = r.Breaker, MaxConcurrency = r.MaxConcurrency, MaxQueue = r.MaxQueue,
                RequestsPerMinute = r.Rpm, TokensPerMinute = r.Tpm, MaxRateLimitWait = r.MaxWait, AttemptTimeout = r.AttemptTimeout,
                StepTimeout = r.StepTimeout, Fallback = r.Fallback, Price = r.Price,
            };
        }

        var rules = map.TryGetValue("rules", out var ru) ? ReadRules(ru) : [];
        var latency = map.TryGetValue("latency", out var lat) ? Duration(lat, allowZero: true) : null;
        return new ScriptedModelDefinition
        {
            Name = entry.Name, Rules = rules, Latency = latency ?? TimeSpan.Zero,
            Retry = r.Retry, CircuitBreaker = r.Breaker, MaxConcurrency = r.MaxConcurrency, MaxQueue = r.MaxQueue,
            RequestsPerMinute = r.Rpm, TokensPerMinute = r.Tpm, MaxRateLimitWait = r.MaxWait, AttemptTimeout = r.AttemptTimeout,
            StepTimeout = r.StepTimeout, Fallback = r.Fallback, Price = r.Price,
        };
    }

    // ---- resilience ----

    private sealed record ModelResilience(
        RetrySettings? Retry, CircuitBreakerSettings? Breaker, int? MaxConcurrency, int? MaxQueue, int? Rpm, long? Tpm,
        TimeSpan? MaxWait, TimeSpan? AttemptTimeout, TimeSpan? StepTimeout, List<string> Fallback, ModelPrice? Price);

    private ModelResilience ReadModelResilience(Dictionary<string, Entry> map, string modelName, Names modelNames)
    {
        var retry = map.TryGetValue("retry", out var re) ? ReadRetry(re, null) : null;
        var breaker = map.TryGetValue("circuitBreaker", out var cb) ? ReadBreaker(cb) : null;
        var maxConcurrency = map.TryGetValue("maxConcurrency", out var mc) ? Integer(mc, 1, 100_000) : null;
        var maxQueue = map.TryGetValue("maxQueue", out var mq) ? Integer(mq, 0, 1_000_000) : null;
        var rpm = map.TryGetValue("requestsPerMinute", out var rp) ? Integer(rp, 1, 10_000_000) : null;
        var tpm = map.TryGetValue("tokensPerMinute", out var tp) ? Integer(tp, 1, int.MaxValue) : null;
        var maxWait = map.TryGetValue("maxRateLimitWait", out var mw) ? Duration(mw, allowZero: true) : null;
        var attempt = map.TryGetValue("attemptTimeout", out var at) ? Duration(at, allowZero: false) : null;
        var step = map.TryGetValue("stepTimeout", out var st) ? Duration(st, allowZero: false) : null;
        var fallback = new List<string>();
        if (map.TryGetValue("fallback", out var fb))
        {
            var items = Sequence(fb);
            for (var i = 0; i < items.Count; i++)
            {
                var item = new Entry("fallback", fb.Key, items[i], $"{fb.Path}[{i}]");
                if (RequiredText(item) is not { } name) continue;
                if (name == modelName)
                    Error(items[i], item.Path, $"model '{modelName}' cannot fall back to itself");
                else if (!modelNames.Contains(name))
                    Error(items[i], item.Path, $"model '{modelName}' falls back to model '{name}', which is not defined under 'models'{ReferenceHint(name, modelNames)}");
                else if (fallback.Contains(name))
                    Error(items[i], item.Path, $"model '{name}' is listed twice in the fallback of model '{modelName}'");
                else
                    fallback.Add(name);
            }
        }
        ModelPrice? price = null;
        if (map.TryGetValue("price", out var pr) && Map(pr, "'price'", s_priceKeys, ["input", "output"], null) is { } pm)
        {
            var input = pm.TryGetValue("input", out var pi) ? Number(pi, 0, 1_000_000) : null;
            var output = pm.TryGetValue("output", out var po) ? Number(po, 0, 1_000_000) : null;
            if (input is not null && output is not null) price = new ModelPrice(input.Value, output.Value);
        }
        return new ModelResilience(retry, breaker, (int?)maxConcurrency, (int?)maxQueue, (int?)rpm, tpm, maxWait, attempt, step, fallback, price);
    }

    /// <summary>A <c>retry</c> mapping; <paramref name="effect"/> is the tool's (null for a model).</summary>
    private RetrySettings? ReadRetry(Entry entry, string? effect)
    {
        var map = Map(entry, "'retry'", s_retryKeys, [], null);
        if (map is null) return null;
        var d = RetrySettings.ToolDefault;
        var attempts = map.TryGetValue("maxAttempts", out var ma) ? Integer(ma, 1, 100) : null;
        var delay = map.TryGetValue("delay", out var de) ? Duration(de, allowZero: true) : null;
        var maxDelay = map.TryGetValue("maxDelay", out var md) ? Duration(md, allowZero: true) : null;
        var total = map.TryGetValue("maxTotalTime", out var mt) ? Duration(mt, allowZero: false) : null;
        var jitter = map.TryGetValue("jitter", out var ji) ? Boolean(ji) : null;
        RetryBoundary? onlyBefore = null;
        if (map.TryGetValue("onlyBefore", out var ob) && Choice(ob, s_retryBoundaries) is not null)
        {
            if (effect is null)
                Error(ob.Key, ob.Path, "'onlyBefore' applies to write tools only (models and read or idempotent tools retry any transient failure)");
            else if (effect != "write")
                Error(ob.Key, ob.Path, $"'onlyBefore' applies to write tools only; this tool is '{effect}', which retries any transient failure");
            else
                onlyBefore = RetryBoundary.Send;
        }
        var model = effect is null ? RetrySettings.ModelDefault : d;
        return new RetrySettings
        {
            MaxAttempts = attempts is { } a ? (int)a : model.MaxAttempts,
            Delay = delay ?? model.Delay,
            MaxDelay = maxDelay ?? model.MaxDelay,
            MaxTotalTime = total ?? model.MaxTotalTime,
            Jitter = jitter ?? model.Jitter,
            OnlyBefore = onlyBefore,
        };
    }

    private CircuitBreakerSettings? ReadBreaker(Entry entry)
    {
        var map = Map(entry, "'circuitBreaker'", s_breakerKeys, [], null);
        if (map is null) return null;
        var d = CircuitBreakerSettings.Default;
        var enabled = map.TryGetValue("enabled", out var en) ? Boolean(en) : null;
        var ratio = map.TryGetValue("failureRatio", out var fr) ? Number(fr, 0.01, 1) : null;
        var throughput = map.TryGetValue("minimumThroughput", out var mt) ? Integer(mt, 2, 1_000_000) : null;
        var sampling = map.TryGetValue("samplingDuration", out var sd) ? AtLeastHalfASecond(sd) : null;
        var breakFor = map.TryGetValue("breakDuration", out var bd) ? AtLeastHalfASecond(bd) : null;
        return new CircuitBreakerSettings
        {
            Enabled = enabled ?? true,
            FailureRatio = ratio ?? d.FailureRatio,
            MinimumThroughput = throughput is { } t ? (int)t : d.MinimumThroughput,
            SamplingDuration = sampling ?? d.SamplingDuration,
            BreakDuration = breakFor ?? d.BreakDuration,
        };
    }

    private TimeSpan? AtLeastHalfASecond(Entry entry)
    {
        var value = Duration(entry, allowZero: false);
        if (value is { } v && v < TimeSpan.FromMilliseconds(500))
        {
            Error(entry.Value, entry.Path, $"'{entry.Name}' must be at least 500ms, not {entry.Value}");
            return null;
        }
        return value;
    }

    private List<ScriptRule> ReadRules(Entry entry)
    {
        var rules = new List<ScriptRule>();
        var items = Sequence(entry);
        for (var i = 0; i < items.Count; i++)
        {
            var item = items[i];
            var ruleEntry = new Entry($"rule {i + 1}", entry.Key, item, $"{entry.Path}[{i}]");
            if (item is not YamlMappingNode)
            {
                Error(item, ruleEntry.Path, $"rule {i + 1} must be a mapping with 'when', 'reply' and/or 'calls', not {Describe(item)}");
                continue;
            }
            var map = Map(ruleEntry, $"rule {i + 1}", s_ruleKeys, [], null);
            if (map is null) continue;

            var groups = new Names(s_builtInPlaceholders);
            ScriptCondition? when = null;
            if (map.TryGetValue("when", out var w) && !YamlJson.IsNull(w.Value))
                when = ReadCondition(w, groups);

            string? reply = null;
            if (map.TryGetValue("reply", out var rep))
            {
                reply = Text(rep);
                if (reply is not null) CheckPlaceholders(rep.Value, rep.Path, reply, groups);
            }
            var calls = map.TryGetValue("calls", out var c) ? ReadCalls(c, groups) : [];
            if (!map.ContainsKey("reply") && !map.ContainsKey("calls"))
                Error(item, ruleEntry.Path, $"rule {i + 1} needs 'reply' or 'calls' (or both)");

            rules.Add(new ScriptRule
            {
                When = when,
                Reply = reply,
                Calls = calls,
                Source = $"{file}:{item.Start.Line}:{item.Start.Column}",
            });
        }
        return rules;
    }

    private ScriptCondition? ReadCondition(Entry entry, Names groups)
    {
        var map = Map(entry, "'when'", s_whenKeys, [], null);
        if (map is null) return null;
        int? from = null, to = null;
        if (map.TryGetValue("turn", out var turn) && Text(turn) is { } turnText)
        {
            var m = TurnPattern().Match(turnText);
            if (!m.Success
                || !int.TryParse(m.Groups[1].Value, NumberStyles.None, CultureInfo.InvariantCulture, out var a) || a < 1
                || (m.Groups[3].Success && (!int.TryParse(m.Groups[3].Value, NumberStyles.None, CultureInfo.InvariantCulture, out var b) || b < a)))
            {
                Error(turn.Value, turn.Path, $"'turn' must be a turn number from 1 (3), a range (\"2-4\") or an open range (\"3+\"), not '{turnText}'");
            }
            else
            {
                from = a;
                to = m.Groups[4].Success ? null : m.Groups[3].Success ? int.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture) : a;
            }
        }
        var input = map.TryGetValue("input", out var inp) ? Pattern(inp, groups) : null;
        var user = map.TryGetValue("user", out var usr) ? Pattern(usr, groups) : null;
        var tool = map.TryGetValue("tool", out var tl) ? RequiredText(tl) : null;
        var match = map.TryGetValue("match", out var mt) ? Pattern(mt, groups) : null;
        return new ScriptCondition { TurnFrom = from, TurnTo = to, Input = input, User = user, Tool = tool, Match = match };
    }

    private string? Pattern(Entry entry, Names groups)
    {
        var pattern = RequiredText(entry);
        if (pattern is null) return null;
        try
        {
            var regex = new Regex(pattern, RegexOptions.CultureInvariant, s_regexTimeout);
            groups.AddRange(regex.GetGroupNames());
            groups.AddRange(regex.GetGroupNumbers().Select(n => n.ToString(CultureInfo.InvariantCulture)));
            return pattern;
        }
        catch (ArgumentException ex)
        {
            Error(entry.Value, entry.Path, $"invalid regular expression in '{entry.Name}': {ex.Message}");
            return null;
        }
    }

    private List<ScriptToolCall> ReadCalls(Entry entry, Names groups)
    {
        var calls = new List<ScriptToolCall>();
        var items = Sequence(entry);
        for (var i = 0; i < items.Count; i++)
        {
            var callEntry = new Entry($"call {i + 1}", entry.Key, items[i], $"{entry.Path}[{i}]");
            if (items[i] is not YamlMappingNode)
            {
                Error(items[i], callEntry.Path, $"call {i + 1} must be a mapping with 'tool' and 'args', not {Describe(items[i])}");
                continue;
            }
            var map = Map(callEntry, $"call {i + 1}", s_callKeys, ["tool"], null);
            if (map is null) continue;
            var tool = map.TryGetValue("tool", out var tl) ? RequiredText(tl) : null;
            var args = new JsonObject();
            if (map.TryGetValue("args", out var argsEntry) && !YamlJson.IsNull(argsEntry.Value))
            {
                if (argsEntry.Value is not YamlMappingNode)
                {
                    Error(argsEntry.Value, argsEntry.Path, $"'args' must be a mapping of argument names to values, not {Describe(argsEntry.Value)}");
                }
                else
                {
                    var ok = true;
                    var json = YamlJson.Convert(argsEntry.Value, scalar =>
                    {
                        var text = Substitute(scalar, argsEntry.Path);
                        if (text is not null) CheckPlaceholders(scalar, argsEntry.Path, text, groups);
                        return text;
                    }, ref ok);
                    if (ok && json is JsonObject obj) args = obj;
                }
            }
            if (tool is not null) calls.Add(new ScriptToolCall { Tool = tool, Arguments = args });
        }
        return calls;
    }

    private void CheckPlaceholders(YamlNode node, string path, string text, Names groups)
    {
        foreach (Match m in PlaceholderPattern().Matches(text))
        {
            var name = m.Groups[1].Value;
            if (groups.Contains(name)) continue;
            var closest = Closest(name, groups);
            Error(node, path, $"unknown placeholder '{{{{{name}}}}}': it is neither built in (input, turn, last) nor a capture group of this rule's regexes"
                + (closest is not null ? $"; did you mean '{{{{{closest}}}}}'?" : $"; available: {List(groups)}"));
        }
    }

    // ---- tools ----

    private ToolDefinition? ReadTool(Entry entry)
    {
        var what = $"tool '{entry.Name}'";
        if (!NamePattern().IsMatch(entry.Name))
            Error(entry.Key, entry.Path, $"tool name '{entry.Name}' must be 1 to 64 letters, digits, '_' or '-' (models only accept such names)");
        var kindEntry = Peek(entry.Value, "kind");
        string? kind = null;
        if (kindEntry is not null)
        {
            if (Text(kindEntry) == "function")
                Error(kindEntry.Value, kindEntry.Path, "kind 'function' is for tools defined in C# (FunctionToolDefinition); a manifest tool is 'process', 'http', 'emit' or 'a2a'");
            else
                kind = Choice(kindEntry, s_toolKinds);
        }
        var (allowed, required) = kind switch
        {
            "process" => (s_processToolKeys, new[] { "kind", "command" }),
            "http" => (s_httpToolKeys, new[] { "kind", "url" }),
            "emit" => (s_emitToolKeys, new[] { "kind", "topic" }),
            "mcp" => (s_mcpToolKeys, new[] { "kind" }),
            "a2a" => (s_a2aToolKeys, new[] { "kind", "url", "effect" }), // a remote agent may act: its effect is declared, never assumed
            _ => (s_processToolKeys.Union(s_httpToolKeys).Union(s_emitToolKeys).Union(s_mcpToolKeys).Union(s_a2aToolKeys).ToArray(), new[] { "kind" }),
        };
        var foreign = kind switch
        {
            "process" => Foreign(s_httpToolKeys, s_processToolKeys, "kind 'http'"),
            "http" => Foreign(s_processToolKeys, s_httpToolKeys, "kind 'process'"),
            "a2a" => Foreign(s_httpToolKeys, s_a2aToolKeys, "kind 'http'").Concat(Foreign(s_processToolKeys, s_a2aToolKeys, "kind 'process'"))
                .DistinctBy(kv => kv.Key).ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal),
            _ => null,
        };
        var map = Map(entry, what, allowed, required, foreign);
        if (map is null || kind is null) return null;
        if (kind == "emit")
        {
            // Publishes a CloudEvent of its topic (an event chain); idempotent by the call's key.
            var topic = map.TryGetValue("topic", out var tp) ? RequiredText(tp) : null;
            var source = map.TryGetValue("source", out var so) ? RequiredText(so) : null;
            var emitDescription = map.TryGetValue("description", out var ed) ? Text(ed) : null;
            var emitTimeout = map.TryGetValue("timeout", out var eto) ? Duration(eto, allowZero: false) : null;
            return topic is null ? null : new EmitToolDefinition { Name = entry.Name, Topic = topic, Source = source, Description = emitDescription ?? $"Publish an event of type {topic} (its data is yours to give).", Timeout = emitTimeout };
        }

        var effect = map.TryGetValue("effect", out var ef) ? Choice(ef, s_effects) : null;
        var timeout = map.TryGetValue("timeout", out var to) ? Duration(to, allowZero: false) : null;
        var description = map.TryGetValue("description", out var de) ? Text(de) : null;
        var parameters = map.TryGetValue("parameters", out var pa) ? Parameters(pa, entry.Name) : null;
        var inDoubt = map.TryGetValue("onInDoubt", out var od) ? Choice(od, s_inDoubtActions) : null;
        var inDoubtTimeout = map.TryGetValue("inDoubtTimeout", out var it) ? Duration(it, allowZero: false) : null;
        var effectValue = effect switch { "idempotent" => ToolEffect.Idempotent, "write" => ToolEffect.Write, _ => ToolEffect.Read };
        var toolRetry = map.TryGetValue("retry", out var tr) ? ReadRetry(tr, effect ?? "read") : null;
        var toolBreaker = map.TryGetValue("circuitBreaker", out var tb) ? ReadBreaker(tb) : null;
        var toolConcurrency = map.TryGetValue("maxConcurrency", out var tc) ? Integer(tc, 1, 100_000) : null;
        var toolQueue = map.TryGetValue("maxQueue", out var tq) ? Integer(tq, 0, 1_000_000) : null;
        var toolStep = map.TryGetValue("stepTimeout", out var ts) ? Duration(ts, allowZero: false) : null;
        InDoubtAction? inDoubtValue = inDoubt switch { "wait" => InDoubtAction.Wait, "retry" => InDoubtAction.Retry, "fail" => InDoubtAction.Fail, _ => null };
        string? compensate = null;
        if (map.TryGetValue("compensate", out var cp) && RequiredText(cp) is { } compensation)
        {
            if (effectValue != ToolEffect.Write) Error(cp.Key, cp.Path, $"tool '{entry.Name}': 'compensate' applies to write tools (it undoes a completed write), not {effect ?? "read"} ones");
            else
            {
                compensate = compensation;
                _compensations.Add((entry.Name, cp));
            }
        }

        if (kind == "mcp")
            return ReadMcpServer(entry, map, new McpServerToolDefinition
            {
                Name = entry.Name, Command = null, Description = description, Effect = effectValue, Timeout = timeout, OnInDoubt = inDoubtValue, InDoubtTimeout = inDoubtTimeout,
                Retry = toolRetry, CircuitBreaker = toolBreaker, MaxConcurrency = (int?)toolConcurrency, MaxQueue = (int?)toolQueue, StepTimeout = toolStep,
            });

        if (kind == "process")
        {
            var command = map.TryGetValue("command", out var cm) ? Command(cm) : null;
            var env = map.TryGetValue("env", out var en) ? ProcessEnvironment(en) : new Dictionary<string, string?>();
            var maxOutput = map.TryGetValue("maxOutputBytes", out var mo) ? Integer(mo, 1, int.MaxValue) : null;
            var sandboxGiven = map.TryGetValue("sandbox", out var sb);
            var sandbox = sandboxGiven ? ReadSandbox(sb!) : null;
            // Version 2: a write tool is sandboxed unless it opts out with sandbox: false (warned about at start).
            var sandboxByDefault = _version >= 2 && effectValue == ToolEffect.Write;
            if (sandboxByDefault && !sandboxGiven) sandbox = new SandboxSettings();
            if (command is null) return null;
            return new ProcessToolDefinition
            {
                Name = entry.Name,
                Description = description,
                Effect = effectValue,
                Timeout = timeout,
                Parameters = parameters,
                OnInDoubt = inDoubtValue,
                InDoubtTimeout = inDoubtTimeout,
                Retry = toolRetry, CircuitBreaker = toolBreaker, MaxConcurrency = (int?)toolConcurrency, MaxQueue = (int?)toolQueue, StepTimeout = toolStep,
                Compensate = compensate,
                Command = command,
                WorkingDirectory = baseDirectory,
                Environment = env,
                MaxOutputBytes = maxOutput is { } mv ? (int)mv : ProcessToolDefinition.DefaultMaxOutputBytes,
                Sandbox = sandbox,
                SandboxOptedOut = sandboxByDefault && sandboxGiven && sandbox is null,
            };
        }

        if (kind == "a2a")
        {
            // Calls a remote A2A agent's JSON-RPC interface (SendMessage); the call's key is the messageId.
            var agentUrl = map.TryGetValue("url", out var au) ? AbsoluteUrl(au) : null;
            var agentHeaders = map.TryGetValue("headers", out var ah) ? Headers(ah) : new Dictionary<string, string>();
            var maxResult = map.TryGetValue("maxResultChars", out var mx) ? Integer(mx, 1, int.MaxValue) : null;
            if (agentUrl is null || effect is null) return null;
            return new A2AToolDefinition
            {
                Name = entry.Name,
                Description = description ?? $"Send a message to the A2A agent at {agentUrl} and get its answer.",
                Effect = effectValue,
                Timeout = timeout,
                OnInDoubt = inDoubtValue,
                InDoubtTimeout = inDoubtTimeout,
                Retry = toolRetry, CircuitBreaker = toolBreaker, MaxConcurrency = (int?)toolConcurrency, MaxQueue = (int?)toolQueue, StepTimeout = toolStep,
                Compensate = compensate,
                Url = agentUrl,
                Headers = agentHeaders,
                MaxResultChars = maxResult is { } mrv ? (int)mrv : 64 * 1024,
            };
        }

        var method = map.TryGetValue("method", out var me) ? HttpMethod(me) : HttpToolDefinition.DefaultMethod;
        var url = map.TryGetValue("url", out var ur) ? AbsoluteUrl(ur) : null;
        var headers = map.TryGetValue("headers", out var he) ? Headers(he) : new Dictionary<string, string>();
        var maxResponse = map.TryGetValue("maxResponseBytes", out var mr) ? Integer(mr, 1, int.MaxValue) : null;
        if (url is null || method is null) return null;
        return new HttpToolDefinition
        {
            Name = entry.Name,
            Description = description,
            Effect = effectValue,
            Timeout = timeout,
            Parameters = parameters,
            OnInDoubt = inDoubtValue,
            InDoubtTimeout = inDoubtTimeout,
            Retry = toolRetry, CircuitBreaker = toolBreaker, MaxConcurrency = (int?)toolConcurrency, MaxQueue = (int?)toolQueue, StepTimeout = toolStep,
            Compensate = compensate,
            Method = method,
            Url = url,
            Headers = headers,
            MaxResponseBytes = maxResponse is { } rv ? (int)rv : HttpToolDefinition.DefaultMaxResponseBytes,
        };
    }

    private List<string>? Command(Entry entry)
    {
        if (entry.Value is not YamlSequenceNode seq)
        {
            Error(entry.Value, entry.Path, $"'command' must be a list (argv, no shell), for example [\"python3\", \"tool.py\"], not {Describe(entry.Value)}");
            return null;
        }
        if (seq.Children.Count == 0)
        {
            Error(entry.Value, entry.Path, "'command' must name at least the program to run");
            return null;
        }
        var items = StringItems(entry);
        return items?.Count == seq.Children.Count ? items : null;
    }

    private Dictionary<string, string?> ProcessEnvironment(Entry entry)
    {
        var env = new Dictionary<string, string?>(StringComparer.Ordinal);
        if (YamlJson.IsNull(entry.Value)) return env;
        if (entry.Value is YamlSequenceNode seq)
        {
            foreach (var item in seq.Children)
            {
                if (item is not YamlScalarNode s || YamlJson.IsNull(s))
                {
                    Error(item, entry.Path, $"'env' entries must be variable names, not {Describe(item)}");
                    continue;
                }
                var name = s.Value ?? "";
                if (!EnvSubstitution.IsVariableName(name))
                    Error(item, entry.Path, $"'{name}' is not a variable name (letters, digits and _, not starting with a digit)");
                else
                    env[name] = null;
            }
            return env;
        }
        if (entry.Value is YamlMappingNode)
        {
            var map = Map(entry, "'env'", null, [], null);
            if (map is null) return env;
            foreach (var e in map.Values)
            {
                if (!EnvSubstitution.IsVariableName(e.Name))
                {
                    Error(e.Key, e.Path, $"'{e.Name}' is not a variable name (letters, digits and _, not starting with a digit)");
                    continue;
                }
                env[e.Name] = YamlJson.IsNull(e.Value) ? null : Text(e);
            }
            return env;
        }
        Error(entry.Value, entry.Path, $"'env' must be a list of variable names to pass through, or a mapping of names to values, not {Describe(entry.Value)}");
        return env;
    }

    private string? HttpMethod(Entry entry)
    {
        var text = RequiredText(entry);
        if (text is null) return null;
        var upper = text.ToUpperInvariant();
        if (s_httpMethods.Contains(upper)) return upper;
        Error(entry.Value, entry.Path, $"'method' must be one of {string.Join(", ", s_httpMethods)}, not '{text}'{ClosestHint(upper, s_httpMethods)}");
        return null;
    }

    private Dictionary<string, string> Headers(Entry entry)
    {
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        var map = Map(entry, "'headers'", null, [], null);
        if (map is null) return headers;
        foreach (var e in map.Values)
            if (RequiredText(e) is { } value) headers[e.Name] = value;
        return headers;
    }

    private JsonElement? Parameters(Entry entry, string toolName)
    {
        if (entry.Value is not YamlMappingNode)
        {
            Error(entry.Value, entry.Path, $"'parameters' must be a JSON Schema written as a mapping (for example {{ type: object, properties: {{ ... }} }}), not {Describe(entry.Value)}");
            return null;
        }
        var ok = true;
        var json = YamlJson.Convert(entry.Value, s => Substitute(s, entry.Path), ref ok);
        if (!ok || json is null) return null;
        JsonElement element;
        // The parser bounds the nesting (ManifestLimits.MaxDepth), so JSON's own depth limit must not be the smaller one.
        using (var document = JsonDocument.Parse(json.ToJsonString(s_jsonOptions), new JsonDocumentOptions { MaxDepth = s_jsonOptions.MaxDepth }))
            element = document.RootElement.Clone();
        if (!SchemaCheck.Check(element, out var problems))
        {
            var keys = new Dictionary<YamlMappingNode, Dictionary<string, YamlNode>>(ReferenceEqualityComparer.Instance);
            foreach (var (pointer, message) in problems)
            {
                var node = Resolve(entry.Value, pointer, keys);
                var at = pointer.Length == 0 ? "" : $" at {pointer}";
                Error(node, entry.Path, $"invalid JSON Schema in 'parameters' of tool '{toolName}'{at}: {message}");
            }
            return null;
        }
        if (json is JsonObject obj && obj.TryGetPropertyValue("type", out var type) && type is not null
            && !(type.GetValueKind() == JsonValueKind.String && type.GetValue<string>() == "object"))
        {
            Error(Resolve(entry.Value, "/type", null), entry.Path, $"'parameters' of tool '{toolName}' must describe an object (type: object): models pass arguments as a JSON object");
            return null;
        }
        return element;
    }

    /// <summary>
    /// The YAML node a JSON pointer designates inside <paramref name="root"/> (the deepest one found).
    /// <paramref name="keys"/>, when given, indexes the mappings walked, for many pointers into one schema.
    /// </summary>
    private static YamlNode Resolve(YamlNode root, string pointer, Dictionary<YamlMappingNode, Dictionary<string, YamlNode>>? keys)
    {
        var node = root;
        if (pointer.Length == 0) return node;
        foreach (var raw in pointer.TrimStart('/').Split('/'))
        {
            var segment = raw.Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal);
            YamlNode? next = node switch
            {
                YamlMappingNode map when keys is not null => Index(map, keys).GetValueOrDefault(segment),
                YamlMappingNode map => map.Children.FirstOrDefault(kv => (kv.Key as YamlScalarNode)?.Value == segment).Value,
                YamlSequenceNode seq when int.TryParse(segment, NumberStyles.None, CultureInfo.InvariantCulture, out var i) && i < seq.Children.Count => seq.Children[i],
                _ => null,
            };
            if (next is null) break;
            node = next;
        }
        return node;
    }

    private static Dictionary<string, YamlNode> Index(YamlMappingNode map, Dictionary<YamlMappingNode, Dictionary<string, YamlNode>> keys)
    {
        if (keys.TryGetValue(map, out var index)) return index;
        index = new Dictionary<string, YamlNode>(StringComparer.Ordinal);
        foreach (var (key, value) in map.Children)
            if (key is YamlScalarNode { Value: { } name }) index.TryAdd(name, value);
        keys[map] = index;
        return index;
    }

    // ---- agents ----

    private AgentDefinition? ReadAgent(Entry entry, Names modelNames, Names toolNames)
    {
        if (!NamePattern().IsMatch(entry.Name))
            Error(entry.Key, entry.Path, $"agent name '{entry.Name}' must be 1 to 64 letters, digits, '_' or '-'");
        var map = Map(entry, $"agent '{entry.Name}'", s_agentKeys, ["model"], null);
        if (map is null) return null;

        string? model = null;
        if (map.TryGetValue("model", out var me) && RequiredText(me) is { } modelName)
        {
            if (modelNames.Contains(modelName))
                model = modelName;
            else
                Error(me.Value, me.Path, $"agent '{entry.Name}' uses model '{modelName}', which is not defined under 'models'{ReferenceHint(modelName, modelNames)}");
        }
        var instructions = map.TryGetValue("instructions", out var ins) ? Text(ins) : null;
        var description = map.TryGetValue("description", out var de) ? Text(de) : null;
        var tools = new List<string>();
        var listed = new HashSet<string>(StringComparer.Ordinal);
        if (map.TryGetValue("tools", out var te))
        {
            var items = Sequence(te);
            foreach (var item in items)
            {
                var itemEntry = new Entry("tools", te.Key, item, te.Path);
                if (RequiredText(itemEntry) is not { } toolName) continue;
                if (!toolNames.Contains(toolName))
                    Error(item, te.Path, $"agent '{entry.Name}' uses tool '{toolName}', which is not defined under 'tools'{ReferenceHint(toolName, toolNames)}");
                else if (!listed.Add(toolName))
                    Error(item, te.Path, $"tool '{toolName}' is listed twice for agent '{entry.Name}'");
                else
                    tools.Add(toolName);
            }
        }

        var budgets = new AgentBudgets();
        if (map.TryGetValue("budgets", out var be) && Map(be, "'budgets'", s_budgetKeys, [], null) is { } bm)
        {
            var steps = bm.TryGetValue("maxSteps", out var st) ? Integer(st, 1, int.MaxValue) : null;
            var tokens = bm.TryGetValue("maxTokens", out var tk) ? Integer(tk, 1, long.MaxValue) : null;
            var wall = bm.TryGetValue("maxWallTime", out var wt) ? Duration(wt, allowZero: false) : null;
            var queue = bm.TryGetValue("maxQueueTime", out var qt) ? Duration(qt, allowZero: false) : null;
            var cost = bm.TryGetValue("maxCost", out var mc) ? Number(mc, 0, double.MaxValue) : null;
            budgets = new AgentBudgets { MaxSteps = steps is { } s ? (int)s : null, MaxTokens = tokens, MaxWallTime = wall, MaxQueueTime = queue, MaxCost = cost };
        }

        var loop = new LoopDetectionSettings();
        if (map.TryGetValue("loop", out var le) && Map(le, "'loop'", s_loopKeys, [], null) is { } lm)
        {
            var repeated = lm.TryGetValue("maxRepeatedCalls", out var rc) ? Integer(rc, 0, int.MaxValue) : null;
            var noProgress = lm.TryGetValue("maxTurnsWithoutProgress", out var np) ? Integer(np, 0, int.MaxValue) : null;
            var action = lm.TryGetValue("action", out var ac) ? Choice(ac, s_loopActions) : null;
            loop = new LoopDetectionSettings
            {
                MaxRepeatedCalls = repeated is { } r ? (int)r : LoopDetectionSettings.DefaultMaxRepeatedCalls,
                MaxTurnsWithoutProgress = noProgress is { } n ? (int)n : LoopDetectionSettings.DefaultMaxTurnsWithoutProgress,
                Action = action == "warn" ? LoopAction.Warn : LoopAction.Stop,
            };
        }

        var retention = map.TryGetValue("retention", out var re) ? ReadRetention(re, entry.Name) : null;
        var memory = map.TryGetValue("memory", out var mem) ? ReadMemory(mem, entry.Name, modelNames) : null;
        var maxConcurrentRuns = map.TryGetValue("maxConcurrentRuns", out var mcr) ? Integer(mcr, 1, 100_000) : null;

        if (model is null) return null;
        return new AgentDefinition
        {
            Name = entry.Name,
            Model = model,
            Instructions = instructions,
            Description = description,
            Tools = tools,
            Budgets = budgets,
            LoopDetection = loop,
            AllowEmptyInput = map.TryGetValue("allowEmptyInput", out var ae) && Boolean(ae) == true,
            RollbackOnFailure = map.TryGetValue("rollbackOnFailure", out var rf) && Boolean(rf) == true,
            StateConfidence = map.TryGetValue("stateConfidence", out var sc) && Boolean(sc) == true,
            Delegates = map.TryGetValue("delegates", out var dl) ? StringItems(dl) ?? [] : [],
            Retention = retention,
            Memory = memory,
            MaxConcurrentRuns = (int?)maxConcurrentRuns,
        };
    }

    /// <summary><c>retention: { keepDays, keepRuns, keepFailedDays, exportTo }</c> of an agent.</summary>
    private AgentRetention? ReadRetention(Entry entry, string agent)
    {
        if (Map(entry, "'retention'", s_retentionKeys, [], null) is not { } rm) return null;
        var days = rm.TryGetValue("keepDays", out var kd) ? Integer(kd, 1, 36_500) : null;
        var runs = rm.TryGetValue("keepRuns", out var kr) ? Integer(kr, 1, int.MaxValue) : null;
        var failedDays = rm.TryGetValue("keepFailedDays", out var kf) ? Integer(kf, 1, 36_500) : null;
        var exportTo = rm.TryGetValue("exportTo", out var ex) ? RequiredText(ex) : null;
        if (!rm.ContainsKey("keepDays") && !rm.ContainsKey("keepRuns") && !rm.ContainsKey("keepFailedDays"))
        {
            if (rm.Count == 0 && entry.Value is YamlMappingNode { Children.Count: > 0 }) return null; // only unknown keys, each reported
            Error(entry.Key, entry.Path, $"agent '{agent}': 'retention' needs keepDays, keepRuns or keepFailedDays (leave it out to keep every run)");
            return null;
        }
        if (days is { } d && failedDays is { } f && f < d)
            Error(kf!.Value, kf.Path, $"'keepFailedDays' ({f}) must be at least 'keepDays' ({d}): failed runs are kept longer, not shorter");
        return new AgentRetention { KeepDays = (int?)days, KeepRuns = (int?)runs, KeepFailedDays = (int?)failedDays, ExportTo = exportTo };
    }

    // ---- node helpers ----

    /// <summary>The entries of a name -> definition map (<c>models:</c>, <c>tools:</c>, <c>agents:</c>).</summary>
    private List<Entry> NameMap(Entry entry, string what)
    {
        var map = Map(entry, $"'{entry.Name}'", null, [], null);
        return map is null ? [] : [.. map.Values];
    }

    /// <summary>
    /// Reads a mapping, reporting unknown keys (with a did-you-mean) and missing required keys (at the parent key).
    /// Null (an empty value) reads as an empty mapping. <paramref name="allowed"/> null accepts any key.
    /// </summary>
    private Dictionary<string, Entry>? Map(Entry entry, string what, IReadOnlyCollection<string>? allowed, IReadOnlyCollection<string> required, IReadOnlyDictionary<string, string>? foreign)
    {
        var result = new Dictionary<string, Entry>(StringComparer.Ordinal);
        if (entry.Value is YamlMappingNode map)
        {
            foreach (var (keyNode, value) in map.Children)
            {
                if (keyNode is not YamlScalarNode { Value: { } key } scalarKey || YamlJson.IsNull(keyNode))
                {
                    Error(keyNode, entry.Path, $"keys in {what} must be plain names, not {Describe(keyNode)}");
                    continue;
                }
                var path = entry.Path + "." + key;
                if (allowed is not null && !allowed.Contains(key))
                {
                    if (foreign is not null && foreign.TryGetValue(key, out var owner))
                        Error(keyNode, path, $"key '{key}' does not apply to {what} (it belongs to {owner})");
                    else
                        Error(keyNode, path, $"unknown key '{key}' in {what}{Hint(key, allowed)}");
                    continue;
                }
                result[key] = new Entry(key, scalarKey, value, path);
            }
        }
        else if (!YamlJson.IsNull(entry.Value))
        {
            Error(entry.Value, entry.Path, $"{what} must be a mapping, not {Describe(entry.Value)}");
            return null;
        }
        foreach (var key in required)
            if (!result.ContainsKey(key))
                Error(entry.Key, entry.Path, $"{what} is missing required key '{key}'");
        return result;
    }

    private static Dictionary<string, string> Foreign(IEnumerable<string> theirs, IEnumerable<string> ours, string owner) =>
        theirs.Except(ours).ToDictionary(k => k, _ => owner, StringComparer.Ordinal);

    /// <summary>The entry of <paramref name="key"/> in a mapping, without reporting anything.</summary>
    private static Entry? Peek(YamlNode node, string key)
    {
        if (node is not YamlMappingNode map) return null;
        foreach (var (k, v) in map.Children)
            if (k is YamlScalarNode { Value: { } name } s && name == key) return new Entry(key, s, v, key);
        return null;
    }

    private IReadOnlyList<YamlNode> Sequence(Entry entry)
    {
        if (entry.Value is YamlSequenceNode seq) return [.. seq.Children];
        if (!YamlJson.IsNull(entry.Value))
            Error(entry.Value, entry.Path, $"'{entry.Name}' must be a list, not {Describe(entry.Value)}");
        return [];
    }

    private List<string>? StringItems(Entry entry)
    {
        var list = new List<string>();
        var items = Sequence(entry);
        for (var i = 0; i < items.Count; i++)
        {
            var itemEntry = new Entry(entry.Name, entry.Key, items[i], $"{entry.Path}[{i}]");
            if (RequiredText(itemEntry) is { } text) list.Add(text);
        }
        return list;
    }

    /// <summary>A scalar's text after environment substitution; null when the value is empty (null) or in error (reported).</summary>
    private string? Text(Entry entry)
    {
        if (YamlJson.IsNull(entry.Value)) return null;
        if (entry.Value is not YamlScalarNode scalar)
        {
            Error(entry.Value, entry.Path, $"'{entry.Name}' must be a text value, not {Describe(entry.Value)}");
            return null;
        }
        return Substitute(scalar, entry.Path);
    }

    /// <summary>Like <see cref="Text"/>, but an empty value is an error.</summary>
    private string? RequiredText(Entry entry)
    {
        var before = _diagnostics.Count;
        var text = Text(entry);
        if (string.IsNullOrWhiteSpace(text) && _diagnostics.Count == before)
        {
            Error(entry.Value, entry.Path, $"'{entry.Name}' must not be empty");
            return null;
        }
        return text;
    }

    private string? Substitute(YamlScalarNode scalar, string path)
    {
        var source = scalar.Value ?? "";
        var text = EnvSubstitution.Apply(source, environment, out var error);
        if (error is not null) Error(scalar, path, error);
        // The parser counted the text as written (each alias a copy); what a substitution adds counts here, once per
        // occurrence read, so that ${VAR} repeated through aliases cannot grow the manifest past the size limit.
        if (text is not null && text.Length > source.Length)
        {
            _expandedChars += text.Length - source.Length;
            if (_expandedChars > limits.MaxFileBytes)
                throw new ManifestLimitException(scalar.Start,
                    $"environment substitution grows the manifest's keys and values past {limits.MaxFileBytes} characters (aliases expanded)", path);
        }
        return text;
    }

    private long? Integer(Entry entry, long min, long max)
    {
        var text = RequiredText(entry);
        if (text is null) return null;
        if (!long.TryParse(text.Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value))
        {
            Error(entry.Value, entry.Path, $"'{entry.Name}' must be a whole number, not '{text}'");
            return null;
        }
        if (value < min || value > max)
        {
            Error(entry.Value, entry.Path, max == long.MaxValue || max == int.MaxValue
                ? $"'{entry.Name}' must be at least {min}, not {value}"
                : $"'{entry.Name}' must be between {min} and {max}, not {value}");
            return null;
        }
        return value;
    }

    private double? Number(Entry entry, double min, double max)
    {
        var text = RequiredText(entry);
        if (text is null) return null;
        if (!double.TryParse(text.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var value) || !double.IsFinite(value))
        {
            Error(entry.Value, entry.Path, $"'{entry.Name}' must be a number, not '{text}'");
            return null;
        }
        if (value < min || value > max)
        {
            Error(entry.Value, entry.Path, $"'{entry.Name}' must be between {min.ToString(CultureInfo.InvariantCulture)} and {max.ToString(CultureInfo.InvariantCulture)}, not {text}");
            return null;
        }
        return value;
    }

    private TimeSpan? Duration(Entry entry, bool allowZero)
    {
        var text = RequiredText(entry);
        if (text is null) return null;
        if (!Durations.TryParse(text, out var value))
        {
            Error(entry.Value, entry.Path, $"'{entry.Name}' must be a duration such as 500ms, 10s, 2m or 1h, not '{text}'");
            return null;
        }
        if (!allowZero && value == TimeSpan.Zero)
        {
            Error(entry.Value, entry.Path, $"'{entry.Name}' must be longer than zero");
            return null;
        }
        return value;
    }

    private bool? Boolean(Entry entry)
    {
        var text = RequiredText(entry);
        if (text is null) return null;
        if (text is "true") return true;
        if (text is "false") return false;
        Error(entry.Value, entry.Path, $"'{entry.Name}' must be true or false, not '{text}'");
        return null;
    }

    private string? Choice(Entry entry, string[] choices)
    {
        var text = RequiredText(entry);
        if (text is null) return null;
        if (choices.Contains(text)) return text;
        Error(entry.Value, entry.Path, $"'{entry.Name}' must be one of {string.Join(", ", choices)}, not '{text}'{ClosestHint(text, choices)}");
        return null;
    }

    private Uri? AbsoluteUrl(Entry entry)
    {
        var text = RequiredText(entry);
        if (text is null) return null;
        if (Uri.TryCreate(text.Trim(), UriKind.Absolute, out var uri) && (uri.Scheme == Uri.UriSchemeHttp || uri.Scheme == Uri.UriSchemeHttps))
            return uri;
        Error(entry.Value, entry.Path, $"'{entry.Name}' must be an absolute http:// or https:// address, not '{text}'");
        return null;
    }

    // ---- did-you-mean, bounded ----
    // The edit distance costs the product of the two lengths, and a manifest may hold thousands of names and
    // thousands of bad references to them: hints are given for names of at most MaxSuggestedLength characters,
    // within a budget of work per manifest, and lists of names are cut after MaxListedNames.

    private const int MaxSuggestedLength = 64;
    private const int MaxListedNames = 20;

    /// <summary>Character pairs the edit distances of this manifest's hints may still compare (tens of milliseconds).</summary>
    private long _suggestionBudget = 20_000_000;

    /// <summary>The closest candidate when it is a likely typo, while the budget lasts; otherwise null.</summary>
    private string? Closest(string value, IEnumerable<string> candidates)
    {
        if (value.Length > MaxSuggestedLength) return null;
        var fitting = new List<string>();
        foreach (var candidate in candidates)
        {
            var cost = candidate.Length > MaxSuggestedLength ? 1 : (long)(value.Length + 1) * (candidate.Length + 1);
            if (cost > _suggestionBudget)
            {
                _suggestionBudget = 0;
                return null;
            }
            _suggestionBudget -= cost;
            if (candidate.Length <= MaxSuggestedLength) fitting.Add(candidate);
        }
        return Suggestions.Closest(value, fitting);
    }

    /// <summary>"; did you mean 'x'?" or, when nothing is close, "; expected one of a, b, c" (empty when there are no candidates).</summary>
    private string Hint(string value, IReadOnlyCollection<string> candidates)
    {
        if (Closest(value, candidates) is { } c) return $"; did you mean '{c}'?";
        return candidates.Count == 0 ? "" : "; expected one of " + List(candidates);
    }

    private string ClosestHint(string value, string[] choices) =>
        Closest(value, choices) is { } c ? $"; did you mean '{c}'?" : "";

    private string ReferenceHint(string value, Names names)
    {
        if (Closest(value, names) is { } c) return $"; did you mean '{c}'?";
        return names.Count == 0 ? " (none are defined)" : $" (defined: {List(names)})";
    }

    /// <summary>"a, b, c", cut after <see cref="MaxListedNames"/> names ("..., t19 and 480 more").</summary>
    private static string List(IReadOnlyCollection<string> names) =>
        names.Count <= MaxListedNames
            ? string.Join(", ", names)
            : $"{string.Join(", ", names.Take(MaxListedNames))} and {names.Count - MaxListedNames} more";

    /// <summary>Names in order of first appearance, without repeats, with a constant-time <see cref="Contains"/>.</summary>
    private sealed class Names : IReadOnlyCollection<string>
    {
        private readonly List<string> _ordered = [];
        private readonly HashSet<string> _set = new(StringComparer.Ordinal);

        public Names(IEnumerable<string> names) => AddRange(names);

        public int Count => _ordered.Count;

        public void AddRange(IEnumerable<string> names)
        {
            foreach (var name in names)
                if (_set.Add(name)) _ordered.Add(name);
        }

        public bool Contains(string name) => _set.Contains(name);

        public IEnumerator<string> GetEnumerator() => _ordered.GetEnumerator();

        IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
    }

    private static string Describe(YamlNode node) => node switch
    {
        YamlMappingNode => "a mapping",
        YamlSequenceNode => "a list",
        YamlScalarNode s when YamlJson.IsNull(s) => "an empty value",
        YamlScalarNode s => $"the value '{s.Value}'",
        _ => "this node",
    };

    private void Error(YamlNode node, string? path, string message) => Add(node.Start, message, path);

    /// <summary>Where the first line from <paramref name="fromLine"/> on is indented with a tab (its line and column), or null.</summary>
    private static Mark? TabIndentation(string yaml, long fromLine)
    {
        var lines = yaml.Split('\n');
        for (var i = (int)Math.Max(0, fromLine - 1); i < lines.Length; i++)
        {
            var indent = lines[i].Length - lines[i].TrimStart(' ', '\t').Length;
            var tab = lines[i].IndexOf('\t', 0, indent);
            if (tab >= 0) return new Mark(0, i + 1, tab + 1);
        }
        return null;
    }

    private void Add(Mark mark, string message, string? path) =>
        _diagnostics.Add(new ManifestDiagnostic(file, (int)Math.Max(1, mark.Line), (int)Math.Max(1, mark.Column), message, path));
}
