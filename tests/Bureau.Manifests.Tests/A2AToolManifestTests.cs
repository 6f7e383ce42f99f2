using Xunit;
using static Bureau.Manifests.Tests.TestSupport;

namespace Bureau.Manifests.Tests;

/// <summary>Tools of <c>kind: a2a</c>: a remote A2A agent called as a tool, its effect declared.</summary>
public sealed class A2AToolManifestTests
{
    private const string Valid = """
        models:
          main: { provider: scripted }
        tools:
          ask-billing:
            kind: a2a
            url: https://agents.example.com/a2a/agents/billing
            effect: idempotent
            timeout: 2m
            headers: { Authorization: "Bearer bk_abc_def" }
            maxResultChars: 1000
        agents:
          desk: { model: main, tools: [ask-billing] }
        """;

    [Fact]
    public void A2ATool_ReadsUrlEffectHeadersAndLimits()
    {
        var result = Load(Valid);

        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        var tool = Assert.IsType<A2AToolDefinition>(result.Definitions!.Tools["ask-billing"]);
        Assert.Equal(("a2a", "https://agents.example.com/a2a/agents/billing", ToolEffect.Idempotent), (tool.Kind, tool.Url.ToString(), tool.Effect));
        Assert.Equal(("Bearer bk_abc_def", 1000, TimeSpan.FromMinutes(2)), (tool.Headers["Authorization"], tool.MaxResultChars, tool.Timeout));
        Assert.Contains("message", tool.Parameters!.Value.GetRawText()); // the model gives A2A's message
        Assert.Empty(ManifestSchemaTests.SchemaErrors(ManifestSchemaTests.YamlAsJson(Valid))); // and the published schema agrees
    }

    [Fact]
    public void A2ATool_WithoutEffect_IsAnErrorNamingIt()
    {
        var result = Load(Valid.Replace("    effect: idempotent\n", "", StringComparison.Ordinal));

        Assert.False(result.Success);
        var d = Assert.Single(result.Diagnostics);
        Assert.Contains("effect", d.Message);
        Assert.NotEmpty(ManifestSchemaTests.SchemaErrors(ManifestSchemaTests.YamlAsJson(Valid.Replace("    effect: idempotent\n", "", StringComparison.Ordinal))));
    }

    [Fact]
    public void A2ATool_WithParametersOrAMethod_IsAnError()
    {
        var withParameters = Load(Valid.Replace("    maxResultChars: 1000\n", "    maxResultChars: 1000\n    parameters: { type: object }\n", StringComparison.Ordinal));
        Assert.Contains(withParameters.Diagnostics, d => d.Message.Contains("parameters", StringComparison.Ordinal));

        var withMethod = Load(Valid.Replace("    maxResultChars: 1000\n", "    maxResultChars: 1000\n    method: GET\n", StringComparison.Ordinal));
        Assert.Contains(withMethod.Diagnostics, d => d.Message.Contains("method", StringComparison.Ordinal) && d.Message.Contains("http", StringComparison.Ordinal));
    }
}
