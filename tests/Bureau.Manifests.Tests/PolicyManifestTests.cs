using Xunit;
using static Bureau.Manifests.Tests.TestSupport;

namespace Bureau.Manifests.Tests;

/// <summary>The <c>policies:</c> section: rules, conditions, approvals with escalation, and the errors at their line and column.</summary>
public sealed class PolicyManifestTests
{
    private const string Base = """
        models:
          m: { provider: scripted }
        tools:
          refund: { kind: process, command: [x], effect: write }
          lookup: { kind: process, command: [x], effect: read }
        agents:
          triage: { model: m, tools: [refund, lookup] }

        """;

    [Fact]
    public void Policies_RulesDefaultsAndApprovals_ReadIntoDefinitions()
    {
        var result = Load(Base + """
            policies:
              defaults: { write: require_approval, read: allow }
              approval: { approvers: [ops], timeout: 1h }
              rules:
                - name: big
                  when: { tool: refund, agent: triage, args: ["$.amount > 100", "$.currency == 'EUR'"], confidence: "< 0.8", time: "09:00-17:00" }
                  action: require_approval
                  reason: big refunds need a lead
                  approval:
                    approvers: [support-leads]
                    timeout: 30m
                    escalate: [ { approvers: [finance], timeout: 90m } ]
                    onTimeout: fail
                    editableArgs: true
                    required: 2
                - name: no-night-lookups
                  when: { effect: read, time: "22:00-06:00", trigger: [nightly] }
                  action: deny
            """);
        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        var p = result.Definitions!.Policies;
        Assert.Equal(PolicyAction.RequireApproval, p.Defaults[ToolEffect.Write]);
        Assert.Equal(["ops"], p.DefaultApproval.Levels[0].Approvers);
        var big = p.Rules[0];
        Assert.Equal(("big", PolicyAction.RequireApproval, "big refunds need a lead"), (big.Name, big.Action, big.Reason));
        Assert.Equal(["$.amount > 100", "$.currency == 'EUR'"], big.When.Arguments.Select(a => a.Text));
        Assert.Equal(new NumberCondition("<", 0.8), big.When.Confidence);
        Assert.Equal(2, big.Approval.Levels.Count);
        Assert.Equal((TimeSpan.FromMinutes(90), ApprovalTimeoutAction.Fail, true, 2),
            (big.Approval.Levels[1].Timeout!.Value, big.Approval.OnTimeout, big.Approval.EditableArguments, big.Approval.Required));
        Assert.Equal([ToolEffect.Read], p.Rules[1].When.Effects!);
        Assert.Equal(["nightly"], p.Rules[1].When.Triggers!);
    }

    [Fact]
    public void Policies_CostAndTokensConditions_ReadIntoDefinitions_AMalformedCostIsAnErrorAtItsLine()
    {
        var result = Load(Base + """
            policies:
              rules:
                - name: pricey
                  when: { cost: "> 0.50", tokens: ">= 20000" }
                  action: deny
                  reason: this run has spent enough
            """);
        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        var when = Assert.Single(result.Definitions!.Policies.Rules).When;
        Assert.Equal((new NumberCondition(">", 0.5), new NumberCondition(">=", 20000)), (when.Cost, when.Tokens));

        Single(Load(Base + "policies:\n  rules:\n    - { name: r, when: { cost: \"lots\" }, action: deny }\n"), 10, 32, "'cost' must be a comparison such as '< 0.7' or '>= 1000', not 'lots'");
    }

    [Fact]
    public void Policies_UnknownToolInACondition_ErrorWithADidYouMean()
    {
        var d = Single(Load(Base + "policies:\n  rules:\n    - { name: r, when: { tool: refnd }, action: deny }\n"), 10, 32, "'when' names tool 'refnd', which is not defined");
        Assert.Contains("did you mean 'refund'?", d.Message);
    }

    [Fact]
    public void Policies_MalformedArgumentCondition_SaysWhatIsWrong()
    {
        Single(Load(Base + "policies:\n  rules:\n    - { name: r, when: { args: \"amount > 100\" }, action: deny }\n"), 10, 32, "must start with a JSONPath");
    }

    [Fact]
    public void Policies_ApprovalOnADenyRule_IsAnError()
    {
        Single(Load(Base + "policies:\n  rules:\n    - { name: r, action: deny, approval: { approvers: [x] } }\n"), 10, 32, "'approval' applies to action require_approval, not deny");
    }

    [Fact]
    public void Policies_ALevelWithoutTimeoutBeforeAnEscalation_IsAnError()
    {
        var result = Load(Base + "policies:\n  rules:\n    - name: r\n      action: require_approval\n      approval: { approvers: [a], escalate: [ { approvers: [b] } ] }\n");
        Assert.False(result.Success);
        Assert.Contains(result.Diagnostics, d => d.Message.Contains("approval level 1 has no timeout", StringComparison.Ordinal));
    }

    [Fact]
    public void Policies_DuplicateRuleNames_AndUnknownAction_AreErrors()
    {
        var result = Load(Base + "policies:\n  rules:\n    - { name: r, action: deny }\n    - { name: r, action: block }\n");
        Assert.False(result.Success);
        Assert.Contains(result.Diagnostics, d => d.Message.Contains("policy rule 'r' is defined twice", StringComparison.Ordinal));
        Assert.Contains(result.Diagnostics, d => d.Message.Contains("'action' must be one of allow, deny, require_approval, not 'block'", StringComparison.Ordinal));
    }

