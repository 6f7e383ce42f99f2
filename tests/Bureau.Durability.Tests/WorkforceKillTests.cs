using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Bureau.Storage.Sqlite;
using Xunit;

namespace Bureau.Durability.Tests;

/// <summary>
/// A real `bureau serve` process with a workforce takes 30 tasks over HTTP while it is SIGKILLed twice with tasks in
/// flight and restarted on the same database: every accepted task ends succeeded, each with exactly one run (its
/// idempotency key workforce:ID), and the tool each task calls ran under one key per task (never a second run's);
/// then `bureau workforce status` shows the work done and nothing left in the inbox.
/// </summary>
public sealed class WorkforceKillTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bureau-workforce-kill", Guid.NewGuid().ToString("n"));
    private static readonly TimeSpan ProcessTimeout = TimeSpan.FromSeconds(90);

    public WorkforceKillTests()
    {
        Directory.CreateDirectory(_dir);
        File.WriteAllText(Path.Combine(_dir, "ledger.sh"), "args=$(cat)\necho \"$BUREAU_IDEMPOTENCY_KEY $args\" >> \"$LEDGER_DIR/ledger.txt\"\necho \"recorded $args\"\n");
        File.WriteAllText(Path.Combine(_dir, "bureau.yaml"), """
            models:
              script:
                provider: scripted
                latency: 150ms
                rules:
                  - when: { turn: 1, input: '(?<key>w\d+)' }
                    calls:
                      - tool: ledger
                        args: { n: "{{key}}" }
                  - reply: "done"
            tools:
              ledger:
                kind: process
                command: ["sh", "ledger.sh"]
                effect: idempotent
                env: [LEDGER_DIR]
                parameters: { type: object, properties: { n: { type: string } }, required: [n] }
            agents:
              ann: { model: script, tools: [ledger] }
              bob: { model: script, tools: [ledger] }
            workforce:
              members:
                ann: { skills: [desk], concurrency: 2 }
                bob: { skills: [desk, billing], concurrency: 2 }
            """);
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private BureauProcess Serve(string db, string url) =>
        BureauProcess.Start(_dir, new Dictionary<string, string> { ["LEDGER_DIR"] = _dir }, "serve", "bureau.yaml", "--db", db, "--urls", url);

    [Fact]
    public async Task Serve_KilledWithTasksInFlight_LosesNoTaskAndRunsNoneTwice()
    {
        const int tasks = 30, kills = 2;
        var ct = TestContext.Current.CancellationToken;
        var db = Path.Combine(_dir, "serve.db");
        var url = $"http://127.0.0.1:{ServeSupport.FreePort()}";
        using var http = new HttpClient { BaseAddress = new Uri(url), Timeout = TimeSpan.FromSeconds(60) };
        var server = Serve(db, url);
        await ServeSupport.WaitReadyAsync(http, server, ProcessTimeout, ct);

        var accepted = new System.Collections.Concurrent.ConcurrentDictionary<string, bool>();
        var submitters = Task.WhenAll(Enumerable.Range(0, tasks).Select(async i =>
        {
            var id = $"w{i:000}";
            for (var attempt = 0; ; attempt++)
            {
                try
                {
                    var body = new JsonObject { ["skill"] = "desk", ["input"] = $"ticket {id}", ["id"] = id }.ToJsonString();
                    using var res = await http.PostAsync("/v1/workforce/tasks", new StringContent(body, Encoding.UTF8, "application/json"), ct);
                    if (res.StatusCode is HttpStatusCode.Accepted or HttpStatusCode.OK)
                    {
                        accepted[id] = true;
                        return;
                    }
                }
                catch (HttpRequestException) { }
                catch (TaskCanceledException) when (!ct.IsCancellationRequested) { }
                if (attempt > 3000) throw new TimeoutException($"task {id} was never accepted");
                await Task.Delay(20, ct); // the server is down: send it again with the same id, as a client would
            }
        }));

        var random = new Random(20261207);
        var inFlightAtKills = new List<int>();
        for (var k = 0; k < kills; k++)
        {
            await Task.Delay(random.Next(400, 1500), ct); // a random moment with tasks queued, assigned and running
            try
            {
                inFlightAtKills.Add((int)JsonNode.Parse(await http.GetStringAsync("/v1/workforce", ct))!["inProgress"]!);
            }
            catch (HttpRequestException) { }
            server.Kill();
            server.Dispose();
            server = Serve(db, url);
            await ServeSupport.WaitReadyAsync(http, server, ProcessTimeout, ct);
        }
        await submitters;
        Assert.Equal(tasks, accepted.Count);
        Assert.True(inFlightAtKills.Any(n => n > 0), $"no kill found a task in progress ({string.Join(", ", inFlightAtKills)}): the test did not test a crash mid-task");

        // The last server finishes the work: the inbox drains and nothing stays in progress.
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(120);
        JsonNode? status = null;
        while (DateTime.UtcNow < deadline)
        {
            status = JsonNode.Parse(await http.GetStringAsync("/v1/workforce", ct))!;
            var finished = status["agents"]!.AsArray().Sum(a => (long)a!["finished"]!);
            if ((int)status["queued"]! == 0 && (int)status["inProgress"]! == 0 && finished == tasks) break;
            await Task.Delay(100, ct);
        }
        Assert.True(status is not null && (int)status["queued"]! == 0 && (int)status["inProgress"]! == 0, $"the workforce did not finish its tasks in time: {status}\n{server.Stderr}");
        server.Terminate();
        Assert.Equal(0, await server.WaitAsync(ProcessTimeout));
        server.Dispose();

        var options = new SqliteStoreOptions { Path = db };
        await using var runs = new SqliteRunStore(options);
        await runs.InitializeAsync(ct);
        var inbox = new SqliteWorkforceStore(options);
        await inbox.InitializeAsync(ct);
        var all = (await runs.ListRunsAsync(new RunQuery { Limit = 1000 }, ct)).Items;
        Assert.Equal(tasks, all.Count); // one run per task: none lost, none doubled by a restart or a retried request
        var ledger = File.ReadAllLines(Path.Combine(_dir, "ledger.txt")).Select(l => l.Split(' ', 2)).ToList();
        foreach (var id in accepted.Keys)
        {
            var task = await inbox.GetAsync(id, ct);
            Assert.True(task is not null, $"accepted task {id} is lost");
            Assert.True(task.Status == WorkforceTaskStatus.Succeeded, $"task {id} is {task.Status}: {task.Error}");
            var run = Assert.Single(all, r => r.IdempotencyKey == WorkforceTask.RunKey(id));
            Assert.Equal((run.Id, run.Agent, RunStatus.Succeeded), (task.RunId, task.Agent, run.Status));
            // The tool ran for this task under one key, of this run: a crash may re-run it with the same key, never a second run.
            var keys = ledger.Where(l => l[1].Contains($"\"{id}\"", StringComparison.Ordinal)).Select(l => l[0]).Distinct().ToList();
            Assert.True(keys.Count == 1, $"task {id}: the tool ran under {keys.Count} keys: {string.Join(", ", keys)}");
            Assert.StartsWith(run.Id + ":", keys[0]);
        }

        using var cli = BureauProcess.Start(_dir, new Dictionary<string, string>(), "workforce", "status", "bureau.yaml", "--db", db, "--json");
        Assert.Equal(0, await cli.WaitAsync(ProcessTimeout));
        var shown = JsonNode.Parse(cli.Stdout)!;
        Assert.Equal((0, 0), ((int)shown["queued"]!, (int)shown["inProgress"]!));
        Assert.Equal(tasks, shown["agents"]!.AsArray().Sum(a => (long)a!["finished"]!));
        Assert.Equal(["ann", "bob"], shown["agents"]!.AsArray().Select(a => (string)a!["name"]!));
        Assert.All(shown["agents"]!.AsArray(), a => Assert.True((long)a!["finished"]! > 0, $"{a} did no task: the load was not spread"));
        using var table = BureauProcess.Start(_dir, new Dictionary<string, string>(), "workforce", "status", "bureau.yaml", "--db", db);
        Assert.Equal(0, await table.WaitAsync(ProcessTimeout));
        Assert.Contains("AGENT  SKILLS", table.Stdout);
        Assert.Contains("inbox: 0 queued / limit 10000; 0 in progress", table.Stdout);
        TestContext.Current.TestOutputHelper?.WriteLine($"{tasks} tasks, {kills} kills (tasks in progress just before each: {string.Join(", ", inFlightAtKills)}), {ledger.Count} tool executions, {all.Count} runs\n{table.Stdout}");
    }
}
