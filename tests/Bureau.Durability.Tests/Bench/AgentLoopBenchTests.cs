using System.Text.Json;
using Xunit;

namespace Bureau.Durability.Tests.Bench;

/// <summary>
/// <c>bureau bench agent-loop</c> reports what shared/workloads/agent-loop.md asks for, for Bureau and the floor beside it
/// (no timing asserted; figures in docs/performance.md).
/// </summary>
public sealed class AgentLoopBenchTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bureau-agent-loop-bench", Guid.NewGuid().ToString("n"));

    public AgentLoopBenchTests() => Directory.CreateDirectory(_dir);

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    [Fact]
    public async Task AgentLoop_SmallRun_WithWarmUp_ReportsEverySystemWithEveryRunCorrect()
    {
        using var p = BureauProcess.Start(_dir, new Dictionary<string, string>(), "bench", "agent-loop", "--runs", "40", "--concurrency", "8", "--steps", "3",
            "--warmup", "10", "--db", Path.Combine(_dir, "loop.db"));
        Assert.True(await p.WaitAsync(TimeSpan.FromSeconds(120)) == 0, p.Stderr);
        var lines = p.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.Equal(["bureau", "floor", "floor-normal"], lines.Select(l => JsonDocument.Parse(l).RootElement.GetProperty("system").GetString()));
        foreach (var line in lines)
        {
            using var doc = JsonDocument.Parse(line);
            var r = doc.RootElement;
            Assert.Equal(40, r.GetProperty("N").GetInt32());
            Assert.Equal(3, r.GetProperty("K").GetInt32());
            Assert.Equal(40, r.GetProperty("correct_runs").GetInt32());
            Assert.True(r.GetProperty("transactions").GetInt64() > 0, line);
            Assert.True(r.GetProperty("store_bytes").GetInt64() > 0, line);
            Assert.True(r.GetProperty("p99_run_ms").GetDouble() >= r.GetProperty("p50_run_ms").GetDouble(), line);
            Assert.True(r.GetProperty("gc_committed_mb").GetDouble() >= r.GetProperty("gc_heap_mb").GetDouble(), line);
            Assert.True(r.GetProperty("jit_methods").GetInt64() >= 0, line);
            Assert.True(r.GetProperty("gc_count").GetInt32() >= 0 && r.GetProperty("gc_pause_ms").GetDouble() >= 0, line);
            // Every collection counts in gc_count; those reaching generation 2 also reached generation 1.
            Assert.InRange(r.GetProperty("gc_gen2").GetInt32(), 0, r.GetProperty("gc_gen1").GetInt32());
            Assert.True(r.GetProperty("gc_gen1").GetInt32() <= r.GetProperty("gc_count").GetInt32(), line);
        }
        // The warm-up ran on its own database, in two rounds, and was left out of the report.
        Assert.Contains("in two rounds", p.Stderr);
        Assert.False(File.Exists(Path.Combine(_dir, "loop.db.warmup")));
    }
}
