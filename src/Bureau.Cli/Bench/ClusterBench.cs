using System.CommandLine;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;
using Bureau.Cli.Commands;
using Bureau.Storage.PostgreSql;
using Bureau.Storage.Sqlite;

namespace Bureau.Cli.Bench;

/// <summary>
/// <c>bureau bench cluster</c>: the agent-loop workload (shared/workloads/agent-loop.md) on K cluster nodes, each a
/// <c>bureau serve --cluster</c> process (the hidden <c>bureau bench cluster-node</c>: serve with the workload's
/// definitions) on one PostgreSQL database; the N runs are submitted over REST, spread round-robin over the nodes, and C
/// is split over them (each node's <c>Bureau:MaxConcurrentRuns</c>). Beside it, the PostgreSQL floor with K writers
/// (docs/decisions/0044).
/// </summary>
internal static class ClusterBench
{
    /// <summary>The schema of the nodes' Orleans membership table (the store's schema and this), dropped with the store's before each measurement.</summary>
    public static string ClusterSchema(AgentLoopConfig config) => config.Schema + "_orleans";

    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(120);

    /// <summary>How long the measurement may go without a run finishing before it is abandoned as stuck.</summary>
    private static readonly TimeSpan StallLimit = TimeSpan.FromSeconds(120);

    public static Command Create()
    {
        var postgres = CliShared.PostgresOption("The database the nodes share (required): the schema (--schema) and SCHEMA_orleans are dropped and made again for each measurement.");
        var schema = new Option<string>("--schema") { Description = "The store's schema (letters, digits, _), dropped first; the nodes' membership is in SCHEMA_orleans.", DefaultValueFactory = _ => AgentLoopBench.BenchSchema, HelpName = "SCHEMA" };
        var nodes = new Option<int>("--nodes") { Description = "K: cluster nodes, each a bureau serve --cluster process on this machine.", DefaultValueFactory = _ => 2 };
        var runs = new Option<int>("--runs") { Description = "N: runs submitted up front, over REST, spread round-robin over the nodes.", DefaultValueFactory = _ => 2000 };
        var concurrency = new Option<int>("--concurrency") { Description = "C: most runs in flight at once, all nodes together (each node gets C / K).", DefaultValueFactory = _ => 32 };
        var steps = new Option<int>("--steps") { Description = "K: model calls per run (K-1 tool calls).", DefaultValueFactory = _ => 4 };
        var latency = new Option<int>("--model-latency-ms") { Description = "L: the scripted model's latency per call.", DefaultValueFactory = _ => 0 };
        var submitters = new Option<int>("--submitters") { Description = "Submissions (POST /v1/runs) in flight at once, all nodes together.", DefaultValueFactory = _ => 32 };
        var warmup = new Option<int>("--warmup")
        {
            Description = "Runs done first through the same nodes (and the floor) and left out of the report, so JIT and first-activation costs are not measured (0: none).",
            DefaultValueFactory = _ => 200,
        };
        var skipFloor = new Option<bool>("--no-floor") { Description = "Measure the cluster only." };
        var cmd = new Command("cluster", "The agent-loop workload on K `bureau serve --cluster` nodes on one PostgreSQL database, runs submitted over REST; then the PostgreSQL floor with K writers (floor-postgres).")
        {
            postgres, schema, nodes, runs, concurrency, steps, latency, submitters, warmup, skipFloor,
        };
        cmd.SetAction(async (parse, ct) =>
        {
            var cs = parse.GetValue(postgres);
            if (string.IsNullOrWhiteSpace(cs)) throw new CliUsageException("--postgres CONNECTION_STRING is required: the nodes share that database");
            var config = new AgentLoopConfig(parse.GetValue(runs), parse.GetValue(concurrency), parse.GetValue(steps), parse.GetValue(latency), "", StoreDurability.Full, Postgres: cs, Schema: parse.GetValue(schema)!);
            if (!System.Text.RegularExpressions.Regex.IsMatch(config.Schema, "^[a-z_][a-z0-9_]{0,40}$"))
                throw new CliUsageException($"--schema must be lower-case letters, digits and _ (at most 41), not '{config.Schema}'");
            var (k, s, w) = (parse.GetValue(nodes), parse.GetValue(submitters), parse.GetValue(warmup));
            if (config.Runs < 1 || config.Concurrency < 1 || config.Steps < 1 || config.LatencyMs < 0 || w < 0 || s < 1)
                throw new CliUsageException("--runs, --concurrency, --steps and --submitters must be at least 1, --model-latency-ms and --warmup at least 0");
            if (k < 1 || k > config.Concurrency) throw new CliUsageException($"--nodes must be at least 1 and at most --concurrency ({config.Concurrency}): each node runs at least one run at a time");

            await BenchCommand.MeasureAsync($"bureau-cluster({k})", config, p => RunClusterAsync(config, k, s, w, p, ct));
            if (!parse.GetValue(skipFloor))
            {
                if (w > 0) await AgentLoopBench.RunPostgresFloorAsync(config with { Runs = w }, k, new Progress<int>(), ct);
                await BenchCommand.MeasureAsync($"floor-postgres({k})", config, async p => await AgentLoopBench.RunPostgresFloorAsync(config, k, p, ct) with { Nodes = k });
            }
            return 0;
        });
        return cmd;
    }

