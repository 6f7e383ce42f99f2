using YamlDotNet.RepresentationModel;

namespace Bureau.Manifests;

/// <summary>The <c>teams:</c> section.</summary>
internal sealed partial class ManifestReader
{
    private static readonly string[] s_patterns = ["sequential", "parallel", "router", "supervisor", "handoff", "graph"];
    private static readonly string[] s_commonTeamKeys = ["pattern", "description", "onMemberFailure", "retries", "limits", "budgets"];
    private static readonly Dictionary<string, string[]> s_patternKeys = new(StringComparer.Ordinal)
    {
        ["sequential"] = ["members"],
        ["parallel"] = ["members", "join", "merge"],
        ["router"] = ["members", "planner", "join", "merge"],
        ["supervisor"] = ["members", "supervisor", "reviewer", "maxRounds", "onRoundLimit"],
        ["handoff"] = ["members", "maxHandoffs"],
        ["graph"] = ["start", "nodes", "edges", "maxSteps"],
    };
    private static readonly Dictionary<string, string[]> s_patternRequired = new(StringComparer.Ordinal)
    {
        ["sequential"] = ["members"],
        ["parallel"] = ["members"],
        ["router"] = ["members", "planner"],
        ["supervisor"] = ["supervisor"],
        ["handoff"] = ["members"],
        ["graph"] = ["start", "nodes", "edges"],
    };
    private static readonly string[] s_memberFailurePolicies = ["fail", "continue", "retry"];
    private static readonly string[] s_roundLimitActions = ["fail", "accept"];
    private static readonly string[] s_teamLimitKeys = ["maxDepth", "maxFanOut", "maxChildren"];
    private static readonly string[] s_teamBudgetKeys = ["maxSteps", "maxTokens", "maxWallTime", "maxCost"];
    private static readonly string[] s_edgeKeys = ["from", "to", "when"];
    private static readonly string[] s_whenEdgeKeys = ["contains"];

    /// <summary>Reads the teams; members may name agents or other teams (no team may contain itself).</summary>
    private void ReadTeams(List<Entry> teamEntries, BureauDefinitions definitions, Names agentNames)
    {
        var runnable = new Names(agentNames);
        runnable.AddRange(teamEntries.Select(e => e.Name));
        foreach (var e in teamEntries)
        {
            if (agentNames.Contains(e.Name))
                Error(e.Key, e.Path, $"team '{e.Name}' has the name of an agent; agents and teams share one namespace (runs name either)");
            else if (ReadTeam(e, runnable) is { } team)
                definitions.Add(team);
        }
        foreach (var team in definitions.Teams.Values)
        {
            if (Cycle(team.Name, definitions.Teams) is { } cycle)
            {
                var entry = teamEntries.First(e => e.Name == team.Name);
                Error(entry.Key, entry.Path, $"team '{team.Name}' contains itself: {string.Join(" -> ", cycle)}");
            }
        }
    }

    /// <summary>The first membership path from <paramref name="start"/> back to itself, or null.</summary>
    private static List<string>? Cycle(string start, IReadOnlyDictionary<string, TeamDefinition> teams)
    {
        var path = new List<string> { start };
        var seen = new HashSet<string>(StringComparer.Ordinal);
        return Visit(start);

        List<string>? Visit(string name)
        {
            foreach (var used in teams[name].Uses().Distinct(StringComparer.Ordinal))
            {
                if (!teams.ContainsKey(used)) continue;
                path.Add(used);
                if (used == start) return path;
                if (seen.Add(used) && Visit(used) is { } found) return found;
                path.RemoveAt(path.Count - 1);
            }
            return null;
        }
    }

