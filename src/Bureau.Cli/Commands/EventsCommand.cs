using System.CommandLine;
using System.Text.Json.Nodes;
using Bureau.Storage.Sqlite;
using Microsoft.Extensions.DependencyInjection;

namespace Bureau.Cli.Commands;

/// <summary><c>bureau events dead|retry</c>: events whose handling failed (dead letters) in a database, and their retry.</summary>
internal static class EventsCommand
{
    public static Command Create()
    {
        var cmd = new Command("events", "Events of triggers: the dead letters (events whose run was refused or failed) and their retry.");
        cmd.Subcommands.Add(Dead());
        cmd.Subcommands.Add(Retry());
        return cmd;
    }

    private static async Task<SqliteEventStore> OpenAsync(string db, CancellationToken ct)
    {
        CliShared.CheckDbPath(db);
        if (!File.Exists(db)) throw new CliUsageException($"no database at '{db}' (use --db to name one)");
        var store = new SqliteEventStore(new SqliteStoreOptions { Path = db });
        await store.InitializeAsync(ct);
        return store;
    }

    private static Command Dead()
    {
        var all = new Option<bool>("--all") { Description = "Include dead letters already retried." };
        var limit = new Option<int>("--limit") { Description = "At most this many, newest first.", DefaultValueFactory = _ => 100, HelpName = "N" };
        var db = CliShared.DbOption();
        var json = CliShared.JsonOption("Print {\"items\":[...]} on stdout.");
        var cmd = new Command("dead", "List dead letters, newest first: id, trigger, event, why, and the run if it failed.") { all, limit, db, json };
        cmd.SetAction(async (parse, ct) =>
        {
            if (parse.GetValue(limit) < 1) throw new CliUsageException("--limit must be at least 1");
            var store = await OpenAsync(parse.GetValue(db)!, ct);
            var letters = await store.ListDeadLettersAsync(parse.GetValue(all), parse.GetValue(limit), ct);
            if (parse.GetValue(json))
            {
                Console.Out.WriteLine(new JsonObject { ["items"] = new JsonArray([.. letters.Select(d => (JsonNode)Document(d))]) }.ToJsonString(RunDocuments.JsonOptions));
                return 0;
            }
            if (letters.Count == 0)
            {
                Console.Out.WriteLine(parse.GetValue(all) ? "no dead letters" : "no dead letters waiting (--all shows the retried ones)");
                return 0;
            }
            string[] headers = ["ID", "TRIGGER", "EVENT", "REASON", "RUN", "RETRIES", "AT (UTC)", "ERROR"];
            var rows = letters.Select(d => new[]
            {
                d.Id, d.Trigger, d.EventId ?? "-", d.Reason, d.RunId ?? "-", d.Retries.ToString(System.Globalization.CultureInfo.InvariantCulture),
                d.At.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss", System.Globalization.CultureInfo.InvariantCulture),
                d.Error.Length > 80 ? d.Error[..77] + "..." : d.Error,
            }).ToList();
            var widths = headers.Select((h, i) => Math.Max(h.Length, rows.Max(r => r[i].Length))).ToArray();
            Console.Out.WriteLine(string.Join("  ", headers.Select((h, i) => h.PadRight(widths[i]))).TrimEnd());
            foreach (var r in rows) Console.Out.WriteLine(string.Join("  ", r.Select((c, i) => c.PadRight(widths[i]))).TrimEnd());
            return 0;
        });
        return cmd;
    }

    private static Command Retry()
    {
        var id = new Argument<string>("id") { Description = "The dead letter (dl_..., as `bureau events dead` shows it)." };
        var file = new Argument<string>("file") { Description = "The manifest deployed (bureau.yaml): its trigger renders the input again, its agent runs it." };
        var db = CliShared.DbOption();
        var cmd = new Command("retry", "Start a dead letter's run again (key KEY#retry-N); a host serving the database executes it.") { id, file, db };
        cmd.SetAction(async (parse, ct) =>
        {
            var definitions = CliShared.LoadManifest(parse.GetValue(file)!, Console.Error);
            if (definitions is null) return 2;
            var dbPath = parse.GetValue(db)!;
            var events = await OpenAsync(dbPath, ct);
            await using var store = await CliShared.OpenExistingStoreAsync(dbPath, ct);
            var services = new ServiceCollection();
            services.AddBureau(o => o.NodeId = "cli").AddDefinitions(definitions);
            services.AddSingleton<IRunStore>(store);
            services.AddSingleton<IEventStore>(events);
            if (definitions.Workforce.Members.Count > 0)
            {
                // A trigger that targets the workforce: its retry adds the task to the inbox in the same file.
                var inbox = new SqliteWorkforceStore(new SqliteStoreOptions { Path = dbPath });
                await inbox.InitializeAsync(ct);
                services.AddSingleton<IWorkforceStore>(inbox);
            }
            await using var provider = services.BuildServiceProvider();
            try
            {
                var (letter, delivered) = await provider.GetRequiredService<Triggers.TriggerIngest>().RetryAsync(parse.GetValue(id)!, ct);
                if (delivered.Task is { } task)
                {
                    Console.Out.WriteLine(task.Created
                        ? $"dead letter {letter.Id} ({letter.Trigger}): retry {letter.Retries} is workforce task {task.Task.Id}; a host serving {dbPath} routes it"
                        : $"dead letter {letter.Id} ({letter.Trigger}): retry {letter.Retries} already added workforce task {task.Task.Id} ({WireNames.Of(task.Task.Status)})");
                    return 0;
                }
                var result = delivered.Run!;
                Console.Out.WriteLine(result.Created
                    ? $"dead letter {letter.Id} ({letter.Trigger}): retry {letter.Retries} is run {result.Run.Id}; it runs when Bureau next runs on {dbPath} (a host serving it picks it up within a minute)"
                    : $"dead letter {letter.Id} ({letter.Trigger}): retry {letter.Retries} already started run {result.Run.Id} ({result.Run.Status.ToWireName()})");
                return 0;
            }
            catch (Exception ex) when (ex is DeadLetterNotFoundException or UnknownAgentException or ArgumentException)
            {
                Console.Error.WriteLine("bureau: " + ex.Message.Split(" (Parameter")[0]);
                return 1;
            }
        });
        return cmd;
    }

    private static JsonObject Document(DeadLetter d) => new()
    {
        ["id"] = d.Id, ["trigger"] = d.Trigger, ["eventId"] = d.EventId, ["reason"] = d.Reason, ["agent"] = d.Agent,
        ["error"] = d.Error, ["runId"] = d.RunId, ["key"] = d.Key, ["input"] = d.Input, ["at"] = d.At,
        ["retries"] = d.Retries, ["retriedAt"] = d.RetriedAt, ["retryRunId"] = d.RetryRunId,
    };
}
