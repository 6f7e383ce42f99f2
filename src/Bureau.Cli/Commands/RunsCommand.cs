using Microsoft.Extensions.DependencyInjection;
using System.CommandLine;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Spectre.Console;

namespace Bureau.Cli.Commands;

/// <summary><c>bureau runs list|show|resolve</c>.</summary>
internal static class RunsCommand
{
    public static Command Create()
    {
        var cmd = new Command("runs", "List, inspect and resolve runs in a database.");
        cmd.Subcommands.Add(List());
        cmd.Subcommands.Add(Show());
        cmd.Subcommands.Add(Resolve());
        cmd.Subcommands.Add(Resume());
        cmd.Subcommands.Add(Failures());
        cmd.Subcommands.Add(Rollback());
        cmd.Subcommands.Add(Export());
        return cmd;
    }

    private static Command Export()
    {
        var agent = new Option<string?>("--agent") { Description = "Only runs of this agent.", HelpName = "NAME" };
        var status = new Option<string?>("--status") { Description = "Only runs with this status (succeeded, failed, canceled). Default: every finished run.", HelpName = "STATUS" };
        var before = new Option<string?>("--before")
        {
            Description = "Only runs that ended before this day (2026-12-06, UTC), time (2026-12-06T10:00Z) or span back from now (30d).",
            HelpName = "TIME|SPAN",
        };
        var output = new Option<string?>("--out") { Description = "Write to this file (replaced if there). Default: stdout.", HelpName = "FILE" };
        var db = CliShared.DbOption();
        var cmd = new Command("export", "Write finished runs as JSON lines: one object per run, its record and its journal (the document of runs show --json).")
        {
            agent, status, before, output, db,
        };
        cmd.SetAction(async (parse, ct) =>
        {
            RunStatus? s = null;
            if (parse.GetValue(status) is { } statusText)
            {
                if (!RunStatusExtensions.TryParseWireName(statusText, out var parsed) || !parsed.IsTerminal())
                    throw new CliUsageException($"--status must be one of succeeded, failed, canceled (only finished runs are exported); not '{statusText}'");
                s = parsed;
            }
            var query = new RunExportQuery { Agent = parse.GetValue(agent), Status = s, Before = CostsCommand.ParseBound("--before", parse.GetValue(before), DateTimeOffset.UtcNow) };
            await using var store = await CliShared.OpenExistingStoreAsync(parse.GetValue(db)!, ct);
            var file = parse.GetValue(output);
            if (file is null)
            {
                await using var stdout = Console.OpenStandardOutput();
                await RunExport.WriteAsync(store, query, stdout, ct);
                return 0;
            }
            if (Directory.Exists(file)) throw new CliUsageException($"--out '{file}' is a directory; name the file to write (for example {Path.Combine(file, "runs.jsonl")})");
            FileStream stream;
            try
            {
                stream = new FileStream(file, FileMode.Create, FileAccess.Write, FileShare.Read);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                throw new CliUsageException($"--out '{file}' cannot be written: {ex.Message}");
            }
            int count;
            try
            {
                await using (stream)
                    count = await RunExport.WriteAsync(store, query, stream, ct);
            }
            catch (IOException ex)
            {
                // A full disk or a lost mount while writing: say the file is incomplete, do not abort with a stack trace.
                Console.Error.WriteLine($"bureau: writing '{file}' failed: {ex.Message}; the file is incomplete, export again");
                return 1;
            }
            Console.Error.WriteLine($"{count} run(s) written to {file}");
            return 0;
        });
        return cmd;
    }

