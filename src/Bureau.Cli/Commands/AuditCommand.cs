using System.CommandLine;
using System.Text.Json.Nodes;
using Bureau.Governance;

namespace Bureau.Cli.Commands;

/// <summary><c>bureau audit verify|export|checkpoint</c>.</summary>
internal static class AuditCommand
{
    /// <summary>The checkpoint key: <c>--key-file</c>, else <c>BUREAU_AUDIT_KEY_FILE</c>, else <c>BUREAU_AUDIT_KEY</c>; null when none is set.</summary>
    public static byte[]? Key(string? keyFile)
    {
        try
        {
            return AuditCheckpointOptions.ReadKey(keyFile);
        }
        catch (InvalidOperationException ex)
        {
            throw new CliUsageException(ex.Message);
        }
    }

    private static Option<string?> KeyFileOption() => new("--key-file")
    {
        Description = $"A file holding the checkpoint key (default: ${AuditCheckpointOptions.KeyFileVariable}, else the key in ${AuditCheckpointOptions.KeyVariable}). Keep it away from the database.",
        HelpName = "FILE",
    };

    private static Option<string?> CheckpointsOption() => new("--checkpoints")
    {
        Description = $"The checkpoints file (default: ${AuditCheckpointOptions.FileVariable}, else DB.checkpoints).",
        HelpName = "FILE",
    };

    public static Command Create()
    {
        var cmd = new Command("audit", "The audit log: who did what (runs started and canceled, steps resolved, policies applied, approvals, keys), hash-chained, with signed checkpoints of its head.");
        var db = CliShared.DbOption();
        var keyFile = KeyFileOption();
        var checkpoints = CheckpointsOption();
        var verify = new Command("verify",
            "Recompute the audit chain, and check it against the signed checkpoints when there are some; exit 0 when it holds, 1 naming the first entry that was changed, deleted or moved, or the first one cut from the end.")
        {
            db, keyFile, checkpoints,
        };
        verify.SetAction(async (parse, ct) =>
        {
            var dbPath = parse.GetValue(db)!;
            var file = parse.GetValue(checkpoints) ?? AuditCheckpointOptions.DefaultFile(dbPath);
            var key = Key(parse.GetValue(keyFile));
            await using var store = await CliShared.OpenExistingStoreAsync(dbPath, ct);
            var result = await store.VerifyAuditAsync(ct);
            if (!result.IsIntact)
            {
                Console.Out.WriteLine($"audit log BROKEN at entry {result.FirstBad}: {result.Problem}");
                return 1;
            }
            if (!File.Exists(file))
            {
                Console.Out.WriteLine($"audit log intact: {result.Entries} entries, each follows the one before");
                if (key is not null || parse.GetValue(checkpoints) is not null)
                    Console.Out.WriteLine($"no checkpoints at {file}: entries cut from the end would not be noticed (bureau audit checkpoint makes one)");
                return 0;
            }
            if (key is null)
                throw new CliUsageException($"{file} holds audit checkpoints, but no key to check them: set {AuditCheckpointOptions.KeyVariable} or {AuditCheckpointOptions.KeyFileVariable}, or pass --key-file");
            IReadOnlyList<AuditCheckpoint> list;
            try
            {
                list = AuditCheckpoints.Read(file);
            }
            catch (FormatException ex)
            {
                Console.Out.WriteLine($"audit checkpoints BROKEN: {ex.Message}");
                return 1;
            }
            var check = await AuditCheckpoints.VerifyAsync(store, list, key, file, ct);
            if (!check.IsIntact)
            {
                Console.Out.WriteLine(check.FirstMissing is { } missing
                    ? $"audit log TRUNCATED at entry {missing}: {check.Problem}"
                    : $"audit log BROKEN against its checkpoints: {check.Problem}");
                return 1;
            }
            Console.Out.WriteLine($"audit log intact: {result.Entries} entries, each follows the one before; {check.Checkpoints} signed checkpoint(s) hold"
                + (check.Latest is { } l ? $", the latest for #{l.Seq} ({l.At:yyyy-MM-dd HH:mm:ss}Z)" : ""));
            return 0;
        });

        var db3 = CliShared.DbOption();
        var keyFile3 = KeyFileOption();
        var checkpoints3 = CheckpointsOption();
        var checkpoint = new Command("checkpoint",
            "Sign the audit log's head (its last entry's position and hash) with the checkpoint key and append it to the checkpoints file; the chain is verified first. "
            + "A serving host writes one every 1000 entries and at a clean stop when the key is set.")
        {
            db3, keyFile3, checkpoints3,
        };
        checkpoint.SetAction(async (parse, ct) =>
        {
            var dbPath = parse.GetValue(db3)!;
            var file = parse.GetValue(checkpoints3) ?? AuditCheckpointOptions.DefaultFile(dbPath);
            var key = Key(parse.GetValue(keyFile3))
                ?? throw new CliUsageException($"no checkpoint key: set {AuditCheckpointOptions.KeyVariable} (at least 16 characters) or {AuditCheckpointOptions.KeyFileVariable}, or pass --key-file; keep it away from the database");
            await using var store = await CliShared.OpenExistingStoreAsync(dbPath, ct);
            var result = await store.VerifyAuditAsync(ct);
            if (!result.IsIntact)
            {
                Console.Out.WriteLine($"audit log BROKEN at entry {result.FirstBad}: {result.Problem}; no checkpoint written (it would vouch for a changed log)");
                return 1;
            }
            var head = await AuditCheckpoints.HeadAsync(store, 0, ct);
            var signed = AuditCheckpoints.Sign(key, head.Seq, head.Hash, TimeProvider.System.GetUtcNow());
            AuditCheckpoints.Append(file, signed);
            Console.Out.WriteLine($"checkpoint: entry #{signed.Seq} ({signed.Hash[..16]}…) signed with key {signed.KeyId}, appended to {file}");
            return 0;
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
        cmd.Subcommands.Add(checkpoint);
        return cmd;
    }
}
