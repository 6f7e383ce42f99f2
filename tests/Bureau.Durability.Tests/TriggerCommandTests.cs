using System.Globalization;
using System.Text.Json.Nodes;
using Bureau.Storage.Sqlite;
using Xunit;

namespace Bureau.Durability.Tests;

/// <summary>The real <c>bureau</c> CLI on a database: <c>schedules list</c> (next and last fire times) and <c>events dead|retry</c>.</summary>
public sealed class TriggerCommandTests : IAsyncLifetime
{
    private static readonly TimeSpan ProcessTimeout = TimeSpan.FromSeconds(90);
    private static readonly DateTimeOffset LastTick = new(2026, 12, 6, 2, 0, 0, TimeSpan.Zero);
    private const string DeliveryKey = "trigger:gh:d-1";
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bureau-trigger-cli", Guid.NewGuid().ToString("n"));
    private string Db => Path.Combine(_dir, "bureau.db");
    private string Manifest => Path.Combine(_dir, "bureau.yaml");
    private string _firedRun = "";

    public async ValueTask InitializeAsync()
    {
        Directory.CreateDirectory(_dir);
        File.WriteAllText(Manifest, """
            models:
              script:
                provider: scripted
                rules:
                  - reply: "triaged"
            agents:
              triage: { model: script }
              summarizer: { model: script }
            triggers:
              gh:
                kind: webhook
                source: github
                secret: gh-secret
                agent: triage
                input: "New issue {{$.issue.title}}"
              nightly:
                kind: schedule
                cron: "0 2 * * *"
                timeZone: UTC
                agent: summarizer
                input: "Summarize the day before {{$.tick}}"
            """);
        await using var runs = new SqliteRunStore(new SqliteStoreOptions { Path = Db });
        await runs.InitializeAsync();
        // What a host left: the schedule fired at 02:00 on 2026-12-06 (its run keyed by the tick)...
        var nightly = new ScheduleTriggerDefinition { Name = "nightly", Agent = "summarizer", Cron = "0 2 * * *" };
        _firedRun = "01run-nightly-0001";
        await runs.SubmitAsync(new NewRun
        {
            Id = _firedRun, Agent = "summarizer", Input = "Summarize", IdempotencyKey = nightly.KeyOf(LastTick), Actor = "trigger:nightly",
            Started = new RunStarted("summarizer", "Summarize"), CreatedAt = LastTick,
        });
        // ...and a GitHub delivery refused (its input rendered empty under the template deployed then), kept as a dead letter.
        var events = new SqliteEventStore(new SqliteStoreOptions { Path = Db }); // holds no connection between calls
        await events.InitializeAsync();
        Assert.True(await events.AddDeadLetterAsync(new DeadLetter
        {
            Id = DeadLetter.IdOf(DeliveryKey), Key = DeliveryKey, Trigger = "gh", EventId = "d-1", Reason = DeadLetterReasons.Refused, Agent = "triage",
            Input = "", Event = """{"action":"opened","issue":{"title":"Login fails"}}""",
            Error = "input is empty: agent 'triage' needs an input", At = LastTick.AddHours(3),
        }));
    }

