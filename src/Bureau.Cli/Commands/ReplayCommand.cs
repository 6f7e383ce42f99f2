using System.CommandLine;
using System.Text.Json.Nodes;
using Bureau.Replay;

namespace Bureau.Cli.Commands;

/// <summary>
/// <c>bureau replay RUN_ID|FILE.jsonl [--db PATH] [--file FILE]</c>: re-executes a finished run against its journal
/// (model answers and tool results served from it, in a throwaway in-memory store) and reports whether
/// the current engine and agent definition take the same steps. Exit 0 same steps, 1 divergence, 2 bad input.
/// </summary>
internal static class ReplayCommand
{
    public static Command Create()
    {
        var id = new Argument<string>("run") { Description = "The finished run to replay: its id in --db, or a recorded run's file (*.jsonl, the replay corpus format)." };
        var db = CliShared.DbOption();
        db.Description = "The database the run is in (read only: the replay runs in memory).";
        var file = new Option<string>("--file")
        {
            Description = "The manifest with the run's agent as it is now (the journal records steps, not the agent's definition); for a *.jsonl, the manifest its header names, beside it.",
            DefaultValueFactory = _ => "bureau.yaml",
            HelpName = "FILE",
        };
        var json = CliShared.JsonOption("Print {\"runId\",\"steps\",\"reproduced\",\"divergence\"} on stdout (with --from-step: {\"runId\",\"fork\",\"steps\"}).");
        var fromStep = new Option<long?>("--from-step") { Description = "What-if: fork a new run that shares the journal up to step N and goes on live (model and tools called), on a throwaway store; show both runs' steps side by side.", HelpName = "N" };
        var model = new Option<string?>("--model") { Description = "With --from-step: the model the fork goes on with (a model of the manifest).", HelpName = "M" };
        var instructions = new Option<string?>("--instructions") { Description = "With --from-step: a file with the instructions the fork goes on with.", HelpName = "FILE" };
        var allowWrites = new Option<bool>("--allow-writes") { Description = "With --from-step: let the fork call write tools (left out by default: a what-if should change nothing)." };
        var cmd = new Command("replay", "Replay a finished run against its journal, with no model or tool call, and report the first step the engine does differently (exit 0 same steps, 1 divergence, 2 bad input); or, with --from-step, fork it as a what-if.")
        {
            id, db, file, json, fromStep, model, instructions, allowWrites,
        };
        cmd.SetAction((parse, ct) =>
        {
            var forkStep = parse.GetValue(fromStep);
            if (forkStep is null && (parse.GetValue(model) is not null || parse.GetValue(instructions) is not null || parse.GetValue(allowWrites)))
            {
                Console.Error.WriteLine("bureau: --model, --instructions and --allow-writes go with --from-step N (the step the fork goes on after)");
                return Task.FromResult(2);
            }
            var fork = forkStep is { } n ? new ReplayFork.Options(n, parse.GetValue(model), parse.GetValue(instructions), parse.GetValue(allowWrites)) : null;
            return RunAsync(parse.GetValue(id)!, parse.GetValue(db)!, parse.GetValue(file)!, parse.GetResult(file) is { Implicit: false }, parse.GetValue(json), fork, ct);
        });
        return cmd;
    }

