using System.CommandLine;
using System.Globalization;
using Bureau.Storage.Sqlite;

namespace Bureau.Cli.Commands;

/// <summary><c>bureau workforce status FILE [--db PATH | --postgres CONN [--schema NAME]] [--json]</c>: the workforce's members, their load, the inbox and memory sizes.</summary>
internal static class WorkforceCommand
{
    public static Command Create()
    {
        var file = new Argument<string>("file") { Description = "The manifest (bureau.yaml) that defines the workforce." };
        var db = CliShared.DbOption();
        var postgres = CliShared.PostgresOption("Read the workforce of a PostgreSQL store (what `bureau serve --postgres` uses) instead of the SQLite file.");
        var schema = new Option<string>("--schema") { Description = "With --postgres: Bureau's schema (Bureau:PostgreSql:Schema).", DefaultValueFactory = _ => "bureau", HelpName = "NAME" };
        var json = CliShared.JsonOption("Print the status as JSON on stdout.");
        var status = new Command("status", "Each member: skills, concurrency, tasks in progress, finished, inbox depth, memory size (facts in agent:NAME).") { file, db, postgres, schema, json };
        status.SetAction(async (parse, ct) =>
        {
            var definitions = CliShared.LoadManifest(parse.GetValue(file)!, Console.Error);
            if (definitions is null) return 2;
            if (definitions.Workforce.Members.Count == 0) throw new CliUsageException($"{parse.GetValue(file)} defines no workforce (add a 'workforce:' section; see docs/workforce.md)");
            if (parse.GetValue(postgres) is { } connectionString)
            {
                Storage.PostgreSql.PostgreSqlDatabase database;
                try
                {
                    database = new Storage.PostgreSql.PostgreSqlDatabase(new Storage.PostgreSql.PostgreSqlStoreOptions { ConnectionString = connectionString, Schema = parse.GetValue(schema)! });
                }
                catch (ArgumentException ex)
                {
                    throw new CliUsageException(ex.Message.Split(" (Parameter")[0].Replace("Bureau:PostgreSql:Schema", "--schema", StringComparison.Ordinal));
                }
                await using (database)
                {
                    var pgStore = new Storage.PostgreSql.PostgreSqlWorkforceStore(database);
                    await pgStore.InitializeAsync(ct);
                    var pgMemory = new Storage.PostgreSql.PostgreSqlMemoryStore(database);
                    await pgMemory.InitializeAsync(ct);
                    return Print(await BureauWorkforce.StatusAsync(definitions.Workforce, pgStore, pgMemory, ct), parse.GetValue(json), Console.Out);
                }
            }
            var path = parse.GetValue(db)!;
            if (!File.Exists(path)) throw new CliUsageException($"no database at '{path}' (use --db to name one)");
            var options = new SqliteStoreOptions { Path = path };
            var store = new SqliteWorkforceStore(options);
            await store.InitializeAsync(ct);
            var memory = new SqliteMemoryStore(options);
            await memory.InitializeAsync(ct);
            var s = await BureauWorkforce.StatusAsync(definitions.Workforce, store, memory, ct);
            return Print(s, parse.GetValue(json), Console.Out);
        });
        return new Command("workforce", "The workforce: persistent agents that take tasks routed by skill and load.") { status };
    }

    internal static int Print(WorkforceStatus s, bool json, TextWriter stdout)
    {
        if (json)
        {
            stdout.WriteLine(System.Text.Json.JsonSerializer.Serialize(s, WorkforceJson.Default.WorkforceStatus));
            return 0;
        }
        var rows = new List<string[]> { new[] { "AGENT", "SKILLS", "LIMIT", "IN PROGRESS", "FINISHED", "INBOX", "MEMORY" } };
        foreach (var a in s.Agents)
        {
            rows.Add([a.Name, string.Join(",", a.Skills), Num(a.Concurrency), Num(a.InProgress), a.Finished.ToString(CultureInfo.InvariantCulture), Num(a.Inbox),
                a.MemoryFacts is { } f ? Num(f) + " facts" : "-"]);
        }
        var widths = Enumerable.Range(0, rows[0].Length).Select(i => rows.Max(r => r[i].Length)).ToArray();
        foreach (var r in rows) stdout.WriteLine(string.Join("  ", r.Select((c, i) => c.PadRight(widths[i]))).TrimEnd());
        var bySkill = string.Join(", ", s.QueuedBySkill.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key} {p.Value}"));
        stdout.WriteLine($"inbox: {s.Queued} queued{(bySkill.Length > 0 ? " (" + bySkill + ")" : "")}; {s.InProgress} in progress");
        return 0;

        static string Num(int n) => n.ToString(CultureInfo.InvariantCulture);
    }
}

/// <summary>The status's JSON for <c>bureau workforce status --json</c>.</summary>
[System.Text.Json.Serialization.JsonSourceGenerationOptions(PropertyNamingPolicy = System.Text.Json.Serialization.JsonKnownNamingPolicy.CamelCase, WriteIndented = true)]
[System.Text.Json.Serialization.JsonSerializable(typeof(WorkforceStatus))]
internal sealed partial class WorkforceJson : System.Text.Json.Serialization.JsonSerializerContext;
