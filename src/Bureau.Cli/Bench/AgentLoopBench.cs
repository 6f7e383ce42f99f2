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
/// <remarks><paramref name="Schema"/>: on PostgreSQL, the schema the measurement drops and makes again (<see cref="AgentLoopBench.BenchSchema"/> unless a command is told otherwise).</remarks>
internal sealed record AgentLoopConfig(int Runs, int Concurrency, int Steps, int LatencyMs, string DbPath, StoreDurability Durability, bool Orleans = false, string? Postgres = null,
    bool Notify = true, string Schema = AgentLoopBench.BenchSchema);

/// <summary>One line of the report.</summary>
internal sealed record AgentLoopResult(string System, AgentLoopConfig Config, string Durability, double WallSeconds, double P50RunMs, double P99RunMs,
    double PeakRssMb, long StoreBytes, int CorrectRuns, long Transactions, Footprint Footprint, int? Nodes = null, double? SubmittedSeconds = null, IReadOnlyDictionary<string, double>? Extra = null)
{
    /// <summary>
    /// The report line; <c>nodes</c> and <c>submitted_s</c> (from the first submission to the last accepted) appear for
    /// cluster measurements, <c>transactions</c> and <c>alloc_bytes_per_call</c> only where they were counted (not negative),
    /// then the <c>Extra</c> fields of the measurement.
    /// </summary>
    public JsonObject ToJson()
    {
        var json = Fields();
        if (Nodes is { } nodes) json.Insert(1, "nodes", nodes);
        if (SubmittedSeconds is { } submitted) json.Insert(json.IndexOf("wall_s") + 1, "submitted_s", Math.Round(submitted, 3));
        if (Transactions < 0) json.Remove("transactions");
        if (Footprint.AllocatedBytes < 0) json.Remove("alloc_bytes_per_call");
        if (Footprint.JitMethods < 0)
        {
            json.Remove("jit_methods");
            json.Remove("jit_ms");
        }
        if (Footprint.Collections < 0)
        {
            json.Remove("gc_count");
            json.Remove("gc_gen1");
            json.Remove("gc_gen2");
            json.Remove("gc_pause_ms");
        }
        foreach (var (name, value) in Extra ?? new Dictionary<string, double>()) json[name] = value;
        return json;
    }

    private JsonObject Fields() => new()
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
        ["jit_methods"] = Footprint.JitMethods,
        ["jit_ms"] = Math.Round(Footprint.JitTime.TotalMilliseconds, 1),
        ["gc_count"] = Footprint.Collections,
        ["gc_gen1"] = Footprint.Gen1Collections,
        ["gc_gen2"] = Footprint.Gen2Collections,
        ["gc_pause_ms"] = Math.Round(Footprint.GcPause.TotalMilliseconds, 1),
    };
}

