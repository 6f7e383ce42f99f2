using System.Diagnostics;
using Bureau.Tests.Support;
using Microsoft.Extensions.AI;
using Xunit;

namespace Bureau.Tests.Resilience;

[CollectionDefinition(nameof(CascadeTests), DisableParallelization = true)]
public sealed class CascadeCollection;

/// <summary>
/// The cascade a hanging tool must not cause. Not run beside other tests: it reads the process's thread pool and managed heap,
/// which other tests' engines would move too.
/// </summary>
[Collection(nameof(CascadeTests))]
public sealed class CascadeTests(ITestOutputHelper output) : IAsyncDisposable
{
    private readonly EngineFixture _f = new();

    public ValueTask DisposeAsync() => _f.DisposeAsync();

    private static IEnumerable<JournalEntry> Entries(IReadOnlyList<JournalRecord> journal) => journal.Select(r => r.Entry);

    private void AddTool(string name, Func<CancellationToken, Task<string>> body, RetrySettings? retry = null, TimeSpan? timeout = null, CircuitBreakerSettings? breaker = null) =>
        _f.Definitions.Add(new FunctionToolDefinition
        {
            Name = name,
            Effect = ToolEffect.Read,
            Retry = retry,
            Timeout = timeout,
            CircuitBreaker = breaker,
            Parameters = System.Text.Json.JsonDocument.Parse("""{"type":"object","properties":{"key":{"type":"string"}}}""").RootElement.Clone(),
            Function = AIFunctionFactory.Create((string key, CancellationToken ct) => body(ct), name),
        });

