using Bureau.Governance;
using Xunit;

namespace Bureau.Tests.Governance;

/// <summary>The policy evaluator: first matching rule wins, each condition kind, defaults per effect class, the explanation.</summary>
public sealed class PolicyEvaluatorTests
{
    private static ArgumentCondition Arg(string text) => ArgumentCondition.Parse(text, out var error) ?? throw new InvalidOperationException(error);

    private static readonly PolicySet Refunds = new()
    {
        Rules =
        [
            new PolicyRule { Name = "no-deletes", When = new PolicyConditions { Tools = ["delete_account"] }, Action = PolicyAction.Deny, Reason = "accounts are closed by people" },
            new PolicyRule
            {
                Name = "big-refunds", Action = PolicyAction.RequireApproval, Reason = "refunds over 100 need a lead",
                When = new PolicyConditions { Tools = ["file_refund"], Arguments = [Arg("$.amount > 100")] },
                Approval = new ApprovalSpec { Levels = [new(["support-leads"], TimeSpan.FromMinutes(30)), new(["finance"], TimeSpan.FromHours(2))] },
            },
            new PolicyRule { Name = "small-refunds", When = new PolicyConditions { Tools = ["file_refund"] }, Action = PolicyAction.Allow },
        ],
        Defaults = new Dictionary<ToolEffect, PolicyAction> { [ToolEffect.Write] = PolicyAction.RequireApproval, [ToolEffect.Read] = PolicyAction.Allow },
    };

    private static PolicyContext Call(string tool, string args = "{}", ToolEffect effect = ToolEffect.Write, string agent = "triage") =>
        new(agent, tool, effect, args, Now: new DateTimeOffset(2026, 12, 6, 12, 0, 0, TimeSpan.Zero));

    [Fact]
    public void Rules_FirstMatchWins_WithTheReasonAndTheApprovalChain()
    {
        var big = PolicyEvaluator.Evaluate(Refunds, Call("file_refund", """{"amount":250,"order":7}"""));
        Assert.Equal((PolicyAction.RequireApproval, "big-refunds", "refunds over 100 need a lead"), (big.Action, big.Rule, big.Reason));
        Assert.Equal(2, big.Approval!.Levels.Count);
        Assert.Equal(["rule 'no-deletes' does not match: the tool is file_refund, not delete_account",
            "rule 'big-refunds' matches: tool file_refund; $.amount > 100 ($.amount is 250) -> require_approval"], big.Explanation);

        var small = PolicyEvaluator.Evaluate(Refunds, Call("file_refund", """{"amount":30}"""));
        Assert.Equal((PolicyAction.Allow, "small-refunds"), (small.Action, small.Rule));
        Assert.Contains("$.amount > 100 does not hold ($.amount is 30)", small.Explanation[1]);

        var delete = PolicyEvaluator.Evaluate(Refunds, Call("delete_account"));
        Assert.Equal((PolicyAction.Deny, "accounts are closed by people"), (delete.Action, delete.Reason));
    }

    [Fact]
    public void Defaults_PerEffectClass_WhenNoRuleMatches_AndNoPolicyAllowsEverything()
    {
        Assert.Equal((PolicyAction.RequireApproval, "default:write"), Pick(PolicyEvaluator.Evaluate(Refunds, Call("send_email"))));
        Assert.Equal((PolicyAction.Allow, "default:read"), Pick(PolicyEvaluator.Evaluate(Refunds, Call("lookup", effect: ToolEffect.Read))));
        Assert.Equal((PolicyAction.Allow, "default"), Pick(PolicyEvaluator.Evaluate(Refunds, Call("ping", effect: ToolEffect.Idempotent))));
        var none = PolicyEvaluator.Evaluate(new PolicySet(), Call("anything"));
        Assert.Equal((PolicyAction.Allow, "none"), Pick(none));
        Assert.Equal(["no policy: every call is allowed"], none.Explanation);
    }

    private static (PolicyAction, string) Pick(PolicyDecision d) => (d.Action, d.Rule);

    [Theory]
    [InlineData("$.amount > 100", """{"amount":100.5}""", true)]
    [InlineData("$.amount >= 100", """{"amount":100}""", true)]
    [InlineData("$.amount < 100", """{"amount":"99"}""", false)] // a string is not a number
    [InlineData("$.currency == 'EUR'", """{"currency":"EUR"}""", true)]
    [InlineData("$.currency != \"EUR\"", """{"currency":"USD"}""", true)]
    [InlineData("$.customer.tier == 'gold'", """{"customer":{"tier":"gold"}}""", true)]
    [InlineData("$.items[1].price > 10", """{"items":[{"price":1},{"price":20}]}""", true)]
    [InlineData("$.items[5].price > 10", """{"items":[]}""", false)]
    [InlineData("$.express == true", """{"express":true}""", true)]
    [InlineData("$.note exists", """{"note":null}""", false)]
    [InlineData("$.note exists", """{"note":"x"}""", true)]
    [InlineData("$.amount > 100", "not json", false)]
    public void ArgumentConditions_CompareNumbersStringsAndLiterals(string condition, string args, bool holds)
    {
        var set = new PolicySet { Rules = [new PolicyRule { Name = "r", When = new PolicyConditions { Arguments = [Arg(condition)] }, Action = PolicyAction.Deny }] };
        Assert.Equal(holds, PolicyEvaluator.Evaluate(set, Call("t", args)).Action == PolicyAction.Deny);
    }

