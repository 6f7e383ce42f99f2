using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Bureau.Storage.PostgreSql;
using Xunit;

namespace Bureau.Durability.Tests;

/// <summary>
/// ServeKillTests on PostgreSQL: a real `bureau serve --postgres` takes 100 runs over HTTP while it is SIGKILLed twice
/// and restarted: every accepted run ends succeeded or waiting (in doubt), none is lost or doubled, and the write tool
/// never ran twice for one key. Needs a server (BUREAU_TEST_POSTGRES; test.sh starts one, docs/decisions/0030).
/// </summary>
public sealed class ServeKillPostgreSqlTests : IAsyncDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bureau-serve-kill-pg", Guid.NewGuid().ToString("n"));
    private readonly string _schema = "t_" + Guid.NewGuid().ToString("n");
    private readonly string _server;
    private static readonly TimeSpan ProcessTimeout = TimeSpan.FromSeconds(60);

    public ServeKillPostgreSqlTests()
    {
        _server = TestPostgres.ServerOrSkip();
        LedgerDeployment.WriteTo(_dir);
    }

    public async ValueTask DisposeAsync()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
        await TestPostgres.DropSchemasAsync(_server, _schema);
    }

    private BureauProcess Serve(string url) =>
        BureauProcess.Start(_dir, new Dictionary<string, string> { ["LEDGER_DIR"] = _dir, ["Bureau__PostgreSql__Schema"] = _schema },
            "serve", "bureau.yaml", "--postgres", _server, "--urls", url);

    [Fact]
    public async Task ServePostgres_KilledTwiceUnderLoad_EveryAcceptedRunEndsOnceWithoutDuplicateWrites()
    {
        const int runs = 100, kills = 2;
        var ct = TestContext.Current.CancellationToken;
        var url = $"http://127.0.0.1:{ServeSupport.FreePort()}";
        using var http = new HttpClient { BaseAddress = new Uri(url), Timeout = TimeSpan.FromSeconds(10) };
        var server = Serve(url);
        try
        {
            await ServeSupport.WaitReadyAsync(http, server, ProcessTimeout, ct);

            var (accepted, conflicts, submitters) = ServeSupport.SubmitWithRetries(http, "clerk", runs, ct);

            var random = new Random(20261206);
            for (var k = 0; k < kills; k++)
            {
                await Task.Delay(random.Next(150, 900), ct); // a random moment under load
                server.Kill();
                server.Dispose();
                server = Serve(url);
                await ServeSupport.WaitReadyAsync(http, server, ProcessTimeout, ct);
            }
            await submitters;
            Assert.Empty(conflicts);
            Assert.Equal(runs, accepted.Count);

            // The last server (never killed) finishes what is left: wait until no accepted run is queued or running.
            await using var store = new PostgreSqlRunStore(new PostgreSqlStoreOptions { ConnectionString = _server, Schema = _schema });
            await store.InitializeAsync(ct);
            var deadline = DateTime.UtcNow.AddSeconds(120);
            while (true)
            {
                var open = 0;
                foreach (var id in accepted.Values)
                {
                    if ((await store.GetRunAsync(id, ct))?.Status is RunStatus.Queued or RunStatus.Running) open++;
                }
                if (open == 0) break;
                Assert.True(DateTime.UtcNow < deadline, $"{open} runs still queued or running 120 s after the last restart\n{server.Stderr}");
                await Task.Delay(250, ct);
            }

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
            Assert.True((await store.VerifyAuditAsync(ct)).IsIntact);
            TestContext.Current.TestOutputHelper?.WriteLine($"{runs} runs accepted over HTTP, {kills} kills, {waiting} waiting in doubt, {ledger.Length} ledger writes, 0 duplicates");
        }
        finally
        {
            server.Terminate();
            await server.WaitAsync(ProcessTimeout);
            server.Dispose();
        }
    }
}
