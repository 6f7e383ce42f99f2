using System.Text.Json;
using Xunit;

namespace Bureau.Durability.Tests.Bench;

/// <summary>
/// <c>bureau bench cluster</c> end to end on a tiny N with 2 nodes: every run correct, the cluster and the floor
/// reported, and the nodes it starts gone when it ends, also when it is SIGKILLed (no timing asserted; figures in
/// docs/performance.md). Needs a server (BUREAU_TEST_POSTGRES; test.sh starts one, docs/decisions/0030).
/// </summary>
[Collection(nameof(ClusterFailoverTests))] // alone: two nodes each are load enough for a 2-core machine
public sealed class ClusterBenchTests : IAsyncDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bureau-cluster-bench", Guid.NewGuid().ToString("n"));
    private readonly string _schema = "t_" + Guid.NewGuid().ToString("n");
    private readonly string _server;

    public ClusterBenchTests()
    {
        _server = TestPostgres.ServerOrSkip();
        Directory.CreateDirectory(_dir);
    }

    public async ValueTask DisposeAsync()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
        await TestPostgres.DropSchemasAsync(_server, _schema, $"{_schema}_orleans");
    }

    [Fact]
    public async Task TwoNodes_TinyN_EveryRunCorrect_ClusterAndFloorReported_NodesGoneAfterwards()
    {
        using var p = BureauProcess.Start(_dir, new Dictionary<string, string>(), "bench", "cluster", "--postgres", _server, "--schema", _schema,
            "--nodes", "2", "--runs", "24", "--concurrency", "4", "--warmup", "4", "--submitters", "4");
        Assert.True(await p.WaitAsync(TimeSpan.FromSeconds(300)) == 0, p.Stderr);

        var lines = p.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.Equal(2, lines.Length);
        using var cluster = JsonDocument.Parse(lines[0]);
        using var floor = JsonDocument.Parse(lines[1]);
        var c = cluster.RootElement;
        Assert.Equal("bureau-cluster", c.GetProperty("system").GetString());
        Assert.Equal(2, c.GetProperty("nodes").GetInt32());
        Assert.Equal(24, c.GetProperty("N").GetInt32());
        Assert.Equal(24, c.GetProperty("correct_runs").GetInt32()); // output `done r`, 4 model answers and 3 tool results each, read from the database
        Assert.True(c.GetProperty("wall_s").GetDouble() > 0);
        Assert.True(c.GetProperty("p99_run_ms").GetDouble() >= c.GetProperty("p50_run_ms").GetDouble());
        Assert.True(c.GetProperty("peak_rss_mb").GetDouble() > 0); // the two nodes' peaks, summed
        Assert.True(c.GetProperty("store_bytes").GetInt64() > 0);
        var f = floor.RootElement;
        Assert.Equal("floor-postgres", f.GetProperty("system").GetString());
        Assert.Equal(2, f.GetProperty("nodes").GetInt32());
        Assert.Equal(24, f.GetProperty("correct_runs").GetInt32()); // 7 appends per run
        Assert.True(f.GetProperty("transactions").GetInt64() >= 1);

        Assert.Empty(NodesOf(_schema));
    }

    [Fact]
    public async Task DriverKilled_ItsNodesStopToo()
    {
        using var p = BureauProcess.Start(_dir, new Dictionary<string, string>(), "bench", "cluster", "--postgres", _server, "--schema", _schema,
            "--nodes", "2", "--runs", "100000", "--concurrency", "4", "--warmup", "0", "--no-floor");
        await WaitUntilAsync(() => NodesOf(_schema).Count == 2, TimeSpan.FromSeconds(120), "the driver started its 2 nodes", p);
        p.Kill();
        // Their standard input ends with the driver: they stop gracefully (or are gone already).
        await WaitUntilAsync(() => NodesOf(_schema).Count == 0, TimeSpan.FromSeconds(90), "the nodes stopped after the driver was killed", p);
    }

    /// <summary>The processes whose command line names this test's schema (the nodes' <c>--cluster-id</c>): only this test's, by its unique name.</summary>
    private static List<int> NodesOf(string schema)
    {
        var pids = new List<int>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid)) continue;
            try
            {
                var cmdline = File.ReadAllText(Path.Combine(dir, "cmdline")).Split('\0');
                if (cmdline.Contains("cluster-node") && cmdline.Contains(schema)) pids.Add(pid);
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        return pids;
    }

    private static async Task WaitUntilAsync(Func<bool> condition, TimeSpan timeout, string what, BureauProcess driver)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"not reached within {timeout.TotalSeconds} s: {what}\n{driver.Stderr}");
            await Task.Delay(200, TestContext.Current.CancellationToken);
        }
    }
}
