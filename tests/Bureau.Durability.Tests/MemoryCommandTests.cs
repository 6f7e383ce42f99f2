using System.Text.Json.Nodes;
using Bureau.Storage.Sqlite;
using Xunit;

namespace Bureau.Durability.Tests;

/// <summary>`bureau memory list|show`: a scope's facts and one fact's versions with provenance, from a database, and usage errors.</summary>
public sealed class MemoryCommandTests : IAsyncLifetime
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bureau-memory", Guid.NewGuid().ToString("n"));
    private static readonly TimeSpan ProcessTimeout = TimeSpan.FromSeconds(90);
    private string Db => Path.Combine(_dir, "memory.db");

    public async ValueTask InitializeAsync()
    {
        Directory.CreateDirectory(_dir);
        var store = new SqliteMemoryStore(new SqliteStoreOptions { Path = Db });
        await store.InitializeAsync();
        var at = new DateTimeOffset(2026, 12, 6, 10, 0, 0, TimeSpan.Zero);
        await store.WriteAsync(new MemoryWrite { Scope = "team:desk", Key = "plan", Value = "gold", ExpectedVersion = 0, Provenance = new("run-1", 4, "billing", at) });
        await store.WriteAsync(new MemoryWrite { Scope = "team:desk", Key = "plan", Value = "platinum", ExpectedVersion = 1, Provenance = new("run-2", 6, "triage", at.AddMinutes(1)) });
        await store.WriteAsync(new MemoryWrite { Scope = "team:desk", Key = "email", Value = "a@example.com", ExpectedVersion = 0, Provenance = new(null, null, null, at, "ops") });
    }

    public ValueTask DisposeAsync()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
        return ValueTask.CompletedTask;
    }

    private async Task<BureauProcess> MemoryAsync(int expectedExit, params string[] args)
    {
        var process = BureauProcess.Start(_dir, new Dictionary<string, string>(), ["memory", .. args, "--db", Db]);
        var exit = await process.WaitAsync(ProcessTimeout);
        Assert.True(exit == expectedExit, $"exit {exit}\n{process.Stdout}\n{process.Stderr}");
        return process;
    }

    [Fact]
    public async Task List_PrintsTheScopesCurrentFactsByKey()
    {
        var p = await MemoryAsync(0, "list", "team:desk");
        var lines = p.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.StartsWith("KEY", lines[0]);
        Assert.Contains("email", lines[1]);
        Assert.Contains("plan", lines[2]);
        Assert.Contains("platinum", lines[2]);
        Assert.Contains("triage (run run-2 step 6)", lines[2]);
    }

    [Fact]
    public async Task Show_Json_HasEveryVersionWithProvenanceAndSupersession()
    {
        var p = await MemoryAsync(0, "show", "team:desk", "plan", "--json");
        var doc = JsonNode.Parse(p.Stdout)!;
        Assert.Equal("platinum", (string)doc["current"]!["value"]!);
        var versions = doc["versions"]!.AsArray();
        Assert.Equal(("billing", "run-1", 2), ((string)versions[0]!["provenance"]!["agent"]!, (string)versions[0]!["provenance"]!["runId"]!, (int)versions[0]!["supersededBy"]!));
    }

    [Fact]
    public async Task Show_UnknownFact_Exit1_BadScope_Exit2()
    {
        var missing = await MemoryAsync(1, "show", "team:desk", "nope");
        Assert.Contains("has no fact 'nope'", missing.Stderr);
        var bad = await MemoryAsync(2, "list", "desk");
        Assert.Contains("not KIND:ID", bad.Stderr);
    }
}
