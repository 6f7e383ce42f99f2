namespace Bureau.Manifests;

/// <summary>Reads <c>kind: mcp</c> tool entries (an MCP server whose tools are listed at start, docs/mcp.md).</summary>
internal sealed partial class ManifestReader
{
    private static readonly string[] s_mcpToolKeys =
        ["kind", "effect", "timeout", "description", "onInDoubt", "inDoubtTimeout", "retry", "circuitBreaker", "maxConcurrency", "maxQueue", "stepTimeout",
         "command", "env", "url", "bearerTokenEnv", "include", "exclude", "effects", "prefix", "connectTimeout"];

    private McpServerToolDefinition? ReadMcpServer(Entry entry, Dictionary<string, Entry> map, McpServerToolDefinition common)
    {
        var ok = true;
        var command = map.TryGetValue("command", out var cm) ? Command(cm) : null;
        var url = map.TryGetValue("url", out var ur) ? AbsoluteUrl(ur) : null;
        if (cm is not null && command is null || ur is not null && url is null) ok = false;
        if (cm is not null && ur is not null)
        {
            Error(ur.Key, ur.Path, $"tool '{entry.Name}': an MCP server is reached either by 'command' (stdio) or by 'url' (streamable HTTP), not both");
            ok = false;
        }
        else if (cm is null && ur is null)
        {
            Error(entry.Key, entry.Path, $"tool '{entry.Name}': an MCP server needs 'command' (a program speaking MCP on stdio, e.g. [node, server.js]) or 'url' (its streamable HTTP endpoint)");
            ok = false;
        }
        var env = map.TryGetValue("env", out var en) ? ProcessEnvironment(en) : new Dictionary<string, string?>();
        if (en is not null && ur is not null)
            Error(en.Key, en.Path, $"tool '{entry.Name}': 'env' is the environment of a stdio server ('command'); an HTTP server runs elsewhere");
        string? bearer = null;
        if (map.TryGetValue("bearerTokenEnv", out var be) && RequiredText(be) is { } variable)
        {
            if (!EnvSubstitution.IsVariableName(variable)) Error(be.Value, be.Path, $"'{variable}' is not a variable name (letters, digits and _, not starting with a digit): give the name of the variable holding the token, not the token");
            else if (cm is not null) Error(be.Key, be.Path, $"tool '{entry.Name}': 'bearerTokenEnv' is for an HTTP server ('url'); pass a stdio server its secrets with 'env'");
            else bearer = variable;
        }
        var include = map.TryGetValue("include", out var inc) ? StringItems(inc) ?? [] : [];
        var exclude = map.TryGetValue("exclude", out var exc) ? StringItems(exc) ?? [] : [];
        foreach (var both in include.Intersect(exclude, StringComparer.Ordinal))
            Error(exc!.Value, exc.Path, $"tool '{entry.Name}': '{both}' is both included and excluded");
        var effects = new Dictionary<string, ToolEffect>(StringComparer.Ordinal);
        if (map.TryGetValue("effects", out var ef) && Map(ef, "'effects'", null, [], null) is { } effectMap)
        {
            foreach (var e in effectMap.Values)
            {
                switch (Choice(e, s_effects))
                {
                    case "read": effects[e.Name] = ToolEffect.Read; break;
                    case "idempotent": effects[e.Name] = ToolEffect.Idempotent; break;
                    case "write": effects[e.Name] = ToolEffect.Write; break;
                }
            }
        }
        string? prefix = null;
        if (map.TryGetValue("prefix", out var pr))
        {
            prefix = YamlJson.IsNull(pr.Value) ? "" : Text(pr) ?? "";
            if (prefix.Length > 0 && !NamePattern().IsMatch(prefix))
                Error(pr.Value, pr.Path, $"'prefix' must be letters, digits, '_' or '-' (it starts every tool's name), not '{prefix}'");
        }
        var connectTimeout = map.TryGetValue("connectTimeout", out var ct) ? Duration(ct, allowZero: false) : null;
        if (!ok) return null;
        return new McpServerToolDefinition
        {
            Name = common.Name,
            Description = common.Description,
            Effect = common.Effect,
            Timeout = common.Timeout,
            OnInDoubt = common.OnInDoubt,
            InDoubtTimeout = common.InDoubtTimeout,
            Retry = common.Retry, CircuitBreaker = common.CircuitBreaker, MaxConcurrency = common.MaxConcurrency, MaxQueue = common.MaxQueue, StepTimeout = common.StepTimeout,
            Command = command,
            WorkingDirectory = command is null ? null : baseDirectory,
            Environment = env,
            Url = url,
            BearerTokenVariable = bearer,
            Include = include,
            Exclude = exclude,
            Effects = effects,
            Prefix = prefix,
            ConnectTimeout = connectTimeout,
        };
    }
}
