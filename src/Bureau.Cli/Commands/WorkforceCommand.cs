using System.CommandLine;
using System.Globalization;
using Bureau.Storage.Sqlite;

namespace Bureau.Cli.Commands;

/// <summary>
/// <c>bureau workforce status FILE [--db PATH | --postgres CONN [--schema NAME]] [--json]</c>: the workforce's members,
/// their load, the inbox and its limits (as <c>bureau serve</c> in this directory reads them) and memory sizes.
/// </summary>
internal static class WorkforceCommand
{
    public static Command Create()
    {
        var file = new Argument<string>("file") { Description = "The manifest (bureau.yaml) that defines the workforce." };
        var db = CliShared.DbOption();
        var postgres = CliShared.PostgresOption("Read the workforce of a PostgreSQL store (what `bureau serve --postgres` uses) instead of the SQLite file.");
        var schema = new Option<string>("--schema") { Description = "With --postgres: Bureau's schema (Bureau:PostgreSql:Schema).", DefaultValueFactory = _ => "bureau", HelpName = "NAME" };
        var json = CliShared.JsonOption("Print the status as JSON on stdout.");
        var status = new Command("status", "Each member: skills, concurrency, tasks in progress, finished, inbox depth, memory size (facts in agent:NAME); "
            + "the inbox: queued tasks against Bureau:Workforce:MaxQueuedTasks, and per skill against its limit (read from appsettings.json and environment variables, as bureau serve does).")
            { file, db, postgres, schema, json };
        status.SetAction(async (parse, ct) =>
        {
            var definitions = CliShared.LoadManifest(parse.GetValue(file)!, Console.Error);
            if (definitions is null) return 2;
            if (definitions.Workforce.Members.Count == 0) throw new CliUsageException($"{parse.GetValue(file)} defines no workforce (add a 'workforce:' section; see docs/workforce.md)");
            var limits = Limits();
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
                    return Print(await BureauWorkforce.StatusAsync(definitions.Workforce, pgStore, pgMemory, limits, ct), definitions.Workforce.Board, parse.GetValue(json), Console.Out);
                }
            }
            var path = parse.GetValue(db)!;
            CliShared.CheckDbPath(path);
            if (!File.Exists(path)) throw new CliUsageException($"no database at '{path}' (use --db to name one)");
            var options = new SqliteStoreOptions { Path = path };
            var store = new SqliteWorkforceStore(options);
            await store.InitializeAsync(ct);
            var memory = new SqliteMemoryStore(options);
            await memory.InitializeAsync(ct);
            var s = await BureauWorkforce.StatusAsync(definitions.Workforce, store, memory, limits, ct);
            return Print(s, definitions.Workforce.Board, parse.GetValue(json), Console.Out);
        });
        return new Command("workforce", "The workforce: persistent agents that take tasks routed by skill and load.") { status };
    }

    internal static int Print(WorkforceStatus s, string board, bool json, TextWriter stdout)
    {
        if (json)
        {
            // As GET /v1/workforce answers: the board first, then the status.
            var doc = System.Text.Json.JsonSerializer.SerializeToNode(s, WorkforceJson.Default.WorkforceStatus)!.AsObject();
            doc.Insert(0, "board", board);
            stdout.WriteLine(doc.ToJsonString(WorkforceJson.Default.Options));
            return 0;
        }
        var rows = new List<string[]> { new[] { "AGENT", "SKILLS", "LIMIT", "IN PROGRESS", "FINISHED", "INBOX", "MEMORY" } };
        foreach (var a in s.Agents)
        {
            rows.Add([a.Name, string.Join(",", a.Skills), Num(a.Concurrency), Num(a.InProgress), a.Finished.ToString(CultureInfo.InvariantCulture), Num(a.Inbox),
                a.MemoryFacts is { } f ? Num(f) + " facts" : "-"]);
        }
        Table(rows, stdout);
        var bySkill = string.Join(", ", s.QueuedBySkill.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key} {p.Value}"));
        var limit = s.MaxQueuedTasks is { } max ? " / limit " + Num(max) : "";
        stdout.WriteLine($"inbox: {s.Queued} queued{limit}{(bySkill.Length > 0 ? " (" + bySkill + ")" : "")}; {s.InProgress} in progress");
        if (s.MaxQueuedBySkill.Count > 0)
        {
            // Each skill with queued tasks or a limit of its own; "-": only the inbox's limit bounds it.
            var skills = new List<string[]> { new[] { "SKILL", "QUEUED", "QUEUE LIMIT" } };
            foreach (var (skill, own) in s.MaxQueuedBySkill.OrderBy(p => p.Key, StringComparer.Ordinal))
                skills.Add([skill, Num(s.QueuedBySkill.TryGetValue(skill, out var n) ? n : 0), own is { } l ? Num(l) : "-"]);
            stdout.WriteLine();
            Table(skills, stdout);
        }
        return 0;

        static string Num(int n) => n.ToString(CultureInfo.InvariantCulture);
    }

    private static void Table(List<string[]> rows, TextWriter stdout)
    {
        var widths = Enumerable.Range(0, rows[0].Length).Select(i => rows.Max(r => r[i].Length)).ToArray();
        foreach (var r in rows) stdout.WriteLine(string.Join("  ", r.Select((c, i) => c.PadRight(widths[i]))).TrimEnd());
    }

    /// <summary>
    /// The inbox's limits as <c>bureau serve</c> started in this directory reads them (section <c>Bureau:Workforce</c> of
    /// appsettings.json, appsettings.ENVIRONMENT.json and environment variables such as <c>Bureau__Workforce__MaxQueuedTasks</c>);
    /// an invalid value is an error naming its key, as it stops serve's start.
    /// </summary>
    internal static BureauWorkforceOptions Limits()
    {
        using var configuration = Microsoft.AspNetCore.Builder.WebApplication.CreateBuilder(
            new Microsoft.AspNetCore.Builder.WebApplicationOptions { Args = [], ContentRootPath = Directory.GetCurrentDirectory() }).Configuration;
        var options = new BureauWorkforceOptions();
        try
        {
            Microsoft.Extensions.Configuration.ConfigurationBinder.Bind(configuration.GetSection(BureauOptions.SectionName + ":Workforce"), options);
        }
        catch (InvalidOperationException ex)
        {
            throw new CliUsageException(ex.Message);
        }
        var problems = options.Problems().ToList();
        return problems.Count == 0 ? options : throw new CliUsageException(string.Join("; ", problems));
    }
}

/// <summary>The status's JSON for <c>bureau workforce status --json</c>.</summary>
[System.Text.Json.Serialization.JsonSourceGenerationOptions(PropertyNamingPolicy = System.Text.Json.Serialization.JsonKnownNamingPolicy.CamelCase, WriteIndented = true)]
[System.Text.Json.Serialization.JsonSerializable(typeof(WorkforceStatus))]
internal sealed partial class WorkforceJson : System.Text.Json.Serialization.JsonSerializerContext;
