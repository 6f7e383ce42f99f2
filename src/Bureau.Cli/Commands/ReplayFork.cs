using System.Text.Json.Nodes;
using Bureau.Replay;
using Bureau.Storage.Sqlite;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Bureau.Cli.Commands;

/// <summary>
/// <c>bureau replay ID --from-step N [--model M] [--instructions FILE]</c>: a what-if. A new run of the
/// same agent shares the recorded run's journal up to step N, then goes on live (or on a scripted model)
/// with the model or instructions changed, in a throwaway database beside nothing: the recorded run and
/// its database are only read. The two runs' steps are shown side by side. Write tools are left out
/// of the fork unless <c>--allow-writes</c>: a what-if should not refund anyone twice.
/// </summary>
internal static class ReplayFork
{
    public sealed record Options(long FromStep, string? Model, string? InstructionsFile, bool AllowWrites);

    public static async Task<int> RunAsync(BureauDefinitions definitions, string runId, IReadOnlyList<JournalRecord> journal, Options options, bool json, CancellationToken ct)
    {
        var stderr = Console.Error;
        string? instructions = null;
        if (options.InstructionsFile is { } file)
        {
            if (!File.Exists(file))
            {
                stderr.WriteLine($"bureau: --instructions: no file at '{file}'");
                return 2;
            }
            instructions = await File.ReadAllTextAsync(file, ct);
        }

        // The fork runs as POST /v1/runs/{id}/whatif runs it (RunForker: its own engine on a one-run store seeded with
        // the shared steps); an agent's memory goes to a throwaway database, so the recorded run's is never touched.
        var dir = Path.Combine(Path.GetTempPath(), "bureau-fork-" + Guid.NewGuid().ToString("n"));
        Directory.CreateDirectory(dir);
        try
        {
            var memory = new SqliteMemoryStore(new SqliteStoreOptions { Path = Path.Combine(dir, "fork.db"), Durability = StoreDurability.Process });
            await memory.InitializeAsync(ct);
            using var loggers = LoggerFactory.Create(b => b
                .AddSimpleConsole(o => o.SingleLine = true)
                .SetMinimumLevel(LogLevel.Warning)
                .Services.Configure<Microsoft.Extensions.Logging.Console.ConsoleLoggerOptions>(o => o.LogToStandardErrorThreshold = LogLevel.Trace)); // stdout carries --json
            // Warnings and errors only: the fork's steps are the answer.
            var forker = new RunForker(definitions, loggerFactory: loggers, forkMemory: memory);
            using var limit = CancellationTokenSource.CreateLinkedTokenSource(ct);
            limit.CancelAfter(TimeSpan.FromMinutes(10));
            ForkResult fork;
            try
            {
                fork = await forker.ForkAsync(runId, journal, new ForkRequest(options.FromStep, options.Model, instructions, options.AllowWrites, "bureau:replay-fork"), limit.Token);
            }
            catch (ForkRequestException e)
            {
                // The request's fields are the command's options here.
                stderr.WriteLine("bureau: " + e.Message.Replace("'fromStep'", "--from-step", StringComparison.Ordinal).Replace("'model'", "--model", StringComparison.Ordinal));
                return 2;
            }
            Print(runId, journal, fork.ForkId, fork.Journal, fork.Run, options, fork.Model, fork.WriteToolsLeftOut, json);
            return 0;
        }
        finally
        {
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            try { Directory.Delete(dir, recursive: true); } catch (IOException) { }
        }
    }

    private static void Print(string runId, IReadOnlyList<JournalRecord> original, string forkId, IReadOnlyList<JournalRecord> fork, RunRecord result,
        Options options, string model, IReadOnlyList<string> leftOut, bool json)
    {
        var rows = Math.Max(original.Count, fork.Count);
        if (json)
        {
            var steps = new JsonArray();
            for (var i = 0; i < rows; i++)
            {
                steps.Add(new JsonObject
                {
                    ["n"] = i + 1,
                    ["shared"] = i < options.FromStep,
                    ["original"] = i < original.Count ? StepComparison.Comparable(original[i].Entry) : null,
                    ["fork"] = i < fork.Count ? StepComparison.Comparable(fork[i].Entry) : null,
                });
            }
            Console.Out.WriteLine(RunDocuments.ToJson(new JsonObject
            {
                ["runId"] = runId,
                ["fork"] = new JsonObject
                {
                    ["id"] = forkId, ["fromStep"] = options.FromStep, ["model"] = model, ["instructions"] = options.InstructionsFile,
                    ["writeToolsLeftOut"] = new JsonArray([.. leftOut.Select(t => (JsonNode?)t)]),
                    ["status"] = result.Status.ToWireName(), ["output"] = result.Output, ["error"] = result.Error,
                },
                ["steps"] = steps,
            }));
            return;
        }
        var o = Console.Out;
        o.WriteLine($"run {runId} forked after step {options.FromStep} on model '{model}'{(options.InstructionsFile is null ? "" : $" with instructions from {options.InstructionsFile}")}: the fork {result.Status.ToWireName()}");
        if (leftOut.Count > 0) o.WriteLine($"  write tools left out of the fork (--allow-writes runs them): {string.Join(", ", leftOut)}");
        o.WriteLine($"  {"step",4}  {"original",-58}  fork");
        for (var i = 0; i < rows; i++)
        {
            var left = i < original.Count ? Summary(original[i].Entry) : "";
            var right = i < options.FromStep ? "(same)" : i < fork.Count ? Summary(fork[i].Entry) : "";
            o.WriteLine($"  {i + 1,4}  {left,-58}  {right}");
        }
        o.WriteLine($"  original: {Excerpt(original[^1].Entry is RunFinished f ? f.Output ?? f.Error : null)}");
        o.WriteLine($"  fork:     {(result.Status == RunStatus.Waiting ? $"waiting ({result.WaitingFor?.Reason}): the fork stops here; it is not kept" : Excerpt(result.Output ?? result.Error))}");
    }

    private static string Summary(JournalEntry entry)
    {
        var text = entry switch
        {
            ModelResponded m when m.ToolCalls.Count > 0 => $"{entry.Kind} {string.Join(", ", m.ToolCalls.Select(c => $"{c.Name}({c.Arguments})"))}",
            ModelResponded m => $"{entry.Kind} \"{m.Text}\"",
            ToolCompleted t => $"{entry.Kind} {t.Tool}: {t.Content}",
            ToolCallRejected r => $"{entry.Kind} {r.Tool}: {r.Error}",
            RunFinished f => $"{entry.Kind} {f.Status.ToWireName()}",
            _ => entry.Kind,
        };
        return Excerpt(text, 58);
    }

    private static string Excerpt(string? text, int max = 100)
    {
        if (text is null) return "";
        text = text.ReplaceLineEndings(" ");
        return text.Length <= max ? text : string.Concat(text.AsSpan(0, max - 1), "…");
    }
}
