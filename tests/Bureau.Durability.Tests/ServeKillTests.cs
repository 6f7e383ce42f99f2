using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Bureau.Storage.Sqlite;
using Xunit;

namespace Bureau.Durability.Tests;

/// <summary>
/// A real `bureau serve` process takes 200 runs over HTTP while it is SIGKILLed three times at random
/// moments and restarted on the same database: every run it accepted (202, or 200 for a repeated
/// Idempotency-Key) ends succeeded or waiting, none is lost or doubled, and the write tool never ran
/// twice for one key.
/// </summary>
public sealed class ServeKillTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bureau-serve-kill", Guid.NewGuid().ToString("n"));
    private static readonly TimeSpan ProcessTimeout = TimeSpan.FromSeconds(60);

    public ServeKillTests()
    {
        LedgerDeployment.WriteTo(_dir);
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private BureauProcess Serve(string db, string url) =>
        BureauProcess.Start(_dir, new Dictionary<string, string> { ["LEDGER_DIR"] = _dir }, "serve", "bureau.yaml", "--db", db, "--urls", url);

    [Fact]
    public async Task Serve_KilledThreeTimesUnderLoad_EveryAcceptedRunEndsOnceWithoutDuplicateWrites()
    {
        const int runs = 200, kills = 3;
        var ct = TestContext.Current.CancellationToken;
        var db = Path.Combine(_dir, "serve.db");
        var url = $"http://127.0.0.1:{ServeSupport.FreePort()}";
        using var http = new HttpClient { BaseAddress = new Uri(url), Timeout = TimeSpan.FromSeconds(60) };
        var server = Serve(db, url);
        await ServeSupport.WaitReadyAsync(http, server, ProcessTimeout, ct);

        var (accepted, conflicts, submitters) = ServeSupport.SubmitWithRetries(http, "clerk", runs, ct);

        var random = new Random(20261125);
        for (var k = 0; k < kills; k++)
        {
            await Task.Delay(random.Next(150, 900), ct); // a random moment under load
            server.Kill();
            server.Dispose();
            server = Serve(db, url);
            await ServeSupport.WaitReadyAsync(http, server, ProcessTimeout, ct);
        }
        await submitters;
        Assert.Empty(conflicts);
        Assert.Equal(runs, accepted.Count);

        // Graceful stop, then drain what is left with `runs resume` (it waits until no run is queued or running).
        server.Terminate();
        var stopCode = await server.WaitAsync(ProcessTimeout);
        Assert.True(stopCode == 0, $"serve exited {stopCode} on SIGTERM\n{server.Stderr}");
        server.Dispose();
        using (var resume = BureauProcess.Start(_dir, new Dictionary<string, string> { ["LEDGER_DIR"] = _dir }, "runs", "resume", "bureau.yaml", "--db", db))
        {
            var code = await resume.WaitAsync(ProcessTimeout);
            Assert.True(code is 0 or 3, $"resume exited {code}\n{resume.Stderr}");
        }

        await using var store = new SqliteRunStore(new SqliteStoreOptions { Path = db });
        await store.InitializeAsync(ct);
        var all = await store.ListRunsAsync(new RunQuery { Limit = 1000 }, ct);
        Assert.Equal(runs, all.Items.Count); // no run lost, none doubled by a retried submission
        var waiting = 0;
        foreach (var (key, id) in accepted)
        {
            var run = await store.GetRunAsync(id, ct);
            Assert.True(run is not null, $"accepted run {id} ({key}) is lost");
            Assert.True(run.Status is RunStatus.Succeeded or RunStatus.Waiting, $"run {id} ({key}) is {run.Status}: {run.Error}");
            Assert.Equal(key, run.Input);
            if (run.Status == RunStatus.Waiting)
            {
                waiting++;
                Assert.Equal(("in-doubt", "ledger"), (run.WaitingFor!.Reason, Assert.IsType<InDoubtWait>(run.WaitingFor).Tool));
            }
        }
        var ledgerFile = Path.Combine(_dir, "ledger.txt");
        var ledger = File.Exists(ledgerFile) ? File.ReadAllLines(ledgerFile) : [];
        Assert.Equal(ledger.Length, ledger.Distinct().Count()); // the write tool ran at most once per key
        var ids = accepted.Values.ToHashSet();
        Assert.All(ledger, l => Assert.Contains(l.Split(':')[0], ids));
        TestContext.Current.TestOutputHelper?.WriteLine($"{runs} runs accepted over HTTP, {kills} kills, {waiting} waiting in doubt, {ledger.Length} ledger writes, 0 duplicates");
    }
}
