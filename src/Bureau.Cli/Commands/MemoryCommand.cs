using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using Bureau.Hosting;
using Bureau.Storage.Sqlite;

namespace Bureau.Cli.Commands;

/// <summary><c>bureau memory list|show</c>: long-term memory in a database (docs/memory.md).</summary>
internal static class MemoryCommand
{
    public static Command Create()
    {
        var cmd = new Command("memory", "Long-term memory: a scope's current facts, and one fact's versions with their provenance.");
        cmd.Subcommands.Add(List());
        cmd.Subcommands.Add(Show());
        return cmd;
    }

    private static async Task<SqliteMemoryStore> OpenAsync(string db, CancellationToken ct)
    {
        CliShared.CheckDbPath(db);
        if (!File.Exists(db)) throw new CliUsageException($"no database at '{db}' (use --db to name one)");
        var store = new SqliteMemoryStore(new SqliteStoreOptions { Path = db });
        await store.InitializeAsync(ct);
        return store;
    }

    private static string CheckScope(string scope) =>
        MemoryScopes.Problem(scope) is { } problem ? throw new CliUsageException(problem) : scope;

    private static Command List()
    {
        var scope = new Argument<string>("scope") { Description = "The scope, KIND:ID (agent:triage, team:support, user:alice, tenant:default)." };
        var after = new Option<string?>("--after") { Description = "Start after this key (paging).", HelpName = "KEY" };
        var limit = new Option<int>("--limit") { Description = "At most this many facts, by key.", DefaultValueFactory = _ => 100, HelpName = "N" };
        var db = CliShared.DbOption();
        var json = CliShared.JsonOption("Print {\"scope\":...,\"items\":[...]} on stdout.");
        var cmd = new Command("list", "List a scope's current facts by key: key, version, who wrote it, value.") { scope, after, limit, db, json };
        cmd.SetAction(async (parse, ct) =>
        {
            var s = CheckScope(parse.GetValue(scope)!);
            if (parse.GetValue(limit) is < 1 or > 1000) throw new CliUsageException("--limit must be from 1 to 1000");
            var store = await OpenAsync(parse.GetValue(db)!, ct);
            var facts = await store.ListAsync(s, parse.GetValue(after), parse.GetValue(limit), ct);
            if (parse.GetValue(json))
            {
                Console.Out.WriteLine(new JsonObject { ["scope"] = s, ["items"] = new JsonArray([.. facts.Select(f => (JsonNode)MemoryApi.FactDocument(f))]) }.ToJsonString(RunDocuments.JsonOptions));
                return 0;
            }
            if (facts.Count == 0)
            {
                Console.Out.WriteLine($"no facts in {s}");
                return 0;
            }
            Table(["KEY", "VERSION", "WRITTEN BY", "AT (UTC)", "VALUE"], facts.Select(f => new[]
            {
                f.Key, f.Version.ToString(CultureInfo.InvariantCulture), Writer(f.Provenance), At(f.Provenance.At), Cut(f.Value ?? "", 80),
            }).ToList());
            return 0;
        });
        return cmd;
    }

    private static Command Show()
    {
        var scope = new Argument<string>("scope") { Description = "The scope, KIND:ID." };
        var key = new Argument<string>("key") { Description = "The fact's key." };
        var db = CliShared.DbOption();
        var json = CliShared.JsonOption("Print {\"current\":...,\"versions\":[...]} on stdout.");
        var cmd = new Command("show", "Show one fact: its current value and every version, with who wrote it (run, step, agent, time) and what superseded it.") { scope, key, db, json };
        cmd.SetAction(async (parse, ct) =>
        {
            var s = CheckScope(parse.GetValue(scope)!);
            var k = parse.GetValue(key)!;
            var store = await OpenAsync(parse.GetValue(db)!, ct);
            var history = await store.HistoryAsync(s, k, ct);
            if (history.Count == 0)
            {
                Console.Error.WriteLine($"bureau: {s} has no fact '{k}' (bureau memory list {s} lists them)");
                return 1;
            }
            var head = history[^1];
            if (parse.GetValue(json))
            {
                Console.Out.WriteLine(new JsonObject
                {
                    ["scope"] = s, ["key"] = k, ["current"] = head.IsForgotten ? null : MemoryApi.FactDocument(head), ["forgotten"] = head.IsForgotten,
                    ["versions"] = new JsonArray([.. history.Select(f => (JsonNode)MemoryApi.FactDocument(f))]),
                }.ToJsonString(RunDocuments.JsonOptions));
                return 0;
            }
            Console.Out.WriteLine(head.IsForgotten ? $"{s} {k}: forgotten at version {head.Version}" : $"{s} {k} = {head.Value} (version {head.Version})");
            Table(["VERSION", "WRITTEN BY", "AT (UTC)", "SUPERSEDED BY", "VALUE"], history.Select(f => new[]
            {
                f.Version.ToString(CultureInfo.InvariantCulture), Writer(f.Provenance), At(f.Provenance.At),
                f.SupersededBy is { } by ? by.ToString(CultureInfo.InvariantCulture) : "-", f.IsForgotten ? "(forgotten)" : Cut(f.Value!, 80),
            }).ToList());
            return 0;
        });
        return cmd;
    }

    private static string Writer(MemoryProvenance p)
    {
        var who = p.Agent ?? p.Actor ?? "-";
        return p.RunId is null ? who : $"{who} (run {p.RunId}{(p.Step is { } step ? " step " + step.ToString(CultureInfo.InvariantCulture) : "")})";
    }

    private static string At(DateTimeOffset at) => at.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture);

    private static string Cut(string s, int max)
    {
        s = s.ReplaceLineEndings(" ");
        return s.Length > max ? s[..(max - 3)] + "..." : s;
    }

    private static void Table(string[] headers, List<string[]> rows)
    {
        var widths = headers.Select((h, i) => Math.Max(h.Length, rows.Max(r => r[i].Length))).ToArray();
        Console.Out.WriteLine(string.Join("  ", headers.Select((h, i) => h.PadRight(widths[i]))).TrimEnd());
        foreach (var r in rows) Console.Out.WriteLine(string.Join("  ", r.Select((c, i) => c.PadRight(widths[i]))).TrimEnd());
    }
}
