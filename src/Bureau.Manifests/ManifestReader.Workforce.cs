using YamlDotNet.RepresentationModel;

namespace Bureau.Manifests;

/// <summary>The <c>workforce:</c> section (docs/workforce.md).</summary>
internal sealed partial class ManifestReader
{
    private static readonly string[] s_workforceKeys = ["board", "members"];
    private static readonly string[] s_workforceMemberKeys = ["skills", "concurrency", "delegate"];

    /// <summary><c>workforce: { board, members: { AGENT: { skills, concurrency, delegate } } }</c>; each member names an agent of <c>agents:</c>.</summary>
    private void ReadWorkforce(Entry entry, BureauDefinitions definitions, Names agentNames)
    {
        if (Map(entry, "'workforce'", s_workforceKeys, ["members"], null) is not { } map) return;
        if (map.TryGetValue("board", out var be) && RequiredText(be) is { } board)
        {
            if (IsWorkforceName(board)) definitions.Workforce.Board = board;
            else Error(be.Value, be.Path, $"'board' must be letters, digits, '-', '_' or '.', not '{board}'");
        }
        if (!map.TryGetValue("members", out var me)) return;
        var members = NameMap(me, "member");
        if (members.Count == 0 && me.Value is not YamlMappingNode { Children.Count: > 0 })
            Error(me.Value, me.Path, "'members' must name at least one agent of 'agents' with its skills");
        foreach (var e in members)
        {
            var what = $"workforce member '{e.Name}'";
            if (!agentNames.Contains(e.Name))
                Error(e.Key, e.Path, $"{what} is not an agent defined under 'agents'{ReferenceHint(e.Name, agentNames)}");
            if (Map(e, what, s_workforceMemberKeys, ["skills"], null) is not { } mm) continue;
            var skills = new List<string>();
            if (mm.TryGetValue("skills", out var se))
            {
                var items = Sequence(se);
                for (var i = 0; i < items.Count; i++)
                {
                    var item = new Entry(se.Name, se.Key, items[i], $"{se.Path}[{i}]");
                    if (RequiredText(item) is not { } skill) continue;
                    if (!IsWorkforceName(skill)) Error(items[i], item.Path, $"{what}: skill '{skill}' must be letters, digits, '-', '_' or '.'");
                    else if (skills.Contains(skill)) Error(items[i], item.Path, $"{what}: skill '{skill}' is listed twice");
                    else skills.Add(skill);
                }
                if (items.Count == 0 && !YamlJson.IsNull(se.Value) && se.Value is YamlSequenceNode)
                    Error(se.Value, se.Path, $"{what} must list at least one skill");
                else if (YamlJson.IsNull(se.Value))
                    Error(se.Key, se.Path, $"{what} must list at least one skill");
            }
            var concurrency = mm.TryGetValue("concurrency", out var ce) ? Integer(ce, 1, 10_000) : null;
            var canDelegate = mm.TryGetValue("delegate", out var de) && Boolean(de) == true;
            if (skills.Count > 0 && agentNames.Contains(e.Name))
                definitions.Workforce.Add(new WorkforceMember { Name = e.Name, Skills = skills, Concurrency = concurrency is { } c ? (int)c : 1, CanDelegate = canDelegate });
        }
    }

    private static bool IsWorkforceName(string name) =>
        name.Length is > 0 and <= 100 && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.');
}
