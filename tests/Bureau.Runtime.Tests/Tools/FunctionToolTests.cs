using System.Text.Json;
using Bureau.Tools;
using Microsoft.Extensions.AI;
using Xunit;
using static Bureau.Tests.Tools.ToolTestSupport;

namespace Bureau.Tests.Tools;

public sealed class FunctionToolTests
{
    private sealed record Balance(string Customer, decimal Amount);

    private static BureauTool Tool(AIFunction function, TimeSpan? timeout = null, string? schema = null, string? description = null) =>
        new ToolFactory().Create(new FunctionToolDefinition
        {
            Name = "fn",
            Function = function,
            Timeout = timeout,
            Description = description,
            Parameters = schema is null ? null : ParseJson(schema),
        });

    [Fact]
    public async Task InvokeAsync_BindsArguments_StringResultAsIs()
    {
        var tool = Tool(AIFunctionFactory.Create((string customer, int count) => $"{customer} has {count} tickets", "tickets"));

        var outcome = await tool.InvokeAsync(Invocation("fn", """{"customer":"ann","count":3}"""), TestContext.Current.CancellationToken);

        Assert.Equal(ToolOutcome.Success("ann has 3 tickets"), outcome);
    }

    [Fact]
    public async Task InvokeAsync_ObjectResult_IsJson()
    {
        var tool = Tool(AIFunctionFactory.Create((string customer) => new Balance(customer, 12.5m), "balance"));

        var outcome = await tool.InvokeAsync(Invocation("fn", """{"customer":"ann"}"""), TestContext.Current.CancellationToken);

        Assert.False(outcome.IsError);
        var json = JsonDocument.Parse(outcome.Content).RootElement;
        Assert.Equal(("ann", 12.5m), (json.GetProperty("customer").GetString(), json.GetProperty("amount").GetDecimal()));
    }

    [Fact]
    public async Task InvokeAsync_Throws_IsAToolError()
    {
        var tool = Tool(AIFunctionFactory.Create(string () => throw new InvalidOperationException("ledger is locked"), "boom"));

        var outcome = await tool.InvokeAsync(Invocation("fn"), TestContext.Current.CancellationToken);

        Assert.Equal(ToolOutcome.Error("tool 'fn' failed: ledger is locked", ToolFailure.Crash), outcome);   // it threw: a crash
    }

    [Fact]
    public async Task InvokeAsync_Timeout_CancelsTheFunctionAndIsAToolError()
    {
        var sawCancel = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var tool = Tool(AIFunctionFactory.Create(async (CancellationToken ct) =>
        {
            try { await Task.Delay(Timeout.Infinite, ct); }
            catch (OperationCanceledException) { sawCancel.SetResult(); throw; }
            return "never";
        }, "slow"), timeout: TimeSpan.FromMilliseconds(200));

        var outcome = await tool.InvokeAsync(Invocation("fn"), TestContext.Current.CancellationToken);

        Assert.Equal(ToolOutcome.Error("tool 'fn' timed out after 200ms", ToolFailure.Timeout), outcome);
        await sawCancel.Task.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
    }

    [Fact]
    public async Task InvokeAsync_FunctionIgnoringItsToken_StillTimesOut()
    {
        using var release = new ManualResetEventSlim();
        var tool = Tool(AIFunctionFactory.Create(async () =>
        {
            await Task.Run(() => release.Wait(TimeSpan.FromSeconds(30)));
            return "late";
        }, "stubborn"), timeout: TimeSpan.FromMilliseconds(200));

        var outcome = await tool.InvokeAsync(Invocation("fn"), TestContext.Current.CancellationToken);
        release.Set();

        Assert.Equal(ToolOutcome.Error("tool 'fn' timed out after 200ms", ToolFailure.Timeout), outcome);
    }

    [Fact]
    public async Task InvokeAsync_CallerCancels_Throws()
    {
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var tool = Tool(AIFunctionFactory.Create(async (CancellationToken ct) =>
        {
            started.SetResult();
            await Task.Delay(Timeout.Infinite, ct);
            return "never";
        }, "slow"));
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);

        var call = tool.InvokeAsync(Invocation("fn"), cts.Token);
        await started.Task.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
        cts.Cancel();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => call);
    }

    [Fact]
    public async Task InvokeAsync_FunctionSeesItsIdempotencyKeyInTheContext()
    {
        var tool = Tool(AIFunctionFactory.Create(() =>
        {
            var c = BureauToolContext.Current!;
            return $"{c.RunId}|{c.Step}|{c.IdempotencyKey}|{c.ToolName}";
        }, "ctx"));

        var outcome = await tool.InvokeAsync(Invocation("fn", runId: "r1", step: 12), TestContext.Current.CancellationToken);

        Assert.Equal(ToolOutcome.Success("r1|12|r1:12|fn"), outcome);
        Assert.Null(BureauToolContext.Current);
    }

    [Fact]
    public void ParametersSchema_DeclaredWins_ElseTheFunctionsOwn()
    {
        var function = AIFunctionFactory.Create((string customer) => customer, "lookup", "Looks a customer up");

        var inferred = Tool(function);
        var declared = Tool(function, schema: """{"type":"object","properties":{"customer":{"type":"string","minLength":3}}}""", description: "Find a customer");

        Assert.Equal("string", inferred.ParametersSchema.GetProperty("properties").GetProperty("customer").GetProperty("type").GetString());
        Assert.Equal(3, declared.ParametersSchema.GetProperty("properties").GetProperty("customer").GetProperty("minLength").GetInt32());
        Assert.Equal("Looks a customer up", ((AIFunctionDeclaration)inferred.ToDeclaration()).Description);
        Assert.Equal("Find a customer", ((AIFunctionDeclaration)declared.ToDeclaration()).Description);
        Assert.Equal("fn", ((AIFunctionDeclaration)declared.ToDeclaration()).Name);
    }
}
