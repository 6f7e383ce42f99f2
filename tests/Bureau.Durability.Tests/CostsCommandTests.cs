using System.Text.Json.Nodes;
using Bureau.Storage.Sqlite;
using Xunit;

namespace Bureau.Durability.Tests;

/// <summary>`bureau costs`: tokens and cost per agent and per day from a database, and its usage errors.</summary>
public sealed class CostsCommandTests : IAsyncLifetime
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bureau-costs", Guid.NewGuid().ToString("n"));
    private static readonly TimeSpan ProcessTimeout = TimeSpan.FromSeconds(90);
    private string Db => Path.Combine(_dir, "costs.db");

    public async ValueTask InitializeAsync()
    {
        Directory.CreateDirectory(_dir);
        await using var store = new SqliteRunStore(new SqliteStoreOptions { Path = Db });
        await store.InitializeAsync();
        var day1 = new DateTimeOffset(2026, 12, 5, 22, 0, 0, TimeSpan.Zero);
        var day2 = new DateTimeOffset(2026, 12, 6, 9, 0, 0, TimeSpan.Zero);
        await AddAsync(store, "r1", "writer", day1, 0.5);
        await AddAsync(store, "team", "desk", day2, 1.25, RunKinds.Team);   // its members' sum
        await AddAsync(store, "m1", "writer", day2, 0.5, parent: "team");
        await AddAsync(store, "m2", "checker", day2, 0.75, parent: "team");
    }

    private static async Task AddAsync(SqliteRunStore store, string id, string agent, DateTimeOffset at, double cost, string kind = RunKinds.Agent, string? parent = null)
    {
        await store.SubmitAsync(new NewRun { Id = id, Agent = agent, Kind = kind, ParentRunId = parent, RootRunId = parent, Input = "i", Started = new RunStarted(agent, "i"), CreatedAt = at });
        await store.AppendAsync(new AppendRequest
        {
            RunId = id, ExpectedVersion = 1, At = at, Entries = [new RunFinished(RunStatus.Succeeded, "ok", null, null)],
            Update = new RunUpdate { Status = RunStatus.Succeeded, Output = "ok", Usage = new UsageRecord(100, 10), Cost = cost },
        });
    }

    public ValueTask DisposeAsync()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
        return ValueTask.CompletedTask;
    }

    private async Task<BureauProcess> CostsAsync(int expectedExit, params string[] args)
    {
        var process = BureauProcess.Start(_dir, new Dictionary<string, string>(), ["costs", "--db", Db, .. args]);
        var exit = await process.WaitAsync(ProcessTimeout);
        Assert.True(exit == expectedExit, $"exit {exit}\n{process.Stdout}\n{process.Stderr}");
        return process;
    }

    [Fact]
    public async Task Costs_ByAgentAndByDay_CountATeamsMembersOnce()
    {
        using var byAgent = await CostsAsync(0, "--json");
        var rows = JsonNode.Parse(byAgent.Stdout)!["rows"]!.AsArray();
        Assert.Equal(["checker", "writer"], rows.Select(r => (string)r!["agent"]!));
        Assert.Equal((2L, 1.0), ((long)rows[1]!["runs"]!, (double)rows[1]!["cost"]!));
        Assert.Equal(1.75, (double)JsonNode.Parse(byAgent.Stdout)!["total"]!["cost"]!, 9);

        using var byDay = await CostsAsync(0, "--by", "day", "--since", "2026-12-06", "--json");
        var day = Assert.Single(JsonNode.Parse(byDay.Stdout)!["rows"]!.AsArray())!;
        Assert.Equal(("2026-12-06", 2L, 1.25), ((string)day["day"]!, (long)day["runs"]!, (double)day["cost"]!));

        using var table = await CostsAsync(0, "--by", "day", "--until", "2026-12-06");
        Assert.Contains("2026-12-05", table.Stdout);
        Assert.DoesNotContain("2026-12-06  ", table.Stdout);
        Assert.Contains("total", table.Stdout);
    }

    [Fact]
    public async Task Costs_SinceNotADate_ExitsTwoNamingTheOption()
    {
        using var bad = await CostsAsync(2, "--since", "last-tuesday");
        Assert.Contains("--since: 'last-tuesday' is not a date", bad.Stderr);

        using var reversed = await CostsAsync(2, "--since", "2026-12-06", "--until", "2026-12-05");
        Assert.Contains("must be before --until", reversed.Stderr);
    }
}