    private TeamDefinition? ReadTeam(Entry entry, Names runnable)
    {
        var what = $"team '{entry.Name}'";
        if (!NamePattern().IsMatch(entry.Name))
            Error(entry.Key, entry.Path, $"team name '{entry.Name}' must be 1 to 64 letters, digits, '_' or '-'");
        var patternEntry = Peek(entry.Value, "pattern");
        var patternName = patternEntry is null ? null : Choice(patternEntry with { Path = entry.Path + ".pattern" }, s_patterns);
        var allowed = patternName is null
            ? [.. s_commonTeamKeys, .. s_patternKeys.Values.SelectMany(k => k).Distinct()]
            : s_commonTeamKeys.Concat(s_patternKeys[patternName]).ToArray();
        var foreign = patternName is null ? null : s_patternKeys
            .Where(p => p.Key != patternName)
            .SelectMany(p => p.Value.Select(k => (Key: k, Pattern: p.Key)))
            .Where(k => !allowed.Contains(k.Key))
            .GroupBy(k => k.Key)
            .ToDictionary(g => g.Key, g => "pattern " + string.Join(" or ", g.Select(k => k.Pattern)), StringComparer.Ordinal);
        var required = patternName is null ? ["pattern"] : new[] { "pattern" }.Concat(s_patternRequired[patternName]).ToArray();
        var map = Map(entry, what, allowed, required, foreign);
        if (map is null || patternName is null) return null;
        var before = _diagnostics.Count;

        string? Ref(string key)
        {
            if (!map.TryGetValue(key, out var e) || RequiredText(e) is not { } name) return null;
            if (runnable.Contains(name)) return name;
            Error(e.Value, e.Path, $"{what} uses '{name}' as its {key}, which is neither an agent nor a team{ReferenceHint(name, runnable)}");
            return null;
        }

        var members = new List<string>();
        if (map.TryGetValue("members", out var me))
        {
            var items = Sequence(me);
            for (var i = 0; i < items.Count; i++)
            {
                var item = new Entry("members", me.Key, items[i], $"{me.Path}[{i}]");
                if (RequiredText(item) is not { } name) continue;
                if (!runnable.Contains(name))
                    Error(items[i], item.Path, $"{what} has member '{name}', which is neither an agent nor a team{ReferenceHint(name, runnable)}");
                else
                    members.Add(name);
            }
            if (items.Count == 0 && s_patternRequired[patternName].Contains("members"))
                Error(me.Value, me.Path, $"{what} needs at least one member");
        }

        var join = TeamJoin.All;
        if (map.TryGetValue("join", out var je))
        {
            if (je.Value is YamlMappingNode && Map(je, "'join'", ["quorum"], ["quorum"], null) is { } jm && jm.TryGetValue("quorum", out var qe)
                && Integer(qe, 1, Math.Max(1, members.Count)) is { } q)
                join = new TeamJoin((int)q);
            else if (je.Value is not YamlMappingNode && Choice(je, ["all", "any"]) is { } j)
                join = j == "any" ? TeamJoin.Any : TeamJoin.All;
        }

        var nodes = new Dictionary<string, string>(StringComparer.Ordinal);
        if (map.TryGetValue("nodes", out var ne) && Map(ne, "'nodes'", null, [], null) is { } nm)
        {
            foreach (var (node, value) in nm)
            {
                if (node == "end") { Error(value.Key, value.Path, "'end' is where a graph stops; name the node otherwise"); continue; }
                if (RequiredText(value) is not { } target) continue;
                if (!runnable.Contains(target))
                    Error(value.Value, value.Path, $"{what}: node '{node}' runs '{target}', which is neither an agent nor a team{ReferenceHint(target, runnable)}");
                else
                    nodes[node] = target;
            }
            if (nm.Count == 0) Error(ne.Value, ne.Path, $"{what} needs at least one node");
        }
        var nodeNames = new Names(nodes.Keys);
        string? start = null;
        if (map.TryGetValue("start", out var se) && RequiredText(se) is { } s)
        {
            if (nodeNames.Contains(s)) start = s;
            else Error(se.Value, se.Path, $"{what} starts at '{s}', which is not one of its nodes{ReferenceHint(s, nodeNames)}");
        }
        var edges = new List<TeamEdge>();
        if (map.TryGetValue("edges", out var ee))
        {
            var items = Sequence(ee);
            for (var i = 0; i < items.Count; i++)
            {
                var itemEntry = new Entry("edges", ee.Key, items[i], $"{ee.Path}[{i}]");
                if (Map(itemEntry, "an edge", s_edgeKeys, ["from", "to"], null) is not { } em) continue;
                var from = em.TryGetValue("from", out var fe) ? RequiredText(fe) : null;
                var to = em.TryGetValue("to", out var te) ? RequiredText(te) : null;
                string? contains = null;
                if (em.TryGetValue("when", out var we) && Map(we, "'when'", s_whenEdgeKeys, ["contains"], null) is { } wm && wm.TryGetValue("contains", out var ce))
                    contains = RequiredText(ce);
                if (from is not null && !nodeNames.Contains(from))
                    Error(fe!.Value, fe.Path, $"{what}: edge from '{from}', which is not one of its nodes{ReferenceHint(from, nodeNames)}");
                if (to is not null && to != "end" && !nodeNames.Contains(to))
                    Error(te!.Value, te.Path, $"{what}: edge to '{to}', which is neither one of its nodes nor 'end'{ReferenceHint(to, nodeNames)}");
                if (from is not null && to is not null) edges.Add(new TeamEdge(from, to, contains));
            }
        }

        var limits = new TeamLimits();
        if (map.TryGetValue("limits", out var le) && Map(le, "'limits'", s_teamLimitKeys, [], null) is { } lm)
        {
            var depth = lm.TryGetValue("maxDepth", out var de) ? Integer(de, 0, 64) : null;
            var fan = lm.TryGetValue("maxFanOut", out var fo) ? Integer(fo, 1, 10_000) : null;
            var total = lm.TryGetValue("maxChildren", out var mc) ? Integer(mc, 1, 1_000_000) : null;
            limits = new TeamLimits
            {
                MaxDepth = depth is { } d ? (int)d : limits.MaxDepth,
                MaxFanOut = fan is { } f ? (int)f : limits.MaxFanOut,
                MaxChildren = total is { } t ? (int)t : limits.MaxChildren,
            };
        }
        var budgets = new AgentBudgets();
        if (map.TryGetValue("budgets", out var be) && Map(be, "'budgets'", s_teamBudgetKeys, [], null) is { } bm)
        {
            var steps = bm.TryGetValue("maxSteps", out var st) ? Integer(st, 1, int.MaxValue) : null;
            var tokens = bm.TryGetValue("maxTokens", out var tk) ? Integer(tk, 1, long.MaxValue) : null;
            var wall = bm.TryGetValue("maxWallTime", out var wt) ? Duration(wt, allowZero: false) : null;
            var cost = bm.TryGetValue("maxCost", out var mc2) ? Number(mc2, 0, double.MaxValue) : null;
            budgets = new AgentBudgets { MaxSteps = steps is { } sv ? (int)sv : null, MaxTokens = tokens, MaxWallTime = wall, MaxCost = cost };
        }

        var policy = map.TryGetValue("onMemberFailure", out var pe) ? Choice(pe, s_memberFailurePolicies) : null;
        var retries = map.TryGetValue("retries", out var re) ? Integer(re, 0, 100) : null;
        var maxRounds = map.TryGetValue("maxRounds", out var mr) ? Integer(mr, 1, 100) : null;
        var onRoundLimit = map.TryGetValue("onRoundLimit", out var rl) ? Choice(rl, s_roundLimitActions) : null;
        var maxHandoffs = map.TryGetValue("maxHandoffs", out var mh) ? Integer(mh, 0, 1000) : null;
        var maxSteps = map.TryGetValue("maxSteps", out var ms) ? Integer(ms, 1, 10_000) : null;
        var description = map.TryGetValue("description", out var de2) ? Text(de2) : null;
        var merge = Ref("merge");
        var planner = Ref("planner");
        var supervisor = Ref("supervisor");
        var reviewer = Ref("reviewer");
        if (_diagnostics.Count > before) return null;

        var defaults = new TeamDefinition { Name = entry.Name, Pattern = TeamPattern.Sequential };
        return new TeamDefinition
        {
            Name = entry.Name,
            Pattern = patternName switch
            {
                "parallel" => TeamPattern.Parallel,
                "router" => TeamPattern.Router,
                "supervisor" => TeamPattern.Supervisor,
                "handoff" => TeamPattern.Handoff,
                "graph" => TeamPattern.Graph,
                _ => TeamPattern.Sequential,
            },
            Members = members,
            Description = description,
            Join = join,
            Merge = merge,
            Planner = planner,
            Supervisor = supervisor,
            Reviewer = reviewer,
            MaxRounds = maxRounds is { } r ? (int)r : defaults.MaxRounds,
            AcceptAtRoundLimit = onRoundLimit == "accept",
            MaxHandoffs = maxHandoffs is { } h ? (int)h : defaults.MaxHandoffs,
            Nodes = nodes,
            Edges = edges,
            Start = start,
            MaxSteps = maxSteps is { } m ? (int)m : defaults.MaxSteps,
            OnMemberFailure = policy switch { "continue" => ChildFailurePolicy.Continue, "retry" => ChildFailurePolicy.Retry, _ => ChildFailurePolicy.Fail },
            Retries = retries is { } rt ? (int)rt : defaults.Retries,
            Limits = limits,
            Budgets = budgets,
        };
    }
}
