using Xunit;
using static Bureau.Manifests.Tests.TestSupport;

namespace Bureau.Manifests.Tests;

/// <summary>Triggers that target the workforce (<c>workforce: { skill }</c> in place of <c>agent:</c>): what they read into, and each mistake at its line and column.</summary>
public sealed class WorkforceTriggerManifestTests
{
    private const string Team = """
        models:
          m: { provider: scripted }
        agents:
          triage: { model: m }
          billing: { model: m }
        workforce:
          members:
            triage: { skills: [triage] }
            billing: { skills: [billing, refunds] }
        triggers:

        """;

    [Fact]
    public void WorkforceTarget_FixedOrMappedSkill_ReadsIntoDefinitions_AndTheSchemaAgrees()
    {
        var yaml = Team + """
              invoices: { kind: webhook, source: standard, secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw, workforce: { skill: billing }, input: "{{$.data.text}}" }
              tickets: { kind: webhook, source: hmac, secret: k, workforce: { skill: "{{$.team}}" } }
              nightly: { kind: schedule, every: 1h, workforce: { skill: refunds }, input: "reconcile {{$.tick}}" }
              escalated: { kind: topic, topic: ticket.escalated, agent: triage }
            """;
        var result = Load(yaml);

        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        var t = result.Definitions!.Triggers;
        Assert.Equal(("billing", ""), (t["invoices"].Workforce!.Skill, t["invoices"].Agent));
        Assert.Equal("{{$.team}}", t["tickets"].Workforce!.Skill);
        var nightly = Assert.IsType<ScheduleTriggerDefinition>(t["nightly"]);
        Assert.Equal(("refunds", "reconcile {{$.tick}}"), (nightly.Workforce!.Skill, nightly.Input));
        Assert.Null(t["escalated"].Workforce);
        Assert.Equal("triage", t["escalated"].Agent);
        Assert.Empty(ManifestSchemaTests.SchemaErrors(ManifestSchemaTests.YamlAsJson(yaml)));
    }

    [Theory]
    [InlineData("  crm: { kind: webhook, source: hmac, secret: k, agent: triage, workforce: { skill: billing } }", 65, "names both 'agent' and 'workforce'; keep one")]
    [InlineData("  crm: { kind: webhook, source: hmac, secret: k, workforce: { skill: biling } }", 70, "trigger 'crm' targets skill 'biling', which no workforce member has; did you mean 'billing'?")]
    [InlineData("  crm: { kind: webhook, source: hmac, secret: k, priority: 5, workforce: { skill: billing } }", 50, "'priority' applies to runs a trigger starts")]
    [InlineData("  tick: { kind: schedule, every: 1m, overlap: allow, workforce: { skill: billing } }", 38, "'overlap' applies to a schedule's runs")]
    [InlineData("  crm: { kind: webhook, source: hmac, secret: k, workforce: { skill: \"{{ issue }}\" } }", 70, "'workforce.skill' placeholder '{{ issue }}' is not a path")]
    [InlineData("  crm: { kind: webhook, source: hmac, secret: k, workforce: { skill: \"two words\" } }", 70, "skill 'two words' must be letters, digits")]
    [InlineData("  crm: { kind: webhook, source: hmac, secret: k, workforce: { skill: billing, agent: triage } }", 79, "unknown key 'agent' in trigger 'crm': 'workforce'")]
    [InlineData("  crm: { kind: webhook, source: hmac, secret: k }", 3, "trigger 'crm' is missing required key 'agent'")]
    public void WorkforceTargetMistake_IsReportedWithLineAndColumn(string trigger, int column, string message)
    {
        Single(Load(Team + trigger), 11, column, message);
    }

    [Fact]
    public void WorkforceTarget_WithoutAWorkforce_IsReportedAtTheSkill()
    {
        var result = Load("""
            models:
              m: { provider: scripted }
            agents:
              triage: { model: m }
            triggers:
              crm: { kind: webhook, source: hmac, secret: k, workforce: { skill: billing } }
            """);
        Single(result, 6, 70, "trigger 'crm' targets the workforce's skill 'billing', but no workforce member is defined");
    }
}
