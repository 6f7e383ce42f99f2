using System.CommandLine;
using System.Diagnostics;
using System.Text.Json.Nodes;
using Bureau.Governance;
using Bureau.Storage.Sqlite;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;

namespace Bureau.Cli.Bench;

/// <summary>
/// <c>bureau bench approvals</c>: N runs each stop at a tool call that needs an approval, so N runs wait
/// at once in one process; then the process's memory is read (waiting runs must hold no activation),
/// and M approvals are answered one at a time, timing each from the decision to the run's end.
/// </summary>
internal static class ApprovalsBench
{
    public static Command Create()
    {
        var runs = new Option<int>("--runs") { Description = "N: runs left waiting for an approval.", DefaultValueFactory = _ => 100_000 };
        var resumes = new Option<int>("--resumes") { Description = "M: approvals answered one at a time and timed.", DefaultValueFactory = _ => 200 };
        var concurrency = new Option<int>("--concurrency") { Description = "Runs executing at once while they reach their approval.", DefaultValueFactory = _ => 256 };
        var db = new Option<string>("--db") { Description = "The database file (deleted and recreated).", DefaultValueFactory = _ => Path.Combine(Path.GetTempPath(), "bureau-bench", "approvals.db") };
        var cmd = new Command("approvals", "N runs waiting for approvals in one process: resident memory, then the time to resume one on approval (p50, p99).")
        {
            runs, resumes, concurrency, db,
        };
        cmd.SetAction(async (parse, ct) =>
        {
            var (n, m, c, path) = (parse.GetValue(runs), parse.GetValue(resumes), parse.GetValue(concurrency), parse.GetValue(db)!);
            if (n < 1 || m < 0 || m > n || c < 1) throw new CliUsageException("--runs and --concurrency must be at least 1, --resumes between 0 and --runs");
            var report = await RunAsync(n, m, c, path, new Progress<string>(s => Console.Error.WriteLine("approvals: " + s)), ct);
            Console.Out.WriteLine(RunDocuments.ToJson(report));
            return 0;
        });
        return cmd;
    }

    internal static BureauDefinitions Definitions()
    {
        var d = new BureauDefinitions();
        d.Add(new ScriptedModelDefinition
        {
            Name = "scripted",
            Rules =
            [
                new ScriptRule { When = new ScriptCondition { TurnFrom = 1, TurnTo = 1 }, Calls = [new ScriptToolCall { Tool = "refund", Arguments = new JsonObject { ["order"] = "order-{{input}}" } }] },
                new ScriptRule { Reply = "done {{input}}" },
            ],
        });
        d.Add(new FunctionToolDefinition
        {
            Name = "refund",
            Effect = ToolEffect.Write,
            Description = "File a refund",
            Parameters = System.Text.Json.JsonDocument.Parse("""{"type":"object","properties":{"order":{"type":"string"}},"required":["order"]}""").RootElement.Clone(),
            Function = AIFunctionFactory.Create((string order) => "refunded " + order, "refund"),
        });
        d.Add(new AgentDefinition { Name = "clerk", Model = "scripted", Tools = ["refund"], Instructions = "File refunds." });
        d.Policies = new PolicySet { Defaults = new Dictionary<ToolEffect, PolicyAction> { [ToolEffect.Write] = PolicyAction.RequireApproval } };
        return d;
    }

    internal static async Task<JsonObject> RunAsync(int n, int m, int concurrency, string path, IProgress<string> progress, CancellationToken ct)
    {
        AgentLoopBench.DeleteDb(path);
        await using var bureau = await EmbeddedBureau.StartAsync(Definitions(), path, StoreDurability.Full, concurrency, LogLevel.Warning, ct);
        var waiting = 0;
        var allWaiting = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var finished = new System.Collections.Concurrent.ConcurrentDictionary<string, TaskCompletionSource>(StringComparer.Ordinal);
        using var sub = bureau.Engine.Events.SubscribeAll(e =>
        {
            if (e.Record?.Entry is RunWaiting && Interlocked.Increment(ref waiting) == n) allWaiting.TrySetResult();
            else if (e.Record?.Entry is RunFinished && finished.TryGetValue(e.RunId, out var done)) done.TrySetResult();
        });

        var wall = Stopwatch.StartNew();
        var ids = new string[n];
        const int batch = 2000;
        for (var start = 0; start < n; start += batch)
        {
            var tasks = Enumerable.Range(start, Math.Min(batch, n - start)).Select(async i =>
                ids[i] = (await bureau.Engine.SubmitAsync(new RunRequest("clerk", i.ToString(System.Globalization.CultureInfo.InvariantCulture)), ct)).Run.Id);
            await Task.WhenAll(tasks);
            if ((start / batch) % 10 == 0) progress.Report($"{start + batch} submitted, {Volatile.Read(ref waiting)} waiting");
        }
        await allWaiting.Task.WaitAsync(ct);
        var toWait = wall.Elapsed.TotalSeconds;
        progress.Report($"{n} runs waiting after {toWait:0.0} s");

        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        await Task.Delay(500, ct);
        var rssWaiting = AgentLoopBench.StatusMb("VmRSS");
        var heapWaiting = GC.GetTotalMemory(forceFullCollection: true) / 1048576.0;

        var times = new List<double>(m);
        var random = new Random(42);
        foreach (var index in Enumerable.Range(0, n).OrderBy(_ => random.Next()).Take(m))
        {
            var id = ids[index];
            var run = (await bureau.Engine.GetRunAsync(id, ct))!;
            var done = finished.GetOrAdd(id, _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
            var started = Stopwatch.GetTimestamp();
            await bureau.Engine.DecideApprovalAsync(id, run.WaitingFor!.Step, new ApprovalDecision(true, "bench"), "bench");
            await done.Task.WaitAsync(TimeSpan.FromSeconds(30), ct);
            times.Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        }
        times.Sort();
        double Pct(double p) => times.Count == 0 ? 0 : times[Math.Min(times.Count - 1, (int)Math.Ceiling(p * times.Count) - 1)];
        return new JsonObject
        {
            ["system"] = "bureau",
            ["workload"] = "approvals",
            ["runs_waiting"] = n,
            ["seconds_to_all_waiting"] = Math.Round(toWait, 1),
            ["rss_mb_while_waiting"] = Math.Round(rssWaiting, 1),
            ["peak_rss_mb"] = Math.Round(AgentLoopBench.PeakRssMb(), 1),
            ["gc_heap_mb_while_waiting"] = Math.Round(heapWaiting, 1),
            ["active_executions_while_waiting"] = bureau.Engine.ActiveRuns,
            ["resumes"] = times.Count,
            ["resume_p50_ms"] = Math.Round(Pct(0.50), 2),
            ["resume_p99_ms"] = Math.Round(Pct(0.99), 2),
            ["resume_max_ms"] = times.Count == 0 ? 0 : Math.Round(times[^1], 2),
            ["store_bytes"] = bureau.Store.SizeOnDisk(),
        };
    }
}