    public ValueTask DisposeAsync()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
        return ValueTask.CompletedTask;
    }

    private async Task<BureauProcess> BureauAsync(int expectedExit, params string[] args)
    {
        var process = BureauProcess.Start(_dir, new Dictionary<string, string>(), args);
        var exit = await process.WaitAsync(ProcessTimeout);
        Assert.True(exit == expectedExit, $"bureau {string.Join(' ', args)}: exit {exit}, expected {expectedExit}\n{process.Stdout}\n{process.Stderr}");
        return process;
    }

    /// <summary>The next 02:00 UTC strictly after <paramref name="t"/>: when "0 2 * * *" in UTC fires next.</summary>
    private static DateTime NextTwoAm(DateTime t)
    {
        var today = t.Date.AddHours(2);
        return today > t ? today : today.AddDays(1);
    }

    private static string Time(DateTime t) => t.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture);

    [Fact]
    public async Task SchedulesList_WithDb_ShowsTheNextFireTimeAndTheLastTickFired()
    {
        var before = DateTime.UtcNow;
        using var json = await BureauAsync(0, "schedules", "list", Manifest, "--db", Db, "--json");
        using var table = await BureauAsync(0, "schedules", "list", Manifest, "--db", Db);
        var after = DateTime.UtcNow;
        // The CLI's clock read between the two: the next 02:00 after one of them.
        string[] expectedNext = [Time(NextTwoAm(before)), Time(NextTwoAm(after))];

        var row = Assert.Single(JsonNode.Parse(json.Stdout)!.AsArray())!;
        Assert.Equal(("nightly", "summarizer", "cron 0 2 * * * (UTC)"), ((string?)row["name"], (string?)row["agent"], (string?)row["when"]));
        Assert.Contains((string?)row["next"], expectedNext);
        Assert.Equal(("2026-12-06 02:00:00", _firedRun, "queued"), ((string?)row["lastFired"], (string?)row["lastRun"], (string?)row["lastStatus"]));

        var lines = table.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.StartsWith("NAME", lines[0]);
        Assert.Contains("NEXT (UTC)", lines[0]);
        var line = Assert.Single(lines, l => l.StartsWith("nightly", StringComparison.Ordinal));
        Assert.Contains(expectedNext, n => line.Contains(n, StringComparison.Ordinal));
        Assert.Contains($"2026-12-06 02:00:00  {_firedRun} (queued)", line);
    }

    [Fact]
    public async Task EventsDead_ListsTheDeadLetter_EventsRetry_StartsItsRunOnce()
    {
        var id = DeadLetter.IdOf(DeliveryKey);
        using (var dead = await BureauAsync(0, "events", "dead", "--db", Db))
        {
            var line = Assert.Single(dead.Stdout.Split('\n'), l => l.StartsWith(id, StringComparison.Ordinal));
            Assert.Matches(@"^dl_[0-9a-f]{16}\s+gh\s+d-1\s+refused\s+-\s+0\s+2026-12-06 05:00:00\s+input is empty", line);
        }

        using var retry = await BureauAsync(0, "events", "retry", id, Manifest, "--db", Db);
        Assert.Contains($"dead letter {id} (gh): retry 1 is run ", retry.Stdout);

        // The run is in the database, keyed KEY#retry-1, its input rendered from the kept event with the trigger deployed now.
        RunRecord run;
        await using (var runs = new SqliteRunStore(new SqliteStoreOptions { Path = Db }))
        {
            await runs.InitializeAsync();
            run = Assert.Single((await runs.ListRunsAsync(new RunQuery { IdempotencyKeyPrefix = DeliveryKey + "#retry-" })).Items);
        }
        Assert.Equal(("triage", "New issue Login fails", DeliveryKey + "#retry-1", RunStatus.Queued), (run.Agent, run.Input, run.IdempotencyKey, run.Status));
        Assert.Contains(run.Id, retry.Stdout);

        // Retried: it leaves the default list; --all shows it with the run its retry started.
        using (var waiting = await BureauAsync(0, "events", "dead", "--db", Db))
            Assert.Contains("no dead letters waiting (--all shows the retried ones)", waiting.Stdout);
        using (var all = await BureauAsync(0, "events", "dead", "--db", Db, "--all", "--json"))
        {
            var letter = Assert.Single(JsonNode.Parse(all.Stdout)!["items"]!.AsArray())!;
            Assert.Equal((id, 1, run.Id), ((string?)letter["id"], (int)letter["retries"]!, (string?)letter["retryRunId"]));
        }

        // An id that names no dead letter: exit 1, saying so, nothing started.
        using var unknown = await BureauAsync(1, "events", "retry", "dl_0000000000000000", Manifest, "--db", Db);
        Assert.Contains("no dead letter has the id 'dl_0000000000000000'", unknown.Stderr);
    }
}