    private static Command Rollback()
    {
        var id = new Argument<string>("id") { Description = "The finished run whose writes to compensate." };
        var file = new Option<string?>("--file") { Description = "The manifest: run the rollback now, in this process, and wait for it (otherwise a host serving the database runs it).", HelpName = "FILE" };
        var db = CliShared.DbOption();
        var cmd = new Command("rollback", "Compensate a finished run's completed writes, newest first, with each write tool's declared compensation.") { id, file, db };
        cmd.SetAction(async (parse, ct) =>
        {
            var runId = parse.GetValue(id)!;
            var dbPath = parse.GetValue(db)!;
            var actor = "cli:" + Environment.UserName;
            var manifest = parse.GetValue(file);
            if (manifest is null)
            {
                var submitted = await CliShared.WithEngineCommandsAsync(dbPath, e => e.RollbackAsync(runId, actor, ct), ct);
                Console.Out.WriteLine($"rollback run {submitted.Run.Id} {(submitted.Created ? "queued" : "already exists")} for run {runId}; a host serving {dbPath} runs it (or pass --file to run it now)");
                return 0;
            }
            var definitions = CliShared.LoadManifest(manifest, Console.Error);
            if (definitions is null) return 2;
            CliShared.CheckDbPath(dbPath);
            if (!File.Exists(dbPath)) throw new CliUsageException($"no database at '{dbPath}' (use --db to name one)");
            await using var bureau = await EmbeddedBureau.StartAsync(definitions, dbPath, Storage.Sqlite.StoreDurability.Full, 64, LogLevel.Warning, ct);
            var rollback = await bureau.Engine.RollbackAsync(runId, actor, ct);
            Console.Error.WriteLine($"rollback run {rollback.Run.Id}{(rollback.Created ? "" : " (already there)")} for run {runId}");
            await foreach (var e in bureau.Engine.WatchAsync(rollback.Run.Id, 1, untilWaiting: true, cancellationToken: ct))
                Console.Error.WriteLine($"{e.Record!.N,4} {e.Record.Entry.Kind,-15} {JournalText.Describe(e.Record.Entry)}");
            var final = (await bureau.Engine.GetRunAsync(rollback.Run.Id, ct))!;
            RunCommand.PrintOutcome(final, dbPath, Console.Out);
            return RunCommand.ExitCode(final.Status);
        });
        return cmd;
    }

    private static Command Failures()
    {
        var since = new Option<string?>("--since")
        {
            Description = "Only runs that ended in this last span (30m, 24h, 7d) or after this time (2026-12-06T10:00Z). Default: all.",
            HelpName = "SPAN|TIME",
        };
        var limit = new Option<int>("--limit") { Description = "Read at most this many failed runs (newest first).", DefaultValueFactory = _ => 10_000 };
        var db = CliShared.DbOption();
        var json = CliShared.JsonOption("Print {\"groups\":[...]} on stdout.");
        var cmd = new Command("failures", "Failed and canceled runs grouped by cause and dependency: count, first and last seen, an example run, a hint.")
        {
            since, limit, db, json,
        };
        cmd.SetAction(async (parse, ct) =>
        {
            var from = ParseSince(parse.GetValue(since), DateTimeOffset.UtcNow);
            if (parse.GetValue(limit) < 1) throw new CliUsageException($"--limit must be at least 1, not {parse.GetValue(limit)}");
            await using var store = await CliShared.OpenExistingStoreAsync(parse.GetValue(db)!, ct);
            var groups = await Resilience.FailureReport.ReadAsync(store, from, parse.GetValue(limit), ct);
            if (parse.GetValue(json))
            {
                Console.Out.WriteLine(RunDocuments.ToJson(Resilience.FailureReport.ToJson(groups), indented: true));
                return 0;
            }
            if (groups.Count == 0)
            {
                Console.Out.WriteLine(from is null ? "no failed or canceled runs" : $"no failed or canceled runs since {from:u}");
                return 0;
            }
            var o = Console.Out;
            o.WriteLine($"{"COUNT",5}  {"CAUSE",-24} {"DEPENDENCY",-24} {"FIRST SEEN",-20} {"LAST SEEN",-20} EXAMPLE RUN");
            foreach (var g in groups)
            {
                var cause = g.Cause + (g.Kind is null ? "" : "/" + g.Kind);
                o.WriteLine($"{g.Count,5}  {cause,-24} {g.Dependency ?? "-",-24} {g.FirstSeen:u} {g.LastSeen:u} {g.ExampleRun}");
                if (g.Signature is not null) o.WriteLine($"       error: {g.Signature}");
                o.WriteLine($"       hint: {g.Hint}{(g.ExampleStep is { } step ? $" (the example failed at step {step})" : "")}");
                if (g.ByDay is { Count: > 1 } days) o.WriteLine($"       by day: {string.Join(", ", days.Select(d => $"{d.Key} {d.Value}"))}");
            }
            return 0;
        });
        return cmd;
    }

