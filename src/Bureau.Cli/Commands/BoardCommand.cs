using System.CommandLine;
using System.Globalization;
using Bureau.Storage.Sqlite;

namespace Bureau.Cli.Commands;

/// <summary><c>bureau board show|add|claim|complete|block</c>: a team's operational board in a database.</summary>
internal static class BoardCommand
{
    public static Command Create()
    {
        var cmd = new Command("board", "A team's operational board: tasks (open, claimed, done, blocked), decisions, compare-and-set keys.");
        cmd.Subcommands.Add(Show());
        cmd.Subcommands.Add(Add());
        cmd.Subcommands.Add(Change("claim", "Claim an open task (exactly one of racing claims wins)."));
        cmd.Subcommands.Add(Change("complete", "Mark a task you claimed done (--note: its result)."));
        cmd.Subcommands.Add(Change("block", "Mark an open task, or one you claimed, blocked (--note: why, required)."));
        return cmd;
    }

    private static async Task<SqliteBoardStore> OpenAsync(string db, CancellationToken ct)
    {
        CliShared.CheckDbPath(db);
        if (!File.Exists(db)) throw new CliUsageException($"no database at '{db}' (use --db to name one)");
        var store = new SqliteBoardStore(new SqliteStoreOptions { Path = db });
        await store.InitializeAsync(ct);
        return store;
    }

    private static Command Show()
    {
        var board = new Argument<string>("board") { Description = "The board (a team's name)." };
        var db = CliShared.DbOption();
        var json = CliShared.JsonOption("Print the board as JSON on stdout.");
        var cmd = new Command("show", "Show a board: its tasks, decisions and keys.") { board, db, json };
        cmd.SetAction(async (parse, ct) =>
        {
            var store = await OpenAsync(parse.GetValue(db)!, ct);
            var b = await store.ReadAsync(parse.GetValue(board)!, ct);
            if (parse.GetValue(json))
            {
                Console.Out.WriteLine(System.Text.Json.JsonSerializer.Serialize(b, BoardJson.Default.BoardSnapshot));
                return 0;
            }
            Console.Out.WriteLine($"board {b.Board}: {b.Tasks.Count} tasks, {b.Decisions.Count} decisions, {b.Keys.Count} keys");
            foreach (var t in b.Tasks)
                Console.Out.WriteLine($"  task {t.Id,-20} {WireNames.Of(t.Status),-8} {t.ClaimedBy ?? "-",-16} v{t.Version}  {t.Title}{(t.Note is null ? "" : " — " + t.Note)}");
            foreach (var d in b.Decisions)
                Console.Out.WriteLine($"  decision {d.Seq.ToString(CultureInfo.InvariantCulture),-4} {d.Title}: {d.Text} ({d.By}, {d.At.UtcDateTime:yyyy-MM-dd HH:mm})");
            foreach (var k in b.Keys)
                Console.Out.WriteLine($"  key {k.Key} = {k.Value} (v{k.Version}, {k.By})");
            return 0;
        });
        return cmd;
    }

    private static Command Add()
    {
        var board = new Argument<string>("board") { Description = "The board." };
        var id = new Argument<string>("id") { Description = "The task's id (adding the same id again changes nothing)." };
        var title = new Argument<string>("title") { Description = "What is to be done." };
        var by = new Option<string>("--as") { Description = "Who adds it.", DefaultValueFactory = _ => "cli" };
        var db = CliShared.DbOption();
        var cmd = new Command("add", "Put an open task on a board.") { board, id, title, by, db };
        cmd.SetAction(async (parse, ct) =>
        {
            var store = await OpenAsync(parse.GetValue(db)!, ct);
            var t = await store.AddTaskAsync(parse.GetValue(board)!, parse.GetValue(id)!, parse.GetValue(title)!, null, parse.GetValue(by)!, DateTimeOffset.UtcNow, ct);
            Console.Out.WriteLine($"task {t.Id} on {t.Board}: {WireNames.Of(t.Status)} v{t.Version}");
            return 0;
        });
        return cmd;
    }

    private static Command Change(string action, string description)
    {
        var board = new Argument<string>("board") { Description = "The board." };
        var id = new Argument<string>("id") { Description = "The task." };
        var by = new Option<string>("--as") { Description = "Who acts (the claimer).", Required = true };
        var note = new Option<string?>("--note") { Description = "complete: the result; block: why." };
        var db = CliShared.DbOption();
        var cmd = new Command(action, description) { board, id, by, note, db };
        cmd.SetAction(async (parse, ct) =>
        {
            var (b, i, who, n) = (parse.GetValue(board)!, parse.GetValue(id)!, parse.GetValue(by)!, parse.GetValue(note));
            if (action == "block" && string.IsNullOrWhiteSpace(n)) throw new CliUsageException("block needs --note saying why");
            var store = await OpenAsync(parse.GetValue(db)!, ct);
            var now = DateTimeOffset.UtcNow;
            var result = action switch
            {
                "claim" => await store.ClaimAsync(b, i, who, now, ct),
                "complete" => await store.CompleteAsync(b, i, who, n, now, ct),
                _ => await store.BlockAsync(b, i, who, n!, now, ct),
            };
            switch (result.Outcome)
            {
                case BoardChange.Applied:
                    Console.Out.WriteLine($"task {i} on {b}: {WireNames.Of(result.Task!.Status)} by {who} (v{result.Task.Version})");
                    return 0;
                case BoardChange.NotFound:
                    Console.Error.WriteLine($"bureau: board '{b}' has no task '{i}'");
                    return 1;
                default:
                    Console.Error.WriteLine($"bureau: cannot {action} task '{i}': it is {WireNames.Of(result.Task!.Status)}{(result.Task.ClaimedBy is { } holder ? " (" + holder + ")" : "")}, version {result.Task.Version}");
                    return 1;
            }
        });
        return cmd;
    }
}

/// <summary>The board's JSON for <c>bureau board show --json</c>.</summary>
[System.Text.Json.Serialization.JsonSourceGenerationOptions(PropertyNamingPolicy = System.Text.Json.Serialization.JsonKnownNamingPolicy.CamelCase, WriteIndented = true)]
[System.Text.Json.Serialization.JsonSerializable(typeof(BoardSnapshot))]
internal sealed partial class BoardJson : System.Text.Json.Serialization.JsonSerializerContext;
