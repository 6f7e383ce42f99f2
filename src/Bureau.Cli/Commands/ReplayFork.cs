using System.Text.Json.Nodes;
using Bureau.Replay;
using Bureau.Storage.Sqlite;
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
        if (journal.Count == 0 || journal[0].Entry is not RunStarted started)
        {
            stderr.WriteLine($"bureau: run {runId} has no run.started step; it cannot be forked");
            return 2;
        }
        if ((started.RunKind ?? RunKinds.Agent) != RunKinds.Agent)
        {
            stderr.WriteLine($"bureau: run {runId} is a '{started.RunKind}' run; only agent runs can be forked yet");
            return 2;
        }
        if (options.FromStep < 1 || options.FromStep >= journal.Count)
        {
            stderr.WriteLine($"bureau: --from-step must be between 1 and {journal.Count - 1} (run {runId} has {journal.Count} steps; the fork goes on after step N)");
            return 2;
        }
        if (journal[(int)options.FromStep - 1].Entry is RunFinished or RunCanceled)
        {
            stderr.WriteLine($"bureau: step {options.FromStep} of run {runId} ends the run; fork from an earlier step");
            return 2;
        }
        if (!definitions.Agents.TryGetValue(started.Agent, out var agent))
        {
            stderr.WriteLine($"bureau: agent '{started.Agent}' of run {runId} is not in the manifest (use --file to name the one it ran with)");
            return 2;
        }
        var model = options.Model ?? agent.Model;
        if (!definitions.Models.ContainsKey(model))
        {
            stderr.WriteLine($"bureau: --model '{model}' is not a model of the manifest; models: {string.Join(", ", definitions.Models.Keys.Order(StringComparer.Ordinal))}");
            return 2;
        }
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
        var forked = agent.WithModel(model, instructions);
        var leftOut = options.AllowWrites
            ? []
            : forked.Tools.Where(t => definitions.Tools.TryGetValue(t, out var tool) && tool.Effect == ToolEffect.Write).ToList();
        if (leftOut.Count > 0) forked = forked.WithTools([.. forked.Tools.Except(leftOut, StringComparer.Ordinal)]);
        definitions.Add(forked);

        var dir = Path.Combine(Path.GetTempPath(), "bureau-fork-" + Guid.NewGuid().ToString("n"));
        Directory.CreateDirectory(dir);
        var db = Path.Combine(dir, "fork.db");
        var forkId = "fork-" + Guid.NewGuid().ToString("n")[..12];
        try
        {
            // The shared steps, copied into the throwaway database as the fork's own journal.
            await using (var store = new SqliteRunStore(new SqliteStoreOptions { Path = db }))
            {
                await store.InitializeAsync(ct);
                var first = journal[0];
                await store.SubmitAsync(new NewRun
                {
                    Id = forkId, Agent = started.Agent, Input = started.Input, Actor = "bureau:replay-fork",
                    Started = new RunStarted(started.Agent, started.Input, "bureau:replay-fork"), CreatedAt = first.At,
                }, ct);
                if (options.FromStep > 1)
                {
                    await store.AppendAsync(new AppendRequest
                    {
                        RunId = forkId, ExpectedVersion = 1, At = journal[(int)options.FromStep - 1].At,
                        Entries = [.. journal.Skip(1).Take((int)options.FromStep - 1).Select(r => r.Entry)],
                        Update = new RunUpdate { Status = RunStatus.Queued },
                    }, ct);
                }
            }

            RunRecord result;
            IReadOnlyList<JournalRecord> forkJournal;
            await using (var bureau = await EmbeddedBureau.StartAsync(definitions, db, StoreDurability.Process, 4, LogLevel.Warning, ct))
            {
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
                timeout.CancelAfter(TimeSpan.FromMinutes(10));
                result = await bureau.Engine.WaitAsync(forkId, timeout.Token);
                forkJournal = await bureau.Store.ReadJournalAsync(forkId, 0, ct);
            }
            Print(runId, journal, forkId, forkJournal, result, options, model, leftOut, json);
            return 0;
        }
        finally
        {
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
