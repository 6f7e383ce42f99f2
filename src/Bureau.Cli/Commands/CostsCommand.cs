using System.CommandLine;
using System.Globalization;

namespace Bureau.Cli.Commands;

/// <summary><c>bureau costs [--by agent|day] [--since DATE] [--until DATE]</c>: tokens and cost per agent or per UTC day.</summary>
internal static class CostsCommand
{
    public static Command Create()
    {
        var by = new Option<string>("--by") { Description = "Group per agent (each agent's own runs) or per UTC day (runs created that day).", DefaultValueFactory = _ => "agent", HelpName = "agent|day" };
        var since = new Option<string?>("--since")
        {
            Description = "Only runs created on or after this day (2026-12-06, UTC), time (2026-12-06T10:00Z) or span back from now (24h, 7d). Default: all.",
            HelpName = "DATE",
        };
        var until = new Option<string?>("--until") { Description = "Only runs created before this day (its start, UTC) or time. Default: now.", HelpName = "DATE" };
        var db = CliShared.DbOption();
        var json = CliShared.JsonOption("Print {\"by\",\"since\",\"until\",\"rows\":[...],\"total\"} on stdout (the document of GET /v1/costs).");
        var cmd = new Command("costs", "Tokens and cost per agent or per day, from a database's runs (team runs are not counted twice: their members are).")
        {
            by, since, until, db, json,
        };
        cmd.SetAction(async (parse, ct) =>
        {
            var byText = parse.GetValue(by);
            if (!CostReport.TryParseGrouping(byText, out var grouping))
                throw new CliUsageException($"--by must be agent or day, not '{byText}'");
            var now = DateTimeOffset.UtcNow;
            var query = new CostQuery { By = grouping, Since = ParseBound("--since", parse.GetValue(since), now), Until = ParseBound("--until", parse.GetValue(until), now) };
            if (query.Since is { } s && query.Until is { } u && s >= u)
                throw new CliUsageException($"--since ({s:u}) must be before --until ({u:u})");
            await using var store = await CliShared.OpenExistingStoreAsync(parse.GetValue(db)!, ct);
            var rows = await store.ReadCostsAsync(query, ct);
            if (parse.GetValue(json))
            {
                Console.Out.WriteLine(RunDocuments.ToJson(CostReport.ToJson(rows, query), indented: true));
                return 0;
            }
            Print(rows, query, Console.Out);
            return 0;
        });
        return cmd;
    }

    /// <summary>A day, a time, or (a span such as 7d) that long before <paramref name="now"/>; null for none.</summary>
    internal static DateTimeOffset? ParseBound(string option, string? text, DateTimeOffset now)
    {
        if (string.IsNullOrWhiteSpace(text)) return null;
        if (CostReport.TryParseTime(text, out var at)) return at;
        var t = text.Trim();
        if (t.Length > 1 && t[^1] is 'm' or 'h' or 'd' && double.TryParse(t[..^1], NumberStyles.Float, CultureInfo.InvariantCulture, out var n) && n >= 0)
            return now - t[^1] switch { 'm' => TimeSpan.FromMinutes(n), 'h' => TimeSpan.FromHours(n), _ => TimeSpan.FromDays(n) };
        throw new CliUsageException($"{option}: '{text}' is not a date (2026-12-06), a time (2026-12-06T10:00Z) or a span back from now (24h, 7d)");
    }

    private static void Print(IReadOnlyList<CostRow> rows, CostQuery query, TextWriter o)
    {
        var range = (query.Since, query.Until) switch
        {
            (null, null) => "",
            ({ } s, null) => $" since {s:u}",
            (null, { } u) => $" before {u:u}",
            ({ } s, { } u) => $" from {s:u} to {u:u}",
        };
        if (rows.Count == 0)
        {
            o.WriteLine($"no agent runs{range}");
            return;
        }
        var head = query.By == CostGrouping.Day ? "DAY (UTC)" : "AGENT";
        var width = Math.Max(head.Length, rows.Max(r => r.Key.Length));
        o.WriteLine($"{head.PadRight(width)}  {"RUNS",8}  {"INPUT TOKENS",14}  {"OUTPUT TOKENS",14}  {"COST",14}");
        foreach (var r in rows)
            o.WriteLine($"{r.Key.PadRight(width)}  {r.Runs,8}  {r.InputTokens,14}  {r.OutputTokens,14}  {Money(r.Cost),14}");
        o.WriteLine($"{"total".PadRight(width)}  {rows.Sum(r => r.Runs),8}  {rows.Sum(r => r.InputTokens),14}  {rows.Sum(r => r.OutputTokens),14}  {Money(rows.Sum(r => r.Cost)),14}");
        if (range.Length > 0) o.WriteLine($"(runs created{range})");
    }

    private static string Money(double cost) => cost.ToString("0.######", CultureInfo.InvariantCulture);
}
