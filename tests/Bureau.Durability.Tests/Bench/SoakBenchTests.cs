using System.Text.Json;
using Bureau.Cli.Bench;
using Bureau.Storage.Sqlite;
using Xunit;

namespace Bureau.Durability.Tests.Bench;

/// <summary>
/// <c>bureau bench soak</c> (R20) reports what it promises. No timing is asserted: the figures are
/// measured by running it (docs/performance.md), never by a test.
/// </summary>
public sealed class SoakBenchTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bureau-soak-test", Guid.NewGuid().ToString("n"));

    public SoakBenchTests() => Directory.CreateDirectory(_dir);

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    [Fact]
    public async Task Soak_ForThreeSeconds_PrintsAWellFormedReportWithASamplePerInterval()
    {
        using var p = BureauProcess.Start(_dir, new Dictionary<string, string>(),
            "bench", "soak", "--duration", "3s", "--interval", "1s", "--concurrency", "4", "--db", Path.Combine(_dir, "soak.db"));
        Assert.True(await p.WaitAsync(TimeSpan.FromSeconds(90)) == 0, p.Stderr);

        using var doc = JsonDocument.Parse(p.Stdout.Trim());
        var report = doc.RootElement;
        Assert.Equal("agent-loop soak", report.GetProperty("workload").GetString());
        Assert.Equal(4, report.GetProperty("C").GetInt32());
        var submitted = report.GetProperty("runs_submitted").GetInt64();
        Assert.True(submitted > 0);
        Assert.Equal(submitted, report.GetProperty("runs_finished").GetInt64()); // the runs in flight at the end are drained
        Assert.Equal(0, report.GetProperty("runs_failed").GetInt64());
        foreach (var key in new[] { "rss_slope_mb_per_min", "handles_slope_per_min", "p99_step_ms_slope_per_min", "p99_step_ms_first_window", "p99_step_ms_last_window" })
            Assert.Equal(JsonValueKind.Number, report.GetProperty(key).ValueKind);

        var samples = report.GetProperty("samples").EnumerateArray().ToList();
        // t=0, then one a second (and one at the end when the last interval was cut short); a loaded machine may
        // miss a tick (the sampler's timer does not queue missed ticks).
        Assert.InRange(samples.Count, 3, 5);
        Assert.Equal(samples.Count, p.Stderr.Split('\n').Count(l => l.StartsWith("soak: {", StringComparison.Ordinal)));
        foreach (var s in samples)
        {
            Assert.True(s.GetProperty("rss_mb").GetDouble() > 0);
            Assert.True(s.GetProperty("handles").GetInt32() > 0);
            Assert.True(s.GetProperty("threads").GetInt32() > 0);
        }
        Assert.True(samples.Skip(1).Sum(s => s.GetProperty("window_steps").GetInt64()) > 0);
        // K=4: 7 steps a run (4 answers, 3 results); steps of the drain after the last sample are in no window.
        Assert.InRange(samples.Sum(s => s.GetProperty("window_steps").GetInt64()), 1, submitted * 7);
    }

    [Fact]
    public void SecondHalfSlope_OfALinearSeries_IsItsRatePerMinuteIgnoringTheFirstHalf()
    {
        var config = new SoakConfig(TimeSpan.FromMinutes(10), TimeSpan.FromSeconds(30), 32, 4, 0, "x.db", StoreDurability.Full);
        // RSS climbs fast while warming up (first half), then by 1.5 MB a minute; handles stay flat in the second half.
        var samples = Enumerable.Range(0, 21).Select(i =>
        {
            var t = i * 30.0;
            var rss = t < 300 ? 50 + t : 350 + 1.5 * (t - 300) / 60;
            return new SoakSample(t, rss, t < 300 ? 100 + i : 200, 3, 19, i * 1000, 7000, 1, 5 + (t >= 300 ? 0.25 * (t - 300) / 60 : 0));
        }).ToList();
        var report = new SoakReport(config, samples, 21000, 21000, 0, 600, 0);

        Assert.Equal(1.5, report.SecondHalfSlopePerMinute(s => s.RssMb), 9);
        Assert.Equal(0, report.SecondHalfSlopePerMinute(s => s.Handles), 9);
        var json = report.ToJson();
        Assert.Equal(1.5, json["rss_slope_mb_per_min"]!.GetValue<double>());
        Assert.Equal(0.25, json["p99_step_ms_slope_per_min"]!.GetValue<double>());
        Assert.Equal(21, json["samples"]!.AsArray().Count);
    }
}
