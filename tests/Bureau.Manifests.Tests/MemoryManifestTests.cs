using Xunit;
using static Bureau.Manifests.Tests.TestSupport;

namespace Bureau.Manifests.Tests;

/// <summary>An agent's <c>memory:</c>: what it sets, FILE:LINE:COL diagnostics for what is wrong, and the schema agreeing.</summary>
public sealed class MemoryManifestTests
{
    private static string Agent(string memory) => $"""
        models:
          m: {"{"} provider: scripted {"}"}
          small: {"{"} provider: scripted {"}"}
        agents:
          desk:
            model: m
            memory: {memory}
        """;

    [Fact]
    public void LoadText_Memory_ReachesTheAgent()
    {
        var yaml = Agent("{ scopes: [team, user], tools: [remember, recall], onConflict: append, team: support, tenant: acme, recallLimit: 8, window: { maxTokens: 4000, overflow: summarize, summaryModel: small } }");
        var result = Load(yaml);

        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        var m = result.Definitions!.Agents["desk"].Memory!;
        Assert.Equal(["team", "user"], m.Scopes);
        Assert.Equal(["remember", "recall"], m.Tools);
        Assert.Equal((MemoryConflictRule.Append, "support", "acme", 8), (m.OnConflict, m.Team, m.Tenant, m.RecallLimit));
        Assert.Equal((4000, WindowOverflow.Summarize, "small", "o200k_base"), (m.Window!.MaxTokens, m.Window.Overflow, m.Window.SummaryModel, m.Window.Tokenizer));
        Assert.Empty(ManifestSchemaTests.SchemaErrors(ManifestSchemaTests.YamlAsJson(yaml)));
    }

    [Fact]
    public void LoadText_EmptyMemory_EnablesTheDefaults_AndNoMemoryMeansNone()
    {
        var result = Load(Agent("{}"));
        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        var m = result.Definitions!.Agents["desk"].Memory!;
        Assert.Equal((4, 3, MemoryConflictRule.Reject, "default", 5), (m.Scopes.Count, m.Tools.Count, m.OnConflict, m.Tenant, m.RecallLimit));
        Assert.Null(m.Window);

        var windowOnly = Load(Agent("{ tools: [], window: { maxTokens: 2000 } }"));
        Assert.True(windowOnly.Success, string.Join("\n", windowOnly.Diagnostics));
        Assert.Empty(windowOnly.Definitions!.Agents["desk"].Memory!.Tools);
        Assert.Equal(WindowOverflow.DropOldest, windowOnly.Definitions.Agents["desk"].Memory!.Window!.Overflow);
        Assert.Empty(ManifestSchemaTests.SchemaErrors(ManifestSchemaTests.YamlAsJson(Agent("{ tools: [], window: { maxTokens: 2000 } }"))));

        var none = Load(Agent("{}").Replace("    memory: {}", ""));
        Assert.Null(none.Definitions!.Agents["desk"].Memory);
    }

    [Theory]
    [InlineData("{ scopes: [team, galaxy] }", 7, 30, "'scopes' must be one of agent, team, user, tenant, not 'galaxy'")]
    [InlineData("{ tools: [remember, remember] }", 7, 33, "memory tool 'remember' is listed twice")]
    [InlineData("{ onConflict: merge }", 7, 27, "'onConflict' must be one of reject, last-writer-wins, append, not 'merge'")]
    [InlineData("{ window: { overflow: summarize } }", 7, 15, "'window' is missing required key 'maxTokens'")]
    [InlineData("{ window: { maxTokens: 10 } }", 7, 36, "'maxTokens' must be between 64 and 10000000, not 10")]
    [InlineData("{ window: { maxTokens: 1000, overflow: summarize, summaryModel: big } }", 7, 77, "summaryModel 'big' is not defined under 'models'")]
    [InlineData("{ recall: 3 }", 7, 15, "unknown key 'recall'")]
    public void LoadText_BadMemory_ErrorNamesTheLineAndField(string memory, int line, int column, string text)
    {
        Single(Load(Agent(memory)), line, column, text);
        if (!memory.Contains("summaryModel") && !memory.Contains("remember, remember"))
            Assert.NotEmpty(ManifestSchemaTests.SchemaErrors(ManifestSchemaTests.YamlAsJson(Agent(memory))));
    }
}
