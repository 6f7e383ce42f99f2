using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Bureau.Storage.Sqlite;
using Xunit;

namespace Bureau.Durability.Tests;

/// <summary>
/// Approvals on real processes: `bureau serve` is SIGKILLed while a run waits for an approval whose
/// escalation deadlines then pass while no host runs; the next start fires them once each (level 1
/// to level 2, then onTimeout: reject), and the write tool never ran.
/// </summary>
public sealed class ApprovalProcessTests : IDisposable
{
    private static readonly TimeSpan ProcessTimeout = TimeSpan.FromSeconds(60);
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bureau-approvals", Guid.NewGuid().ToString("n"));

    public ApprovalProcessTests()
    {
        Directory.CreateDirectory(_dir);
        File.WriteAllText(Path.Combine(_dir, "refund.sh"), "cat >/dev/null\necho \"$BUREAU_IDEMPOTENCY_KEY\" >> \"$LEDGER_DIR/ledger.txt\"\necho refunded\n");
        File.WriteAllText(Path.Combine(_dir, "bureau.yaml"), """
            models:
              script:
                provider: scripted
                rules:
                  - when: { turn: 1 }
                    calls: [ { tool: refund, args: { amount: 300 } } ]
                  - reply: "done: {{last}}"
            tools:
              refund:
                kind: process
                command: ["sh", "refund.sh"]
                effect: write
                env: [LEDGER_DIR]
                parameters: { type: object, properties: { amount: { type: number } }, required: [amount] }
            agents:
              clerk: { model: script, tools: [refund] }
            policies:
              rules:
                - name: big-refunds
                  when: { tool: refund, args: "$.amount > 100" }
                  action: require_approval
                  approval:
                    approvers: [leads]
                    timeout: 1s
                    escalate: [ { approvers: [finance], timeout: 1s } ]
                    onTimeout: reject
            """);
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    [Fact]
    public async Task EscalationDeadlinesPassWhileTheHostIsDown_EachFiresOnceAfterRestart_TheWriteNeverRuns()
    {
        var ct = TestContext.Current.CancellationToken;
        var db = Path.Combine(_dir, "approvals.db");
        var env = new Dictionary<string, string> { ["LEDGER_DIR"] = _dir };
        var url = $"http://127.0.0.1:{ServeSupport.FreePort()}";
        using var http = new HttpClient { BaseAddress = new Uri(url), Timeout = TimeSpan.FromSeconds(60) };
        string runId;
        using (var server = BureauProcess.Start(_dir, env, "serve", "bureau.yaml", "--db", db, "--urls", url))
        {
            await ServeSupport.WaitReadyAsync(http, server, ProcessTimeout, ct);
            using var res = await http.PostAsync("/v1/runs", new StringContent("""{"agent":"clerk","input":"refund"}""", Encoding.UTF8, "application/json"), ct);
            runId = (string)JsonNode.Parse(await res.Content.ReadAsStringAsync(ct))!["id"]!;
            var deadline = DateTime.UtcNow + ProcessTimeout;
            while (true)
            {
                var inbox = JsonNode.Parse(await http.GetStringAsync("/v1/approvals", ct))!["items"]!.AsArray();
                if (inbox.Count == 1) break;
                Assert.True(DateTime.UtcNow < deadline, "the run never asked for the approval");
                await Task.Delay(50, ct);
            }
            server.Kill(); // SIGKILL while it waits
        }

        await Task.Delay(TimeSpan.FromSeconds(2.5), ct); // both levels' deadlines pass while no host runs

        for (var restart = 0; restart < 2; restart++)
        {
            using var resume = BureauProcess.Start(_dir, env, "runs", "resume", "bureau.yaml", "--db", db);
            var code = await resume.WaitAsync(ProcessTimeout);
            Assert.True(code is 0 or 3, $"resume {restart} exited {code}\n{resume.Stderr}");
            if (restart == 0)
            {
                // The first level's deadline fired at start; the run waits at level 2, whose own deadline (1 s from now) follows.
                await using var store = new SqliteRunStore(new SqliteStoreOptions { Path = db });
                await store.InitializeAsync(ct);
                var run = (await store.GetRunAsync(runId, ct))!;
                if (run.Status == RunStatus.Waiting) Assert.Equal(1, ((ApprovalWait)run.WaitingFor!).Level);
                await Task.Delay(TimeSpan.FromSeconds(1.5), ct);
            }
        }

        await using (var store = new SqliteRunStore(new SqliteStoreOptions { Path = db }))
        {
            await store.InitializeAsync(ct);
            var run = (await store.GetRunAsync(runId, ct))!;
            Assert.Equal((RunStatus.Succeeded, "done: nobody approved the call before its last deadline; it did not run (policy 'big-refunds')"), (run.Status, run.Output));
            var journal = await store.ReadJournalAsync(runId, 0, ct);
            Assert.Equal(2, journal.Select(r => r.Entry).OfType<WaitExpired>().Count()); // once per level, across restarts
            Assert.Equal([0, 1], journal.Select(r => r.Entry).OfType<RunWaiting>().Select(w => ((ApprovalWait)w.WaitingFor).Level));
        }
        Assert.False(File.Exists(Path.Combine(_dir, "ledger.txt")), "the write tool ran without an approval");
    }
}
