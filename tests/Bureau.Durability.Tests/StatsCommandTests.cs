using System.Text.Json.Nodes;
using Bureau.Storage.Sqlite;
using Xunit;

namespace Bureau.Durability.Tests;

/// <summary>`bureau stats`: runs, journal entries and bytes per agent, audit entries and size on disk.</summary>
public sealed class StatsCommandTests : IAsyncLifetime
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bureau-stats", Guid.NewGuid().ToString("n"));
    private static readonly TimeSpan ProcessTimeout = TimeSpan.FromSeconds(90);
    private string Db => Path.Combine(_dir, "stats.db");

    public async ValueTask InitializeAsync()
    {
        Directory.CreateDirectory(_dir);
        await using var store = new SqliteRunStore(new SqliteStoreOptions { Path = Db });
        await store.InitializeAsync();
        var at = new DateTimeOffset(2026, 12, 6, 9, 0, 0, TimeSpan.Zero);
        foreach (var (id, agent) in new[] { ("w1", "writer"), ("w2", "writer"), ("c1", "checker") })
        {
            await store.SubmitAsync(new NewRun { Id = id, Agent = agent, Input = new string('x', 1000), Started = new RunStarted(agent, new string('x', 1000)), CreatedAt = at });
            if (agent == "writer")
                await store.AppendAsync(new AppendRequest
                {
                    RunId = id, ExpectedVersion = 1, At = at, Entries = [new RunFinished(RunStatus.Succeeded, "ok", null, null)],
                    Update = new RunUpdate { Status = RunStatus.Succeeded, Output = "ok" },
                });
        }
    }

    public ValueTask DisposeAsync()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
        return ValueTask.CompletedTask;
    }

    private async Task<BureauProcess> StatsAsync(params string[] args)
    {
        var process = BureauProcess.Start(_dir, new Dictionary<string, string>(), ["stats", "--db", Db, .. args]);
        var exit = await process.WaitAsync(ProcessTimeout);
        Assert.True(exit == 0, $"exit {exit}\n{process.Stdout}\n{process.Stderr}");
        return process;
    }

    [Fact]
    public async Task Stats_Json_CountsRunsEntriesAndBytesPerAgent()
    {
        using var p = await StatsAsync("--json");
        var doc = JsonNode.Parse(p.Stdout)!;
        var agents = doc["agents"]!.AsArray().ToDictionary(a => (string)a!["agent"]!);
        Assert.Equal(["checker", "writer"], agents.Keys.Order());
        Assert.Equal((2L, 4L), ((long)agents["writer"]!["runs"]!, (long)agents["writer"]!["journalEntries"]!));
        Assert.Equal((1L, 1L), ((long)agents["checker"]!["runs"]!, (long)agents["checker"]!["journalEntries"]!));
        var checkerBytes = (long)agents["checker"]!["journalBytes"]!;
        Assert.InRange(checkerBytes, 1000, 1200);     // the one run.started entry with its 1000-character input
        Assert.True((long)agents["writer"]!["journalBytes"]! > 2 * checkerBytes);
        var total = doc["total"]!;
        Assert.Equal((3L, 5L), ((long)total["runs"]!, (long)total["journalEntries"]!));
        Assert.InRange((long)total["fileBytes"]!, (long)total["journalBytes"]! + 4096, 64L << 20);   // the file holds the entries and more (pages, indexes, audit)
    }

    [Fact]
    public async Task Stats_Table_NamesEachAgentAndTheTotal()
    {
        using var p = await StatsAsync();
        Assert.Contains("writer", p.Stdout);
        Assert.Contains("checker", p.Stdout);
        Assert.Matches(@"total\s+3\s+5", p.Stdout);
        Assert.Contains("on disk (database and WAL):", p.Stdout);
    }
}