    /// <summary>The hidden node command: <c>bureau serve</c>'s options, the agent-loop workload's definitions; it also stops when its standard input ends (its driver went).</summary>
    public static Command NodeCommand()
    {
        var steps = new Option<int>("--steps") { Description = "K: model calls per run.", DefaultValueFactory = _ => 4 };
        var latency = new Option<int>("--model-latency-ms") { Description = "L: the scripted model's latency per call.", DefaultValueFactory = _ => 0 };
        var cmd = ServeCommand.Create("cluster-node", "A node of bureau bench cluster: bureau serve with the agent-loop workload's agent `loop` (scripted model, C# tool `lookup`); stops when its standard input ends.",
            [steps, latency], _ => "the agent-loop workload", (_, parse) => AgentLoopBench.Definitions(parse.GetValue(steps), parse.GetValue(latency)), stopAtEndOfInput: true);
        cmd.Hidden = true;
        return cmd;
    }

    /// <summary>Starts the nodes, warms them up, submits the N runs over REST, waits for all to finish, reads the timings and checks every run.</summary>
    public static async Task<AgentLoopResult> RunClusterAsync(AgentLoopConfig config, int nodeCount, int submitters, int warmup, IProgress<int> progress, CancellationToken ct)
    {
        var cs = config.Postgres!;
        await AgentLoopBench.DropBenchSchemaAsync(cs, ct, config.Schema);
        await AgentLoopBench.DropBenchSchemaAsync(cs, ct, ClusterSchema(config));
        var nodes = new List<Node>(nodeCount);
        try
        {
            for (var i = 0; i < nodeCount; i++) nodes.Add(Node.Start(i, config, AgentLoopBench.Share(config.Concurrency, nodeCount, i)));
            await Task.WhenAll(nodes.Select(n => n.WaitReadyAsync(ct)));
            var watcher = new Watcher(cs, config.Schema, nodes);

            if (warmup > 0)
            {
                Console.Error.WriteLine($"warm-up: {warmup} runs through the {nodeCount} node(s) (not reported)");
                await SubmitAsync(nodes, warmup, config.Concurrency, submitters, ct);
                await watcher.WaitFinishedAsync(warmup, 0, new Progress<int>(), ct);
            }
            foreach (var n in nodes) n.ResetPeakRss();

            var cpu = CpuTime(nodes);
            var driverCpu = Process.GetCurrentProcess().TotalProcessorTime;
            var machine = MachineCpu.Now();
            var start = DateTimeOffset.UtcNow;
            var ids = await SubmitAsync(nodes, config.Runs, config.Concurrency, submitters, ct);
            var submitted = DateTimeOffset.UtcNow - start;
            await watcher.WaitFinishedAsync(warmup + config.Runs, warmup, progress, ct);
            var used = CpuTime(nodes) - cpu;
            var driverUsed = Process.GetCurrentProcess().TotalProcessorTime - driverCpu;
            var busy = MachineCpu.Now().BusySince(machine);
            var rss = nodes.Sum(n => n.PeakRssMb());

            var (end, durations) = await TimingsAsync(cs, config.Schema, ids, config.LatencyMs, ct);
            var correct = await CountCorrectAsync(cs, config.Schema, ids, config.Steps, ct);
            var bytes = await AgentLoopBench.SchemaBytesAsync(cs, config.Schema, ct);
            var wall = end - start;
            return new AgentLoopResult("bureau-cluster", config, "postgres", wall.TotalSeconds, AgentLoopBench.Percentile(durations, 0.50),
                AgentLoopBench.Percentile(durations, 0.99), rss, bytes, correct, Transactions: -1, new Footprint(used, AllocatedBytes: -1), nodeCount, submitted.TotalSeconds,
                new Dictionary<string, double>
                {
                    ["driver_cpu_us_per_call"] = Math.Round(driverUsed.TotalMicroseconds / ((double)config.Runs * config.Steps), 1),
                    ["machine_cpu_busy"] = Math.Round(busy, 3),
                    ["cores"] = Environment.ProcessorCount,
                });
        }
        finally
        {
            await Task.WhenAll(nodes.Select(n => n.StopAsync()));
        }
    }

