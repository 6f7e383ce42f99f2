using Xunit;
using static Bureau.Manifests.Tests.TestSupport;

namespace Bureau.Manifests.Tests;

/// <summary>An agent's <c>retention:</c>: what it sets, FILE:LINE:COL diagnostics for what is wrong, and the schema agreeing.</summary>
public sealed class RetentionManifestTests
{
    private static string Agent(string retention) => $"""
        models:
          m: {"{"} provider: scripted {"}"}
        agents:
          desk:
            model: m
            retention: {retention}
        """;

    [Fact]
    public void LoadText_Retention_ReachesTheAgent()
    {
        var result = Load(Agent("{ keepDays: 30, keepRuns: 1000, keepFailedDays: 90, exportTo: /var/lib/bureau/archive }"));

        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        var r = result.Definitions!.Agents["desk"].Retention!;
        Assert.Equal((30, 1000, 90, "/var/lib/bureau/archive"), (r.KeepDays, r.KeepRuns, r.KeepFailedDays, r.ExportTo));
        Assert.Empty(ManifestSchemaTests.SchemaErrors(ManifestSchemaTests.YamlAsJson(Agent("{ keepDays: 30, keepRuns: 1000, keepFailedDays: 90, exportTo: out }"))));
    }

    [Fact]
    public void LoadText_NoRetention_KeepsEveryRun()
    {
        var result = Load(Agent("{ keepRuns: 5 }").Replace("    retention: { keepRuns: 5 }", ""));
        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        Assert.Null(result.Definitions!.Agents["desk"].Retention);
    }

    [Theory]
    [InlineData("{ keepDays: 0 }", 6, 28, "'keepDays' must be between 1 and 36500, not 0")]
    [InlineData("{ keepRuns: many }", 6, 28, "'keepRuns' must be a whole number, not 'many'")]
    [InlineData("{ keepDays: 30, keepFailedDays: 7 }", 6, 48, "'keepFailedDays' (7) must be at least 'keepDays' (30)")]
    [InlineData("{ keepDay: 30 }", 6, 18, "keepDay")]
    [InlineData("{}", 6, 5, "'retention' needs keepDays, keepRuns or keepFailedDays")]
    public void LoadText_BadRetention_ErrorNamesTheLineAndField(string retention, int line, int column, string text)
    {
        Single(Load(Agent(retention)), line, column, text);
        if (retention != "{ keepDays: 30, keepFailedDays: 7 }")
            Assert.NotEmpty(ManifestSchemaTests.SchemaErrors(ManifestSchemaTests.YamlAsJson(Agent(retention))));
    }
}
