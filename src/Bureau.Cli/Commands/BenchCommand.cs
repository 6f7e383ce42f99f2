using System.CommandLine;
using Bureau.Cli.Bench;
using Spectre.Console;

namespace Bureau.Cli.Commands;

/// <summary><c>bureau bench agent-loop</c>: the reference workload, with the floor measured beside it.</summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var cmd = new Command("bench", "Benchmarks (JSON lines on stdout, progress on stderr).");
        var runs = new Option<int>("--runs") { Description = "N: runs submitted up front.", DefaultValueFactory = _ => 2000 };
        var concurrency = new Option<int>("--concurrency") { Description = "C: most runs in flight at once.", DefaultValueFactory = _ => 32 };
        var steps = new Option<int>("--steps") { Description = "K: model calls per run (K-1 tool calls).", DefaultValueFactory = _ => 4 };
        var latency = new Option<int>("--model-latency-ms") { Description = "L: the scripted model's latency per call.", DefaultValueFactory = _ => 0 };
        var db = new Option<string>("--db") { Description = "The database file (deleted and recreated for each system).", DefaultValueFactory = _ => Path.Combine(Path.GetTempPath(), "bureau-bench", "agent-loop.db") };
        var durability = CliShared.DurabilityOption();
        var skipFloor = new Option<bool>("--no-floor") { Description = "Measure Bureau only." };
        var postgres = CliShared.PostgresOption("Run on PostgreSQL (schema bureau_bench, dropped first) instead of the SQLite file; the floor is then measured on PostgreSQL (floor-postgres), not on SQLite.");
        var executors = new Option<string>("--executors")
        {
            Description = "Where runs execute: local (directly in this process, as bureau serve and run do) or orleans (a grain per run in an embedded silo).",
            DefaultValueFactory = _ => "local",
            HelpName = "orleans|local",
        };
        var warmup = new Option<int>("--warmup")
        {
            Description = "Runs done first on a throwaway database and left out of the report, in two rounds each followed by a pause until the JIT is quiet, so JIT (both tiers) and first-activation costs are not measured (0: none).",
            DefaultValueFactory = _ => 2000,
        };
        var noNotify = new Option<bool>("--no-notify")
        {
            Description = "With --postgres: do not announce commits to other nodes (Bureau:PostgreSql:Notify false), to measure what the announcement costs.",
        };
        var telemetry = new Option<bool>("--telemetry")
        {
            Description = "Measure Bureau with telemetry on (the OpenTelemetry SDK recording every span and metric, exported to nowhere): reported as bureau+telemetry.",
        };
        var agentLoop = new Command("agent-loop", "The agent-loop workload (shared/workloads/agent-loop.md): Bureau, then floor (synchronous=FULL) and floor-normal (synchronous=NORMAL).")
        {
            runs, concurrency, steps, latency, db, durability, skipFloor, warmup, executors, telemetry, postgres, noNotify,
        };
        agentLoop.SetAction(async (parse, ct) =>
        {
            var orleans = parse.GetValue(executors)!.ToLowerInvariant() switch
            {
                "orleans" => true,
                "local" => false,
                var other => throw new CliUsageException($"--executors must be orleans or local, not '{other}'"),
            };
            var config = new AgentLoopConfig(parse.GetValue(runs), parse.GetValue(concurrency), parse.GetValue(steps), parse.GetValue(latency),
                parse.GetValue(db)!, CliShared.ParseDurability(parse.GetValue(durability)!), orleans, parse.GetValue(postgres), Notify: !parse.GetValue(noNotify));
            if (config.Runs < 1 || config.Concurrency < 1 || config.Steps < 1 || config.LatencyMs < 0 || parse.GetValue(warmup) < 0)
                throw new CliUsageException("--runs, --concurrency and --steps must be at least 1, --model-latency-ms and --warmup at least 0");

            using var otel = parse.GetValue(telemetry) ? new BenchTelemetry() : null;
            if (parse.GetValue(warmup) is > 0 and var warm)
            {
                // Two rounds, each followed by a pause until the JIT is quiet. The JIT counts calls toward its second tier only
                // once it has compiled nothing new for 100 ms, so code that runs only in a burst (submitting every run up
                // front) stays at the first tier through one round and is recompiled during the measurement; the second round
                // lets it land before timing.
                var warmConfig = config with { Runs = Math.Max(1, warm / 2), DbPath = config.DbPath + ".warmup" };
                Console.Error.WriteLine($"warm-up: {warm} runs of each system, in two rounds, on {(config.Postgres is null ? warmConfig.DbPath : "PostgreSQL (schema " + AgentLoopBench.BenchSchema + ")")} (not reported)");
                for (var round = 0; round < 2; round++)
                {
                    // The progress the measurements report to (a Progress<int> without a handler would leave that path cold).
                    await AgentLoopBench.RunBureauAsync(warmConfig, new LatestProgress(), ct);
                    if (!parse.GetValue(skipFloor) && config.Postgres is null) await AgentLoopBench.RunFloorAsync(warmConfig, full: true, new LatestProgress(), ct);
                    else if (!parse.GetValue(skipFloor)) await AgentLoopBench.RunPostgresFloorAsync(warmConfig, writers: 1, new LatestProgress(), ct);
                    AgentLoopBench.DeleteDb(warmConfig.DbPath);
                    await Footprint.WaitForJitToSettleAsync(ct);
                }
            }

            await MeasureAsync(otel is null ? "bureau" : "bureau+telemetry", config, p => AgentLoopBench.RunBureauAsync(config, p, ct));
            if (otel is not null) Console.Error.WriteLine($"telemetry: {otel.Spans} spans exported");
            if (!parse.GetValue(skipFloor) && config.Postgres is null)
            {
                await MeasureAsync("floor", config, p => AgentLoopBench.RunFloorAsync(config, full: true, p, ct));
                await MeasureAsync("floor-normal", config, p => AgentLoopBench.RunFloorAsync(config, full: false, p, ct));
            }
            else if (!parse.GetValue(skipFloor))
            {
                await MeasureAsync("floor-postgres", config, p => AgentLoopBench.RunPostgresFloorAsync(config, writers: 1, p, ct));
            }
            return 0;
        });
        cmd.Subcommands.Add(Soak());
        cmd.Subcommands.Add(agentLoop);
        cmd.Subcommands.Add(FanOutBench.Create());
        cmd.Subcommands.Add(ApprovalsBench.Create());
        cmd.Subcommands.Add(IngestBench.Create());
        cmd.Subcommands.Add(MemoryBench.Create());
        cmd.Subcommands.Add(ClusterBench.Create());
        cmd.Subcommands.Add(ClusterBench.NodeCommand());
        return cmd;
    }

    /// <summary><c>bureau bench soak</c> (R20): the agent-loop workload at C runs in flight for a duration, sampling memory, handles, threads and step latency.</summary>
    private static Command Soak()
    {
        var duration = new Option<string>("--duration") { Description = "How long to keep the load on (30s, 10m, 1h).", DefaultValueFactory = _ => "10m", HelpName = "DURATION" };
        var interval = new Option<string>("--interval") { Description = "How often to sample RSS, handles, GC heap, threads and the window's step latency.", DefaultValueFactory = _ => "10s", HelpName = "DURATION" };
        var concurrency = new Option<int>("--concurrency") { Description = "C: runs kept in flight (a new one is submitted as each finishes).", DefaultValueFactory = _ => 32 };
        var steps = new Option<int>("--steps") { Description = "K: model calls per run (K-1 tool calls).", DefaultValueFactory = _ => 4 };
        var latency = new Option<int>("--model-latency-ms") { Description = "L: the scripted model's latency per call.", DefaultValueFactory = _ => 0 };
        var db = new Option<string>("--db") { Description = "The database file (deleted and recreated).", DefaultValueFactory = _ => Path.Combine(Path.GetTempPath(), "bureau-bench", "soak.db") };
        var durability = CliShared.DurabilityOption();
        var soak = new Command("soak", "R20 soak: the agent-loop workload at C runs in flight for a duration; samples every interval on stderr, then one JSON report on stdout (RSS and handle slopes over the second half, p99 step latency per window and its drift).")
        {
            duration, interval, concurrency, steps, latency, db, durability,
        };
        soak.SetAction(async (parse, ct) =>
        {
            var config = new SoakConfig(
                SoakBench.ParseDuration(parse.GetValue(duration)!, "--duration"), SoakBench.ParseDuration(parse.GetValue(interval)!, "--interval"),
                parse.GetValue(concurrency), parse.GetValue(steps), parse.GetValue(latency), parse.GetValue(db)!, CliShared.ParseDurability(parse.GetValue(durability)!));
            if (config.Concurrency < 1 || config.Steps < 1 || config.LatencyMs < 0)
                throw new CliUsageException("--concurrency and --steps must be at least 1, --model-latency-ms at least 0");
            if (config.Interval > config.Duration) throw new CliUsageException("--interval must not be longer than --duration");
            Console.Error.WriteLine($"soak: C={config.Concurrency} K={config.Steps} L={config.LatencyMs} for {config.Duration}, a sample every {config.Interval}, db {config.DbPath}");
            var report = await SoakBench.RunAsync(config, s => Console.Error.WriteLine("soak: " + RunDocuments.ToJson(s.ToJson())), ct);
            Console.Out.WriteLine(RunDocuments.ToJson(report.ToJson()));
            if (report.RunsFailed > 0) Console.Error.WriteLine($"bureau bench soak: {report.RunsFailed} runs did not succeed");
            return report.RunsFailed > 0 ? 1 : 0;
        });
        return soak;
    }

    internal static async Task MeasureAsync(string system, AgentLoopConfig config, Func<IProgress<int>, Task<AgentLoopResult>> measure)
    {
        AgentLoopResult result;
        if (!Console.IsErrorRedirected)
        {
            var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
            result = await console.Progress().AutoClear(true).StartAsync(async ctx =>
            {
                var task = ctx.AddTask($"{system} N={config.Runs} C={config.Concurrency} K={config.Steps} L={config.LatencyMs}", maxValue: config.Runs);
                return await LatestProgress.ShowWhileAsync(measure, n => task.Value = n, TimeSpan.FromMilliseconds(200));
            });
        }
        else
        {
            var shown = -1;
            Console.Error.WriteLine($"{system}: N={config.Runs} C={config.Concurrency} K={config.Steps} L={config.LatencyMs} ...");
            result = await LatestProgress.ShowWhileAsync(measure, n =>
            {
                if (n == shown) return;
                shown = n;
                Console.Error.WriteLine($"{system}: {n}/{config.Runs} runs done");
            }, TimeSpan.FromSeconds(2));
        }
        Console.Out.WriteLine(RunDocuments.ToJson(result.ToJson()));
        if (result.CorrectRuns != config.Runs)
            Console.Error.WriteLine($"bureau bench: {system}: only {result.CorrectRuns} of {config.Runs} runs were correct");
    }
}