    [Theory]
    [InlineData("amount > 100", "must start with a JSONPath")]
    [InlineData("$.amount", "needs a comparison")]
    [InlineData("$.amount > lots", "must be a number, a quoted string, true, false or null")]
    [InlineData("$.a..b == 1", "is not a JSONPath")]
    [InlineData("$.ok > true", "compares numbers or strings")]
    public void ArgumentConditions_Malformed_AreRefusedSayingWhy(string text, string error)
    {
        Assert.Null(ArgumentCondition.Parse(text, out var message));
        Assert.Contains(error, message);
    }

    [Fact]
    public void Conditions_AgentEffectTriggerConfidenceTokensAndTimeOfDay()
    {
        PolicyDecision With(PolicyConditions when, PolicyContext call) =>
            PolicyEvaluator.Evaluate(new PolicySet { Rules = [new PolicyRule { Name = "r", When = when, Action = PolicyAction.Deny }] }, call);

        Assert.Equal(PolicyAction.Deny, With(new() { Agents = ["triage"] }, Call("t")).Action);
        Assert.Equal(PolicyAction.Allow, With(new() { Agents = ["billing"] }, Call("t")).Action);
        Assert.Equal(PolicyAction.Deny, With(new() { Effects = [ToolEffect.Write] }, Call("t")).Action);
        Assert.Equal(PolicyAction.Deny, With(new() { Triggers = ["github"] }, Call("t") with { Actor = "trigger:github" }).Action);
        Assert.Contains("not started by a trigger", With(new() { Triggers = ["github"] }, Call("t") with { Actor = "cli:ada" }).Explanation[0]);
        Assert.Contains("stated no confidence", With(new() { Confidence = new("<", 0.7) }, Call("t")).Explanation[0]);
        Assert.Equal(PolicyAction.Deny, With(new() { Confidence = new("<", 0.7) }, Call("t") with { Confidence = 0.4 }).Action);
        Assert.Equal(PolicyAction.Deny, With(new() { Tokens = new(">", 1000) }, Call("t") with { Tokens = 5000 }).Action);
        Assert.Equal(PolicyAction.Deny, With(new() { TimeOfDay = (new TimeOnly(9, 0), new TimeOnly(17, 0)) }, Call("t")).Action); // 12:00 UTC
        Assert.Equal(PolicyAction.Allow, With(new() { TimeOfDay = (new TimeOnly(22, 0), new TimeOnly(6, 0)) }, Call("t")).Action);
        Assert.Equal(PolicyAction.Deny, With(new() { TimeOfDay = (new TimeOnly(22, 0), new TimeOnly(6, 0)) }, Call("t") with { Now = new DateTimeOffset(2026, 12, 6, 23, 30, 0, TimeSpan.Zero) }).Action);
    }

    [Fact]
    public void Conditions_TheRunsSpend_MatchesAboveTheThreshold_NotBelow_NotWhenUnknown()
    {
        var policies = new PolicySet
        {
            Rules =
            [
                new PolicyRule
                {
                    Name = "expensive-runs", When = new PolicyConditions { Cost = new(">", 0.50) }, Action = PolicyAction.RequireApproval,
                    Reason = "this run has spent a lot already", Approval = new ApprovalSpec { Levels = [new(["ops"], null)] },
                },
            ],
        };

        var spent = PolicyEvaluator.Evaluate(policies, Call("file_refund") with { Cost = 0.75m });
        Assert.Equal((PolicyAction.RequireApproval, "expensive-runs"), (spent.Action, spent.Rule));
        Assert.Equal(["rule 'expensive-runs' matches: cost 0.75 > 0.5 -> require_approval"], spent.Explanation);

        var cheap = PolicyEvaluator.Evaluate(policies, Call("file_refund") with { Cost = 0.20m });
        Assert.Equal(PolicyAction.Allow, cheap.Action);
        Assert.Equal("rule 'expensive-runs' does not match: the run has cost 0.20, not > 0.5", cheap.Explanation[0]);

        var boundary = PolicyEvaluator.Evaluate(policies, Call("file_refund") with { Cost = 0.50m });
        Assert.Equal(PolicyAction.Allow, boundary.Action); // > is strict

        var unpriced = PolicyEvaluator.Evaluate(policies, Call("file_refund")); // models without prices: no cost
        Assert.Equal(PolicyAction.Allow, unpriced.Action);
        Assert.Equal("rule 'expensive-runs' does not match: the run's cost is unknown (no prices)", unpriced.Explanation[0]);
    }
}
