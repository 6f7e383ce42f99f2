using Xunit;
using static Bureau.Manifests.Tests.TestSupport;

namespace Bureau.Manifests.Tests;

/// <summary>The <c>workforce:</c> section: what it sets, FILE:LINE:COL diagnostics for what is wrong, and the schema agreeing.</summary>
public sealed class WorkforceManifestTests
{
    private static string Manifest(string workforce) => $"""
        models:
          m: {"{"} provider: scripted {"}"}
        agents:
          triage: {"{"} model: m {"}"}
          billing: {"{"} model: m {"}"}
        workforce:
        {workforce}
        """;

    [Fact]
    public void LoadText_Workforce_DefinesMembersWithSkillsAndLimits()
    {
        var yaml = Manifest("""
              board: desk
              members:
                triage: { skills: [triage, billing], concurrency: 3, delegate: true }
                billing:
                  skills: [billing]
            """);
        var result = Load(yaml);

        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        var w = result.Definitions!.Workforce;
        Assert.Equal("desk", w.Board);
        Assert.Equal(["triage", "billing"], w.Members["triage"].Skills);
        Assert.Equal(["billing"], w.Members["billing"].Skills);
        Assert.Equal((3, 1), (w.Members["triage"].Concurrency, w.Members["billing"].Concurrency));
        Assert.Equal((true, false), (w.Members["triage"].CanDelegate, w.Members["billing"].CanDelegate));
        Assert.Equal(["billing", "triage"], w.WithSkill("billing").Select(m => m.Name));
        Assert.Empty(ManifestSchemaTests.SchemaErrors(ManifestSchemaTests.YamlAsJson(yaml)));
    }

    [Theory]
    [InlineData("  members:\n    biling: { skills: [billing] }", 8, 5, "workforce member 'biling' is not an agent defined under 'agents'; did you mean 'billing'?")]
    [InlineData("  members:\n    billing: { concurrency: 2 }", 8, 5, "workforce member 'billing' is missing required key 'skills'")]
    [InlineData("  members:\n    billing: { skills: [] }", 8, 24, "workforce member 'billing' must list at least one skill")]
    [InlineData("  members:\n    billing: { skills: [refunds, refunds] }", 8, 34, "skill 'refunds' is listed twice")]
    [InlineData("  members:\n    billing: { skills: [\"two words\"] }", 8, 25, "skill 'two words' must be letters, digits")]
    [InlineData("  members:\n    billing: { skills: [billing], concurrency: 0 }", 8, 48, "'concurrency' must be between 1 and 10000, not 0")]
    [InlineData("  members:\n    billing: { skills: [billing], limit: 2 }", 8, 35, "unknown key 'limit'")]
    [InlineData("  board: desk", 6, 1, "'workforce' is missing required key 'members'")]
    public void LoadText_WorkforceMistake_IsReportedWithLineAndColumn(string workforce, int line, int column, string message)
    {
        Single(Load(Manifest(workforce)), line, column, message);
    }
}
