using Bureau.Manifests;
using Xunit;
using static Bureau.Manifests.Tests.TestSupport;

namespace Bureau.Manifests.Tests;

public sealed class EnvSubstitutionTests
{
    private static string? ModelId(string value, IReadOnlyDictionary<string, string?> env)
    {
        var result = Load($"models:\n  m:\n    provider: openai\n    endpoint: http://h/v1\n    model: {value}\n", env);
        return result.Success ? ((OpenAIModelDefinition)result.Definitions!.Models["m"]).Model : null;
    }

    [Fact]
    public void Apply_SetVariable_IsSubstituted()
    {
        Assert.Equal("gpt-x", ModelId("${MODEL}", Env(("MODEL", "gpt-x"))));
        Assert.Equal("a-gpt-x-b", ModelId("a-${MODEL}-b", Env(("MODEL", "gpt-x"))));
    }

    [Fact]
    public void Apply_Default_UsedWhenUnsetOrEmpty()
    {
        Assert.Equal("fallback", ModelId("${MODEL:-fallback}", NoEnvironment));
        Assert.Equal("fallback", ModelId("${MODEL:-fallback}", Env(("MODEL", ""))));
        Assert.Equal("set", ModelId("${MODEL:-fallback}", Env(("MODEL", "set"))));
    }

    [Fact]
    public void Apply_DoubleDollar_IsALiteralDollar()
    {
        Assert.Equal("cost$5${X}", ModelId("'cost$$5$${X}'", NoEnvironment));
        Assert.Equal("a$b", ModelId("a$b", NoEnvironment));
    }

    [Fact]
    public void Apply_MissingVariable_IsReportedAtTheScalar()
    {
        Single(Load("models:\n  m:\n    provider: openai\n    endpoint: http://h/v1\n    model: \"x-${NOPE}\"\n"), 5, 12,
            "environment variable 'NOPE' is not set (write ${NOPE:-default} to give a default)");
    }

    [Fact]
    public void Apply_EmptyValueWithoutDefault_IsSubstitutedAsEmpty()
    {
        Assert.Equal("x-", ModelId("x-${EMPTY}", Env(("EMPTY", ""))));
    }

    [Fact]
    public void Apply_Malformed_IsReported()
    {
        Single(Load("models:\n  m: { provider: openai, endpoint: 'http://h/v1', model: '${1BAD}' }\n"), 2, 58, "'${1BAD}' is not a valid variable reference");
        Single(Load("models:\n  m: { provider: openai, endpoint: 'http://h/v1', model: '${OPEN' }\n"), 2, 58, "unterminated '${'");
    }

    [Fact]
    public void Apply_TypedValues_AreParsedAfterSubstitution()
    {
        var result = Load("""
            models:
              m: { provider: scripted }
            agents:
              a:
                model: ${AGENT_MODEL:-m}
                budgets: { maxSteps: "${STEPS:-7}", maxWallTime: "${WALL}" }
            """, Env(("WALL", "3m")));
        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        var a = result.Definitions!.Agents["a"];
        Assert.Equal("m", a.Model);
        Assert.Equal(7, a.Budgets.MaxSteps);
        Assert.Equal(TimeSpan.FromMinutes(3), a.Budgets.MaxWallTime);
    }

    [Fact]
    public void Apply_UnknownModelAfterSubstitution_IsReported()
    {
        Single(Load("models:\n  m: { provider: scripted }\nagents:\n  a: { model: '${AGENT_MODEL:-x}' }\n"), 4, 15, "agent 'a' uses model 'x', which is not defined under 'models'");
    }

    [Theory]
    [InlineData("modle", "model")]
    [InlineData("instrutions", "instructions")]
    [InlineData("Tools", "tools")]
    [InlineData("xyz", null)]
    public void Suggestions_Closest_FindsLikelyTypos(string typo, string? expected)
    {
        Assert.Equal(expected, Suggestions.Closest(typo, ["model", "instructions", "description", "tools", "budgets", "loop"]));
    }
}