    [Fact]
    public async Task Cascade_OneToolHangsFor200Runs_OthersFinishAndTheHangingOnesFailFastOnceTheBreakerOpens()
    {
        const int Runs = 200, MinimumThroughput = 5;
        var hangCalls = 0;
        _f.MaxConcurrentRuns = 16;
        _f.UseModel((msgs, turn) =>
        {
            if (turn > 1) return FakeModel.Text("result: " + FakeModel.LastToolResult(msgs));
            var input = msgs.First(m => m.Role == ChatRole.User).Text;
            return FakeModel.Call(input.StartsWith("hang", StringComparison.Ordinal) ? "hang" : "quick", """{"key":"k"}""");
        });
        AddTool("hang", async ct =>
        {
            Interlocked.Increment(ref hangCalls);
            await Task.Delay(Timeout.Infinite, ct);
            return "never";
        }, timeout: TimeSpan.FromMilliseconds(250), retry: new RetrySettings { MaxAttempts = 1 },
            breaker: new CircuitBreakerSettings { MinimumThroughput = MinimumThroughput, FailureRatio = 0.5, BreakDuration = TimeSpan.FromMinutes(5) });
        AddTool("quick", _ => Task.FromResult("fine"));
        _f.AddAgent(tools: ["hang", "quick"]);
        var engine = await _f.StartAsync();

        // The baseline: the quick runs alone, on the same engine, before anything hangs.
        var baseline = new List<double>();
        foreach (var id in await Task.WhenAll(Enumerable.Range(0, Runs / 2).Select(async i => (await engine.SubmitAsync(new RunRequest("a", "quick warm " + i))).Run.Id)))
        {
            await EngineFixture.WaitAsync(engine, id, 120);
            baseline.Add(ActiveMs(await engine.ReadJournalAsync(id)));
        }
        baseline.Sort();

        GC.Collect();
        GC.WaitForPendingFinalizers();
        var memoryBefore = GC.GetTotalMemory(forceFullCollection: true);
        var threadsBefore = ThreadPool.ThreadCount;
        var wall = Stopwatch.StartNew();
        var maxThreads = threadsBefore;
        var ids = new List<(string Id, bool Hangs)>();
        for (var i = 0; i < Runs; i++)
        {
            var hangs = i % 2 == 0;
            ids.Add(((await engine.SubmitAsync(new RunRequest("a", (hangs ? "hang " : "quick ") + i))).Run.Id, hangs));
        }
        var runs = new List<(RunRecord Run, bool Hangs, IReadOnlyList<JournalRecord> Journal)>();
        foreach (var (id, hangs) in ids)
        {
            var run = await EngineFixture.WaitAsync(engine, id, 120);
            maxThreads = Math.Max(maxThreads, ThreadPool.ThreadCount);
            runs.Add((run, hangs, await engine.ReadJournalAsync(id)));
        }
        wall.Stop();
        GC.Collect();
        GC.WaitForPendingFinalizers();
        var memoryAfter = GC.GetTotalMemory(forceFullCollection: true);

        Assert.All(runs, r => Assert.Equal(RunStatus.Succeeded, r.Run.Status));
        Assert.All(runs.Where(r => !r.Hangs), r => Assert.Equal("result: fine", r.Run.Output));
        var hanging = runs.Where(r => r.Hangs).Select(r => Entries(r.Journal).OfType<ToolCompleted>().Single()).ToList();
        Assert.All(hanging, t => Assert.True(t.IsError));
        // Only the calls made before the breaker opened (its minimum throughput, plus those already in flight) reached the tool.
        Assert.InRange(hangCalls, MinimumThroughput, MinimumThroughput + _f.MaxConcurrentRuns);
        var failedFast = hanging.Count(t => t.Content.Contains("tool 'hang' is unavailable: its circuit breaker is open", StringComparison.Ordinal));
        Assert.Equal(Runs / 2 - hangCalls, failedFast);
        Assert.All(hanging.Where(t => t.Content.Contains("circuit breaker", StringComparison.Ordinal)), t => Assert.Contains("tried again at", t.Content));
        // Flat: no thread per hanging call (a blocking design would need one per in-flight call), no memory kept per run.
        Assert.True(maxThreads < threadsBefore + 32, $"the thread pool grew from {threadsBefore} to {maxThreads} threads");
        // The managed heap after a full collection: the runs (their journals are in the store) and the hanging calls given up on
        // keep nothing alive. Generous (measured: under 1 MiB for the 200 runs): 32 MiB is about 160 KiB kept per run.
        const long MaxHeapGrowth = 32L * 1024 * 1024;
        Assert.True(memoryAfter - memoryBefore < MaxHeapGrowth,
            $"the managed heap grew by {(memoryAfter - memoryBefore) / 1024} KiB over {Runs} runs ({memoryBefore / 1024} KiB -> {memoryAfter / 1024} KiB)");

        var quick = runs.Where(r => !r.Hangs).Select(r => ActiveMs(r.Journal)).Order().ToList();
        var fastFailed = runs.Where(r => r.Hangs && Entries(r.Journal).OfType<ToolCompleted>().Single().Content.Contains("circuit breaker", StringComparison.Ordinal))
            .Select(r => ActiveMs(r.Journal)).Order().ToList();
        output.WriteLine($"cascade: {Runs} runs ({Runs / 2} need the hanging tool, timeout 250ms) in {wall.Elapsed.TotalSeconds:0.00}s with {_f.MaxConcurrentRuns} run slots; " +
            $"hanging tool reached {hangCalls} times, {failedFast} calls failed fast; active time per run (first step to end): " +
            $"quick runs alone p50 {P(baseline, 0.5):0.0}ms p95 {P(baseline, 0.95):0.0}ms, quick runs beside the hanging ones p50 {P(quick, 0.5):0.0}ms p95 {P(quick, 0.95):0.0}ms, " +
            $"failed-fast runs p50 {P(fastFailed, 0.5):0.0}ms; thread pool {threadsBefore} -> max {maxThreads} threads; managed heap {memoryBefore / 1024} KiB -> {memoryAfter / 1024} KiB");
    }

    /// <summary>From the run's first step after <c>run.started</c> to its end: its time in the queue excluded.</summary>
    private static double ActiveMs(IReadOnlyList<JournalRecord> journal) => (journal[^1].At - journal[1].At).TotalMilliseconds;

    private static double P(List<double> sorted, double q) => sorted.Count == 0 ? double.NaN : sorted[Math.Min(sorted.Count - 1, (int)(sorted.Count * q))];
}