    private static async Task<int> RunAsync(string runId, string db, string file, bool fileGiven, bool json, ReplayFork.Options? fork, CancellationToken ct)
    {
        var stderr = Console.Error;
        IReadOnlyList<JournalRecord> journal;
        if (Directory.Exists(runId))
            throw new CliUsageException($"'{runId}' is a directory: give a run's id (in --db) or a recorded run's file (*.jsonl)");
        if (runId.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase) && !File.Exists(runId))
            throw new CliUsageException($"no recorded run at '{runId}' (a run's id or an existing *.jsonl file)");
        if (runId.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase))
        {
            // A recorded run (the corpus format): its header names its manifest, beside it, unless --file says otherwise.
            RecordedRun recorded;
            try
            {
                recorded = ReplayJournalFile.Read(runId);
                _ = recorded.RunId;
            }
            catch (InvalidDataException ex)
            {
                stderr.WriteLine($"bureau: {ex.Message}");
                return 2;
            }
            if (!fileGiven && recorded.Header["manifest"]?.GetValue<string>() is { } manifest)
                file = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(runId))!, manifest);
            var definitionsOfFile = LoadDefinitions(file, stderr);
            if (definitionsOfFile is null) return 2;
            if (fork is not null) return await ReplayFork.RunAsync(definitionsOfFile, recorded.RunId, recorded.Journal, fork, json, ct);
            return await ReplayAsync(definitionsOfFile, recorded.RunId, recorded.Journal, file, json, ct);
        }
        if (!File.Exists(db))
        {
            stderr.WriteLine($"bureau: no database at '{db}' (use --db to name one)");
            return 2;
        }
        var definitions = LoadDefinitions(file, stderr);
        if (definitions is null) return 2;

        await using (var store = await CliShared.OpenExistingStoreAsync(db, ct))
        {
            var run = await store.GetRunAsync(runId, ct);
            if (run is null)
            {
                stderr.WriteLine($"bureau: run {runId} does not exist in {db}");
                return 2;
            }
            if (!run.Status.IsTerminal())
            {
                stderr.WriteLine($"bureau: run {runId} is {run.Status.ToWireName()}; only a finished run (succeeded, failed or canceled) can be replayed");
                return 2;
            }
            journal = await store.ReadJournalAsync(runId, 0, ct);
        }
        if (fork is not null) return await ReplayFork.RunAsync(definitions, runId, journal, fork, json, ct);
        return await ReplayAsync(definitions, runId, journal, file, json, ct);
    }

    private static BureauDefinitions? LoadDefinitions(string file, TextWriter stderr)
    {
        if (!File.Exists(file))
        {
            stderr.WriteLine($"bureau: replay needs the run's agent definition: no manifest at '{file}' (use --file to name one)");
            return null;
        }
        return CliShared.LoadManifest(file, stderr);
    }

    private static async Task<int> ReplayAsync(BureauDefinitions definitions, string runId, IReadOnlyList<JournalRecord> journal, string file, bool json, CancellationToken ct)
    {
        var stderr = Console.Error;
        ReplayResult result;
        try
        {
            result = await new RunReplayer(definitions).ReplayAsync(runId, journal, ct);
        }
        catch (ArgumentException ex)
        {
            stderr.WriteLine($"bureau: {ex.Message.Split(" (Parameter", 2)[0]} (manifest {file})");
            return 2;
        }

        if (json)
        {
            Console.Out.WriteLine(RunDocuments.ToJson(new JsonObject
            {
                ["runId"] = result.RunId,
                ["agent"] = result.Agent,
                ["steps"] = result.Steps,
                ["reproduced"] = result.Reproduced,
                ["divergence"] = result.Divergence is not { } d ? null : new JsonObject
                {
                    ["step"] = d.Step,
                    ["expected"] = d.Expected is null ? null : StepComparison.Comparable(d.Expected),
                    ["actual"] = d.Actual is null ? null : StepComparison.Comparable(d.Actual),
                    ["note"] = d.Note,
                },
            }));
        }
        else if (result.Divergence is { } d)
        {
            var o = Console.Out;
            o.WriteLine($"run {runId} ({result.Agent}): divergence at step {d.Step} of {result.Steps} (steps 1-{d.Step - 1} reproduced)");
            o.WriteLine($"  expected: {(d.Expected is null ? "(nothing)" : RunDocuments.ToJson(StepComparison.Comparable(d.Expected)))}");
            o.WriteLine($"  actual:   {(d.Actual is null ? "(nothing)" : RunDocuments.ToJson(StepComparison.Comparable(d.Actual)))}");
            if (d.Note is not null) o.WriteLine($"  {d.Note}");
        }
        else
        {
            Console.Out.WriteLine($"run {runId} ({result.Agent}): replayed {result.Steps} steps, 0 divergences");
        }
        return result.Reproduced ? 0 : 1;
    }
}
