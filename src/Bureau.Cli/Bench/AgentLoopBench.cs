using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using Bureau.Storage.Sqlite;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;

namespace Bureau.Cli.Bench;

/// <summary>The parameters of the agent-loop workload (shared/workloads/agent-loop.md).</summary>
/// <remarks><paramref name="Postgres"/>: a connection string to run on PostgreSQL (schema <c>bureau_bench</c>, dropped first) instead of the SQLite file.</remarks>
/// <remarks><paramref name="Notify"/>: on PostgreSQL, whether commits are announced to other nodes (NOTIFY, on by default).</remarks>
internal sealed record AgentLoopConfig(int Runs, int Concurrency, int Steps, int LatencyMs, string DbPath, StoreDurability Durability, bool Orleans = false, string? Postgres = null,
    bool Notify = true);

/// <summary>One line of the report.</summary>
internal sealed record AgentLoopResult(string System, AgentLoopConfig Config, string Durability, double WallSeconds, double P50RunMs, double P99RunMs,
    double PeakRssMb, long StoreBytes, int CorrectRuns, long Transactions, Footprint Footprint)
{
    public JsonObject ToJson() => new()
    {
        ["system"] = System,
        ["version"] = typeof(AgentLoopBench).Assembly.GetName().Version?.ToString(3),
        ["N"] = Config.Runs,
        ["C"] = Config.Concurrency,
        ["K"] = Config.Steps,
        ["latency_ms"] = Config.LatencyMs,
        ["durability"] = Durability,
        ["wall_s"] = Math.Round(WallSeconds, 3),
        ["runs_per_s"] = Math.Round(Config.Runs / WallSeconds, 1),
        ["model_calls_per_s"] = Math.Round(Config.Runs * (double)Config.Steps / WallSeconds, 1),
        ["p50_run_ms"] = Math.Round(P50RunMs, 2),
        ["p99_run_ms"] = Math.Round(P99RunMs, 2),
        ["peak_rss_mb"] = Math.Round(PeakRssMb, 1),
        ["store_bytes"] = StoreBytes,
        ["correct_runs"] = CorrectRuns,
        ["transactions"] = Transactions,
        ["cpu_us_per_call"] = Math.Round(Footprint.CpuTime.TotalMicroseconds / ((double)Config.Runs * Config.Steps), 1),
        ["alloc_bytes_per_call"] = Footprint.AllocatedBytes / ((long)Config.Runs * Config.Steps),
    };
}

/// <summary>
/// CPU time and managed bytes allocated by the whole process over a measurement: less sensitive to other
/// processes on the machine than wall time, so a change's effect shows on a busy machine too.
/// </summary>
internal readonly record struct Footprint(TimeSpan CpuTime, long AllocatedBytes)
{
    public static Footprint Now() => new(Process.GetCurrentProcess().TotalProcessorTime, GC.GetTotalAllocatedBytes(precise: true));

    public Footprint Since(Footprint start) => new(CpuTime - start.CpuTime, AllocatedBytes - start.AllocatedBytes);
}

/// <summary>
/// Runs the agent-loop workload exactly as defined: N runs of one agent with the scripted model and
/// one C# read tool `lookup`, at most C in flight, K model calls each, L ms of model latency.
/// </summary>
internal static class AgentLoopBench
{
    public static BureauDefinitions Definitions(int steps, int latencyMs)
    {
        var d = new BureauDefinitions();
        d.Add(new ScriptedModelDefinition
        {
            Name = "scripted",
            Latency = TimeSpan.FromMilliseconds(latencyMs),
            Rules =
            [
                new ScriptRule
                {
                    When = new ScriptCondition { TurnFrom = 1, TurnTo = steps - 1 },
                    Calls = [new ScriptToolCall { Tool = "lookup", Arguments = new JsonObject { ["key"] = "{{input}}-{{turnIndex}}" } }],
                },
                new ScriptRule { When = new ScriptCondition { TurnFrom = steps }, Reply = "done {{input}}" },
            ],
        });
        d.Add(new FunctionToolDefinition
        {
            Name = "lookup",
            Effect = ToolEffect.Read,
            Description = "Look a key up",
            Parameters = System.Text.Json.JsonDocument.Parse("""{"type":"object","properties":{"key":{"type":"string"}},"required":["key"]}""").RootElement.Clone(),
            Function = AIFunctionFactory.Create((string key) => "value-" + key, "lookup"),
        });
        d.Add(new AgentDefinition { Name = "loop", Model = "scripted", Tools = ["lookup"], Instructions = "Look keys up, then say done." });
        return d;
    }