    /// <summary>"24h", "30m", "7d", "90s" before <paramref name="now"/>, or a time; null for none.</summary>
    internal static DateTimeOffset? ParseSince(string? text, DateTimeOffset now)
    {
        if (string.IsNullOrWhiteSpace(text)) return null;
        text = text.Trim();
        var unit = text[^1];
        if (unit is 's' or 'm' or 'h' or 'd' && double.TryParse(text[..^1], System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var n) && n >= 0)
        {
            return now - unit switch { 's' => TimeSpan.FromSeconds(n), 'm' => TimeSpan.FromMinutes(n), 'h' => TimeSpan.FromHours(n), _ => TimeSpan.FromDays(n) };
        }
        if (DateTimeOffset.TryParse(text, System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.AssumeUniversal, out var at)) return at;
        throw new CliUsageException($"--since: '{text}' is neither a span (30m, 24h, 7d) nor a time (2026-12-06T10:00Z)");
    }

    private static Command Resume()
    {
        var file = new Argument<string>("file") { Description = "The manifest the runs' agents come from." };
        var db = CliShared.DbOption();
        var json = CliShared.JsonOption("Print the counts by status as JSON on stdout.");
        var cmd = new Command("resume", "Resume every queued or running run of a database from its journal, and wait until none is left (exit 0; 3 if some wait for a person).")
        {
            file, db, json,
        };
        cmd.SetAction(async (parse, ct) =>
        {
            var definitions = CliShared.LoadManifest(parse.GetValue(file)!, Console.Error);
            if (definitions is null) return 2;
            var dbPath = parse.GetValue(db)!;
            CliShared.CheckDbPath(dbPath);
            if (!File.Exists(dbPath)) throw new CliUsageException($"no database at '{dbPath}' (use --db to name one)");
            await using var bureau = await EmbeddedBureau.StartAsync(definitions, dbPath, Storage.Sqlite.StoreDurability.Full, 64, LogLevel.Warning, ct);
            Console.Error.WriteLine($"resuming {await CountUnfinishedAsync(bureau.Store, ct)} unfinished runs from {dbPath}");
            using var done = new SemaphoreSlim(0);
            using var sub = bureau.Engine.Events.SubscribeAll(e => { if (e.Record?.Entry is RunFinished or RunWaiting) done.Release(); });
            while (await CountUnfinishedAsync(bureau.Store, ct) > 0)
                await done.WaitAsync(TimeSpan.FromSeconds(1), ct);
            var counts = new Dictionary<string, int>();
            foreach (var s in Enum.GetValues<RunStatus>())
            {
                var n = 0;
                string? cursor = null;
                do
                {
                    var page = await bureau.Store.ListRunsAsync(new RunQuery { Status = s, Limit = 1000, Cursor = cursor }, ct);
                    n += page.Items.Count;
                    cursor = page.Next;
                }
                while (cursor is not null);
                counts[s.ToWireName()] = n;
            }
            if (parse.GetValue(json))
            {
                var o = new JsonObject();
                foreach (var (k, v) in counts) o[k] = v;
                Console.Out.WriteLine(RunDocuments.ToJson(o));
            }
            else
            {
                Console.Out.WriteLine(string.Join(", ", counts.Where(c => c.Value > 0).Select(c => $"{c.Value} {c.Key}")));
            }
            return counts["waiting"] > 0 ? 3 : 0;
        });
        return cmd;
    }

