using Bureau.Storage.Sqlite;
using Xunit;

namespace Bureau.Durability.Tests;

/// <summary>
/// A `bureau run` killed with SIGKILL around a memory write (after its intent, after the store wrote it, after its
/// result was journaled), then run again on the same database: the fact gets exactly one new version, written by the
/// run, and the journal has one intent and one memory.write for it.
/// </summary>
public sealed class MemoryCrashTests : IAsyncLifetime
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bureau-memory-crash", Guid.NewGuid().ToString("n"));
    private static readonly TimeSpan ProcessTimeout = TimeSpan.FromSeconds(90);

    public ValueTask InitializeAsync()
    {
        Directory.CreateDirectory(_dir);
        File.WriteAllText(Path.Combine(_dir, "bureau.yaml"), """
            models:
              s:
                provider: scripted
                rules:
                  - when: { turn: 1 }
                    calls: [ { tool: remember, args: { scope: tenant, key: customer-42-plan, value: "platinum since {{input}}" } } ]
                  - when: { turn: 2 }
                    calls: [ { tool: recall, args: { key: customer-42-plan } } ]
                  - reply: "remembered: {{last}}"
            agents:
              clerk:
                model: s
                instructions: Remember the plan.
                memory: { scopes: [tenant], tenant: acme }
            """);
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
        return ValueTask.CompletedTask;
    }

    [Theory]
    [InlineData("after-intent")]   // the store never wrote it: the resumed run writes it once
    [InlineData("after-tool")]     // the store wrote it, the journal does not say so: the resumed run's write is a repeat
    [InlineData("after-result")]   // journaled: the resumed run does not write again
    public async Task Kill_AroundAMemoryWrite_TheFactGetsExactlyOneVersion(string point)
    {
        var db = Path.Combine(_dir, point + ".db");
        string[] args = ["run", "bureau.yaml", "--agent", "clerk", "--input", "march", "--idempotency-key", "k-" + point, "--db", db, "--json"];

        using (var crashing = BureauProcess.Start(_dir, new Dictionary<string, string> { ["BUREAU_CRASH_AT"] = point }, args))
        {
            var code = await crashing.WaitAsync(ProcessTimeout);
            Assert.True(code == 137 || code == -9 || code == 9, $"expected a SIGKILL at {point}, got exit {code}\n{crashing.Stderr}");
            Assert.Contains($"crash point '{point}'", crashing.Stderr);
        }
        using var restarted = BureauProcess.Start(_dir, new Dictionary<string, string> { ["BUREAU_CRASH_AT"] = "" }, args);
        var exit = await restarted.WaitAsync(ProcessTimeout);
        Assert.True(exit == 0, $"exit {exit}\n{restarted.Stdout}\n{restarted.Stderr}");
        Assert.Contains("\"status\":\"succeeded\"", restarted.Stdout);

        await using var store = new SqliteRunStore(new SqliteStoreOptions { Path = db });
        await store.InitializeAsync();
        var run = Assert.Single((await store.ListRunsAsync(new RunQuery())).Items);
        var journal = (await store.ReadJournalAsync(run.Id)).Select(r => r.Entry).ToList();
        Assert.Single(journal.OfType<ToolIntent>());
        var written = Assert.Single(journal.OfType<MemoryWritten>());
        Assert.Equal(point == "after-tool", written.Repeated);
        var memory = new SqliteMemoryStore(new SqliteStoreOptions { Path = db });
        await memory.InitializeAsync();
        var history = await memory.HistoryAsync("tenant:acme", "customer-42-plan");
        var fact = Assert.Single(history);
        Assert.Equal(("platinum since march", run.Id, written.IntentStep), (fact.Value, fact.Provenance.RunId, fact.Provenance.Step!.Value));
        Assert.Equal("platinum since march", Assert.Single(Assert.Single(journal.OfType<MemoryRead>()).Hits).Fact.Value);
    }
}