    public static async Task<AgentLoopResult> RunBureauAsync(AgentLoopConfig config, IProgress<int> progress, CancellationToken ct)
    {
        if (config.Postgres is { } pg) await DropBenchSchemaAsync(pg, ct);
        else DeleteDb(config.DbPath);
        ResetPeakRss();
        // Sized and striped for the runs up front: the harness's own bookkeeping should not contend with the engine.
        var starts = new ConcurrentDictionary<string, long>(concurrencyLevel: 64, capacity: config.Runs, StringComparer.Ordinal);
        var ends = new ConcurrentDictionary<string, long>(concurrencyLevel: 64, capacity: config.Runs, StringComparer.Ordinal);
        var allDone = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var finished = 0;

        await using var bureau = await EmbeddedBureau.StartAsync(Definitions(config.Steps, config.LatencyMs), config.DbPath, config.Durability,
            config.Concurrency, LogLevel.Warning, ct, config.Orleans,
            postgres: config.Postgres is { } cs ? o => { o.ConnectionString = cs; o.Schema = BenchSchema; o.Notify = config.Notify; } : null);
        using var sub = bureau.Engine.Events.SubscribeAll(e =>
        {
            var now = Stopwatch.GetTimestamp();
            if (e.Activity == "model.started") starts.TryAdd(e.RunId, now);
            else if (e.Record?.Entry is RunFinished)
            {
                ends[e.RunId] = now;
                var n = Interlocked.Increment(ref finished);
                progress.Report(n);
                if (n == config.Runs) allDone.TrySetResult();
            }
        });

        var ids = new string[config.Runs];
        var txBefore = bureau.WriterTransactions;
        var footprint = Footprint.Now();
        var wall = Stopwatch.StartNew();
        var submits = new Task[config.Runs];
        for (var r = 0; r < config.Runs; r++)
        {
            var index = r;
            submits[r] = bureau.Engine.SubmitAsync(new RunRequest("loop", index.ToString(System.Globalization.CultureInfo.InvariantCulture)), ct)
                .ContinueWith(t => ids[index] = t.Result.Run.Id, ct, TaskContinuationOptions.OnlyOnRanToCompletion | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
        await Task.WhenAll(submits);
        await allDone.Task.WaitAsync(ct);
        wall.Stop();
        var used = Footprint.Now().Since(footprint);
        var transactions = bureau.WriterTransactions - txBefore;
        var rss = PeakRssMb();

        var durations = new List<double>(config.Runs);
        foreach (var id in ids)
        {
            if (starts.TryGetValue(id, out var s) && ends.TryGetValue(id, out var e))
                durations.Add(Stopwatch.GetElapsedTime(s, e).TotalMilliseconds);
        }
        var correct = 0;
        for (var r = 0; r < config.Runs; r++)
        {
            if (await IsCorrectAsync(bureau.Runs, ids[r], r, config.Steps, ct)) correct++;
        }
        var bytes = bureau.StoreBytes;
        return new AgentLoopResult(config.Postgres is null ? "bureau" : config.Notify ? "bureau-postgres" : "bureau-postgres-no-notify", config, config.Postgres is not null ? "postgres" : config.Durability == StoreDurability.Full ? "full" : "process",
            wall.Elapsed.TotalSeconds, Percentile(durations, 0.50), Percentile(durations, 0.99), rss, bytes, correct, transactions, used);
    }

    /// <summary>The schema the PostgreSQL measurement uses, dropped before each.</summary>
    public const string BenchSchema = "bureau_bench";

    private static async Task DropBenchSchemaAsync(string connectionString, CancellationToken ct)
    {
        try
        {
            await using var c = new Npgsql.NpgsqlConnection(connectionString);
            await c.OpenAsync(ct);
            await using var cmd = new Npgsql.NpgsqlCommand($"DROP SCHEMA IF EXISTS {BenchSchema} CASCADE", c);
            await cmd.ExecuteNonQueryAsync(ct);
        }
        catch (Exception ex) when (ex is Npgsql.NpgsqlException or ArgumentException)
        {
            throw new CliUsageException($"--postgres: {ex.Message}");
        }
    }

    /// <summary>Output `done r`, and the journal holds all K model calls and K-1 tool results with the right values.</summary>
    internal static async Task<bool> IsCorrectAsync(IRunStore store, string id, int r, int k, CancellationToken ct)
    {
        var run = await store.GetRunAsync(id, ct);
        if (run is null || run.Status != RunStatus.Succeeded || run.Output != $"done {r}") return false;
        var journal = await store.ReadJournalAsync(id, 0, ct);
        var models = journal.Select(j => j.Entry).OfType<ModelResponded>().ToList();
        var results = journal.Select(j => j.Entry).OfType<ToolCompleted>().ToList();
        if (models.Count != k || results.Count != k - 1) return false;
        for (var t = 0; t < k - 1; t++)
        {
            if (results[t].IsError || results[t].Content != $"value-{r}-{t}") return false;
            if (models[t].ToolCalls.Count != 1 || models[t].ToolCalls[0].Arguments != $$"""{"key":"{{r}}-{{t}}"}""") return false;
        }
        return models[k - 1].Text == $"done {r}";
    }

    /// <summary>
    /// The floor: the least work any engine with this durability must do. Per run, one append per step
    /// (K model answers and K-1 tool results), each awaited before the next, the appends of concurrent
    /// runs grouped into one transaction; L ms awaited before each model step; nothing else.
    /// </summary>
    public static async Task<AgentLoopResult> RunFloorAsync(AgentLoopConfig config, bool full, IProgress<int> progress, CancellationToken ct)
    {
        if (config.Postgres is { } pg) await DropBenchSchemaAsync(pg, ct);
        else DeleteDb(config.DbPath);
        ResetPeakRss();
        await using var writer = new FloorWriter(config.DbPath, full);
        var durations = new double[config.Runs];
        using var slots = new SemaphoreSlim(config.Concurrency);
        var done = 0;
        var footprint = Footprint.Now();
        var wall = Stopwatch.StartNew();
        var tasks = new Task[config.Runs];
        for (var r = 0; r < config.Runs; r++)
        {
            var run = r;
            tasks[r] = Task.Run(async () =>
            {
                await slots.WaitAsync(ct);
                try
                {
                    var start = Stopwatch.GetTimestamp();
                    var n = 0;
                    for (var t = 0; t < config.Steps; t++)
                    {
                        if (config.LatencyMs > 0) await Task.Delay(config.LatencyMs, ct);
                        await writer.AppendAsync(run, ++n);
                        if (t < config.Steps - 1) await writer.AppendAsync(run, ++n);
                    }
                    durations[run] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                    progress.Report(Interlocked.Increment(ref done));
                }
                finally
                {
                    slots.Release();
                }
            }, ct);
        }
        await Task.WhenAll(tasks);
        wall.Stop();
        var used = Footprint.Now().Since(footprint);
        var rss = PeakRssMb();
        var correct = writer.CountCompleteRuns(2 * config.Steps - 1);
        var transactions = writer.Transactions;
        await writer.DisposeAsync();
        var bytes = SizeOnDisk(config.DbPath);
        var list = durations.ToList();
        return new AgentLoopResult(full ? "floor" : "floor-normal", config, full ? "full" : "process", wall.Elapsed.TotalSeconds,
            Percentile(list, 0.5), Percentile(list, 0.99), rss, bytes, correct, transactions, used);
    }

    private sealed class FloorWriter : IAsyncDisposable
    {
        private readonly SqliteConnection _c;
        private readonly SqliteCommand _insert;
        private readonly Channel<(long Run, int N, TaskCompletionSource Done)> _queue = Channel.CreateUnbounded<(long, int, TaskCompletionSource)>(new UnboundedChannelOptions { SingleReader = true });
        private readonly Task _loop;
        private static readonly byte[] Row = new byte[32];

        public long Transactions { get; private set; }

        public FloorWriter(string path, bool full)
        {
            _c = new SqliteConnection($"Data Source={path};Pooling=False");
            _c.Open();
            Exec("PRAGMA journal_mode=WAL");
            Exec(full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
            Exec("CREATE TABLE steps(run INTEGER NOT NULL, n INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY(run, n)) WITHOUT ROWID");
            _insert = _c.CreateCommand();
            _insert.CommandText = "INSERT INTO steps(run, n, data) VALUES($r, $n, $d)";
            _insert.Parameters.Add(new SqliteParameter("$r", 0L));
            _insert.Parameters.Add(new SqliteParameter("$n", 0));
            _insert.Parameters.Add(new SqliteParameter("$d", Row));
            _loop = Task.Run(LoopAsync);
        }

        public Task AppendAsync(long run, int n)
        {
            var tcs = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _queue.Writer.TryWrite((run, n, tcs));
            return tcs.Task;
        }

        private async Task LoopAsync()
        {
            var batch = new List<TaskCompletionSource>(1024);
            while (await _queue.Reader.WaitToReadAsync())
            {
                batch.Clear();
                using (var tx = _c.BeginTransaction())
                {
                    _insert.Transaction = tx;
                    while (batch.Count < 1024 && _queue.Reader.TryRead(out var op))
                    {
                        _insert.Parameters[0].Value = op.Run;
                        _insert.Parameters[1].Value = op.N;
                        _insert.ExecuteNonQuery();
                        batch.Add(op.Done);
                    }
                    tx.Commit();
                }
                Transactions++;
                foreach (var t in batch) t.TrySetResult();
            }
        }

        public int CountCompleteRuns(int stepsPerRun)
        {
            using var cmd = _c.CreateCommand();
            cmd.CommandText = "SELECT count(*) FROM (SELECT run FROM steps GROUP BY run HAVING count(*) = $k)";
            cmd.Parameters.AddWithValue("$k", stepsPerRun);
            return Convert.ToInt32(cmd.ExecuteScalar());
        }

        private void Exec(string sql)
        {
            using var cmd = _c.CreateCommand();
            cmd.CommandText = sql;
            cmd.ExecuteNonQuery();
        }

        public async ValueTask DisposeAsync()
        {
            _queue.Writer.TryComplete();
            await _loop;
            _insert.Dispose();
            await _c.DisposeAsync();
        }
    }

    internal static double Percentile(List<double> values, double p)
    {
        if (values.Count == 0) return 0;
        values.Sort();
        var rank = (int)Math.Ceiling(p * values.Count) - 1;
        return values[Math.Clamp(rank, 0, values.Count - 1)];
    }

    internal static void DeleteDb(string path)
    {
        foreach (var suffix in new[] { "", "-wal", "-shm", "-journal" })
        {
            if (File.Exists(path + suffix)) File.Delete(path + suffix);
        }
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
    }

    private static long SizeOnDisk(string path) =>
        (File.Exists(path) ? new FileInfo(path).Length : 0) + (File.Exists(path + "-wal") ? new FileInfo(path + "-wal").Length : 0);

    /// <summary>Resets VmHWM (Linux: writing 5 to clear_refs), so each system reports its own peak.</summary>
    private static void ResetPeakRss()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        try { File.WriteAllText("/proc/self/clear_refs", "5"); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    internal static double PeakRssMb() => StatusMb("VmHWM");

    /// <summary>A memory field of /proc/self/status (VmHWM, VmRSS) in MB; the working set where there is none.</summary>
    internal static double StatusMb(string field)
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
            {
                if (line.StartsWith(field + ":", StringComparison.Ordinal))
                    return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) / 1024.0;
            }
        }
        catch (IOException) { }
        return Environment.WorkingSet / (1024.0 * 1024.0);
    }
}