/// <summary>
/// CPU time and managed bytes allocated by the whole process over a measurement: less sensitive to other
/// processes on the machine than wall time, so a change's effect shows on a busy machine too. With them, the methods
/// the JIT compiled meanwhile and its time (a measurement of a warm process has almost none), and the garbage collections
/// (counted as gen0 collections, which every collection includes) with the time they paused the process.
/// </summary>
internal readonly record struct Footprint(TimeSpan CpuTime, long AllocatedBytes, long JitMethods = -1, TimeSpan JitTime = default,
    int Collections = -1, TimeSpan GcPause = default, int Gen1Collections = -1, int Gen2Collections = -1)
{
    public static Footprint Now() => new(Process.GetCurrentProcess().TotalProcessorTime, GC.GetTotalAllocatedBytes(precise: true),
        System.Runtime.JitInfo.GetCompiledMethodCount(), System.Runtime.JitInfo.GetCompilationTime(), GC.CollectionCount(0), GC.GetTotalPauseDuration(),
        GC.CollectionCount(1), GC.CollectionCount(2));

    public Footprint Since(Footprint start) => new(CpuTime - start.CpuTime, AllocatedBytes - start.AllocatedBytes,
        JitMethods - start.JitMethods, JitTime - start.JitTime, Collections - start.Collections, GcPause - start.GcPause,
        Gen1Collections - start.Gen1Collections, Gen2Collections - start.Gen2Collections);

    /// <summary>
    /// Waits until the JIT has compiled nothing for <paramref name="quiet"/> (at most <paramref name="limit"/>). Starting a
    /// host makes its start-up code (DI, configuration, reflection) hot, and the JIT's second tier recompiles it in the
    /// background 100 ms or more later: measured at 400 to 1,200 ms of CPU, 570 to 2,100 methods, inside the measurement
    /// when the clock started at once. A long-running host pays that once; the measurement should not.
    /// </summary>
    public static async Task WaitForJitToSettleAsync(CancellationToken ct, TimeSpan? quiet = null, TimeSpan? limit = null)
    {
        var still = quiet ?? TimeSpan.FromMilliseconds(300);
        var until = Stopwatch.GetTimestamp() + (long)((limit ?? TimeSpan.FromSeconds(5)).TotalSeconds * Stopwatch.Frequency);
        var count = System.Runtime.JitInfo.GetCompiledMethodCount();
        var since = Stopwatch.GetTimestamp();
        while (Stopwatch.GetTimestamp() < until)
        {
            await Task.Delay(50, ct);
            var now = System.Runtime.JitInfo.GetCompiledMethodCount();
            if (now != count)
            {
                count = now;
                since = Stopwatch.GetTimestamp();
            }
            else if (Stopwatch.GetElapsedTime(since) >= still)
            {
                return;
            }
        }
    }
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
        if (config.Postgres is { } pg) await DropBenchSchemaAsync(pg, ct, config.Schema);
        else DeleteDb(config.DbPath);
        ResetPeakRss();
        // Sized and striped for the runs up front: the harness's own bookkeeping should not contend with the engine.
        var starts = new ConcurrentDictionary<string, long>(concurrencyLevel: 64, capacity: config.Runs, StringComparer.Ordinal);
        var ends = new ConcurrentDictionary<string, long>(concurrencyLevel: 64, capacity: config.Runs, StringComparer.Ordinal);
        var allDone = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var finished = 0;

        await using var bureau = await EmbeddedBureau.StartAsync(Definitions(config.Steps, config.LatencyMs), config.DbPath, config.Durability,
            config.Concurrency, LogLevel.Warning, ct, config.Orleans,
            postgres: config.Postgres is { } cs ? o => { o.ConnectionString = cs; o.Schema = config.Schema; o.Notify = config.Notify; } : null);
        await Footprint.WaitForJitToSettleAsync(ct);
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
        var gc = GcFigures();

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
            wall.Elapsed.TotalSeconds, Percentile(durations, 0.50), Percentile(durations, 0.99), rss, bytes, correct, transactions, used, Extra: gc);
    }

    /// <summary>The schema the PostgreSQL measurement uses, dropped before each.</summary>
    public const string BenchSchema = "bureau_bench";

    internal static async Task DropBenchSchemaAsync(string connectionString, CancellationToken ct, string schema)
    {
        try
        {
            await using var c = new Npgsql.NpgsqlConnection(connectionString);
            await c.OpenAsync(ct);
            await using var cmd = new Npgsql.NpgsqlCommand($"DROP SCHEMA IF EXISTS {schema} CASCADE", c);
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
        DeleteDb(config.DbPath);
        ResetPeakRss();
        await using var writer = new FloorWriter(config.DbPath, full);
        await Footprint.WaitForJitToSettleAsync(ct);
        var (wall, durations, used) = await RunFloorStepsAsync(config, [writer], progress, ct);
        var rss = PeakRssMb();
        var gc = GcFigures();
        var correct = await writer.CountCompleteRunsAsync(2 * config.Steps - 1, ct);
        var transactions = writer.Transactions;
        await writer.DisposeAsync();
        var bytes = SizeOnDisk(config.DbPath);
        return new AgentLoopResult(full ? "floor" : "floor-normal", config, full ? "full" : "process", wall.TotalSeconds,
            Percentile(durations, 0.5), Percentile(durations, 0.99), rss, bytes, correct, transactions, used, Extra: gc);
    }

    /// <summary>
    /// The floor on PostgreSQL: the same appends, group-committed into a table of the config's schema (dropped
    /// first) by <paramref name="writers"/> writers, each its own connection with C / writers of the runs in flight, as
    /// that many nodes would (run r goes to writer r mod writers). Each batch is one multi-row insert, committed on its own.
    /// </summary>
    public static async Task<AgentLoopResult> RunPostgresFloorAsync(AgentLoopConfig config, int writers, IProgress<int> progress, CancellationToken ct)
    {
        var cs = config.Postgres ?? throw new ArgumentException("the PostgreSQL floor needs a connection string", nameof(config));
        await DropBenchSchemaAsync(cs, ct, config.Schema);
        ResetPeakRss();
        var list = new PgFloorWriter[writers];
        try
        {
            for (var i = 0; i < writers; i++) list[i] = await PgFloorWriter.OpenAsync(cs, config.Schema, create: i == 0, ct);
            await Footprint.WaitForJitToSettleAsync(ct);
            var (wall, durations, used) = await RunFloorStepsAsync(config, list, progress, ct);
            var rss = PeakRssMb();
            var gc = GcFigures();
            var correct = await list[0].CountCompleteRunsAsync(2 * config.Steps - 1, ct);
            var transactions = list.Sum(w => w.Transactions);
            var bytes = await SchemaBytesAsync(cs, config.Schema, ct);
            return new AgentLoopResult("floor-postgres", config, "postgres", wall.TotalSeconds,
                Percentile(durations, 0.5), Percentile(durations, 0.99), rss, bytes, correct, transactions, used, Extra: gc);
        }
        finally
        {
            foreach (var w in list) if (w is not null) await w.DisposeAsync();
        }
    }

    /// <summary>The bytes the tables (and their indexes) of <paramref name="schema"/> take on the server.</summary>
    internal static async Task<long> SchemaBytesAsync(string connectionString, string schema, CancellationToken ct)
    {
        await using var c = new Npgsql.NpgsqlConnection(connectionString);
        await c.OpenAsync(ct);
        await using var cmd = new Npgsql.NpgsqlCommand(
            "SELECT coalesce(sum(pg_total_relation_size(format('%I.%I', schemaname, tablename))), 0)::bigint FROM pg_tables WHERE schemaname = $1", c);
        cmd.Parameters.Add(new Npgsql.NpgsqlParameter<string> { TypedValue = schema });
        return (long)(await cmd.ExecuteScalarAsync(ct))!;
    }

    /// <summary>Per run, K model steps (L ms awaited before each) and K-1 tool steps, one append each, at most C runs at once, spread over the writers.</summary>
    private static async Task<(TimeSpan Wall, List<double> Durations, Footprint Used)> RunFloorStepsAsync(AgentLoopConfig config, FloorWriterBase[] writers,
        IProgress<int> progress, CancellationToken ct)
    {
        var durations = new double[config.Runs];
        var slots = new SemaphoreSlim[writers.Length];
        for (var i = 0; i < writers.Length; i++) slots[i] = new SemaphoreSlim(Share(config.Concurrency, writers.Length, i));
        var done = 0;
        var footprint = Footprint.Now();
        var wall = Stopwatch.StartNew();
        var tasks = new Task[config.Runs];
        for (var r = 0; r < config.Runs; r++)
        {
            var run = r;
            var writer = writers[r % writers.Length];
            var slot = slots[r % writers.Length];
            tasks[r] = Task.Run(async () =>
            {
                await slot.WaitAsync(ct);
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
                    slot.Release();
                }
            }, ct);
        }
        await Task.WhenAll(tasks);
        wall.Stop();
        var used = Footprint.Now().Since(footprint);
        foreach (var s in slots) s.Dispose();
        return (wall.Elapsed, durations.ToList(), used);
    }

    /// <summary>Part <paramref name="index"/> of <paramref name="total"/> split into <paramref name="parts"/> as evenly as can be (the first ones one more).</summary>
    internal static int Share(int total, int parts, int index) => total / parts + (index < total % parts ? 1 : 0);

    /// <summary>
    /// What the floor appends through: one row per step; the appends that queued while the last batch committed go in
    /// the next batch, one transaction (group commit), and each append's task completes once its batch is committed.
    /// </summary>
    private abstract class FloorWriterBase : IAsyncDisposable
    {
        private readonly Channel<(long Run, int N, TaskCompletionSource Done)> _queue = Channel.CreateUnbounded<(long, int, TaskCompletionSource)>(new UnboundedChannelOptions { SingleReader = true });
        private Task? _loop;

        /// <summary>The data of every row: 32 bytes, nothing to serialize.</summary>
        protected static readonly byte[] Row = new byte[32];

        public long Transactions { get; private set; }

        /// <summary>Starts committing; called by the writer once it can write.</summary>
        protected void Start() => _loop = Task.Run(LoopAsync);

        public Task AppendAsync(long run, int n)
        {
            var tcs = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _queue.Writer.TryWrite((run, n, tcs));
            return tcs.Task;
        }

        /// <summary>Writes the rows (run, step n, <see cref="Row"/>) and commits them, in one transaction.</summary>
        protected abstract ValueTask CommitAsync(List<(long Run, int N)> rows);

        /// <summary>Runs with exactly <paramref name="stepsPerRun"/> rows.</summary>
        public abstract Task<int> CountCompleteRunsAsync(int stepsPerRun, CancellationToken ct);

        /// <summary>Closes the connection, after the last batch.</summary>
        protected abstract ValueTask CloseAsync();

        private async Task LoopAsync()
        {
            var done = new List<TaskCompletionSource>(1024);
            var rows = new List<(long Run, int N)>(1024);
            while (await _queue.Reader.WaitToReadAsync())
            {
                done.Clear();
                rows.Clear();
                while (done.Count < 1024 && _queue.Reader.TryRead(out var op))
                {
                    rows.Add((op.Run, op.N));
                    done.Add(op.Done);
                }
                try
                {
                    await CommitAsync(rows);
                }
                catch (Exception ex)
                {
                    foreach (var t in done) t.TrySetException(ex);
                    continue;
                }
                Transactions++;
                foreach (var t in done) t.TrySetResult();
            }
        }

        public async ValueTask DisposeAsync()
        {
            if (!_queue.Writer.TryComplete()) return; // disposed already
            if (_loop is not null) await _loop;
            await CloseAsync();
        }
    }

    /// <summary>The floor's writer on PostgreSQL: each batch is one multi-row insert (autocommit: one round trip, one commit).</summary>
    private sealed class PgFloorWriter : FloorWriterBase
    {
        private readonly Npgsql.NpgsqlConnection _c;
        private readonly Npgsql.NpgsqlCommand _insert;
        private readonly List<long> _runs = new(1024);
        private readonly List<int> _ns = new(1024);
        private readonly string _table;

        private PgFloorWriter(Npgsql.NpgsqlConnection c, string schema)
        {
            _c = c;
            _table = schema + ".floor_steps";
            _insert = new Npgsql.NpgsqlCommand($"INSERT INTO {_table}(run, n, data) SELECT r, n, $3 FROM unnest($1::bigint[], $2::integer[]) AS s(r, n)", _c);
            _insert.Parameters.Add(new Npgsql.NpgsqlParameter<List<long>> { TypedValue = _runs });
            _insert.Parameters.Add(new Npgsql.NpgsqlParameter<List<int>> { TypedValue = _ns });
            _insert.Parameters.Add(new Npgsql.NpgsqlParameter<byte[]> { TypedValue = Row });
            Start();
        }

        public static async Task<PgFloorWriter> OpenAsync(string connectionString, string schema, bool create, CancellationToken ct)
        {
            var c = new Npgsql.NpgsqlConnection(new Npgsql.NpgsqlConnectionStringBuilder(connectionString) { Pooling = false }.ConnectionString);
            await c.OpenAsync(ct);
            if (create)
            {
                await using var cmd = new Npgsql.NpgsqlCommand(
                    $"CREATE SCHEMA IF NOT EXISTS {schema}; CREATE TABLE {schema}.floor_steps(run bigint NOT NULL, n integer NOT NULL, data bytea NOT NULL, PRIMARY KEY(run, n))", c);
                await cmd.ExecuteNonQueryAsync(ct);
            }
            return new PgFloorWriter(c, schema);
        }

        protected override async ValueTask CommitAsync(List<(long Run, int N)> rows)
        {
            _runs.Clear();
            _ns.Clear();
            foreach (var (run, n) in rows)
            {
                _runs.Add(run);
                _ns.Add(n);
            }
            await _insert.ExecuteNonQueryAsync();
        }

        public override async Task<int> CountCompleteRunsAsync(int stepsPerRun, CancellationToken ct)
        {
            await using var cmd = new Npgsql.NpgsqlCommand($"SELECT count(*) FROM (SELECT run FROM {_table} GROUP BY run HAVING count(*) = $1) s", _c);
            cmd.Parameters.Add(new Npgsql.NpgsqlParameter<long> { TypedValue = stepsPerRun });
            return Convert.ToInt32(await cmd.ExecuteScalarAsync(ct), System.Globalization.CultureInfo.InvariantCulture);
        }

        protected override async ValueTask CloseAsync()
        {
            await _insert.DisposeAsync();
            await _c.DisposeAsync();
        }
    }

    /// <summary>The floor's writer on SQLite (WAL, synchronous FULL or NORMAL): each batch one transaction of single-row inserts.</summary>
    private sealed class FloorWriter : FloorWriterBase
    {
        private readonly SqliteConnection _c;
        private readonly SqliteCommand _insert;

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
            Start();
        }

        protected override ValueTask CommitAsync(List<(long Run, int N)> rows)
        {
            using var tx = _c.BeginTransaction();
            _insert.Transaction = tx;
            foreach (var (run, n) in rows)
            {
                _insert.Parameters[0].Value = run;
                _insert.Parameters[1].Value = n;
                _insert.ExecuteNonQuery();
            }
            tx.Commit();
            return ValueTask.CompletedTask;
        }

        public override Task<int> CountCompleteRunsAsync(int stepsPerRun, CancellationToken ct)
        {
            using var cmd = _c.CreateCommand();
            cmd.CommandText = "SELECT count(*) FROM (SELECT run FROM steps GROUP BY run HAVING count(*) = $k)";
            cmd.Parameters.AddWithValue("$k", stepsPerRun);
            return Task.FromResult(Convert.ToInt32(cmd.ExecuteScalar()));
        }

        private void Exec(string sql)
        {
            using var cmd = _c.CreateCommand();
            cmd.CommandText = sql;
            cmd.ExecuteNonQuery();
        }

        protected override async ValueTask CloseAsync()
        {
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

    /// <summary>
    /// What the GC holds at the end of a measurement: <c>gc_heap_mb</c>, the managed heap after the latest collection
    /// (what is live, plus fragmentation), and <c>gc_committed_mb</c>, the memory the GC has committed from the OS. The
    /// gap between them is mostly the young generation's allocation budget, which .NET sizes from the CPU's L3 cache: on a
    /// VM that reports a large L3 it is most of the difference between <c>peak_rss_mb</c> and what the engine keeps.
    /// </summary>
    internal static Dictionary<string, double> GcFigures()
    {
        var info = GC.GetGCMemoryInfo(GCKind.Any);
        return new Dictionary<string, double>
        {
            ["gc_heap_mb"] = Math.Round(info.HeapSizeBytes / (1024.0 * 1024.0), 1),
            ["gc_committed_mb"] = Math.Round(info.TotalCommittedBytes / (1024.0 * 1024.0), 1),
        };
    }

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
