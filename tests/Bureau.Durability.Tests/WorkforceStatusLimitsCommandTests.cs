using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Bureau.Storage.Sqlite;
using Xunit;

namespace Bureau.Durability.Tests;

/// <summary>
/// `bureau workforce status` shows the inbox's limits (decision 0050) as `bureau serve` in the same directory reads them
/// (appsettings.json and environment variables): the inbox's "queued N / limit M" and each skill's queued count and limit,
/// in the table and in --json; the default limit when nothing is configured; an invalid limit is an error naming its key.
/// </summary>
public sealed class WorkforceStatusLimitsCommandTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bureau-workforce-limits-cli", Guid.NewGuid().ToString("n"));
    private readonly string _bare;
    private static readonly TimeSpan ProcessTimeout = TimeSpan.FromSeconds(90);

    public WorkforceStatusLimitsCommandTests()
    {
        Directory.CreateDirectory(_dir);
        _bare = Directory.CreateDirectory(Path.Combine(_dir, "bare")).FullName; // no appsettings.json: the defaults
        File.WriteAllText(Path.Combine(_dir, "bureau.yaml"), """
            models:
              script: { provider: scripted, rules: [ { reply: "done" } ] }
            agents:
              ann: { model: script }
              bob: { model: script }
            workforce:
              members:
                ann: { skills: [desk], concurrency: 2 }
                bob: { skills: [desk, billing], concurrency: 1 }
            """);
        File.WriteAllText(Path.Combine(_dir, "appsettings.json"), """
            { "Bureau": { "Workforce": { "MaxQueuedTasks": 40, "SkillQueueLimits": { "billing": 5 } } } }
            """);
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    /// <summary>The command's exit code and output, run in <paramref name="workingDirectory"/> (where it reads appsettings.json).</summary>
    private async Task<(int ExitCode, string Stdout, string Stderr)> StatusAsync(string workingDirectory, Dictionary<string, string> env, params string[] more)
    {
        using var p = BureauProcess.Start(workingDirectory, env, ["workforce", "status", Path.Combine(_dir, "bureau.yaml"), "--db", Path.Combine(_dir, "bureau.db"), .. more]);
        var exitCode = await p.WaitAsync(ProcessTimeout);
        return (exitCode, p.Stdout, p.Stderr);
    }

    [Fact]
    public async Task Status_ShowsTheInboxLimits_FromAppSettingsAndEnvironment_OrTheDefault()
    {
        var ct = TestContext.Current.CancellationToken;
        var store = new SqliteWorkforceStore(new SqliteStoreOptions { Path = Path.Combine(_dir, "bureau.db") });
        await store.InitializeAsync(ct);
        var now = DateTimeOffset.UtcNow;
        foreach (var (id, skill) in new[] { ("t1", "desk"), ("t2", "desk"), ("t3", "desk"), ("t4", "billing") })
            await store.EnqueueAsync(id, skill, "input of " + id, "api", null, now, ct);
        var env = new Dictionary<string, string> { ["Bureau__Workforce__SkillQueueLimits__legal"] = "7" };

        var json = await StatusAsync(_dir, env, "--json");
        Assert.True(json.ExitCode == 0, json.Stderr);
        var shown = JsonNode.Parse(json.Stdout)!;
        Assert.Equal((4, 40), ((int)shown["queued"]!, (int)shown["maxQueuedTasks"]!));
        Assert.Equal(WorkforceDefinition.DefaultBoard, (string)shown["board"]!);   // as GET /v1/workforce answers
        // billing's own limit (appsettings.json), legal's (environment), desk queued without one of its own.
        Assert.Equal([("billing", (int?)5), ("desk", null), ("legal", 7)], shown["maxQueuedBySkill"]!.AsObject().Select(p => (p.Key, (int?)p.Value)));

        var table = await StatusAsync(_dir, env);
        Assert.True(table.ExitCode == 0, table.Stderr);
        Assert.Contains("inbox: 4 queued / limit 40 (billing 1, desk 3); 0 in progress", table.Stdout);
        Assert.Matches(new Regex(@"^SKILL +QUEUED +QUEUE LIMIT$", RegexOptions.Multiline), table.Stdout);
        Assert.Matches(new Regex(@"^billing +1 +5$", RegexOptions.Multiline), table.Stdout);
        Assert.Matches(new Regex(@"^desk +3 +-$", RegexOptions.Multiline), table.Stdout);
        Assert.Matches(new Regex(@"^legal +0 +7$", RegexOptions.Multiline), table.Stdout);
        TestContext.Current.TestOutputHelper?.WriteLine(table.Stdout);

        var defaults = await StatusAsync(_bare, [], "--json");
        Assert.True(defaults.ExitCode == 0, defaults.Stderr);
        shown = JsonNode.Parse(defaults.Stdout)!;
        Assert.Equal(10_000, (int)shown["maxQueuedTasks"]!);
        Assert.Equal([("billing", (int?)null), ("desk", null)], shown["maxQueuedBySkill"]!.AsObject().Select(p => (p.Key, (int?)p.Value)));
        Assert.Contains("inbox: 4 queued / limit 10000 (billing 1, desk 3); 0 in progress", (await StatusAsync(_bare, [])).Stdout);

        var invalid = await StatusAsync(_bare, new Dictionary<string, string> { ["Bureau__Workforce__MaxQueuedTasksPerSkill"] = "0" });
        Assert.True(invalid.ExitCode == 2, $"exit {invalid.ExitCode}: {invalid.Stderr}");
        Assert.Contains("Bureau:Workforce:MaxQueuedTasksPerSkill must be at least 1 (is 0)", invalid.Stderr);
    }
}
