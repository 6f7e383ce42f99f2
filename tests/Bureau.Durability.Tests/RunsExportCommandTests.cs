using System.Text.Json.Nodes;
using Bureau.Storage.Sqlite;
using Xunit;

namespace Bureau.Durability.Tests;

/// <summary>`bureau runs export`: finished runs as JSON lines (the run and its journal), filtered, and its usage errors.</summary>
public sealed class RunsExportCommandTests : IAsyncLifetime
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bureau-export", Guid.NewGuid().ToString("n"));
    private static readonly TimeSpan ProcessTimeout = TimeSpan.FromSeconds(90);
    private string Db => Path.Combine(_dir, "export.db");
    private static readonly DateTimeOffset Old = new(2026, 11, 1, 10, 0, 0, TimeSpan.Zero);
    private static readonly DateTimeOffset Recent = new(2026, 12, 5, 10, 0, 0, TimeSpan.Zero);

    public async ValueTask InitializeAsync()
    {
        Directory.CreateDirectory(_dir);
        await using var store = new SqliteRunStore(new SqliteStoreOptions { Path = Db });
        await store.InitializeAsync();
        await FinishedAsync(store, "old-ok", "writer", Old, RunStatus.Succeeded);
        await FinishedAsync(store, "old-failed", "writer", Old, RunStatus.Failed);
        await FinishedAsync(store, "recent-ok", "checker", Recent, RunStatus.Succeeded);
        await store.SubmitAsync(new NewRun { Id = "queued", Agent = "writer", Input = "i", Started = new RunStarted("writer", "i"), CreatedAt = Old });
    }

    private static async Task FinishedAsync(SqliteRunStore store, string id, string agent, DateTimeOffset at, RunStatus status)
    {
        await store.SubmitAsync(new NewRun { Id = id, Agent = agent, Input = "in " + id, Started = new RunStarted(agent, "in " + id), CreatedAt = at });
        var output = status == RunStatus.Succeeded ? "out " + id : null;
        var error = status == RunStatus.Failed ? "boom" : null;
        await store.AppendAsync(new AppendRequest
        {
            RunId = id, ExpectedVersion = 1, At = at.AddMinutes(1), Entries = [new RunFinished(status, output, error, null)],
            Update = new RunUpdate { Status = status, Output = output, Error = error },
        });
    }

    public ValueTask DisposeAsync()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
        return ValueTask.CompletedTask;
    }

    private async Task<BureauProcess> ExportAsync(int expectedExit, params string[] args)
    {
        var process = BureauProcess.Start(_dir, new Dictionary<string, string>(), ["runs", "export", "--db", Db, .. args]);
        var exit = await process.WaitAsync(ProcessTimeout);
        Assert.True(exit == expectedExit, $"exit {exit}\n{process.Stdout}\n{process.Stderr}");
        return process;
    }

    private static List<JsonObject> Lines(string text) =>
        text.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonNode.Parse(l)!.AsObject()).ToList();

    [Fact]
    public async Task Export_ToStdout_WritesEveryFinishedRunWithItsJournal()
    {
        using var all = await ExportAsync(0);
        var runs = Lines(all.Stdout);
        Assert.Equal(["recent-ok", "old-failed", "old-ok"], runs.Select(r => (string)r["id"]!));
        var ok = runs.Single(r => (string)r["id"]! == "old-ok");
        Assert.Equal(("writer", "succeeded", "out old-ok"), ((string)ok["agent"]!, (string)ok["status"]!, (string)ok["output"]!));
        var steps = ok["steps"]!.AsArray();
        Assert.Equal([1L, 2L], steps.Select(s => (long)s!["n"]!));
        Assert.Equal(["run.started", "run.finished"], steps.Select(s => (string)s!["kind"]!));
        Assert.Equal("in old-ok", (string)steps[0]!["input"]!);
    }

    [Fact]
    public async Task Export_FilteredToAFile_WritesOnlyTheSelectedRuns()
    {
        var file = Path.Combine(_dir, "out.jsonl");
        using var before = await ExportAsync(0, "--before", "2026-12-01", "--out", file);
        Assert.Equal(["old-failed", "old-ok"], Lines(await File.ReadAllTextAsync(file)).Select(r => (string)r["id"]!));
        Assert.Contains("2 run(s) written", before.Stderr);

        using var failed = await ExportAsync(0, "--status", "failed", "--agent", "writer");
        var run = Assert.Single(Lines(failed.Stdout));
        Assert.Equal(("old-failed", "boom"), ((string)run["id"]!, (string)run["error"]!));

        using var none = await ExportAsync(0, "--agent", "nobody");
        Assert.Equal("", none.Stdout.Trim());
    }

    [Fact]
    public async Task Export_BadOptions_ExitTwoNamingTheOption()
    {
        using var running = await ExportAsync(2, "--status", "queued");
        Assert.Contains("--status must be one of succeeded, failed, canceled", running.Stderr);
        using var before = await ExportAsync(2, "--before", "last-tuesday");
        Assert.Contains("--before: 'last-tuesday' is not a date", before.Stderr);
    }
}
