using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using Bureau.Storage.Sqlite;

namespace Bureau.Cli.Commands;

/// <summary><c>bureau stats [--db PATH] [--json]</c>: what a database holds per agent, and its size on disk.</summary>
internal static class StatsCommand
{
    public static Command Create()
    {
        var db = CliShared.DbOption();
        var json = CliShared.JsonOption("Print {\"agents\":[{agent,runs,journalEntries,journalBytes}],\"total\":{...}} on stdout.");
        var cmd = new Command("stats", "Runs, journal entries and journal bytes per agent (the stored entries' lengths, approximate), audit entries, and the database's size on disk (file and WAL).")
        {
            db, json,
        };
        cmd.SetAction(async (parse, ct) =>
        {
            await using var store = await CliShared.OpenExistingStoreAsync(parse.GetValue(db)!, ct);
            var stats = await store.ReadStatsAsync(ct);
            if (parse.GetValue(json))
            {
                Console.Out.WriteLine(RunDocuments.ToJson(ToJson(stats), indented: true));
                return 0;
            }
            Print(stats, Console.Out);
            return 0;
        });
        return cmd;
    }

    internal static JsonObject ToJson(StoreStats stats)
    {
        var agents = new JsonArray();
        foreach (var a in stats.Agents)
            agents.Add(new JsonObject { ["agent"] = a.Agent, ["runs"] = a.Runs, ["journalEntries"] = a.JournalEntries, ["journalBytes"] = a.JournalBytes });
        return new JsonObject
        {
            ["agents"] = agents,
            ["total"] = new JsonObject
            {
                ["runs"] = stats.Agents.Sum(a => a.Runs),
                ["journalEntries"] = stats.Agents.Sum(a => a.JournalEntries),
                ["journalBytes"] = stats.Agents.Sum(a => a.JournalBytes),
                ["auditEntries"] = stats.AuditEntries,
                ["fileBytes"] = stats.FileBytes,
            },
        };
    }

    private static void Print(StoreStats stats, TextWriter o)
    {
        o.WriteLine($"{"AGENT",-24} {"RUNS",10} {"JOURNAL",10} {"BYTES",12}");
        foreach (var a in stats.Agents) o.WriteLine($"{a.Agent,-24} {a.Runs,10} {a.JournalEntries,10} {Size(a.JournalBytes),12}");
        o.WriteLine($"{"total",-24} {stats.Agents.Sum(a => a.Runs),10} {stats.Agents.Sum(a => a.JournalEntries),10} {Size(stats.Agents.Sum(a => a.JournalBytes)),12}");
        o.WriteLine($"audit entries: {stats.AuditEntries}; on disk (database and WAL): {Size(stats.FileBytes)}");
    }

    internal static string Size(long bytes) => bytes switch
    {
        < 1024 => bytes.ToString(CultureInfo.InvariantCulture) + " B",
        < 1024 * 1024 => (bytes / 1024d).ToString("0.0", CultureInfo.InvariantCulture) + " KiB",
        < 1024L * 1024 * 1024 => (bytes / (1024d * 1024)).ToString("0.0", CultureInfo.InvariantCulture) + " MiB",
        _ => (bytes / (1024d * 1024 * 1024)).ToString("0.0", CultureInfo.InvariantCulture) + " GiB",
    };
}
