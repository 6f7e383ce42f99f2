using System.CommandLine;
using System.Diagnostics;
using System.Text.Json.Nodes;
using Bureau.Storage.Sqlite;
using Microsoft.Extensions.Logging;

namespace Bureau.Cli.Bench;

/// <summary>
/// <c>bureau bench fan-out</c>: one root team run fanning out to N children, each the agent-loop
/// workload's agent with K steps, at most C runs executing at once; beside it, the same N runs of
/// the same agent submitted directly (the agent-loop workload) in the same process. The difference
/// per child is what a team adds: submitting the child, journaling its start and end in the parent,
/// waking the parent.
/// </summary>
internal static class FanOutBench
{
    public static Command Create()
    {
        var children = new Option<int>("--children") { Description = "N: child runs of the root.", DefaultValueFactory = _ => 1000 };
        var concurrency = new Option<int>("--concurrency") { Description = "C: most runs executing at once.", DefaultValueFactory = _ => 32 };
        var steps = new Option<int>("--steps") { Description = "K: model calls per child (K-1 tool calls).", DefaultValueFactory = _ => 4 };
        var db = new Option<string>("--db") { Description = "The database file (deleted and recreated for each measurement).", DefaultValueFactory = _ => Path.Combine(Path.GetTempPath(), "bureau-bench", "fan-out.db") };
        var cmd = new Command("fan-out", "One team run fanning out to N children of K steps, against the same N runs submitted directly (agent-loop), in one process.")
        {
            children, concurrency, steps, db,
        };
        cmd.SetAction(async (parse, ct) =>
        {
            var (n, c, k, path) = (parse.GetValue(children), parse.GetValue(concurrency), parse.GetValue(steps), parse.GetValue(db)!);
            if (n < 1 || c < 1 || k < 1) throw new CliUsageException("--children, --concurrency and --steps must be at least 1");
            Console.Error.WriteLine($"fan-out: warm-up (not reported), then agent-loop N={n} C={c} K={k}, then one team run with {n} children");
            await RunTeamAsync(Math.Min(n, 50), c, k, path + ".warmup", ct);
            AgentLoopBench.DeleteDb(path + ".warmup");
            var baseline = await AgentLoopBench.RunBureauAsync(new AgentLoopConfig(n, c, k, 0, path, StoreDurability.Full), new Progress<int>(), ct);
            Console.Out.WriteLine(RunDocuments.ToJson(baseline.ToJson()));
            var team = await RunTeamAsync(n, c, k, path, ct);
            var overheadMs = (team.WallSeconds - baseline.WallSeconds) * 1000 / n;
            Console.Out.WriteLine(RunDocuments.ToJson(new JsonObject
            {
                ["system"] = "bureau-team",
                ["children"] = n,
                ["C"] = c,
                ["K"] = k,
                ["wall_s"] = Math.Round(team.WallSeconds, 3),
                ["children_per_s"] = Math.Round(n / team.WallSeconds, 1),
                ["agent_loop_wall_s"] = Math.Round(baseline.WallSeconds, 3),
                ["overhead_ms_per_child"] = Math.Round(overheadMs, 3),
                ["root_journal_entries"] = team.RootEntries,
                ["correct_children"] = team.CorrectChildren,
                ["peak_rss_mb"] = Math.Round(AgentLoopBench.PeakRssMb(), 1),
            }));
            return team.CorrectChildren == n ? 0 : 1;
        });
        return cmd;
    }

    private sealed record TeamResult(double WallSeconds, long RootEntries, int CorrectChildren);

    private static async Task<TeamResult> RunTeamAsync(int n, int c, int k, string path, CancellationToken ct)
    {
        AgentLoopBench.DeleteDb(path);
        var definitions = AgentLoopBench.Definitions(k, 0);
        definitions.Add(new TeamDefinition
        {
            Name = "fan",
            Pattern = TeamPattern.Parallel,
            Members = Enumerable.Repeat("loop", n).ToList(),
            Limits = new TeamLimits { MaxFanOut = n, MaxChildren = n },
        });
        await using var bureau = await EmbeddedBureau.StartAsync(definitions, path, StoreDurability.Full, c, LogLevel.Warning, ct);
        await Footprint.WaitForJitToSettleAsync(ct);
        var wall = Stopwatch.StartNew();
        var root = (await bureau.Engine.SubmitAsync(new RunRequest("fan", "0"), ct)).Run.Id;
        RunRecord run;
        do
        {
            run = await bureau.Engine.WaitAsync(root, ct);
            if (run.Status == RunStatus.Waiting) await Task.Delay(5, ct);
        }
        while (!run.Status.IsTerminal());
        wall.Stop();
        if (run.Status != RunStatus.Succeeded) throw new InvalidOperationException($"the team run {root} {run.Status.ToWireName()}: {run.Error}");
        var journal = await bureau.Store.ReadJournalAsync(root, 0, ct);
        var correct = 0;
        foreach (var started in journal.Select(r => r.Entry).OfType<ChildRunStarted>())
        {
            if (await AgentLoopBench.IsCorrectAsync(bureau.Store, started.ChildRunId, 0, k, ct)) correct++;
        }
        return new TeamResult(wall.Elapsed.TotalSeconds, journal.Count, correct);
    }
}