    private static Command List()
    {
        var status = new Option<string?>("--status") { Description = "Only runs with this status (queued, running, waiting, succeeded, failed, canceled).", HelpName = "STATUS" };
        var agent = new Option<string?>("--agent") { Description = "Only runs of this agent.", HelpName = "NAME" };
        var limit = new Option<int>("--limit") { Description = "At most this many (newest first), 1 to 1000.", DefaultValueFactory = _ => 50 };
        var cursorOption = new Option<string?>("--cursor")
        {
            Description = "The page after the one whose \"next\" this is (printed by --json, or under the table); the same --status and --agent.",
            HelpName = "CURSOR",
        };
        var db = CliShared.DbOption();
        var json = CliShared.JsonOption("Print {\"items\":[...],\"next\":CURSOR} on stdout (next: null on the last page).");
        var cmd = new Command("list", "List runs, newest first.") { status, agent, limit, cursorOption, db, json };
        cmd.SetAction(async (parse, ct) =>
        {
            // As GET /v1/runs: the store would quietly clamp -1 or 5000 to 1 or 1000.
            if (parse.GetValue(limit) is < 1 or > 1000)
                throw new CliUsageException($"--limit must be an integer from 1 to 1000, not {parse.GetValue(limit)}");
            RunStatus? s = null;
            var statusText = parse.GetValue(status);
            if (statusText is not null)
            {
                if (!RunStatusExtensions.TryParseWireName(statusText, out var parsed))
                    throw new CliUsageException($"--status must be one of queued, running, waiting, succeeded, failed, canceled; not '{statusText}'");
                s = parsed;
            }
            var cursor = parse.GetValue(cursorOption);
            if (cursor is { Length: 0 }) throw new CliUsageException("--cursor must be a page's \"next\" as printed, not empty");
            await using var store = await CliShared.OpenExistingStoreAsync(parse.GetValue(db)!, ct);
            RunPage page;
            try
            {
                page = await store.ListRunsAsync(new RunQuery { Status = s, Agent = parse.GetValue(agent), Limit = parse.GetValue(limit), Cursor = cursor }, ct);
            }
            catch (ArgumentException) when (cursor is not null)
            {
                // As GET /v1/runs?cursor=: the store refuses a cursor it did not hand out.
                throw new CliUsageException($"--cursor '{cursor}' is not one this database returned: pass a page's \"next\" as printed, or no --cursor for the first page");
            }
            if (parse.GetValue(json))
            {
                var items = new JsonArray();
                foreach (var r in page.Items) items.Add(RunDocuments.Summary(r));
                Console.Out.WriteLine(RunDocuments.ToJson(new JsonObject { ["items"] = items, ["next"] = page.Next }));
                return 0;
            }
            if (page.Items.Count == 0)
            {
                Console.Out.WriteLine("no runs");
                return 0;
            }
            // Ids, names and times are never wrapped (a wrapped id cannot be copied; stdout to a pipe is 80 columns wide): the output column gives way.
            var table = new Table().AddColumns(
                new TableColumn("id").NoWrap(), new TableColumn("agent").NoWrap(), new TableColumn("status").NoWrap(),
                new TableColumn("steps").NoWrap(), new TableColumn("created").NoWrap(), new TableColumn("output / error"));
            foreach (var r in page.Items)
            {
                table.AddRow(
                    Markup.Escape(r.Id), Markup.Escape(r.Agent), StatusMarkup(r.Status), r.Version.ToString(),
                    r.CreatedAt.ToLocalTime().ToString("yyyy-MM-dd HH:mm:ss"),
                    Markup.Escape(JournalText.Cut(JournalText.OneLine(r.Output ?? r.Error ?? (r.WaitingFor is { } w ? $"waiting on step {w.Step} ({w.Reason})" : "")), 60)));
            }
            // To a file or a pipe there is no terminal's width to fit: one line per run (for grep), not 80 columns.
            if (Console.IsOutputRedirected) AnsiConsole.Profile.Width = Math.Max(AnsiConsole.Profile.Width, 200);
            AnsiConsole.Write(table);
            if (page.Next is { } next) Console.Out.WriteLine($"more: --cursor {next}");
            return 0;
        });
        return cmd;
    }