    [Fact]
    public void Notify_SlackWithSigningSecretAndUsers_ReadIntoDefinitions()
    {
        var result = Load(Base + """
            policies:
              notify:
                - kind: slack
                  url: https://hooks.slack.com/services/T0/B0/x
                  signingSecret: s3cret
                  users:
                    U024BE7LH: grace
                    U0G9QF9C6: { name: ada, roles: [support-leads, finance] }
            """);
        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        var slack = Assert.Single(result.Definitions!.Policies.Notify);
        Assert.Equal(("slack", "s3cret"), (slack.Kind, slack.SigningSecret));
        Assert.Equal(("grace", 0), (slack.Users["U024BE7LH"].Name, slack.Users["U024BE7LH"].Roles.Count));
        Assert.Equal("ada", slack.Users["U0G9QF9C6"].Name);
        Assert.Equal(["support-leads", "finance"], slack.Users["U0G9QF9C6"].Roles);
    }

    [Fact]
    public void Notify_IncludeArguments_IsOffUnlessSaid_AndMustBeABoolean()
    {
        var result = Load(Base + """
            policies:
              notify:
                - { kind: webhook, url: "https://ops.example.com/a", includeArguments: true }
                - { kind: webhook, url: "https://ops.example.com/b" }
            """);
        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        Assert.Equal([true, false], result.Definitions!.Policies.Notify.Select(n => n.IncludeArguments));
        var bad = Load(Base + "policies:\n  notify:\n    - { kind: webhook, url: \"https://ops.example.com/x\", includeArguments: sometimes }\n");
        Assert.Contains(bad.Diagnostics, d => d.Line == 10 && d.Message.Contains("includeArguments", StringComparison.Ordinal));
    }

    [Fact]
    public void Notify_UsersWithoutSigningSecret_SigningSecretOnAWebhook_BadUserId_AreErrorsAtTheirLines()
    {
        Single(Load(Base + "policies:\n  notify:\n    - { kind: slack, url: \"https://hooks.slack.com/x\", users: { U1: a } }\n"), 10, 56, "'users' needs 'signingSecret'");
        Single(Load(Base + "policies:\n  notify:\n    - { kind: webhook, url: \"https://ops.example.com/x\", signingSecret: s }\n"), 10, 58, "'signingSecret' applies to slack targets");
        var bad = Load(Base + "policies:\n  notify:\n    - kind: slack\n      url: https://hooks.slack.com/x\n      signingSecret: s\n      users: { \"grace@example.com\": grace }\n");
        Assert.Contains(bad.Diagnostics, d => d.Line == 13 && d.Message.Contains("'grace@example.com' is not a Slack user id", StringComparison.Ordinal));
    }

    [Fact]
    public void SupportDeskSample_BigRefundsNeedALead_EscalateToFinance_RejectedAfterTwoHours()
    {
        var result = Bureau.Manifests.ManifestLoader.LoadFile(Path.Combine(RepoRoot, "samples", "support-desk", "bureau.yaml"));
        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        var rule = Assert.Single(result.Definitions!.Policies.Rules);
        Assert.Equal(["support-leads"], rule.Approval.Levels[0].Approvers);
        Assert.Equal(["finance"], rule.Approval.Levels[1].Approvers);
        Assert.Equal(TimeSpan.FromHours(2), rule.Approval.Levels.Sum(l => l.Timeout!.Value.Ticks) is var t ? TimeSpan.FromTicks(t) : default);
        Assert.Equal(ApprovalTimeoutAction.Reject, rule.Approval.OnTimeout);
    }
}

/// <summary>Compensation and rollback keys.</summary>
public sealed class CompensationManifestTests
{
    [Fact]
    public void Compensate_NamesAToolThatUndoesAWrite_RollbackOnFailureOnTheAgent()
    {
        var result = Load("""
            models: { m: { provider: scripted } }
            tools:
              refund: { kind: process, command: [x], effect: write, compensate: cancel_refund }
              cancel_refund: { kind: process, command: [y], effect: write }
            agents:
              a: { model: m, tools: [refund], rollbackOnFailure: true }
            """);
        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        Assert.Equal("cancel_refund", result.Definitions!.Tools["refund"].Compensate);
        Assert.True(result.Definitions.Agents["a"].RollbackOnFailure);
    }

    [Fact]
    public void Compensate_UnknownTool_ErrorWithADidYouMean()
    {
        var d = Single(Load("""
            models: { m: { provider: scripted } }
            tools:
              refund: { kind: process, command: [x], effect: write, compensate: cancel_refnd }
              cancel_refund: { kind: process, command: [y], effect: write }
            """), 3, 69, "tool 'refund' is compensated by 'cancel_refnd', which is not defined");
        Assert.Contains("did you mean 'cancel_refund'?", d.Message);
    }

    [Fact]
    public void Compensate_OnAReadTool_IsAnError()
    {
        Single(Load("""
            tools:
              lookup: { kind: process, command: [x], compensate: undo }
            """), 2, 42, "'compensate' applies to write tools");
    }
}
