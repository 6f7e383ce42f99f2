using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Bureau.Storage.Sqlite;
using Microsoft.Data.Sqlite;
using Xunit;

namespace Bureau.Durability.Tests;

/// <summary>
/// Storage faults on a real `bureau` process: a disk that fills up under load (a real 2 MiB tmpfs),
/// a read-only database (a non-root user), and a write-ahead log lost after a SIGKILL.
/// </summary>
public sealed class StorageFaultTests : IDisposable
{
    private static readonly TimeSpan ProcessTimeout = TimeSpan.FromSeconds(60);
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bureau-storage-faults", Guid.NewGuid().ToString("n"));
    private string? _mounted;

    public StorageFaultTests()
    {
        Directory.CreateDirectory(_dir);
        // A second per tool call: the runs must still be mid-way when the test has filled the disk (on a busy
        // machine that takes longer than the 0.3 s steps these runs had, and they had all finished).
        File.WriteAllText(Path.Combine(_dir, "step.sh"), "cat >/dev/null\nsleep 1\necho ok\n");
        File.WriteAllText(Path.Combine(_dir, "bureau.yaml"), """
            models:
              script:
                provider: scripted
                rules:
                  - when: { turn: 1 }
                    calls: [ { tool: step, args: { n: 1 } } ]
                  - when: { turn: 2 }
                    calls: [ { tool: step, args: { n: 2 } } ]
                  - when: { turn: 3 }
                    calls: [ { tool: step, args: { n: 3 } } ]
                  - reply: "done"
            tools:
              step:
                kind: process
                command: ["sh", "step.sh"]
                effect: read
                parameters: { type: object, properties: { n: { type: integer } }, required: [n] }
            agents:
              worker:
                model: script
                tools: [step]
            """);
    }

