using System.Text.Json.Nodes;
using Xunit;

namespace Bureau.Durability.Tests;

/// <summary>
/// `bureau replay ID --from-step N --model M`: a what-if fork shares the recorded steps up to N, goes on
/// with the other model, leaves write tools out unless asked, and changes nothing in the database it read.
/// </summary>
public sealed class ReplayForkTests : IDisposable
{
    private static readonly TimeSpan ProcessTimeout = TimeSpan.FromSeconds(90);
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bureau-fork", Guid.NewGuid().ToString("n"));

    public ReplayForkTests()
    {
        Directory.CreateDirectory(_dir);
        File.WriteAllText(Path.Combine(_dir, "bureau.yaml"), """
            models:
              a:
                provider: scripted
                rules:
                  - when: { turn: 1 }
                    calls: [ { tool: lookup, args: { key: "{{input}}" } } ]
                  - when: { turn: 2 }
                    calls: [ { tool: ship, args: { order: "{{input}}" } } ]
                  - reply: "A done with {{input}}"
              b:
                provider: scripted
                rules:
                  - reply: "B answers {{input}} at turn {{turn}}"
            tools:
              lookup:
                kind: process
                command: ["sh", "-c", "cat >/dev/null; echo found"]
                effect: read
                parameters: { type: object, properties: { key: { type: string } }, required: [key] }
              ship:
                kind: process
                command: ["sh", "-c", "cat >/dev/null; echo shipped >> ship.log; echo shipped"]
                effect: write
                parameters: { type: object, properties: { order: { type: string } }, required: [order] }
            agents:
              clerk:
                model: a
                tools: [lookup, ship]
            """);
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private async Task<BureauProcess> BureauAsync(int expectedExit, params string[] args)
    {
        var p = BureauProcess.Start(_dir, new Dictionary<string, string>(), args);
        var exit = await p.WaitAsync(ProcessTimeout);
        Assert.True(exit == expectedExit, $"bureau {string.Join(' ', args)}: exit {exit}\n{p.Stdout}\n{p.Stderr}");
        return p;
    }

    [Fact]
    public async Task Fork_FromAStepOnAnotherModel_SharesTheStepsBefore_GoesOnDifferently_AndChangesNothing()
    {
        var db = Path.Combine(_dir, "runs.db");
        using (await BureauAsync(0, "run", "bureau.yaml", "--agent", "clerk", "--input", "o-7", "--db", db)) { }
        string id;
        using (var list = await BureauAsync(0, "runs", "list", "--db", db, "--json"))
            id = (string)JsonNode.Parse(list.Stdout)!["items"]![0]!["id"]!;
        Assert.Single(File.ReadAllLines(Path.Combine(_dir, "ship.log")));

        using var fork = await BureauAsync(0, "replay", id, "--db", db, "--from-step", "3", "--model", "b", "--json");
        var doc = JsonNode.Parse(fork.Stdout)!;
        Assert.Equal(("succeeded", "B answers o-7 at turn 2"), ((string)doc["fork"]!["status"]!, (string)doc["fork"]!["output"]!));
        Assert.Equal(["ship"], doc["fork"]!["writeToolsLeftOut"]!.AsArray().Select(t => (string)t!));
        var steps = doc["steps"]!.AsArray();
        Assert.Equal("run.started", (string)steps[0]!["fork"]!["kind"]!); // the fork's own start (its actor says it is a fork)
        Assert.Equal("bureau:replay-fork", (string)steps[0]!["fork"]!["actor"]!);
        for (var i = 0; i < 3; i++) Assert.True((bool)steps[i]!["shared"]!);
        for (var i = 1; i < 3; i++) Assert.Equal(steps[i]!["original"]!.ToJsonString(), steps[i]!["fork"]!.ToJsonString()); // the shared steps are the recorded ones
        Assert.Equal("model.response", (string)steps[3]!["original"]!["kind"]!);
        Assert.Contains(steps.Skip(3), s => s!["fork"] is { } f && (string?)f["text"] == "B answers o-7 at turn 2");

        // The recorded run and its database are as they were: one run, the write done once.
        using (var list = await BureauAsync(0, "runs", "list", "--db", db, "--json"))
            Assert.Single(JsonNode.Parse(list.Stdout)!["items"]!.AsArray());
        Assert.Single(File.ReadAllLines(Path.Combine(_dir, "ship.log")));
    }

    [Fact]
    public async Task Fork_AllowWrites_RunsTheWriteToolsInTheFork()
    {
        var db = Path.Combine(_dir, "runs.db");
        using (await BureauAsync(0, "run", "bureau.yaml", "--agent", "clerk", "--input", "o-9", "--db", db)) { }
        string id;
        using (var list = await BureauAsync(0, "runs", "list", "--db", db, "--json"))
            id = (string)JsonNode.Parse(list.Stdout)!["items"]![0]!["id"]!;

        // From step 3 on the same model: the fork asks for ship again, and with --allow-writes it runs.
        using var fork = await BureauAsync(0, "replay", id, "--db", db, "--from-step", "3", "--allow-writes", "--json");
        var doc = JsonNode.Parse(fork.Stdout)!;
        Assert.Empty(doc["fork"]!["writeToolsLeftOut"]!.AsArray());
        Assert.Equal(("succeeded", "A done with o-9"), ((string)doc["fork"]!["status"]!, (string)doc["fork"]!["output"]!));
        Assert.Equal(2, File.ReadAllLines(Path.Combine(_dir, "ship.log")).Length); // the recorded run's write, and the fork's
    }

    [Fact]
    public async Task Fork_BadArguments_AreUsageErrors()
    {
        var db = Path.Combine(_dir, "runs.db");
        using (await BureauAsync(0, "run", "bureau.yaml", "--agent", "clerk", "--input", "o-8", "--db", db)) { }
        string id;
        using (var list = await BureauAsync(0, "runs", "list", "--db", db, "--json"))
            id = (string)JsonNode.Parse(list.Stdout)!["items"]![0]!["id"]!;

        using (var p = await BureauAsync(2, "replay", id, "--db", db, "--from-step", "99")) Assert.Contains("--from-step must be between 1 and", p.Stderr);
        using (var p = await BureauAsync(2, "replay", id, "--db", db, "--from-step", "2", "--model", "nope")) Assert.Contains("--model must be a deployed model, not 'nope'", p.Stderr);
        using (var p = await BureauAsync(2, "replay", id, "--db", db, "--model", "b")) Assert.Contains("go with --from-step", p.Stderr);
    }

    [Fact]
    public async Task Fork_OfAnAgentWithMemory_RemembersInAThrowawayStore_TheRecordedDatabasesMemoryIsUnchanged()
    {
        File.WriteAllText(Path.Combine(_dir, "memory.yaml"), """
            models:
              m:
                provider: scripted
                rules:
                  - when: { turn: 1 }
                    calls: [ { tool: remember, args: { scope: tenant, key: plan, value: "gold for {{input}}" } } ]
                  - reply: "remembered: {{last}}"
              n:
                provider: scripted
                rules:
                  - when: { turn: 2 }
                    calls: [ { tool: remember, args: { scope: tenant, key: plan, value: "silver for {{input}}" } } ]
                  - reply: "fork remembered: {{last}}"
            agents:
              keeper:
                model: m
                memory: { scopes: [tenant], tenant: acme }
            """);
        var db = Path.Combine(_dir, "memory.db");
        using (await BureauAsync(0, "run", "memory.yaml", "--agent", "keeper", "--input", "c-1", "--db", db)) { }
        string id;
        using (var list = await BureauAsync(0, "runs", "list", "--db", db, "--json"))
            id = (string)JsonNode.Parse(list.Stdout)!["items"]![0]!["id"]!;

        // The fork goes on after the recorded run's first model answer (its remember call), on model n: it writes
        // its own fact, into the fork's throwaway database.
        using var fork = await BureauAsync(0, "replay", id, "--db", db, "--file", "memory.yaml", "--from-step", "2", "--model", "n", "--json");
        var doc = JsonNode.Parse(fork.Stdout)!;
        Assert.Equal("succeeded", (string)doc["fork"]!["status"]!);

        var memory = new Bureau.Storage.Sqlite.SqliteMemoryStore(new Bureau.Storage.Sqlite.SqliteStoreOptions { Path = db });
        await memory.InitializeAsync();
        var history = await memory.HistoryAsync("tenant:acme", "plan");
        Assert.Equal(["gold for c-1"], history.Select(f => f.Value));
    }
}
