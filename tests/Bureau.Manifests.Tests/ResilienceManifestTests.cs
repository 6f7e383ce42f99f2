using Xunit;
using static Bureau.Manifests.Tests.TestSupport;

namespace Bureau.Manifests.Tests;

/// <summary>The resilience keys of models, tools and budgets: what they set, and FILE:LINE:COL diagnostics for what is wrong.</summary>
public sealed class ResilienceManifestTests
{
    private const string Full = """
        models:
          main:
            provider: openai
            endpoint: http://127.0.0.1:8089/v1
            model: gpt-test
            maxRetries: 2
            retry: { maxAttempts: 4, delay: 2s, maxDelay: 20s, maxTotalTime: 1m, jitter: false }
            circuitBreaker: { failureRatio: 0.25, minimumThroughput: 4, samplingDuration: 10s, breakDuration: 1m }
            maxConcurrency: 8
            maxQueue: 100
            requestsPerMinute: 600
            tokensPerMinute: 90000
            maxRateLimitWait: 10s
            attemptTimeout: 20s
            stepTimeout: 3m
            fallback: [backup]
            price: { input: 0.4, output: 1.6 }
          backup:
            provider: scripted
            circuitBreaker: { enabled: false }
        tools:
          lookup:
            kind: http
            url: http://127.0.0.1:9000/lookup
            effect: read
            retry: { maxAttempts: 5 }
            maxConcurrency: 2
            maxQueue: 3
            stepTimeout: 45s
          send:
            kind: http
            url: http://127.0.0.1:9000/send
            effect: write
            retry: { maxAttempts: 3, onlyBefore: send }
        agents:
          desk:
            model: main
            tools: [lookup, send]
            budgets: { maxCost: 0.25 }
        """;

    [Fact]
    public void LoadText_ResilienceKeys_ReachTheDefinitions()
    {
        var result = Load(Full);

        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        var d = result.Definitions!;
        var main = d.Models["main"];
        Assert.Equal((4, TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(20), TimeSpan.FromMinutes(1), false),
            (main.Retry!.MaxAttempts, main.Retry.Delay, main.Retry.MaxDelay, main.Retry.MaxTotalTime, main.Retry.Jitter));
        Assert.Equal((0.25, 4, TimeSpan.FromSeconds(10), TimeSpan.FromMinutes(1)),
            (main.CircuitBreaker!.FailureRatio, main.CircuitBreaker.MinimumThroughput, main.CircuitBreaker.SamplingDuration, main.CircuitBreaker.BreakDuration));
        Assert.Equal((8, 100, 600, 90000L, TimeSpan.FromSeconds(10)), (main.MaxConcurrency, main.MaxQueue, main.RequestsPerMinute, main.TokensPerMinute, main.MaxRateLimitWait));
        Assert.Equal((TimeSpan.FromSeconds(20), TimeSpan.FromMinutes(3)), (main.AttemptTimeout, main.StepTimeout));
        Assert.Equal(["backup"], main.Fallback);
        Assert.Equal(new ModelPrice(0.4, 1.6), main.Price);
        Assert.False(d.Models["backup"].CircuitBreaker!.Enabled);
        var lookup = d.Tools["lookup"];
        Assert.Equal((5, 2, 3, TimeSpan.FromSeconds(45)), (lookup.Retry!.MaxAttempts, lookup.MaxConcurrency, lookup.MaxQueue, lookup.StepTimeout));
        Assert.Equal(RetryBoundary.Send, d.Tools["send"].Retry!.OnlyBefore);
        Assert.Equal(0.25, d.Agents["desk"].Budgets.MaxCost);
        Assert.Empty(ManifestSchemaTests.SchemaErrors(ManifestSchemaTests.YamlAsJson(Full)));
    }

    [Fact]
    public void LoadText_FallbackToAnUndefinedModel_ReportsItAtTheName()
    {
        Single(Load("""
            models:
              main: { provider: scripted, fallback: [backp] }
              backup: { provider: scripted }
            """), 2, 42, "model 'main' falls back to model 'backp', which is not defined under 'models'; did you mean 'backup'?");
    }

    [Fact]
    public void LoadText_FallbackToItself_IsReported()
    {
        Single(Load("""
            models:
              main:
                provider: scripted
                fallback:
                  - main
            """), 5, 9, "model 'main' cannot fall back to itself");
    }

    [Fact]
    public void LoadText_OnlyBeforeOnAReadTool_IsReported()
    {
        Single(Load("""
            tools:
              t:
                kind: http
                url: http://127.0.0.1:1/x
                retry:
                  onlyBefore: send
            """), 6, 7, "'onlyBefore' applies to write tools only; this tool is 'read'");
    }

    [Theory]
    [InlineData("retry: { maxAttempts: 0 }", "'maxAttempts' must be between 1 and 100, not 0")]
    [InlineData("circuitBreaker: { breakDuration: 100ms }", "'breakDuration' must be at least 500ms")]
    [InlineData("circuitBreaker: { minimumThroughput: 1 }", "'minimumThroughput' must be between 2 and 1000000, not 1")]
    [InlineData("price: { input: 1 }", "'price' is missing required key 'output'")]
    [InlineData("retry: { maxAtempts: 3 }", "unknown key 'maxAtempts' in 'retry'; did you mean 'maxAttempts'?")]
    public void LoadText_BadResilienceValue_IsReportedWithItsPosition(string line, string message)
    {
        var result = Load($"models:\n  m:\n    provider: scripted\n    {line}\n");
        var d = Assert.Single(result.Diagnostics);
        Assert.Equal(4, d.Line);
        Assert.Contains(message, d.Message);
        Assert.StartsWith("bureau.yaml:4:", d.ToString());
    }

    [Fact]
    public void LoadText_MaxCostNegative_IsReported()
    {
        var result = Load("models:\n  m: { provider: scripted }\nagents:\n  a: { model: m, budgets: { maxCost: -1 } }\n");
        var d = Assert.Single(result.Diagnostics);
        Assert.Equal((4, 38), (d.Line, d.Column));
        Assert.Contains("'maxCost' must be between 0 and", d.Message);
    }
}
