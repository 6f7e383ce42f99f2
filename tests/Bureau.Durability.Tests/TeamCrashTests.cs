using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Bureau.Storage.Sqlite;
using Xunit;

namespace Bureau.Durability.Tests;

/// <summary>
/// Teams survive a crash: `bureau serve` is SIGKILLed twice while teams have children mid-way (a
/// pipeline of three members, each calling a slow write tool) and restarted on the same database.
/// Every team ends succeeded; no member ran twice (one child run per stage, each write once per
/// idempotency key); the parents resumed waiting on their children.
/// </summary>
public sealed class TeamCrashTests : IDisposable
{
    private static readonly TimeSpan ProcessTimeout = TimeSpan.FromSeconds(90);
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bureau-team-crash", Guid.NewGuid().ToString("n"));

    public TeamCrashTests()
    {
        Directory.CreateDirectory(_dir);
        File.WriteAllText(Path.Combine(_dir, "ledger.sh"), "cat >/dev/null\necho \"$BUREAU_IDEMPOTENCY_KEY\" >> \"$LEDGER_DIR/ledger.txt\"\nsleep 0.2\necho recorded\n");
        File.WriteAllText(Path.Combine(_dir, "bureau.yaml"), """
            models:
              script:
                provider: scripted
                rules:
                  - when: { turn: 1 }
                    calls: [ { tool: ledger, args: { note: "{{input}}" } } ]
                  - reply: "{{input}}+"
            tools:
              ledger:
                kind: process
                command: ["sh", "ledger.sh"]
                effect: idempotent
                env: [LEDGER_DIR]
                parameters: { type: object, properties: { note: { type: string } }, required: [note] }
            agents:
              worker:
                model: script
                tools: [ledger]
            teams:
              line:
                pattern: sequential
                members: [worker, worker, worker]
            """);
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private BureauProcess Serve(string db, string url) =>
        BureauProcess.Start(_dir, new Dictionary<string, string> { ["LEDGER_DIR"] = _dir }, "serve", "bureau.yaml", "--db", db, "--urls", url);

    [Fact]
    public async Task Serve_KilledWhileTeamsHaveChildrenMidway_EveryTeamFinishesOnce_NoMemberRunsTwice()
    {
        const int teams = 8;
        var ct = TestContext.Current.CancellationToken;
        var db = Path.Combine(_dir, "teams.db");
        var url = $"http://127.0.0.1:{ServeSupport.FreePort()}";
        using var http = new HttpClient { BaseAddress = new Uri(url), Timeout = TimeSpan.FromSeconds(60) };
        var server = Serve(db, url);
        try
        {
            await ServeSupport.WaitReadyAsync(http, server, ProcessTimeout, ct);
            var ids = new List<string>();
            for (var i = 0; i < teams; i++)
            {
                using var res = await http.PostAsync("/v1/runs",
                    new StringContent(new JsonObject { ["agent"] = "line", ["input"] = $"t{i}" }.ToJsonString(), Encoding.UTF8, "application/json"), ct);
                Assert.Equal(HttpStatusCode.Accepted, res.StatusCode);
                ids.Add((string)JsonNode.Parse(await res.Content.ReadAsStringAsync(ct))!["id"]!);
            }

            foreach (var delay in new[] { 700, 900 })
            {
                await Task.Delay(delay, ct); // members are mid-way: some done, some in their tool call, some not started
                server.Kill();
                server.Dispose();
                server = Serve(db, url);
                await ServeSupport.WaitReadyAsync(http, server, ProcessTimeout, ct);
            }

            var deadline = DateTime.UtcNow + ProcessTimeout;
            await using var store = new SqliteRunStore(new SqliteStoreOptions { Path = db });
            await store.InitializeAsync(ct);
            foreach (var id in ids)
            {
                RunRecord run;
                while (!(run = (await store.GetRunAsync(id, ct))!).Status.IsTerminal())
                {
                    Assert.True(DateTime.UtcNow < deadline, $"team {id} is still {run.Status}\n{server.Stderr}");
                    await Task.Delay(100, ct);
                }
                var input = run.Input;
                Assert.True(run.Status == RunStatus.Succeeded, $"team {id}: {run.Status} {run.Error}");
                Assert.Equal(input + "+++", run.Output);

                var journal = await store.ReadJournalAsync(id, 0, ct);
                var started = journal.Select(r => r.Entry).OfType<ChildRunStarted>().ToList();
                Assert.Equal(["step:0:worker", "step:1:worker", "step:2:worker"], started.Select(s => s.Label)); // one child per stage: none re-run
                var children = await store.ListRunsAsync(new RunQuery { ParentRunId = id }, ct);
                Assert.Equal(3, children.Items.Count); // no orphan child submitted twice
                Assert.All(children.Items, c => Assert.Equal(RunStatus.Succeeded, c.Status));
            }
            var ledger = File.ReadAllLines(Path.Combine(_dir, "ledger.txt"));
            Assert.Equal(teams * 3, ledger.Distinct().Count()); // every member's write happened
            TestContext.Current.TestOutputHelper?.WriteLine($"{ledger.Length} ledger lines for {ledger.Distinct().Count()} keys (idempotent retries after a kill may repeat a key)");
        }
        finally
        {
            server.Dispose();
        }
    }
}