    private static string StatusMarkup(RunStatus s) => s switch
    {
        RunStatus.Succeeded => "[green]succeeded[/]",
        RunStatus.Failed => "[red]failed[/]",
        RunStatus.Waiting => "[yellow]waiting[/]",
        RunStatus.Canceled => "[grey]canceled[/]",
        _ => s.ToWireName(),
    };

    private static Command Show()
    {
        var id = new Argument<string>("id") { Description = "The run id." };
        var db = CliShared.DbOption();
        var json = CliShared.JsonOption("Print the run document (as GET /v1/runs/{id}) on stdout.");
        var tree = new Option<bool>("--tree") { Description = "Show the run's tree instead: its child runs (a team's members), theirs, and so on, with status and output." };
        var cmd = new Command("show", "Show a run and its whole journal.") { id, db, json, tree };
        cmd.SetAction(async (parse, ct) =>
        {
            var runId = parse.GetValue(id)!;
            await using var store = await CliShared.OpenExistingStoreAsync(parse.GetValue(db)!, ct);
            var run = await store.GetRunAsync(runId, ct);
            if (run is null)
            {
                Console.Error.WriteLine($"bureau: run {runId} does not exist in {parse.GetValue(db)}");
                return 1;
            }
            if (parse.GetValue(tree))
            {
                await PrintTreeAsync(store, run, "", true, Console.Out, 0, ct);
                return 0;
            }
            var journal = await store.ReadJournalAsync(runId, 0, ct);
            if (parse.GetValue(json))
            {
                Console.Out.WriteLine(RunDocuments.ToJson(RunDocuments.Full(run, journal), indented: true));
                return 0;
            }
            var o = Console.Out;
            o.WriteLine($"run {run.Id}  agent {run.Agent}  {run.Status.ToWireName()}{(run.Outcome is null ? "" : " (" + run.Outcome + ")")}");
            o.WriteLine($"created {run.CreatedAt:u}  updated {run.UpdatedAt:u}  tokens {run.Usage.InputTokens}+{run.Usage.OutputTokens}  cost {RunDocuments.CostOf(run, journal).ToString("0.######", System.Globalization.CultureInfo.InvariantCulture)}");
            if (Resilience.FailureReport.FailureOf(run, journal) is { } failure)
                o.WriteLine($"cause: {JournalText.Cause(failure)}{(failure.Step is { } fs ? $" at step {fs}" : "")}; hint: {failure.Hint}");
            o.WriteLine($"input: {run.Input}");
            o.WriteLine();
            foreach (var r in journal)
                o.WriteLine($"{r.N,4}  {r.At.ToLocalTime():HH:mm:ss.fff}  {r.Entry.Kind,-15} {JournalText.Describe(r.Entry)}");
            o.WriteLine();
            RunCommand.PrintOutcome(run, parse.GetValue(db)!, o);
            return 0;
        });
        return cmd;
    }

    /// <summary>The run, then its children (oldest first), indented as a tree; at most 10 levels and 1,000 children per run.</summary>
    private static async Task PrintTreeAsync(IRunStore store, RunRecord run, string indent, bool last, TextWriter o, int depth, CancellationToken ct)
    {
        var branch = depth == 0 ? "" : indent + (last ? "└─ " : "├─ ");
        var what = run.Kind == RunKinds.Agent ? "agent" : run.Kind;
        var result = run.Status == RunStatus.Succeeded ? run.Output : run.Error;
        o.WriteLine($"{branch}{run.Id}  {what} {run.Agent}  {run.Status.ToWireName()}{(run.Outcome is null ? "" : " (" + run.Outcome + ")")}"
            + $"  tokens {run.Usage.TotalTokens}{(run.Cost == 0 ? "" : "  cost " + run.Cost.ToString("0.######", System.Globalization.CultureInfo.InvariantCulture))}{(string.IsNullOrEmpty(result) ? "" : "  " + JournalText.Cut(result, 60))}");
        if (depth >= 10) return;
        var children = new List<RunRecord>();
        string? cursor = null;
        do
        {
            var page = await store.ListRunsAsync(new RunQuery { ParentRunId = run.Id, Limit = 500, Cursor = cursor }, ct);
            children.AddRange(page.Items);
            cursor = children.Count < 1000 ? page.Next : null;
        }
        while (cursor is not null);
        children.Reverse(); // oldest first
        var childIndent = depth == 0 ? "" : indent + (last ? "   " : "│  ");
        for (var i = 0; i < children.Count; i++)
            await PrintTreeAsync(store, children[i], childIndent, i == children.Count - 1, o, depth + 1, ct);
    }

    private static Command Resolve()
    {
        var id = new Argument<string>("id") { Description = "The waiting run." };
        var step = new Option<long>("--step") { Description = "The in-doubt step it waits on.", Required = true, HelpName = "N" };
        var asOption = new Option<string>("--as")
        {
            Description = "done: the tool did run (give its result with --result); retry: run it again with the same idempotency key; failed: tell the model it failed.",
            Required = true,
            HelpName = "done|retry|failed",
        };
        var result = new Option<string?>("--result") { Description = "With --as done or failed: the text the model gets as the tool's result.", HelpName = "TEXT" };
        var file = new Option<string?>("--file") { Description = "The manifest: continue the run now, in this process, and wait for it.", HelpName = "FILE" };
        var db = CliShared.DbOption();
        var cmd = new Command("resolve", "Decide an in-doubt step of a waiting run.") { id, step, asOption, result, file, db };
        cmd.SetAction(async (parse, ct) =>
        {
            var resolution = parse.GetValue(asOption)!.ToLowerInvariant() switch
            {
                "done" => StepResolution.Done,
                "retry" => StepResolution.Retry,
                "failed" => StepResolution.Failed,
                var other => throw new CliUsageException($"--as must be done, retry or failed; not '{other}'"),
            };
            var runId = parse.GetValue(id)!;
            var dbPath = parse.GetValue(db)!;
            var actor = "cli:" + Environment.UserName;
            var manifest = parse.GetValue(file);
            if (manifest is null)
            {
                var run = await CliShared.WithEngineCommandsAsync(dbPath, e => e.ResolveAsync(runId, parse.GetValue(step), resolution, parse.GetValue(result), actor, ct), ct);
                Console.Out.WriteLine($"run {run.Id}: step {parse.GetValue(step)} resolved as {WireNames.Of(resolution)}; it continues when Bureau next runs on {dbPath} (a host serving it now picks it up within a minute; or pass --file to continue now).");
                return 0;
            }
            var definitions = CliShared.LoadManifest(manifest, Console.Error);
            if (definitions is null) return 2;
            CliShared.CheckDbPath(dbPath);
            if (!File.Exists(dbPath)) throw new CliUsageException($"no database at '{dbPath}' (use --db to name one)");
            await using var bureau = await EmbeddedBureau.StartAsync(definitions, dbPath, Storage.Sqlite.StoreDurability.Full, 64, LogLevel.Warning, ct);
            var resolved = await bureau.Engine.ResolveAsync(runId, parse.GetValue(step), resolution, parse.GetValue(result), actor, ct);
            await foreach (var e in bureau.Engine.WatchAsync(runId, resolved.Version - 1, untilWaiting: true, cancellationToken: ct))
                Console.Error.WriteLine($"{e.Record!.N,4} {e.Record.Entry.Kind,-15} {JournalText.Describe(e.Record.Entry)}");
            var final = (await bureau.Engine.GetRunAsync(runId, ct))!;
            RunCommand.PrintOutcome(final, dbPath, Console.Out);
            return RunCommand.ExitCode(final.Status);
        });
        return cmd;
    }

    private static async Task<int> CountUnfinishedAsync(IRunStore store, CancellationToken ct)
    {
        var n = 0;
        foreach (var status in new[] { RunStatus.Queued, RunStatus.Running })
        {
            string? cursor = null;
            do
            {
                var page = await store.ListRunsAsync(new RunQuery { Status = status, Limit = 1000, Cursor = cursor }, ct);
                n += page.Items.Count;
                cursor = page.Next;
            }
            while (cursor is not null);
        }
        return n;
    }
}
