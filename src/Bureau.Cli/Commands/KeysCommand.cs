using System.CommandLine;
using System.Text.Json.Nodes;
using Bureau.Storage.Sqlite;

namespace Bureau.Cli.Commands;

/// <summary><c>bureau keys create|list|revoke</c>: API keys of a database (only their hashes are stored).</summary>
internal static class KeysCommand
{
    public static Command Create()
    {
        var cmd = new Command("keys", "Create, list and revoke the API keys `bureau serve` checks.");
        cmd.Subcommands.Add(CreateKey());
        cmd.Subcommands.Add(List());
        cmd.Subcommands.Add(Revoke());
        return cmd;
    }

    private static Option<string?> PostgresOption() =>
        CliShared.PostgresOption("The keys of a PostgreSQL store (what `bureau serve --postgres` checks) instead of the SQLite file.");

    /// <summary>The key store of the SQLite file <paramref name="db"/>, or of PostgreSQL when <paramref name="postgres"/> is given.</summary>
    private static async Task<IApiKeyStore> OpenAsync(string db, string? postgres, bool mustExist, CancellationToken ct)
    {
        IApiKeyStore store;
        if (postgres is not null)
        {
            try
            {
                store = new Storage.PostgreSql.PostgreSqlApiKeyStore(new Storage.PostgreSql.PostgreSqlStoreOptions { ConnectionString = postgres });
            }
            catch (ArgumentException ex)
            {
                throw new CliUsageException("--postgres: " + ex.Message.Split(" (Parameter")[0]);
            }
        }
        else
        {
            CliShared.CheckDbPath(db);
            if (mustExist && !File.Exists(db)) throw new CliUsageException($"no database at '{db}' (use --db to name one)");
            store = new SqliteApiKeyStore(new SqliteStoreOptions { Path = db });
        }
        try
        {
            await store.InitializeAsync(ct);
        }
        catch (StorageUnavailableException ex)
        {
            throw new CliUsageException(ex.Message);
        }
        return store;
    }

    private static string Where(string db, string? postgres) => postgres is null ? db : "PostgreSQL";

    private static Command CreateKey()
    {
        var role = new Option<string>("--role") { Description = "viewer (reads), operator (starts and cancels runs), approver (resolves steps) or admin (everything, keys too).", Required = true, HelpName = "ROLE" };
        var name = new Option<string?>("--name") { Description = "A label, shown by `keys list`.", HelpName = "NAME" };
        var db = CliShared.DbOption();
        var postgres = PostgresOption();
        var cmd = new Command("create", "Create a key and print it on stdout, once: only its hash is stored.") { role, name, db, postgres };
        cmd.SetAction(async (parse, ct) =>
        {
            var roleText = parse.GetValue(role)!;
            if (!ApiKeys.TryParseRole(roleText, out var r))
                throw new CliUsageException($"--role must be viewer, operator, approver or admin; not '{roleText}'");
            var store = await OpenAsync(parse.GetValue(db)!, parse.GetValue(postgres), mustExist: false, ct);
            if (ApiKeys.CheckName(parse.GetValue(name)) is { } problem) throw new CliUsageException("--name: the key name " + problem);
            var key = ApiKeys.Create(r, parse.GetValue(name), DateTimeOffset.UtcNow);
            await store.AddAsync(key.Record, ct);
            Console.Out.WriteLine(key.Key);
            Console.Error.WriteLine($"bureau: created key {key.Record.Id} ({r.ToWireName()}) in {Where(parse.GetValue(db)!, parse.GetValue(postgres))}. This is the only time it is shown; send it as 'Authorization: Bearer <key>'.");
            return 0;
        });
        return cmd;
    }

    private static Command List()
    {
        var all = new Option<bool>("--all") { Description = "Include revoked keys." };
        var db = CliShared.DbOption();
        var json = CliShared.JsonOption("Print {\"items\":[...]} on stdout.");
        var postgres = PostgresOption();
        var cmd = new Command("list", "List keys: id, role, name, dates (never the key).") { all, db, json, postgres };
        cmd.SetAction(async (parse, ct) =>
        {
            var store = await OpenAsync(parse.GetValue(db)!, parse.GetValue(postgres), mustExist: true, ct);
            var keys = await store.ListAsync(parse.GetValue(all), ct);
            if (parse.GetValue(json))
            {
                var items = new JsonArray();
                foreach (var k in keys)
                {
                    items.Add(new JsonObject
                    {
                        ["id"] = k.Id, ["name"] = k.Name, ["role"] = k.Role.ToWireName(), ["createdAt"] = k.CreatedAt, ["revokedAt"] = k.RevokedAt,
                    });
                }
                Console.Out.WriteLine(RunDocuments.ToJson(new JsonObject { ["items"] = items }));
                return 0;
            }
            if (keys.Count == 0) Console.Out.WriteLine("no keys (the host then serves loopback clients only)");
            foreach (var k in keys)
                Console.Out.WriteLine($"{k.Id}  {k.Role.ToWireName(),-8}  {k.CreatedAt:u}  {(k.RevokedAt is { } at ? "revoked " + at.ToString("u") : "valid")}  {k.Name}");
            return 0;
        });
        return cmd;
    }

    private static Command Revoke()
    {
        var id = new Argument<string>("id") { Description = "The key's id (as `keys list` shows it; the part after bk_)." };
        var db = CliShared.DbOption();
        var postgres = PostgresOption();
        var cmd = new Command("revoke", "Revoke a key; a running host refuses it from its next request.") { id, db, postgres };
        cmd.SetAction(async (parse, ct) =>
        {
            var keyId = parse.GetValue(id)!;
            if (keyId.StartsWith(ApiKeys.Prefix, StringComparison.Ordinal) && ApiKeys.TryParseId(keyId, out var parsed)) keyId = parsed;
            var store = await OpenAsync(parse.GetValue(db)!, parse.GetValue(postgres), mustExist: true, ct);
            if (!await store.RevokeAsync(keyId, DateTimeOffset.UtcNow, ct))
            {
                Console.Error.WriteLine($"bureau: no valid key with id {keyId} in {Where(parse.GetValue(db)!, parse.GetValue(postgres))}");
                return 1;
            }
            Console.Out.WriteLine($"revoked {keyId}");
            return 0;
        });
        return cmd;
    }
}