    public void Dispose()
    {
        if (_mounted is not null) RunTool("umount", "-l", _mounted);
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    [Fact]
    public async Task DiskFull_RefusesWrites503AndNotReady_RunsInFlightResumeByThemselvesOnceSpaceReturns()
    {
        var ct = TestContext.Current.CancellationToken;
        var mnt = Path.Combine(_dir, "mnt");
        Directory.CreateDirectory(mnt);
        if (RunTool("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", mnt) != 0)
            Assert.Skip("mounting a tmpfs needs root (CAP_SYS_ADMIN); the test command runs as root in CI");
        _mounted = mnt;
        var db = Path.Combine(mnt, "bureau.db");
        var url = $"http://127.0.0.1:{ServeSupport.FreePort()}";
        using var http = new HttpClient { BaseAddress = new Uri(url), Timeout = TimeSpan.FromSeconds(60) };
        using var server = BureauProcess.Start(_dir, new Dictionary<string, string>(), "serve", "bureau.yaml", "--db", db, "--urls", url);
        await ServeSupport.WaitReadyAsync(http, server, ProcessTimeout, ct);

        const int runs = 12;
        var ids = new List<string>();
        for (var i = 0; i < runs; i++)
        {
            using var res = await PostRunAsync(http, $"job {i}", $"k{i}", ct);
            Assert.Equal(HttpStatusCode.Accepted, res.StatusCode);
            ids.Add((string)JsonNode.Parse(await res.Content.ReadAsStringAsync(ct))!["id"]!);
        }

        // The disk fills up while the runs are in their tool calls.
        var filler = Path.Combine(mnt, "filler");
        FillDisk(filler);

        // A write is refused with 503 problem+json naming the cause, and nothing of it is stored.
        var bigInput = new string('x', 64 * 1024);
        HttpResponseMessage? refused = null;
        for (var attempt = 0; refused is null; attempt++)
        {
            var res = await PostRunAsync(http, bigInput, "refused", ct);
            if (res.StatusCode == HttpStatusCode.ServiceUnavailable) refused = res;
            else
            {
                Assert.True(attempt < 100, $"a write never failed on a full disk: {res.StatusCode}");
                res.Dispose();
                FillDisk(filler + attempt); // SQLite used space freed meanwhile (a checkpoint); take it too
                await Task.Delay(50, ct);
            }
        }
        using (refused)
        {
            Assert.Equal("application/problem+json", refused.Content.Headers.ContentType?.MediaType);
            Assert.True(refused.Headers.RetryAfter is not null, "a 503 says when to retry");
            var problem = JsonNode.Parse(await refused.Content.ReadAsStringAsync(ct))!;
            Assert.Equal("storage-unavailable", (string?)problem["code"]);
            Assert.Equal("disk-full", (string?)problem["fault"]);
            Assert.Contains(db, (string?)problem["detail"]);
        }

        // Readiness follows the store: a load balancer stops sending writes here.
        var notReady = await PollAsync(async () =>
        {
            using var res = await http.GetAsync("/readyz", ct);
            return res.StatusCode == HttpStatusCode.ServiceUnavailable ? JsonNode.Parse(await res.Content.ReadAsStringAsync(ct)) : null;
        }, ct);
        Assert.Equal("storage-unavailable", (string?)notReady["code"]);

        // Reads still work; runs caught mid-flight neither fail nor finish while the disk is full.
        await Task.Delay(1500, ct);
        var during = await ListStatusesAsync(http, ct);
        Assert.DoesNotContain(during.Values, s => s is "failed" or "canceled");
        Assert.Contains(during.Values, s => s is "queued" or "running");
        Assert.False(server.HasExited, "the host died on a full disk\n" + server.Stderr);

        // Space comes back: without a restart, every run goes on from its journal and succeeds.
        foreach (var f in Directory.GetFiles(mnt, "filler*")) File.Delete(f);
        await PollAsync(async () =>
        {
            using var res = await http.GetAsync("/readyz", ct);
            return res.IsSuccessStatusCode ? "ready" : null;
        }, ct);
        var after = await PollAsync(async () =>
        {
            var statuses = await ListStatusesAsync(http, ct);
            return statuses.Values.All(s => s == "succeeded") ? statuses : null;
        }, ct);
        Assert.Equal(ids.Order(), after.Keys.Order()); // every accepted run, and not the refused one
        // New writes are accepted again. A 503 says when to retry, and a client does (with the same key). The tmpfs has
        // room beside the WAL: SQLite's WAL does not shrink after a checkpoint, and on a 2 MB disk it could take all
        // the space the filler gave back.
        var accepted = await PollAsync(async () =>
        {
            using var again = await PostRunAsync(http, "after the fault", "k-after", ct);
            return again.StatusCode is HttpStatusCode.Accepted or HttpStatusCode.OK ? again.StatusCode.ToString() : null;
        }, ct);
        Assert.NotNull(accepted);

        server.Terminate();
        Assert.Equal(0, await server.WaitAsync(ProcessTimeout));
        await using (var store = new SqliteRunStore(new SqliteStoreOptions { Path = db }))
        {
            await store.InitializeAsync(ct);
            foreach (var id in ids)
            {
                var journal = await store.ReadJournalAsync(id, 0, ct);
                // Each of the three tool calls completed once (a call whose completion was not written ran again: read tool).
                var completed = journal.Select(r => r.Entry).OfType<ToolCompleted>().ToList();
                Assert.Equal(3, completed.Count);
                Assert.IsType<RunFinished>(journal[^1].Entry);
            }
        }
        Assert.Equal("ok", IntegrityCheck(db));
    }

    [Fact]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public async Task ReadOnlyDatabase_ServeAndRunRefuseToStart_WithTheReason_Exit2()
    {
        var ct = TestContext.Current.CancellationToken;
        if (!OperatingSystem.IsLinux()) Assert.Skip("file modes and setpriv: Linux");
        var db = Path.Combine(_dir, "ro.db");
        using (var first = BureauProcess.Start(_dir, new Dictionary<string, string>(), "run", "bureau.yaml", "--agent", "worker", "--input", "x", "--db", db))
            Assert.Equal(0, await first.WaitAsync(ProcessTimeout));
        var before = File.ReadAllBytes(db);
        File.SetUnixFileMode(db, UnixFileMode.UserRead | UnixFileMode.GroupRead | UnixFileMode.OtherRead); // 0444
        // The folder stays writable (SQLite could create its -wal there): only the file is read-only.
        File.SetUnixFileMode(_dir, (UnixFileMode)0x1FF);
        foreach (var f in Directory.GetFiles(_dir)) if (f != db) File.SetUnixFileMode(f, (UnixFileMode)0x1B6);

        // root ignores file modes: run as nobody, as an operator's service user would be.
        string[] asUser = Environment.UserName == "root"
            ? ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
            : [];
        var env = new Dictionary<string, string> { ["HOME"] = _dir, ["DOTNET_CLI_HOME"] = _dir };

        using (var serve = BureauProcess.StartVia(asUser, _dir, env, "serve", "bureau.yaml", "--db", db, "--urls", $"http://127.0.0.1:{ServeSupport.FreePort()}"))
        {
            Assert.Equal(2, await serve.WaitAsync(ProcessTimeout));
            Assert.Contains("read-only", serve.Stderr);
            Assert.Contains(db, serve.Stderr);
            Assert.DoesNotContain("   at ", serve.Stderr); // one clear line, not a stack trace
        }
        using (var run = BureauProcess.StartVia(asUser, _dir, env, "run", "bureau.yaml", "--agent", "worker", "--input", "y", "--db", db))
        {
            Assert.Equal(2, await run.WaitAsync(ProcessTimeout));
            Assert.Contains("read-only", run.Stderr);
            Assert.DoesNotContain("   at ", run.Stderr);
        }
        Assert.Equal(before, File.ReadAllBytes(db));
    }

    [Fact]
    public async Task WalDeletedAfterSigkill_StartRefusesAndExplains_StartsOnlyWhenTheLossIsAccepted()
    {
        var ct = TestContext.Current.CancellationToken;
        var db = Path.Combine(_dir, "wal.db");
        var url = $"http://127.0.0.1:{ServeSupport.FreePort()}";
        using var http = new HttpClient { BaseAddress = new Uri(url), Timeout = TimeSpan.FromSeconds(60) };
        using (var server = BureauProcess.Start(_dir, new Dictionary<string, string>(), "serve", "bureau.yaml", "--db", db, "--urls", url))
        {
            await ServeSupport.WaitReadyAsync(http, server, ProcessTimeout, ct);
            for (var i = 0; i < 3; i++)
            {
                using var res = await PostRunAsync(http, $"job {i}", $"k{i}", ct);
                Assert.Equal(HttpStatusCode.Accepted, res.StatusCode); // acknowledged: in the WAL, fsync'd
            }
            server.Kill();
        }
        Assert.True(File.Exists(db + "-wal"), "the WAL holds what was acknowledged since the last checkpoint");

        // The killed engine's WAL survives: the next start recovers it (the ordinary crash).
        var saved = File.ReadAllBytes(db + "-wal");
        File.Delete(db + "-wal");
        var dbBefore = File.ReadAllBytes(db);
        using (var refused = BureauProcess.Start(_dir, new Dictionary<string, string>(), "run", "bureau.yaml", "--agent", "worker", "--input", "x", "--db", db))
        {
            Assert.Equal(2, await refused.WaitAsync(ProcessTimeout));
            Assert.Contains("write-ahead log", refused.Stderr);
            Assert.Contains("missing", refused.Stderr);
            Assert.Contains(db + ".bureau-open", refused.Stderr); // how to go on anyway
        }
        Assert.Equal(dbBefore, File.ReadAllBytes(db)); // refused without touching the database

        // Put back, it starts and every acknowledged run is there.
        File.WriteAllBytes(db + "-wal", saved);
        using (var resume = BureauProcess.Start(_dir, new Dictionary<string, string>(), "runs", "resume", "bureau.yaml", "--db", db))
        {
            var code = await resume.WaitAsync(ProcessTimeout);
            Assert.True(code == 0, $"resume exited {code}\n{resume.Stderr}");
        }
        await using (var store = new SqliteRunStore(new SqliteStoreOptions { Path = db }))
        {
            await store.InitializeAsync(ct);
            var all = await store.ListRunsAsync(new RunQuery { Limit = 10 }, ct);
            Assert.Equal(3, all.Items.Count);
            Assert.All(all.Items, r => Assert.Equal(RunStatus.Succeeded, r.Status));
        }

        // A reader after a crash (`bureau runs list`) is the last connection: SQLite checkpoints the WAL
        // into the database and removes it as the reader closes. Nothing is lost, so the next start is not refused.
        using (var server = BureauProcess.Start(_dir, new Dictionary<string, string>(), "serve", "bureau.yaml", "--db", db, "--urls", url))
        {
            await ServeSupport.WaitReadyAsync(http, server, ProcessTimeout, ct);
            using (var res = await PostRunAsync(http, "one more", "k-more", ct)) Assert.Equal(HttpStatusCode.Accepted, res.StatusCode);
            server.Kill();
        }
        using (var list = BureauProcess.Start(_dir, new Dictionary<string, string>(), "runs", "list", "--db", db))
            Assert.Equal(0, await list.WaitAsync(ProcessTimeout));
        Assert.False(File.Exists(db + "-wal"), "the reader checkpointed the WAL as it closed");
        using (var next = BureauProcess.Start(_dir, new Dictionary<string, string>(), "runs", "resume", "bureau.yaml", "--db", db))
            Assert.Equal(0, await next.WaitAsync(ProcessTimeout));

        // Lost for good (kill, delete the WAL, then delete the marker on purpose): it starts, accepting the loss.
        using (var server = BureauProcess.Start(_dir, new Dictionary<string, string>(), "serve", "bureau.yaml", "--db", db, "--urls", url))
        {
            await ServeSupport.WaitReadyAsync(http, server, ProcessTimeout, ct);
            server.Kill();
        }
        File.Delete(db + "-wal");
        File.Delete(db + ".bureau-open");
        using (var accepted = BureauProcess.Start(_dir, new Dictionary<string, string>(), "run", "bureau.yaml", "--agent", "worker", "--input", "x", "--db", db))
            Assert.Equal(0, await accepted.WaitAsync(ProcessTimeout));
        Assert.Equal("ok", IntegrityCheck(db));
    }

    /// <summary>
    /// RELIABILITY R6: fsync fails (EIO, injected with libfiu's fiu-run and switched on with fiu-ctrl)
    /// while runs are submitted. The store latches at the first failed fsync: every write is refused,
    /// readiness and liveness say so, and switching the fault off changes nothing until a restart.
    /// After a SIGKILL and a restart every acknowledged run is there and finishes; a refused one sent
    /// again with its Idempotency-Key is one run, whether or not its write had reached the disk.
    /// </summary>
    [Fact]
    public async Task FsyncFailsUnderLoad_StoreLatchesUntilRestart_NoAcknowledgedRunLost()
    {
        var ct = TestContext.Current.CancellationToken;
        if (RunTool("fiu-run", "-x", "true") != 0) Assert.Skip("fiu-run (Debian fiu-utils) is not installed; the test command installs it");
        const int runs = 40;
        var db = Path.Combine(_dir, "fiu.db");
        var url = $"http://127.0.0.1:{ServeSupport.FreePort()}";
        using var http = new HttpClient { BaseAddress = new Uri(url), Timeout = TimeSpan.FromSeconds(60) };
        var server = BureauProcess.StartVia(["fiu-run", "-x"], _dir, new Dictionary<string, string>(), "serve", "bureau.yaml", "--db", db, "--urls", url);
        try
        {
            await ServeSupport.WaitReadyAsync(http, server, ProcessTimeout, ct);

            var outcomes = new System.Collections.Concurrent.ConcurrentDictionary<string, HttpStatusCode>();
            var gate = new SemaphoreSlim(4);
            var submitted = 0;
            var faultOn = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var submitters = Enumerable.Range(0, runs).Select(async i =>
            {
                await gate.WaitAsync(ct);
                try
                {
                    if (i >= runs / 4) await faultOn.Task; // a quarter before the fault, the rest after it
                    using var res = await PostRunAsync(http, $"job {i}", $"k{i}", ct);
                    outcomes[$"k{i}"] = res.StatusCode;
                    if (res.StatusCode == HttpStatusCode.ServiceUnavailable)
                    {
                        var problem = JsonNode.Parse(await res.Content.ReadAsStringAsync(ct))!;
                        Assert.Equal("io-error", (string?)problem["fault"]);
                        Assert.Contains("Idempotency-Key", (string?)problem["detail"]); // its outcome is unknown: how to retry safely
                    }
                    Interlocked.Increment(ref submitted);
                }
                finally
                {
                    gate.Release();
                }
            }).ToList();
            while (Volatile.Read(ref submitted) < runs / 4) await Task.Delay(10, ct);
            Assert.Equal(0, RunTool("fiu-ctrl", "-c", "enable name=posix/io/sync/fsync", server.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)));
            faultOn.SetResult();
            await Task.WhenAll(submitters);

            Assert.Equal(runs, outcomes.Count);
            Assert.All(outcomes.Values, c => Assert.True(c is HttpStatusCode.Accepted or HttpStatusCode.ServiceUnavailable, $"answered {c}"));
            Assert.Contains(HttpStatusCode.ServiceUnavailable, outcomes.Values);
            var acked = outcomes.Where(o => o.Value == HttpStatusCode.Accepted).Select(o => o.Key).ToList();
            Assert.True(acked.Count >= runs / 4, $"{acked.Count} acknowledged");

            // Latched: the fault goes away, the store still refuses (what the disk holds is unknown) until a restart.
            Assert.Equal(0, RunTool("fiu-ctrl", "-c", "disable name=posix/io/sync/fsync", server.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)));
            await Task.Delay(1500, ct);
            using (var ready = await http.GetAsync("/readyz", ct)) Assert.Equal(HttpStatusCode.ServiceUnavailable, ready.StatusCode);
            using (var alive = await http.GetAsync("/healthz", ct))
            {
                Assert.Equal(HttpStatusCode.ServiceUnavailable, alive.StatusCode);
                Assert.Equal("restart-needed", (string?)JsonNode.Parse(await alive.Content.ReadAsStringAsync(ct))!["code"]);
            }
            using (var again = await PostRunAsync(http, "after", "k-after", ct)) Assert.Equal(HttpStatusCode.ServiceUnavailable, again.StatusCode);

            // Restart (as a supervisor would on the failed liveness): SQLite recovers its WAL.
            server.Kill();
            server.Dispose();
            server = BureauProcess.Start(_dir, new Dictionary<string, string>(), "serve", "bureau.yaml", "--db", db, "--urls", url);
            await ServeSupport.WaitReadyAsync(http, server, ProcessTimeout, ct);
            foreach (var (key, code) in outcomes.Where(o => o.Value != HttpStatusCode.Accepted))
            {
                using var res = await PostRunAsync(http, $"job {key[1..]}", key, ct);
                Assert.True(res.StatusCode is HttpStatusCode.Accepted or HttpStatusCode.OK, $"{key}: {res.StatusCode}");
            }
            var all = await PollAsync(async () =>
            {
                var statuses = await ListStatusesAsync(http, ct);
                return statuses.Count == runs && statuses.Values.All(st => st == "succeeded") ? statuses : null;
            }, ct);
            Assert.Equal(runs, all.Count); // every key is one run: none lost, none doubled by the resend
            server.Terminate();
            Assert.Equal(0, await server.WaitAsync(ProcessTimeout));
        }
        finally
        {
            server.Dispose();
        }
        await using (var store = new SqliteRunStore(new SqliteStoreOptions { Path = db }))
        {
            await store.InitializeAsync(ct);
            var page = await store.ListRunsAsync(new RunQuery { Limit = 100 }, ct);
            Assert.Equal(Enumerable.Range(0, runs).Select(i => $"k{i}").Order(), page.Items.Select(r => r.IdempotencyKey!).Order());
        }
        Assert.Equal("ok", IntegrityCheck(db));
    }

    private static Task<HttpResponseMessage> PostRunAsync(HttpClient http, string input, string key, CancellationToken ct)
    {
        var req = new HttpRequestMessage(HttpMethod.Post, "/v1/runs")
        {
            Content = new StringContent(new JsonObject { ["agent"] = "worker", ["input"] = input }.ToJsonString(), Encoding.UTF8, "application/json"),
        };
        req.Headers.Add("Idempotency-Key", key);
        return http.SendAsync(req, ct);
    }

    private static async Task<Dictionary<string, string>> ListStatusesAsync(HttpClient http, CancellationToken ct)
    {
        var page = JsonNode.Parse(await http.GetStringAsync("/v1/runs?limit=100", ct))!;
        return page["items"]!.AsArray().ToDictionary(r => (string)r!["id"]!, r => (string)r!["status"]!);
    }

    /// <summary>Polls until <paramref name="probe"/> gives a value (at most a minute: each step here takes well under that).</summary>
    private static async Task<T> PollAsync<T>(Func<Task<T?>> probe, CancellationToken ct) where T : class
    {
        var deadline = DateTime.UtcNow + ProcessTimeout;
        while (true)
        {
            if (await probe() is { } value) return value;
            if (DateTime.UtcNow > deadline) throw new TimeoutException("the condition did not hold within a minute");
            await Task.Delay(100, ct);
        }
    }

    /// <summary>Writes to <paramref name="path"/> until the file system says it is full.</summary>
    private static void FillDisk(string path)
    {
        var chunk = new byte[16 * 1024];
        try
        {
            using var f = new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.None, 1);
            while (true) f.Write(chunk);
        }
        catch (IOException)
        {
            // ENOSPC: full.
        }
    }

    private static string IntegrityCheck(string db)
    {
        using var c = new SqliteConnection($"Data Source={db};Mode=ReadOnly;Pooling=False");
        c.Open();
        using var cmd = c.CreateCommand();
        cmd.CommandText = "PRAGMA integrity_check";
        return (string)cmd.ExecuteScalar()!;
    }

    private static int RunTool(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        try
        {
            using var p = Process.Start(psi)!;
            p.WaitForExit();
            return p.ExitCode;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return -1;
        }
    }
}
