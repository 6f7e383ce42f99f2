using System.Text.Json.Nodes;
using Bureau.Storage.Sqlite;
using Xunit;

namespace Bureau.Durability.Tests;

/// <summary>
/// `bureau runs list --cursor CURSOR` reads the page after the one whose `next` it is (the `next` of `--json`), so every
/// run can be listed page by page; a cursor the store did not hand out is bad usage (exit 2) naming --cursor.
/// </summary>
public sealed class RunsListCursorTests : IAsyncLifetime
{
    private static readonly TimeSpan ProcessTimeout = TimeSpan.FromSeconds(90);
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bureau-runs-cursor", Guid.NewGuid().ToString("n"));
    private readonly List<string> _ids = [];
    private string Db => Path.Combine(_dir, "runs.db");

    public async ValueTask InitializeAsync()
    {
        Directory.CreateDirectory(_dir);
        await using var store = new SqliteRunStore(new SqliteStoreOptions { Path = Db });
        await store.InitializeAsync();
        var at = new DateTimeOffset(2026, 12, 6, 9, 0, 0, TimeSpan.Zero);
        for (var i = 0; i < 5; i++)
        {
            var id = $"01m97me55gmxmcs1p{i}";
            await store.SubmitAsync(new NewRun { Id = id, Agent = "triage", Input = $"ticket {i}", Started = new RunStarted("triage", $"ticket {i}"), CreatedAt = at.AddMinutes(i) });
            _ids.Add(id);
        }
    }

    public ValueTask DisposeAsync()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
        return ValueTask.CompletedTask;
    }

    private Task<(int Code, string Stdout, string Stderr)> BureauAsync(params string[] args) => BureauProcess.RunAsync(_dir, ProcessTimeout, args);

    [Fact]
    public async Task RunsList_WithTheNextCursor_ReadsThePagesInTurn_UntilEveryRunIsListedOnce()
    {
        var seen = new List<string>();
        string? cursor = null;
        var pages = 0;
        do
        {
            string[] args = cursor is null
                ? ["runs", "list", "--db", Db, "--limit", "2", "--json"]
                : ["runs", "list", "--db", Db, "--limit", "2", "--json", "--cursor", cursor];
            var (code, stdout, stderr) = await BureauAsync(args);
            Assert.True(code == 0, $"exit {code}\n{stdout}\n{stderr}");
            var page = JsonNode.Parse(stdout)!.AsObject();
            seen.AddRange(page["items"]!.AsArray().Select(r => (string)r!["id"]!));
            cursor = (string?)page["next"];
            pages++;
        }
        while (cursor is not null && pages < 5);

        Assert.Equal(3, pages);
        Assert.Equal(Enumerable.Reverse(_ids), seen); // newest first, each run once

        // The table says where the next page starts, too.
        var table = await BureauAsync("runs", "list", "--db", Db, "--limit", "4");
        Assert.True(table.Code == 0, $"exit {table.Code}\n{table.Stdout}\n{table.Stderr}");
        var more = Assert.Single(table.Stdout.Split('\n'), l => l.StartsWith("more: --cursor ", StringComparison.Ordinal)).Trim();
        var last = await BureauAsync("runs", "list", "--db", Db, "--cursor", more["more: --cursor ".Length..]);
        Assert.True(last.Code == 0, $"exit {last.Code}\n{last.Stdout}\n{last.Stderr}");
        Assert.Contains(_ids[0], last.Stdout);
        Assert.DoesNotContain(_ids[1], last.Stdout);
        Assert.DoesNotContain("more:", last.Stdout);
    }

    [Theory]
    [InlineData("abc")]
    [InlineData("-3")]
    public async Task RunsList_ACursorTheStoreDidNotReturn_IsBadUsage_NamingTheOption(string cursor)
    {
        var (code, stdout, stderr) = await BureauAsync("runs", "list", "--db", Db, "--cursor", cursor);

        Assert.True(code == 2, $"exit {code}\n{stdout}\n{stderr}");
        Assert.Contains("--cursor", stderr);
        Assert.Contains(cursor, stderr);
    }
}
