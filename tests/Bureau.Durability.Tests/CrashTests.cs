using Bureau.Storage.Sqlite;
using Xunit;

namespace Bureau.Durability.Tests;

/// <summary>
/// Kills real `bureau` processes with SIGKILL at named points and at random instants, restarts them
/// on the same database, and checks Bureau's guarantees from the journal and the tools' own ledgers.
/// </summary>
public sealed class CrashTests : IAsyncLifetime
{
    private FakeChatServer _model = null!;
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bureau-durability", Guid.NewGuid().ToString("n"));
    private static readonly TimeSpan ProcessTimeout = TimeSpan.FromSeconds(90);

    public async ValueTask InitializeAsync()
    {
        Directory.CreateDirectory(_dir);
        _model = await FakeChatServer.StartAsync();
        File.WriteAllText(Path.Combine(_dir, "ledger.sh"), "args=$(cat)\necho \"$BUREAU_IDEMPOTENCY_KEY\" >> \"$LEDGER_DIR/ledger.txt\"\necho \"ledger entry for $args\"\n");
        File.WriteAllText(Path.Combine(_dir, "charge.sh"), "args=$(cat)\necho \"$BUREAU_IDEMPOTENCY_KEY\" >> \"$LEDGER_DIR/charges.txt\"\necho \"charged $args\"\n");
        File.WriteAllText(Path.Combine(_dir, "bureau.yaml"), $$"""
            models:
              fake:
                provider: openai
                endpoint: {{_model.BaseUrl}}
                model: fake-model
                maxRetries: 0
            tools:
              charge:
                kind: process
                command: ["sh", "charge.sh"]
                effect: idempotent
                env: [LEDGER_DIR]
                parameters: { type: object, properties: { n: { type: string } }, required: [n] }
              ledger:
                kind: process
                command: ["sh", "ledger.sh"]
                effect: write
                env: [LEDGER_DIR]
                parameters: { type: object, properties: { n: { type: string } }, required: [n] }
            agents:
              clerk:
                model: fake
                instructions: Charge, then record in the ledger.
                tools: [charge, ledger]
            """);
    }

