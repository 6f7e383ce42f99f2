namespace Bureau.Hosting;

/// <summary>
/// Whether an answer comes from the scripted model (rules, not a real model: tests, demos, offline use). Every protocol
/// that hands an agent's answer to a client (OpenAI-compatible, AG-UI, A2A, MCP) labels such answers as scripted.
/// </summary>
internal static class ScriptedModels
{
    /// <summary>Whether the agent, or any agent a team uses (at any depth), answers with a scripted model.</summary>
    public static bool Behind(BureauEngine engine, string agentOrTeam)
    {
        var defs = engine.Definitions;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var pending = new Stack<string>([agentOrTeam]);
        while (pending.TryPop(out var name) && seen.Count < 1000)
        {
            if (!seen.Add(name)) continue;
            if (defs.Teams.TryGetValue(name, out var team))
            {
                foreach (var used in team.Uses()) pending.Push(used);
            }
            else if (defs.Agents.TryGetValue(name, out var agent) && defs.Models.TryGetValue(agent.Model, out var model) && model is ScriptedModelDefinition)
            {
                return true;
            }
        }
        return false;
    }
}
