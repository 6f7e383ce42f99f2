using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Bureau.Storage.Sqlite;
using Xunit;

namespace Bureau.Durability.Tests;

/// <summary>
/// A burst of runs into a real `bureau serve` with two execution slots (Bureau__MaxConcurrentRuns=2):
/// time in the queue does not count against maxWallTime (every run succeeds, though most waited longer
/// than their whole wall-time budget), and maxQueueTime ends the runs that waited too long as
/// <c>expired</c>, without running a step.
/// </summary>
public sealed class QueueBurstTests : IDisposable
{
    private static readonly TimeSpan ProcessTimeout = TimeSpan.FromSeconds(90);
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bureau-queue-burst", Guid.NewGuid().ToString("n"));

    public QueueBurstTests()
    {
        Directory.CreateDirectory(_dir);
        File.WriteAllText(Path.Combine(_dir, "step.sh"), "cat >/dev/null\nsleep 0.25\necho ok\n");
        File.WriteAllText(Path.Combine(_dir, "bureau.yaml"), """
            models:
              script:
                provider: scripted
                rules:
                  - when: { turn: 1 }
                    calls: [ { tool: step, args: { n: 1 } } ]
                  - when: { turn: 2 }
                    calls: [ { tool: step, args: { n: 2 } } ]
                  - reply: "done"
            tools:
              step:
                kind: process
                command: ["sh", "step.sh"]
                effect: read
                parameters: { type: object, properties: { n: { type: integer } }, required: [n] }
            agents:
              patient:
                model: script
                tools: [step]
                budgets: { maxWallTime: 4s }
              impatient:
                model: script
                tools: [step]
                budgets: { maxWallTime: 4s, maxQueueTime: 1s }
            """);
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    [Fact]
    public async Task Burst_QueueTimeIsNotWallTime_AndMaxQueueTimeExpiresUnrunRuns()
    {
        var ct = TestContext.Current.CancellationToken;
        var db = Path.Combine(_dir, "burst.db");
        var url = $"http://127.0.0.1:{ServeSupport.FreePort()}";
        using var http = new HttpClient { BaseAddress = new Uri(url), Timeout = TimeSpan.FromSeconds(30) };
        using var server = BureauProcess.Start(_dir, new Dictionary<string, string> { ["Bureau__MaxConcurrentRuns"] = "2" },
            "serve", "bureau.yaml", "--db", db, "--urls", url);
        await ServeSupport.WaitReadyAsync(http, server, ProcessTimeout, ct);

        await using var store = new SqliteRunStore(new SqliteStoreOptions { Path = db });
        await store.InitializeAsync(ct);
        var patient = await BurstAsync(http, "patient", 40, ct);
        await UntilFinishedAsync(store, patient, server, ct);
        var impatient = await BurstAsync(http, "impatient", 30, ct);
        await UntilFinishedAsync(store, impatient, server, ct);

        // Every patient run succeeded, though some waited in the queue longer than their wall-time budget.
        var longestWait = TimeSpan.Zero;
        foreach (var id in patient)
        {
            var run = (await store.GetRunAsync(id, ct))!;
            Assert.True(run.Status == RunStatus.Succeeded, $"{id}: {run.Status} {run.Outcome} {run.Error}");
            var journal = await store.ReadJournalAsync(id, 0, ct);
            var wait = journal[1].At - journal[0].At; // accepted -> first step
            if (wait > longestWait) longestWait = wait;
        }
        // A run executes in about 0.5 s (two 0.25 s steps), 4 s of headroom for a loaded machine; 40 runs two at a time queue the last for ~10 s.
        Assert.True(longestWait > TimeSpan.FromSeconds(4), $"the burst never queued a run past maxWallTime (longest wait {longestWait})");

        // Impatient runs either ran and succeeded, or expired in the queue without running a step.
        var expired = 0;
        foreach (var id in impatient)
        {
            var run = (await store.GetRunAsync(id, ct))!;
            var journal = await store.ReadJournalAsync(id, 0, ct);
            if (run.Outcome == "expired")
            {
                expired++;
                Assert.Equal(RunStatus.Failed, run.Status);
                Assert.DoesNotContain(journal, r => r.Entry is ModelResponded or ToolIntent or ToolCompleted);
                Assert.Contains("queue", run.Error);
            }
            else
            {
                Assert.True(run.Status == RunStatus.Succeeded, $"{id}: {run.Status} {run.Outcome} {run.Error}");
            }
        }
        Assert.True(expired >= 1, "no run waited past maxQueueTime"); // the queue's tail expired (on a loaded machine even the head may)
        TestContext.Current.TestOutputHelper?.WriteLine($"longest queue wait {longestWait.TotalSeconds:0.0}s with maxWallTime 4s; {expired}/{impatient.Count} impatient runs expired");
    }

    private static async Task UntilFinishedAsync(SqliteRunStore store, List<string> runs, BureauProcess server, CancellationToken ct)
    {
        var deadline = DateTime.UtcNow + ProcessTimeout;
        while (true)
        {
            var unfinished = 0;
            foreach (var id in runs) if (!(await store.GetRunAsync(id, ct))!.Status.IsTerminal()) unfinished++;
            if (unfinished == 0) return;
            Assert.True(DateTime.UtcNow < deadline, $"{unfinished} runs unfinished\n{server.Stderr}");
            await Task.Delay(200, ct);
        }
    }

    private static async Task<List<string>> BurstAsync(HttpClient http, string agent, int count, CancellationToken ct)
    {
        var posts = Enumerable.Range(0, count).Select(async i =>
        {
            using var res = await http.PostAsync("/v1/runs",
                new StringContent(new JsonObject { ["agent"] = agent, ["input"] = $"{agent} {i}" }.ToJsonString(), Encoding.UTF8, "application/json"), ct);
            Assert.Equal(HttpStatusCode.Accepted, res.StatusCode);
            return (string)JsonNode.Parse(await res.Content.ReadAsStringAsync(ct))!["id"]!;
        });
        return [.. await Task.WhenAll(posts)];
    }
}