    /// <summary>
    /// The whole machine's CPU counters (/proc/stat): the share of all cores busy over a measurement, whoever kept them
    /// busy (the nodes, the driver, the database server, anything else running); -1 where /proc/stat is not there.
    /// </summary>
    private readonly record struct MachineCpu(long Busy, long Total)
    {
        public static MachineCpu Now()
        {
            try
            {
                var f = File.ReadLines("/proc/stat").First().Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1)
                    .Select(x => long.Parse(x, System.Globalization.CultureInfo.InvariantCulture)).ToArray();
                var idle = f[3] + (f.Length > 4 ? f[4] : 0); // idle, iowait
                var total = f.Take(8).Sum(); // user nice system idle iowait irq softirq steal (guest time is inside user)
                return new MachineCpu(total - idle, total);
            }
            catch (Exception ex) when (ex is IOException or FormatException or UnauthorizedAccessException or IndexOutOfRangeException)
            {
                return new MachineCpu(-1, -1);
            }
        }

        public double BusySince(MachineCpu start) =>
            Busy < 0 || start.Busy < 0 || Total == start.Total ? -1 : (Busy - start.Busy) / (double)(Total - start.Total);
    }

    private static TimeSpan CpuTime(List<Node> nodes) => nodes.Aggregate(TimeSpan.Zero, (sum, n) => sum + n.CpuTime);

    /// <summary>
    /// POST /v1/runs for runs 0..<paramref name="runs"/>-1 (agent <c>loop</c>, input r), run r to node r mod K, at most
    /// <paramref name="submitters"/> at once. Returns run r's id at index r. A refused submission ends the measurement.
    /// </summary>
    private static async Task<string[]> SubmitAsync(List<Node> nodes, int runs, int concurrency, int submitters, CancellationToken ct)
    {
        var ids = new string[runs];
        var next = -1;
        var workers = Enumerable.Range(0, Math.Min(submitters, runs)).Select(_ => Task.Run(async () =>
        {
            for (var r = Interlocked.Increment(ref next); r < runs; r = Interlocked.Increment(ref next))
            {
                var node = nodes[r % nodes.Count];
                var body = new JsonObject { ["agent"] = "loop", ["input"] = r.ToString(System.Globalization.CultureInfo.InvariantCulture) }.ToJsonString();
                using var res = await node.Http.PostAsync("/v1/runs", new StringContent(body, Encoding.UTF8, "application/json"), ct);
                var text = await res.Content.ReadAsStringAsync(ct);
                if (res.StatusCode != HttpStatusCode.Accepted && res.StatusCode != HttpStatusCode.OK)
                    throw new InvalidOperationException($"bench cluster: node {node.Name} refused run {r}: {(int)res.StatusCode} {text}\n{node.StderrTail()}");
                ids[r] = (string)JsonNode.Parse(text)!["id"]!;
            }
        }, ct)).ToList();
        await Task.WhenAll(workers);
        return ids;
    }

    /// <summary>
    /// From the journal (millisecond timestamps, one clock: the nodes run on this machine): the last run's end, and per
    /// run from its start (its first model answer less L) to its end (its <c>run.finished</c> entry).
    /// </summary>
    private static async Task<(DateTimeOffset End, List<double> Durations)> TimingsAsync(string cs, string schema, string[] ids, int latencyMs, CancellationToken ct)
    {
        await using var c = new Npgsql.NpgsqlConnection(cs);
        await c.OpenAsync(ct);
        await using var cmd = new Npgsql.NpgsqlCommand($"""
            SELECT min(at) FILTER (WHERE kind = '{ModelResponded.KindName}'), max(at) FILTER (WHERE kind = '{RunFinished.KindName}')
            FROM {schema}.journal WHERE run_id = ANY($1) GROUP BY run_id
            """, c);
        cmd.Parameters.Add(new Npgsql.NpgsqlParameter<string[]> { TypedValue = ids });
        var durations = new List<double>(ids.Length);
        var end = long.MinValue;
        await using var r = await cmd.ExecuteReaderAsync(ct);
        while (await r.ReadAsync(ct))
        {
            if (r.IsDBNull(0) || r.IsDBNull(1)) continue;
            var (first, finished) = (r.GetInt64(0), r.GetInt64(1));
            durations.Add(finished - (first - latencyMs));
            end = Math.Max(end, finished);
        }
        if (end == long.MinValue) throw new InvalidOperationException("bench cluster: no run finished");
        return (DateTimeOffset.FromUnixTimeMilliseconds(end), durations);
    }

    /// <summary>Each run checked as agent-loop checks it (<see cref="AgentLoopBench.IsCorrectAsync"/>), eight at a time.</summary>
    private static async Task<int> CountCorrectAsync(string cs, string schema, string[] ids, int steps, CancellationToken ct)
    {
        await using var store = new PostgreSqlRunStore(new PostgreSqlStoreOptions { ConnectionString = cs, Schema = schema, Notify = false });
        await store.InitializeAsync(ct);
        var correct = 0;
        await Parallel.ForAsync(0, ids.Length, new ParallelOptions { MaxDegreeOfParallelism = 8, CancellationToken = ct }, async (r, token) =>
        {
            if (await AgentLoopBench.IsCorrectAsync(store, ids[r], r, steps, token)) Interlocked.Increment(ref correct);
        });
        return correct;
    }

    /// <summary>Counts finished runs in the database until there are as many as expected; stops early when a node exits or nothing finishes for <see cref="StallLimit"/>.</summary>
    private sealed class Watcher(string connectionString, string schema, List<Node> nodes)
    {
        public async Task WaitFinishedAsync(int expected, int before, IProgress<int> progress, CancellationToken ct)
        {
            await using var c = new Npgsql.NpgsqlConnection(connectionString);
            await c.OpenAsync(ct);
            await using var cmd = new Npgsql.NpgsqlCommand($"SELECT count(*) FROM {schema}.runs WHERE status NOT IN ('queued','running')", c);
            var last = -1L;
            var lastChange = Stopwatch.StartNew();
            while (true)
            {
                var n = (long)(await cmd.ExecuteScalarAsync(ct))!;
                if (n != last) { last = n; lastChange.Restart(); progress.Report((int)Math.Max(0, n - before)); }
                if (n >= expected) return;
                if (nodes.FirstOrDefault(x => x.HasExited) is { } gone)
                    throw new InvalidOperationException($"bench cluster: node {gone.Name} exited ({gone.ExitCode}) with {n} of {expected} runs finished\n{gone.StderrTail()}");
                if (lastChange.Elapsed > StallLimit)
                    throw new TimeoutException($"bench cluster: no run finished for {StallLimit.TotalSeconds} s ({n} of {expected})\n{string.Concat(nodes.Select(x => x.StderrTail()))}");
                await Task.Delay(100, ct);
            }
        }
    }

    /// <summary>One node: a child <c>bureau bench cluster-node</c> process on a free loopback port. Only this driver's children are stopped or killed.</summary>
    private sealed class Node
    {
        private readonly Process _process;
        private readonly Queue<string> _stderr = new();

        private Node(string name, Process process, Uri url)
        {
            Name = name;
            _process = process;
            Http = new HttpClient { BaseAddress = url, Timeout = TimeSpan.FromSeconds(60) };
        }

        public string Name { get; }

        public HttpClient Http { get; }

        public bool HasExited => _process.HasExited;

        public int ExitCode => _process.ExitCode;

        /// <summary>User and system CPU time of the node so far.</summary>
        public TimeSpan CpuTime
        {
            get
            {
                _process.Refresh();
                return _process.TotalProcessorTime;
            }
        }

        public static Node Start(int index, AgentLoopConfig config, int slots)
        {
            var name = "n" + index.ToString(System.Globalization.CultureInfo.InvariantCulture);
            var url = new Uri($"http://127.0.0.1:{FreePort()}");
            var psi = new ProcessStartInfo(Environment.ProcessPath!)
            {
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            // `dotnet bureau.dll ...` runs the same assembly again; the bureau executable runs itself.
            if (Path.GetFileNameWithoutExtension(Environment.ProcessPath) == "dotnet") psi.ArgumentList.Add(typeof(ClusterBench).Assembly.Location);
            foreach (var a in new[]
            {
                "bench", "cluster-node", "--postgres", config.Postgres!, "--cluster", "--node-id", name, "--cluster-id", config.Schema,
                "--urls", url.ToString().TrimEnd('/'), "--steps", config.Steps.ToString(System.Globalization.CultureInfo.InvariantCulture),
                "--model-latency-ms", config.LatencyMs.ToString(System.Globalization.CultureInfo.InvariantCulture),
            })
            {
                psi.ArgumentList.Add(a);
            }
            psi.Environment["Bureau__PostgreSql__Schema"] = config.Schema;
            psi.Environment["Bureau__Cluster__Schema"] = ClusterSchema(config);
            psi.Environment["Bureau__MaxConcurrentRuns"] = slots.ToString(System.Globalization.CultureInfo.InvariantCulture);
            psi.Environment["DOTNET_TieredPGO"] = "0"; // as the bureau executable runs (decision 0005)
            var node = new Node(name, Process.Start(psi) ?? throw new InvalidOperationException("bench cluster: could not start a node"), url);
            node._process.ErrorDataReceived += (_, e) => node.Keep(e.Data);
            node._process.OutputDataReceived += (_, e) => node.Keep(e.Data);
            node._process.BeginErrorReadLine();
            node._process.BeginOutputReadLine();
            return node;
        }

        private void Keep(string? line)
        {
            if (line is null) return;
            lock (_stderr)
            {
                _stderr.Enqueue(line);
                while (_stderr.Count > 40) _stderr.Dequeue();
            }
        }

        /// <summary>The node's last lines of output, for an error message.</summary>
        public string StderrTail()
        {
            lock (_stderr) return $"--- node {Name} (last lines) ---\n" + string.Join('\n', _stderr) + "\n";
        }

        public async Task WaitReadyAsync(CancellationToken ct)
        {
            var deadline = Stopwatch.StartNew();
            while (true)
            {
                if (_process.HasExited) throw new InvalidOperationException($"bench cluster: node {Name} exited ({_process.ExitCode}) while starting\n{StderrTail()}");
                try
                {
                    using var res = await Http.GetAsync("/readyz", ct);
                    if (res.IsSuccessStatusCode) return;
                }
                catch (HttpRequestException) { }
                catch (TaskCanceledException) when (!ct.IsCancellationRequested) { }
                if (deadline.Elapsed > StartTimeout) throw new TimeoutException($"bench cluster: node {Name} was not ready within {StartTimeout.TotalSeconds} s\n{StderrTail()}");
                await Task.Delay(100, ct);
            }
        }

        /// <summary>Resets the node's VmHWM (Linux), so its peak is the measurement's; left as it is where not allowed.</summary>
        public void ResetPeakRss()
        {
            try { File.WriteAllText($"/proc/{_process.Id}/clear_refs", "5"); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }

        /// <summary>The node's VmHWM in MB (0 where /proc is not there).</summary>
        public double PeakRssMb()
        {
            try
            {
                foreach (var line in File.ReadLines($"/proc/{_process.Id}/status"))
                {
                    if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                        return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) / 1024.0;
                }
            }
            catch (IOException) { }
            return 0;
        }

        /// <summary>Ends standard input (the node stops gracefully), waits up to 30 s, then kills it.</summary>
        public async Task StopAsync()
        {
            try
            {
                if (!_process.HasExited) _process.StandardInput.Close();
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
                try { await _process.WaitForExitAsync(cts.Token); }
                catch (OperationCanceledException)
                {
                    try { _process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
                    await _process.WaitForExitAsync(CancellationToken.None);
                }
            }
            finally
            {
                Http.Dispose();
                _process.Dispose();
            }
        }

        private static int FreePort()
        {
            using var l = new TcpListener(IPAddress.Loopback, 0);
            l.Start();
            return ((IPEndPoint)l.LocalEndpoint).Port;
        }
    }
}
