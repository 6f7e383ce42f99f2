using Xunit;
using static Bureau.Manifests.Tests.TestSupport;

namespace Bureau.Manifests.Tests;

/// <summary>An agent's <c>maxConcurrentRuns</c>: how many of its runs execute at once.</summary>
public sealed class AgentConcurrencyManifestTests
{
    [Fact]
    public void LoadText_MaxConcurrentRuns_IsReadIntoTheAgent()
    {
        var result = Load("models:\n  m: { provider: scripted }\nagents:\n  triage:\n    model: m\n    maxConcurrentRuns: 2\n  other: { model: m }\n");
        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        Assert.Equal(2, result.Definitions!.Agents["triage"].MaxConcurrentRuns);
        Assert.Null(result.Definitions.Agents["other"].MaxConcurrentRuns);
        Assert.Equal(2, result.Definitions.Agents["triage"].WithTools([]).MaxConcurrentRuns); // copies keep it
    }

    [Theory]
    [InlineData("0", "'maxConcurrentRuns' must be between 1 and 100000, not 0")]
    [InlineData("-3", "'maxConcurrentRuns' must be between 1 and 100000, not -3")]
    [InlineData("100001", "'maxConcurrentRuns' must be between 1 and 100000, not 100001")]
    [InlineData("lots", "'maxConcurrentRuns' must be a whole number, not 'lots'")]
    public void LoadText_BadMaxConcurrentRuns_IsReportedWithFileLineAndField(string value, string message)
    {
        var yaml = $"models:\n  m: {{ provider: scripted }}\nagents:\n  triage:\n    model: m\n    maxConcurrentRuns: {value}\n";
        var d = Single(Load(yaml), 6, 24, message);
        Assert.StartsWith("bureau.yaml:6:24: error:", d.ToString());
        Assert.Contains("maxConcurrentRuns", d.Path);
        Assert.NotEmpty(ManifestSchemaTests.SchemaErrors(ManifestSchemaTests.YamlAsJson(yaml)));
    }

    [Fact]
    public void Schema_AcceptsMaxConcurrentRuns()
    {
        Assert.Empty(ManifestSchemaTests.SchemaErrors(ManifestSchemaTests.YamlAsJson("models:\n  m: { provider: scripted }\nagents:\n  a: { model: m, maxConcurrentRuns: 4 }\n")));
    }
}
