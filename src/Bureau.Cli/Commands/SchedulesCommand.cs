using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using Bureau.Triggers;

namespace Bureau.Cli.Commands;

/// <summary><c>bureau schedules list FILE [--db PATH]</c>: a manifest's schedule triggers with their next tick and, from the database, the last tick fired.</summary>
internal static class SchedulesCommand
{
    public static Command Create()
    {
        var file = new Argument<string>("file") { Description = "The manifest (bureau.yaml)." };
        var db = CliShared.DbOption();
        db.Description = "The database whose runs tell the last tick fired (skipped when the file does not exist).";
        var json = CliShared.JsonOption("Print a JSON array.");
        var list = new Command("list", "List the schedule triggers: when they fire, the next tick, the last tick fired and its run.") { file, db, json };
        list.SetAction(async (parse, ct) =>
        {
            var definitions = CliShared.LoadManifest(parse.GetValue(file)!, Console.Error);
            if (definitions is null) return 2;
            return await ListAsync(definitions, parse.GetValue(db)!, parse.GetValue(json), TimeProvider.System.GetUtcNow(), Console.Out, ct);
        });
        return new Command("schedules", "Schedule triggers.") { list };
    }

    public static async Task<int> ListAsync(BureauDefinitions definitions, string db, bool json, DateTimeOffset now, TextWriter stdout, CancellationToken ct)
    {
        var schedules = definitions.Triggers.Values.OfType<ScheduleTriggerDefinition>().OrderBy(s => s.Name, StringComparer.Ordinal).ToList();
        await using var store = File.Exists(db) ? await CliShared.OpenExistingStoreAsync(db, ct) : null;
        var rows = new JsonArray();
        foreach (var s in schedules)
        {
            var next = ScheduleClock.For(s).NextAfter(now);
            var (last, run) = store is null ? (null, null) : await ScheduleService.LastFiredAsync(store, s, ct);
            rows.Add(new JsonObject
            {
                ["name"] = s.Name,
                ["agent"] = s.Workforce is { } w ? "workforce:" + w.Skill : s.Agent,
                ["when"] = s.Cron is not null ? $"cron {s.Cron}" + (s.TimeZone is null ? "" : $" ({s.TimeZone})") : $"every {Interval(s.Every!.Value)}",
                ["catchUp"] = WireNames.Of(s.CatchUp) + (s.CatchUp == CatchUpPolicy.All ? $" (max {s.MaxCatchUp})" : ""),
                ["overlap"] = WireNames.Of(s.Overlap),
                ["next"] = next is { } n ? Time(n) : null,
                ["lastFired"] = last is { } l ? Time(l) : null,
                ["lastRun"] = run?.Id,
                ["lastStatus"] = run?.Status.ToWireName(),
            });
        }
        if (json)
        {
            stdout.WriteLine(rows.ToJsonString(RunDocuments.JsonOptions));
            return 0;
        }
        if (schedules.Count == 0)
        {
            stdout.WriteLine("no schedule triggers in this manifest");
            return 0;
        }
        string[] headers = ["NAME", "AGENT", "WHEN", "CATCHUP", "OVERLAP", "NEXT (UTC)", "LAST FIRED (UTC)", "LAST RUN"];
        var table = rows.Select(r => new[]
        {
            (string)r!["name"]!, (string)r["agent"]!, (string)r["when"]!, (string)r["catchUp"]!, (string)r["overlap"]!,
            (string?)r["next"] ?? "never", (string?)r["lastFired"] ?? (store is null ? "(no database)" : "never"),
            r["lastRun"] is null ? "-" : $"{(string)r["lastRun"]!} ({(string)r["lastStatus"]!})",
        }).ToList();
        var widths = headers.Select((h, i) => Math.Max(h.Length, table.Max(row => row[i].Length))).ToArray();
        stdout.WriteLine(string.Join("  ", headers.Select((h, i) => h.PadRight(widths[i]))).TrimEnd());
        foreach (var row in table) stdout.WriteLine(string.Join("  ", row.Select((c, i) => c.PadRight(widths[i]))).TrimEnd());
        return 0;
    }

    private static string Interval(TimeSpan t) =>
        t.Ticks % TimeSpan.TicksPerHour == 0 ? $"{(long)t.TotalHours}h" : t.Ticks % TimeSpan.TicksPerMinute == 0 ? $"{(long)t.TotalMinutes}m" : $"{(long)t.TotalSeconds}s";

    private static string Time(DateTimeOffset t) => t.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture);
}
