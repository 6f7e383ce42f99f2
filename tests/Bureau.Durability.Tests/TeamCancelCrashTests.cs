using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Bureau.Storage.Sqlite;
using Xunit;

namespace Bureau.Durability.Tests;

/// <summary>
/// Canceling a team survives a crash: `bureau serve` is SIGKILLed after the team's cancel is committed
/// and before its running member is canceled. After a restart the start-up sweep cancels the member,
/// whose parent no longer waits for it.
/// </summary>
public sealed class TeamCancelCrashTests : IDisposable
{
    private static readonly TimeSpan ProcessTimeout = TimeSpan.FromSeconds(90);
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bureau-team-cancel-crash", Guid.NewGuid().ToString("n"));

    public TeamCancelCrashTests()
    {
        Directory.CreateDirectory(_dir);
        // The member's tool says it started, then holds for half a minute: the team is canceled while it runs.
        File.WriteAllText(Path.Combine(_dir, "hold.sh"), "cat >/dev/null\necho started >> \"$LEDGER_DIR/started.txt\"\nsleep 30\necho held\n");
        File.WriteAllText(Path.Combine(_dir, "bureau.yaml"), """
            models:
              script:
                provider: scripted
                rules:
                  - when: { turn: 1 }
                    calls: [ { tool: hold, args: { note: "{{input}}" } } ]
                  - reply: "held {{input}}"
            tools:
              hold:
                kind: process
                command: ["sh", "hold.sh"]
                effect: read
                env: [LEDGER_DIR]
                timeout: 120s
                parameters: { type: object, properties: { note: { type: string } }, required: [note] }
            agents:
              worker:
                model: script
                tools: [hold]
            teams:
              line:
                pattern: sequential
                members: [worker]
            """);
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private BureauProcess Serve(string db, string url, string? crashAt = null) => ServeSupport.Serve(_dir, db, url, crashAt);

    [Fact]
    public async Task Serve_KilledBetweenATeamsCancelAndItsMembers_TheRestartCancelsTheMember()
    {
        var ct = TestContext.Current.CancellationToken;
        var db = Path.Combine(_dir, "cancel.db");
        var url = $"http://127.0.0.1:{ServeSupport.FreePort()}";
        using var http = new HttpClient { BaseAddress = new Uri(url), Timeout = TimeSpan.FromSeconds(60) };

        var server = Serve(db, url, crashAt: "before-cancel-children");
        string id;
        try
        {
            await ServeSupport.WaitReadyAsync(http, server, ProcessTimeout, ct);
            id = await ServeSupport.PostRunAsync(http, "line", "t1", ct);
            var deadline = DateTime.UtcNow + ProcessTimeout;
            while (!File.Exists(Path.Combine(_dir, "started.txt")))
            {
                Assert.True(DateTime.UtcNow < deadline, "the member's tool never started\n" + server.Stderr);
                await Task.Delay(50, ct);
            }

            try
            {
                using var canceled = await http.PostAsync($"/v1/runs/{id}/cancel", new StringContent("""{"reason":"not needed"}""", Encoding.UTF8, "application/json"), ct);
            }
            catch (HttpRequestException)
            {
                // The host died answering: expected.
            }
            while (!server.HasExited)
            {
                Assert.True(DateTime.UtcNow < deadline, "the host never reached the crash point\n" + server.Stderr);
                await Task.Delay(50, ct);
            }
            Assert.Contains("crash point 'before-cancel-children'", server.Stderr);
        }
        finally
        {
            server.Dispose();
        }

        string member;
        await using (var store = new SqliteRunStore(new SqliteStoreOptions { Path = db }))
        {
            await store.InitializeAsync(ct);
            Assert.Equal(RunStatus.Canceled, (await store.GetRunAsync(id, ct))!.Status); // the team's cancel was committed...
            var child = Assert.Single((await store.ListRunsAsync(new RunQuery { ParentRunId = id }, ct)).Items);
            Assert.False(child.Status.IsTerminal(), $"member {child.Id} is {child.Status}"); // ...its member's was not
            member = child.Id;
        }

        server = Serve(db, url);
        try
        {
            await ServeSupport.WaitReadyAsync(http, server, ProcessTimeout, ct);
            await using var store = new SqliteRunStore(new SqliteStoreOptions { Path = db });
            await store.InitializeAsync(ct);
            var deadline = DateTime.UtcNow + ProcessTimeout;
            RunRecord run;
            while (!(run = (await store.GetRunAsync(member, ct))!).Status.IsTerminal())
            {
                Assert.True(DateTime.UtcNow < deadline, $"member {member} is still {run.Status} after the restart\n{server.Stderr}");
                await Task.Delay(100, ct);
            }
            Assert.Equal(RunStatus.Canceled, run.Status);
            Assert.Contains($"its parent run {id} was canceled", run.Error);
            Assert.Contains("bureau:orphan-sweep", run.Error);
        }
        finally
        {
            server.Kill();
            server.Dispose();
        }
    }
}
