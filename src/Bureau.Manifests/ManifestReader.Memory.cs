using YamlDotNet.RepresentationModel;

namespace Bureau.Manifests;

/// <summary>An agent's <c>memory:</c> block (docs/memory.md).</summary>
internal sealed partial class ManifestReader
{
    private static readonly string[] s_memoryKeys = ["scopes", "tools", "onConflict", "team", "tenant", "recallLimit", "window"];
    private static readonly string[] s_windowKeys = ["maxTokens", "overflow", "summaryModel", "tokenizer"];
    private static readonly string[] s_conflictRules = ["reject", "last-writer-wins", "append"];
    private static readonly string[] s_overflowPolicies = ["drop-oldest", "summarize"];
    private static readonly string[] s_tokenizers = ["o200k_base"];

    /// <summary><c>memory: { scopes, tools, onConflict, team, tenant, recallLimit, window }</c> of an agent; an empty block enables the defaults.</summary>
    private AgentMemory? ReadMemory(Entry entry, string agent, Names modelNames)
    {
        if (Map(entry, "'memory'", s_memoryKeys, [], null) is not { } mm) return null;
        var defaults = new AgentMemory();
        var scopes = mm.TryGetValue("scopes", out var sc) ? Items(sc, [.. MemoryScopes.All], "scope", atLeastOne: true) : defaults.Scopes;
        var tools = mm.TryGetValue("tools", out var tl) ? Items(tl, [.. AgentMemory.ToolNames], "memory tool", atLeastOne: false) : defaults.Tools;
        var onConflict = mm.TryGetValue("onConflict", out var oc) ? Choice(oc, s_conflictRules) : null;
        var team = mm.TryGetValue("team", out var te) ? RequiredText(te) : null;
        var tenant = mm.TryGetValue("tenant", out var tn) ? RequiredText(tn) : null;
        var recallLimit = mm.TryGetValue("recallLimit", out var rl) ? Integer(rl, 1, 20) : null;
        ConversationWindow? window = null;
        if (mm.TryGetValue("window", out var we) && Map(we, "'window'", s_windowKeys, ["maxTokens"], null) is { } wm)
        {
            var maxTokens = wm.TryGetValue("maxTokens", out var mt) ? Integer(mt, 64, 10_000_000) : null;
            var overflow = wm.TryGetValue("overflow", out var ov) ? Choice(ov, s_overflowPolicies) : null;
            string? summaryModel = null;
            if (wm.TryGetValue("summaryModel", out var sm) && RequiredText(sm) is { } smName)
            {
                if (modelNames.Contains(smName)) summaryModel = smName;
                else Error(sm.Value, sm.Path, $"agent '{agent}': summaryModel '{smName}' is not defined under 'models'{ReferenceHint(smName, modelNames)}");
            }
            if (summaryModel is not null && overflow != "summarize")
                Error(sm!.Key, sm.Path, $"agent '{agent}': 'summaryModel' applies only with overflow: summarize");
            var tokenizer = wm.TryGetValue("tokenizer", out var tk) ? Choice(tk, s_tokenizers) : null;
            if (maxTokens is { } max)
            {
                window = new ConversationWindow
                {
                    MaxTokens = (int)max,
                    Overflow = overflow == "summarize" ? WindowOverflow.Summarize : WindowOverflow.DropOldest,
                    SummaryModel = summaryModel,
                    Tokenizer = tokenizer ?? "o200k_base",
                };
            }
        }
        return new AgentMemory
        {
            Scopes = scopes,
            Tools = tools,
            OnConflict = onConflict switch { "last-writer-wins" => MemoryConflictRule.LastWriterWins, "append" => MemoryConflictRule.Append, _ => MemoryConflictRule.Reject },
            Team = team,
            Tenant = tenant ?? defaults.Tenant,
            RecallLimit = recallLimit is { } r ? (int)r : defaults.RecallLimit,
            Window = window,
        };
    }

    /// <summary>A list of names, each one of <paramref name="choices"/>, none twice.</summary>
    private List<string> Items(Entry entry, string[] choices, string what, bool atLeastOne)
    {
        var list = new List<string>();
        var items = Sequence(entry);
        for (var i = 0; i < items.Count; i++)
        {
            var item = new Entry(entry.Name, entry.Key, items[i], $"{entry.Path}[{i}]");
            if (Choice(item, choices) is not { } name) continue;
            if (list.Contains(name)) Error(items[i], item.Path, $"{what} '{name}' is listed twice");
            else list.Add(name);
        }
        if (atLeastOne && items.Count == 0 && entry.Value is YamlSequenceNode) Error(entry.Value, entry.Path, $"'{entry.Name}' must list at least one {what}");
        return list;
    }
}
