using System.CommandLine;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;

namespace Bureau.Cli.Commands;

/// <summary><c>bureau run FILE --agent NAME --input TEXT</c>: one run, in process, with live progress.</summary>
internal static class RunCommand
{
    public static Command Create()
    {
        var file = new Argument<string>("file") { Description = "The manifest (bureau.yaml)." };
        var agent = new Option<string>("--agent") { Description = "The agent to run.", Required = true, HelpName = "NAME" };
        var input = new Option<string>("--input") { Description = "The run's input text.", Required = true, HelpName = "TEXT" };
        var key = new Option<string?>("--idempotency-key")
        {
            Description = "Run the same command with the same key after a crash to resume that run instead of starting another.",
            HelpName = "KEY",
        };
        var db = CliShared.DbOption();
        var json = CliShared.JsonOption("Print only {\"runId\",\"status\",\"output\"} on stdout; progress goes to stderr.");
        var durability = CliShared.DurabilityOption();
        var otlp = CliShared.OtlpOptions();
        var cmd = new Command("run", "Run an agent once, in this process, durably (exit 0 succeeded, 1 failed or canceled, 3 waiting).")
        {
            file, agent, input, key, db, json, durability, otlp.Endpoint, otlp.Protocol,
        };
        cmd.SetAction((parse, ct) => RunAsync(
            parse.GetValue(file)!, parse.GetValue(agent)!, parse.GetValue(input)!, parse.GetValue(key),
            parse.GetValue(db)!, parse.GetValue(json), CliShared.ParseDurability(parse.GetValue(durability)!), CliShared.Telemetry(parse, otlp), ct));
        return cmd;
    }

    private static async Task<int> RunAsync(string file, string agent, string input, string? key, string db, bool json, Storage.Sqlite.StoreDurability durability,
        CliTelemetry? telemetry, CancellationToken ct)
    {
        var stderr = Console.Error;
        var definitions = CliShared.LoadManifest(file, stderr);
        if (definitions is null) return 2;
        if (!definitions.Agents.ContainsKey(agent) && !definitions.Teams.ContainsKey(agent))
        {
            stderr.WriteLine($"bureau: agent '{agent}' is not defined in {file}; agents: {string.Join(", ", definitions.Agents.Keys.Order(StringComparer.Ordinal))}"
                + (definitions.Teams.Count > 0 ? $"; teams: {string.Join(", ", definitions.Teams.Keys.Order(StringComparer.Ordinal))}" : ""));
            return 2;
        }
        var scripted = ScriptedModels(definitions, agent);
        if (scripted.Count > 0)
        {
            stderr.WriteLine(definitions.Teams.ContainsKey(agent)
                ? $"bureau: team '{agent}' has members on SCRIPTED models ({string.Join(", ", scripted)}): answers come from their rules, not from a real model."
                : $"bureau: agent '{agent}' uses model '{scripted[0]}', the SCRIPTED model: answers come from its rules, not from a real model.");
        }

        await using var bureau = await EmbeddedBureau.StartAsync(definitions, db, durability, 64, LogLevel.Warning, ct, configure: telemetry?.Apply);
        var submitted = await bureau.Engine.SubmitAsync(new RunRequest(agent, input, key, Actor: "cli:" + Environment.UserName), ct);
        var run = submitted.Run;
        stderr.WriteLine(submitted.Created
            ? $"run {run.Id} started (db {db})"
            : $"run {run.Id} already exists for idempotency key '{key}' ({run.Status.ToWireName()}); following it");

        RunRecord final;
        for (long after = 1; ;)
        {
            await foreach (var e in bureau.Engine.WatchAsync(run.Id, afterStep: after, includeActivity: false, untilWaiting: true, cancellationToken: ct))
            {
                after = e.Record!.N;
                stderr.WriteLine($"{e.Record.N,4} {e.Record.Entry.Kind,-15} {JournalText.Describe(e.Record.Entry)}");
            }
            final = await bureau.Engine.GetRunAsync(run.Id, ct) ?? throw new InvalidOperationException($"run {run.Id} vanished");
            // A team waits for its members: they run here, go on following it. A member that ended may
            // already have woken it (queued, or running again) by the time it is read: follow it too.
            if (final.Status.IsTerminal() || (final.Status == RunStatus.Waiting && final.WaitingFor is not ChildRunsWait)) break;
            await Task.Delay(50, ct);
        }
        if (json)
        {
            Console.Out.WriteLine(RunDocuments.ToJson(new JsonObject
            {
                ["runId"] = final.Id,
                ["status"] = final.Status.ToWireName(),
                ["output"] = final.Output,
            }));
        }
        else
        {
            PrintOutcome(final, db, Console.Out);
        }
        return ExitCode(final.Status);
    }

    public static void PrintOutcome(RunRecord run, string db, TextWriter stdout)
    {
        switch (run.Status)
        {
            case RunStatus.Succeeded:
                stdout.WriteLine(run.Output);
                break;
            case RunStatus.Waiting when run.WaitingFor is InDoubtWait w:
                stdout.WriteLine($"run {run.Id} is waiting ({w.Reason}): step {w.Step} called '{w.Tool}' with key {w.Key}, and a crash left its outcome unknown{(w.Deadline is { } d ? $" (if nobody decides by {d:u}, the call counts as failed)" : "")}.");
                stdout.WriteLine($"Decide with: bureau runs resolve {run.Id} --step {w.Step} --as done|retry|failed --db {db}");
                break;
            case RunStatus.Waiting when run.WaitingFor is ApprovalWait a:
                stdout.WriteLine($"run {run.Id} waits for an approval: '{a.Tool}' with {a.Arguments} (policy '{a.Rule}'); "
                    + $"approvers: {(a.Approvers.Count == 0 ? "any approver" : string.Join(", ", a.Approvers))}{(a.Deadline is { } ad ? $", until {ad:u}" : "")}.");
                stdout.WriteLine($"Decide with: bureau approvals approve|reject {run.Id}:{a.Step} --db {db} (or POST /v1/approvals/{run.Id}:{a.Step}/decision)");
                break;
            case RunStatus.Waiting when run.WaitingFor is { } w:
                stdout.WriteLine($"run {run.Id} is waiting ({w.Reason}) on step {w.Step}{(w.Deadline is { } deadline ? $" until {deadline:u}" : "")}.");
                break;
            default:
                stdout.WriteLine($"run {run.Id} {run.Status.ToWireName()}: {run.Error}");
                break;
        }
    }

    /// <summary>The scripted models <paramref name="target"/> (an agent, or a team's members, transitively) runs on.</summary>
    internal static List<string> ScriptedModels(BureauDefinitions definitions, string target)
    {
        var models = new SortedSet<string>(StringComparer.Ordinal);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var pending = new Stack<string>([target]);
        while (pending.Count > 0)
        {
            var name = pending.Pop();
            if (!seen.Add(name)) continue;
            if (definitions.Agents.TryGetValue(name, out var a) && definitions.Models.TryGetValue(a.Model, out var m) && m.Provider == "scripted") models.Add(m.Name);
            if (definitions.Teams.TryGetValue(name, out var t)) foreach (var used in t.Uses()) pending.Push(used);
        }
        return [.. models];
    }

    public static int ExitCode(RunStatus status) => status switch
    {
        RunStatus.Succeeded => 0,
        RunStatus.Waiting => 3,
        _ => 1,
    };
}
