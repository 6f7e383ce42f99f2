using System.Text.Json.Nodes;
using Bureau.Storage.Sqlite;
using Xunit;

namespace Bureau.Durability.Tests;

/// <summary>`bureau board add|claim|complete|block|show`: a team's board in a database, claimed once, refusals naming who holds a task.</summary>
public sealed class BoardCommandTests : IAsyncLifetime
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bureau-board", Guid.NewGuid().ToString("n"));
    private static readonly TimeSpan ProcessTimeout = TimeSpan.FromSeconds(90);
    private string Db => Path.Combine(_dir, "board.db");

    public async ValueTask InitializeAsync()
    {
        Directory.CreateDirectory(_dir);
        var store = new SqliteBoardStore(new SqliteStoreOptions { Path = Db });
        await store.InitializeAsync();
        await store.AddDecisionAsync("desk", "refunds", "over 100 EUR need a supervisor", "lead", DateTimeOffset.UnixEpoch);
    }

    public ValueTask DisposeAsync()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
        return ValueTask.CompletedTask;
    }

    private async Task<BureauProcess> BoardAsync(int expectedExit, params string[] args)
    {
        var process = BureauProcess.Start(_dir, new Dictionary<string, string>(), ["board", .. args, "--db", Db]);
        var exit = await process.WaitAsync(ProcessTimeout);
        Assert.True(exit == expectedExit, $"exit {exit}\n{process.Stdout}\n{process.Stderr}");
        return process;
    }

    [Fact]
    public async Task AddClaimComplete_ASecondClaimIsRefusedNamingTheHolder_AndShowListsIt()
    {
        await BoardAsync(0, "add", "desk", "refund-42", "Refund customer 42");
        var claimed = await BoardAsync(0, "claim", "desk", "refund-42", "--as", "billing");
        Assert.Contains("claimed by billing", claimed.Stdout);
        var second = await BoardAsync(1, "claim", "desk", "refund-42", "--as", "technical");
        Assert.Contains("it is claimed (billing)", second.Stderr);
        await BoardAsync(0, "complete", "desk", "refund-42", "--as", "billing", "--note", "refunded 30 EUR");
        await BoardAsync(2, "block", "desk", "refund-42", "--as", "billing");

        var show = await BoardAsync(0, "show", "desk", "--json");
        var doc = JsonNode.Parse(show.Stdout)!;
        Assert.Equal(("done", "billing", "refunded 30 EUR"), ((string)doc["tasks"]![0]!["status"]!, (string)doc["tasks"]![0]!["claimedBy"]!, (string)doc["tasks"]![0]!["note"]!));
        Assert.Equal("refunds", (string)doc["decisions"]![0]!["title"]!);
    }
}