    public async ValueTask DisposeAsync()
    {
        await _model.DisposeAsync();
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private Dictionary<string, string> Env(string ledgerDir, string? crashAt = null)
    {
        var env = new Dictionary<string, string> { ["LEDGER_DIR"] = ledgerDir, ["BUREAU_CRASH_AT"] = crashAt ?? "" };
        return env;
    }

    private BureauProcess Bureau(string ledgerDir, string? crashAt, params string[] args) =>
        BureauProcess.Start(_dir, Env(ledgerDir, crashAt), args);

    private static string[] Lines(string file) => File.Exists(file) ? File.ReadAllLines(file) : [];

    public static TheoryData<string, string> Points => new()
    {
        { "after-model", "succeeded" },          // answer lost before journaling: asked again
        { "after-model-journal", "succeeded" },  // answer journaled: never asked again
        { "before-intent", "succeeded" },        // charge never started
        { "after-intent", "succeeded" },         // charge (idempotent) in doubt: re-run with the same key
        { "after-tool", "succeeded" },           // charge ran, result lost: re-run with the same key
        { "after-intent:2", "waiting" },         // ledger (write) in doubt before it ran: waits for a person
        { "after-tool:2", "waiting" },           // ledger ran, result lost: waits, never re-run
        { "after-result:2", "succeeded" },       // ledger result journaled: not re-run
        { "before-finish", "succeeded" },        // final answer not journaled: asked again
    };

    [Theory]
    [MemberData(nameof(Points))]
    public async Task Kill_AtNamedPoint_RestartKeepsEveryGuarantee(string point, string expected)
    {
        var name = point.Replace(':', '-');
        var ledgerDir = Path.Combine(_dir, name);
        Directory.CreateDirectory(ledgerDir);
        var db = Path.Combine(_dir, name + ".db");
        string[] args = ["run", "bureau.yaml", "--agent", "clerk", "--input", name, "--idempotency-key", "k-" + name, "--db", db, "--json"];

        using (var crashing = Bureau(ledgerDir, point, args))
        {
            var code = await crashing.WaitAsync(ProcessTimeout);
            Assert.True(code == 137 || code == -9 || code == 9, $"expected a SIGKILL at {point}, got exit {code}\n{crashing.Stderr}");
            Assert.Contains($"crash point '{point.Split(':')[0]}'", crashing.Stderr);
        }

        using var restarted = Bureau(ledgerDir, null, args);
        var exit = await restarted.WaitAsync(ProcessTimeout);
        Assert.True(exit == (expected == "waiting" ? 3 : 0), $"exit {exit}\n{restarted.Stdout}\n{restarted.Stderr}");
        Assert.Contains($"\"status\":\"{expected}\"", restarted.Stdout);

        var (runId, journal) = await ReadOnlyRunAsync(db);
        AssertGapFree(journal);
        AssertNoJournaledAnswerAskedAgain(journal, name);
        var ledger = Lines(Path.Combine(ledgerDir, "ledger.txt"));
        Assert.Equal(ledger.Length, ledger.Distinct().Count()); // a write ran at most once per key
        var charges = Lines(Path.Combine(ledgerDir, "charges.txt"));
        Assert.Single(charges.Distinct()); // the idempotent tool only ever re-ran with the same key
        Assert.Equal(IntentKey(journal, runId, "charge"), charges[0]);

        if (expected == "waiting")
        {
            var waiting = journal.Select(j => j.Entry).OfType<RunWaiting>().Single().WaitingFor;
            Assert.Equal(("in-doubt", "ledger"), (waiting.Reason, Assert.IsType<InDoubtWait>(waiting).Tool));
            Assert.True(ledger.Length <= 1);
            using var resolve = Bureau(ledgerDir, null, "runs", "resolve", runId, "--step", waiting.Step.ToString(), "--as", "done",
                "--result", "checked by hand", "--file", "bureau.yaml", "--db", db);
            Assert.Equal(0, await resolve.WaitAsync(ProcessTimeout));
            Assert.Contains($"done {name}", resolve.Stdout);
            Assert.Equal(ledger, Lines(Path.Combine(ledgerDir, "ledger.txt"))); // resolving never re-ran the write
        }
        else
        {
            Assert.Equal([IntentKey(journal, runId, "ledger")], ledger);
        }
    }

    [Fact]
    public async Task Kill_AtRandomInstantsUnderLoad_EveryRunFinishesOrWaitsWithoutDuplicates()
    {
        const int runs = 60, kills = 6;
        var ledgerDir = Path.Combine(_dir, "random");
        Directory.CreateDirectory(ledgerDir);
        var db = Path.Combine(_dir, "random.db");
        await using (var store = new SqliteRunStore(new SqliteStoreOptions { Path = db }))
        {
            await store.InitializeAsync();
            await Task.WhenAll(Enumerable.Range(0, runs).Select(i => store.SubmitAsync(new NewRun
            {
                Id = $"r{i:000}", Agent = "clerk", Input = $"r{i:000}", Started = new RunStarted("clerk", $"r{i:000}"), CreatedAt = DateTimeOffset.UtcNow,
            })));
        }

        var random = new Random(20261125);
        var killed = 0;
        for (var attempt = 0; attempt < kills; attempt++)
        {
            using var p = Bureau(ledgerDir, null, "runs", "resume", "bureau.yaml", "--db", db);
            var delay = Task.Delay(random.Next(300, 2500), TestContext.Current.CancellationToken);
            var exited = p.WaitAsync(ProcessTimeout);
            if (await Task.WhenAny(delay, exited) == delay)
            {
                p.Kill();
                killed++;
            }
        }
        using (var final = Bureau(ledgerDir, null, "runs", "resume", "bureau.yaml", "--db", db, "--json"))
        {
            var code = await final.WaitAsync(ProcessTimeout);
            Assert.True(code is 0 or 3, $"exit {code}\n{final.Stderr}");
        }

        await using var check = new SqliteRunStore(new SqliteStoreOptions { Path = db });
        await check.InitializeAsync();
        var ledger = Lines(Path.Combine(ledgerDir, "ledger.txt"));
        Assert.Equal(ledger.Length, ledger.Distinct().Count());
        var charges = Lines(Path.Combine(ledgerDir, "charges.txt"));
        var waitingRuns = 0;
        for (var i = 0; i < runs; i++)
        {
            var id = $"r{i:000}";
            var run = await check.GetRunAsync(id);
            Assert.NotNull(run);
            var journal = await check.ReadJournalAsync(id);
            AssertGapFree(journal);
            AssertNoJournaledAnswerAskedAgain(journal, id);
            Assert.True(run.Status is RunStatus.Succeeded or RunStatus.Waiting, $"run {id} is {run.Status}: {run.Error}");
            if (run.Status == RunStatus.Waiting)
            {
                waitingRuns++;
                Assert.Equal("ledger", Assert.IsType<InDoubtWait>(run.WaitingFor).Tool);
            }
            else
            {
                Assert.Equal($"done {id}", run.Output);
            }
            var chargeKeys = charges.Where(k => k.StartsWith(id + ":", StringComparison.Ordinal)).Distinct().ToList();
            Assert.True(chargeKeys.Count <= 1, $"run {id}: charge ran with keys {string.Join(", ", chargeKeys)}");
        }
        TestContext.Current.TestOutputHelper?.WriteLine($"{runs} runs, {killed} kills, {waitingRuns} waiting in doubt, {ledger.Length} ledger writes, 0 duplicates");
        Assert.True(killed > 0, "no kill landed while runs were in flight");
    }

    /// <summary>
    /// The key of the tool's call: every intent journaled for it carries the same key, {runId}:{n} with n the
    /// step of its first intent (a restart journals run.resumed, so n depends on where the crash fell).
    /// </summary>
    [Fact]
    public async Task InDoubtDeadline_PassesWhileTheHostIsDown_FiresOnceAfterRestart()
    {
        // The ledger (write) waits at most 2 s for a person; the host dies right after journaling the wait.
        File.WriteAllText(Path.Combine(_dir, "deadline.yaml"), File.ReadAllText(Path.Combine(_dir, "bureau.yaml"))
            .Replace("    effect: write\n", "    effect: write\n    inDoubtTimeout: 2s\n", StringComparison.Ordinal));
        var ledgerDir = Path.Combine(_dir, "deadline");
        Directory.CreateDirectory(ledgerDir);
        var db = Path.Combine(_dir, "deadline.db");
        string[] args = ["run", "deadline.yaml", "--agent", "clerk", "--input", "deadline", "--idempotency-key", "k-deadline", "--db", db, "--json"];

        foreach (var point in new[] { "after-intent:2", "waiting" })
        {
            using var crashing = Bureau(ledgerDir, point, args);
            var code = await crashing.WaitAsync(ProcessTimeout);
            Assert.True(code is 137 or -9 or 9, $"expected a SIGKILL at {point}, got exit {code}\n{crashing.Stderr}");
        }
        RunRecord waiting;
        await using (var store = new SqliteRunStore(new SqliteStoreOptions { Path = db }))
        {
            await store.InitializeAsync();
            waiting = (await store.ListRunsAsync(new RunQuery())).Items.Single();
        }
        Assert.Equal(RunStatus.Waiting, waiting.Status);
        var deadline = Assert.IsType<InDoubtWait>(waiting.WaitingFor).Deadline!.Value;
        var untilDue = deadline - DateTimeOffset.UtcNow + TimeSpan.FromMilliseconds(200);
        Assert.True(untilDue < TimeSpan.FromSeconds(10), $"deadline {deadline:O} is unexpectedly far");
        if (untilDue > TimeSpan.Zero) await Task.Delay(untilDue, TestContext.Current.CancellationToken); // the deadline passes while no host runs

        for (var restart = 0; restart < 2; restart++)
        {
            using var again = Bureau(ledgerDir, null, args);
            var exit = await again.WaitAsync(ProcessTimeout);
            Assert.True(exit == 0, $"restart {restart}: exit {exit}\n{again.Stdout}\n{again.Stderr}");
            Assert.Contains("\"status\":\"succeeded\"", again.Stdout);
        }

        var (_, journal) = await ReadOnlyRunAsync(db);
        AssertGapFree(journal);
        var expired = Assert.Single(journal.Select(r => r.Entry).OfType<WaitExpired>()); // fired once, across two restarts
        Assert.Equal(deadline, expired.Deadline);
        var ledgerResult = journal.Select(r => r.Entry).OfType<ToolCompleted>().Single(t => t.Tool == "ledger");
        Assert.True(ledgerResult.IsError);
        Assert.Contains("deadline", ledgerResult.Content);
        Assert.Empty(Lines(Path.Combine(ledgerDir, "ledger.txt"))); // the write never ran
    }

    private static string IntentKey(IReadOnlyList<JournalRecord> journal, string runId, string tool)
    {
        var intents = journal.Where(j => j.Entry is ToolIntent i && i.Tool == tool).ToList();
        Assert.NotEmpty(intents);
        var key = ((ToolIntent)intents[0].Entry).IdempotencyKey;
        Assert.Equal($"{runId}:{intents[0].N}", key);
        Assert.All(intents, i => Assert.Equal(key, ((ToolIntent)i.Entry).IdempotencyKey));
        return key;
    }

    private static async Task<(string RunId, IReadOnlyList<JournalRecord> Journal)> ReadOnlyRunAsync(string db)
    {
        await using var store = new SqliteRunStore(new SqliteStoreOptions { Path = db });
        await store.InitializeAsync();
        var run = Assert.Single((await store.ListRunsAsync(new RunQuery())).Items);
        return (run.Id, await store.ReadJournalAsync(run.Id));
    }

    private static void AssertGapFree(IReadOnlyList<JournalRecord> journal) =>
        Assert.Equal(Enumerable.Range(1, journal.Count).Select(n => (long)n), journal.Select(j => j.N));

    /// <summary>Each journaled answer is the last one the model server issued for that run and turn.</summary>
    private void AssertNoJournaledAnswerAskedAgain(IReadOnlyList<JournalRecord> journal, string input)
    {
        foreach (var m in journal.Select(j => j.Entry).OfType<ModelResponded>())
        {
            var seq = long.Parse(m.Model["fake-".Length..]);
            var issued = _model.Issued[(input, m.Turn)].ToArray();
            Assert.True(issued.Max() == seq, $"run {input} turn {m.Turn}: journaled answer {seq}, but the model was asked again later ({string.Join(", ", issued)})");
        }
    }
}
