using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Bureau.Storage.Sqlite;
using Xunit;

namespace Bureau.Durability.Tests;

/// <summary>
/// A failed run's automatic rollback survives a crash: `bureau serve` is SIGKILLed after the run's
/// failure is journaled and before its rollback run is submitted. After a restart the rollback
/// starts anyway (the start-up sweep), compensates the write once, and a second restart starts no
/// second rollback.
/// </summary>
public sealed class RollbackCrashTests : IDisposable
{
    private static readonly TimeSpan ProcessTimeout = TimeSpan.FromSeconds(90);
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bureau-rollback-crash", Guid.NewGuid().ToString("n"));

    public RollbackCrashTests()
    {
        Directory.CreateDirectory(_dir);
        ShipperDeployment.WriteTo(_dir, rollbackOnFailure: true);
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private BureauProcess Serve(string db, string url, string? crashAt = null) => ServeSupport.Serve(_dir, db, url, crashAt);

    [Fact]
    public async Task Serve_KilledBetweenAFailureAndItsRollback_TheRollbackStartsAfterTheRestart_Once()
    {
        var ct = TestContext.Current.CancellationToken;
        var db = Path.Combine(_dir, "rollback.db");
        var url = $"http://127.0.0.1:{ServeSupport.FreePort()}";
        using var http = new HttpClient { BaseAddress = new Uri(url), Timeout = TimeSpan.FromSeconds(60) };

        var server = Serve(db, url, crashAt: "before-rollback");
        string id;
        try
        {
            await ServeSupport.WaitReadyAsync(http, server, ProcessTimeout, ct);
            id = await ServeSupport.PostRunAsync(http, "shipper", "o-1", ct);
            var deadline = DateTime.UtcNow + ProcessTimeout;
            while (!server.HasExited)
            {
                Assert.True(DateTime.UtcNow < deadline, "the host never reached the crash point\n" + server.Stderr);
                await Task.Delay(50, ct);
            }
            Assert.Contains("crash point 'before-rollback'", server.Stderr);
        }
        finally
        {
            server.Dispose();
        }

        await using (var store = new SqliteRunStore(new SqliteStoreOptions { Path = db }))
        {
            await store.InitializeAsync(ct);
            var failed = (await store.GetRunAsync(id, ct))!;
            Assert.Equal(RunStatus.Failed, failed.Status); // the failure was journaled before the kill...
            Assert.Empty((await store.ListRunsAsync(new RunQuery { ParentRunId = id }, ct)).Items); // ...its rollback was not
        }

        for (var restart = 0; restart < 2; restart++)
        {
            server = Serve(db, url);
            try
            {
                await ServeSupport.WaitReadyAsync(http, server, ProcessTimeout, ct);
                await using var store = new SqliteRunStore(new SqliteStoreOptions { Path = db });
                await store.InitializeAsync(ct);
                var deadline = DateTime.UtcNow + ProcessTimeout;
                RunRecord? rollback;
                while ((rollback = (await store.ListRunsAsync(new RunQuery { ParentRunId = id }, ct)).Items.SingleOrDefault()) is null || !rollback.Status.IsTerminal())
                {
                    Assert.True(DateTime.UtcNow < deadline, $"no finished rollback of {id} after restart {restart + 1}\n{server.Stderr}");
                    await Task.Delay(100, ct);
                }
                Assert.Equal(RunKinds.Rollback, rollback.Kind);
                Assert.Equal(RunStatus.Succeeded, rollback.Status);
            }
            finally
            {
                server.Kill();
                server.Dispose();
            }
        }

        var ledger = File.ReadAllLines(Path.Combine(_dir, "ledger.txt"));
        var shipped = ledger.Where(l => l.StartsWith("ship ", StringComparison.Ordinal)).ToList();
        var unshipped = ledger.Where(l => l.StartsWith("unship ", StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(shipped);
        Assert.Equal(shipped.Count, unshipped.Count); // every write compensated, once, across both restarts
        Assert.Equal(unshipped.Count, unshipped.Distinct().Count());
    }
}
