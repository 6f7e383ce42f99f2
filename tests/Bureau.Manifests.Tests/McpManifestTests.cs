using Xunit;
using static Bureau.Manifests.Tests.TestSupport;

namespace Bureau.Manifests.Tests;

/// <summary><c>kind: mcp</c> entries: an MCP server over stdio or streamable HTTP.</summary>
public sealed class McpManifestTests
{
    [Fact]
    public void StdioServer_IsReadWithItsFiltersEffectsAndEnvironment()
    {
        var yaml = """
            tools:
              files:
                kind: mcp
                command: [node, server.js, /srv/data]
                env: { LOG_LEVEL: warn }
                exclude: [move_file]
                effects: { create_directory: idempotent, write_file: write }
                timeout: 20s
                retry: { maxAttempts: 2 }
            """;
        var result = Load(yaml);

        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        Assert.Empty(ManifestSchemaTests.SchemaErrors(ManifestSchemaTests.YamlAsJson(yaml)));
        var server = Assert.IsType<McpServerToolDefinition>(result.Definitions!.Tools["files"]);
        Assert.Equal(["node", "server.js", "/srv/data"], server.Command);
        Assert.Equal("warn", server.Environment["LOG_LEVEL"]);
        Assert.Equal(["move_file"], server.Exclude);
        Assert.Equal(ToolEffect.Idempotent, server.Effects["create_directory"]);
        Assert.Equal(ToolEffect.Write, server.Effects["write_file"]);
        Assert.Equal(ToolEffect.Read, server.Effect);
        Assert.Equal("files_", server.EffectivePrefix);
        Assert.Equal(TimeSpan.FromSeconds(20), server.Timeout);
        Assert.Equal(2, server.Retry!.MaxAttempts);
        Assert.Equal(Path.GetTempPath(), server.WorkingDirectory);
    }

    [Fact]
    public void HttpServer_IsReadWithTheNameOfItsTokenVariable()
    {
        var yaml = """
            tools:
              crm:
                kind: mcp
                url: https://mcp.example.com/mcp
                bearerTokenEnv: CRM_MCP_TOKEN
                include: [find_customer]
                prefix: ""
            """;
        var result = Load(yaml);

        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        Assert.Empty(ManifestSchemaTests.SchemaErrors(ManifestSchemaTests.YamlAsJson(yaml)));
        var server = Assert.IsType<McpServerToolDefinition>(result.Definitions!.Tools["crm"]);
        Assert.Equal(new Uri("https://mcp.example.com/mcp"), server.Url);
        Assert.Equal("CRM_MCP_TOKEN", server.BearerTokenVariable);
        Assert.Equal(["find_customer"], server.Include);
        Assert.Equal("", server.EffectivePrefix);
    }

    [Fact]
    public void BothCommandAndUrl_IsAnErrorAtTheUrl()
    {
        var result = Load("tools:\n  x:\n    kind: mcp\n    command: [node, s.js]\n    url: http://127.0.0.1:9/mcp\n");
        Single(result, 5, 5, "either by 'command' (stdio) or by 'url' (streamable HTTP), not both");
    }

    [Fact]
    public void NeitherCommandNorUrl_IsAnError()
    {
        var result = Load("tools:\n  x:\n    kind: mcp\n    include: [a]\n");
        Single(result, 2, 3, "an MCP server needs 'command'");
    }

    [Fact]
    public void TheTokenItselfInsteadOfAVariableName_IsRefused()
    {
        var result = Load("tools:\n  x:\n    kind: mcp\n    url: http://127.0.0.1:9/mcp\n    bearerTokenEnv: sk-live-1234\n");
        Single(result, 5, 21, "give the name of the variable holding the token, not the token");
    }

    [Fact]
    public void ParametersOnAnMcpServer_AreRefused_TheSchemasComeFromTheServer()
    {
        var result = Load("tools:\n  x:\n    kind: mcp\n    command: [s]\n    parameters: { type: object }\n");
        Assert.False(result.Success);
        Assert.Contains(result.Diagnostics, d => d.Message.Contains("parameters", StringComparison.Ordinal));
    }

    [Fact]
    public void AnUnknownEffect_IsAnError()
    {
        var result = Load("tools:\n  x:\n    kind: mcp\n    command: [s]\n    effects: { a: sometimes }\n");
        Assert.False(result.Success);
        Assert.Contains(result.Diagnostics, d => d.Message.Contains("must be one of read, idempotent, write", StringComparison.Ordinal));
    }
}
