using System.CommandLine;
using System.Text.Json.Nodes;

namespace Bureau.Cli.Commands;

/// <summary><c>bureau audit verify|export</c>.</summary>
internal static class AuditCommand
{
    public static Command Create()
    {
        var cmd = new Command("audit", "The audit log: who did what (runs started and canceled, steps resolved, policies applied, approvals, keys), hash-chained.");
        var db = CliShared.DbOption();
        var verify = new Command("verify", "Recompute the audit chain; exit 0 when it holds, 1 naming the first entry that was changed, deleted or moved.") { db };
        verify.SetAction(async (parse, ct) =>
        {
            await using var store = await CliShared.OpenExistingStoreAsync(parse.GetValue(db)!, ct);
            var result = await store.VerifyAuditAsync(ct);
            if (result.IsIntact)
            {
                Console.Out.WriteLine($"audit log intact: {result.Entries} entries, each follows the one before");
                return 0;
            }
            Console.Out.WriteLine($"audit log BROKEN at entry {result.FirstBad}: {result.Problem}");
            return 1;
        });
        var db2 = CliShared.DbOption();
        var after = new Option<long>("--after") { Description = "Only entries after this position.", DefaultValueFactory = _ => 0 };
        var export = new Command("export", "Write the audit log as JSON lines on stdout (seq, at, actor, action, runId, step, detail, previous, hash).") { db2, after };
        export.SetAction(async (parse, ct) =>
        {
            await using var store = await CliShared.OpenExistingStoreAsync(parse.GetValue(db2)!, ct);
            var from = parse.GetValue(after);
            while (true)
            {
                var page = await store.ReadAuditAsync(from, 5000, ct);
                if (page.Count == 0) break;
                foreach (var e in page)
                {
                    Console.Out.WriteLine(new JsonObject
                    {
                        ["seq"] = e.Seq, ["at"] = e.At, ["actor"] = e.Actor, ["action"] = e.Action, ["runId"] = e.RunId, ["step"] = e.Step,
                        ["detail"] = e.Detail is null ? null : JsonNode.Parse(e.Detail), ["previous"] = e.Previous, ["hash"] = e.Hash,
                    }.ToJsonString());
                }
                from = page[^1].Seq;
            }
            return 0;
        });
        cmd.Subcommands.Add(verify);
        cmd.Subcommands.Add(export);
        return cmd;
    }
}
