using System.Text.Json.Nodes;
using Bureau.Replay;
using Bureau.Storage.Sqlite;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Bureau.Durability.Tests.Replay;

/// <summary>
/// Records the replay corpus (corpus/*.jsonl) with real `bureau` processes on the scripted model: crashes
/// are real SIGKILLs (the test host's crash points), resolutions go through `bureau runs resolve`, and
/// cancellations through the engine's command. Re-recording is a deliberate act (corpus/README.md): run
/// <c>./tests/Bureau.Durability.Tests/Replay/record-corpus.sh</c>, review the diff, commit it.
/// An explicit test: it never runs with the others.
/// </summary>
public sealed class CorpusRecorder : IAsyncLifetime
{
    private static readonly TimeSpan ProcessTimeout = TimeSpan.FromSeconds(90);
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bureau-corpus", Guid.NewGuid().ToString("n"));
    private readonly List<string> _written = [];

    public ValueTask InitializeAsync()
    {
        Directory.CreateDirectory(_dir);
        File.WriteAllText(Path.Combine(_dir, CorpusManifest.FileName), CorpusManifest.Yaml);
        foreach (var (name, text) in CorpusManifest.Scripts) File.WriteAllText(Path.Combine(_dir, name), text);
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
        return ValueTask.CompletedTask;
    }

    [Fact(Explicit = true)]
    public async Task Record_EveryScenario_WritesTheCorpus()
    {
        var corpus = Environment.GetEnvironmentVariable("BUREAU_CORPUS_OUT") is { Length: > 0 } o ? o : Corpus.Folder;
        Directory.CreateDirectory(corpus);
        foreach (var old in Directory.GetFiles(corpus, "*.jsonl")) File.Delete(old);
        File.WriteAllText(Path.Combine(corpus, CorpusManifest.FileName), CorpusManifest.Yaml);
        var sample = Path.Combine(Corpus.RepoRoot, "samples", "support-desk");
        File.Copy(Path.Combine(sample, "bureau.yaml"), Path.Combine(corpus, "support-desk.yaml"), overwrite: true);

        // The support-desk sample, as its README runs it.
        var data = Path.Combine(_dir, "support-data");
        Directory.CreateDirectory(data);
        foreach (var f in Directory.GetFiles(Path.Combine(sample, "data"))) File.Copy(f, Path.Combine(data, Path.GetFileName(f)));
        var sampleEnv = new Dictionary<string, string> { ["SUPPORT_DESK_DATA"] = data };
        await SampleAsync(corpus, sample, sampleEnv, "support-desk-refund", "a known customer asks for a refund: lookup (read), file_refund (write), answer",
            "From: ada@example.com. Order 1042 was charged twice, please refund 25.00 EUR");
        await SampleAsync(corpus, sample, sampleEnv, "support-desk-unknown-customer", "an unknown sender: lookup finds nobody, the agent answers",
            "From: nobody@example.org. Where is my parcel?");
        await SampleAsync(corpus, sample, sampleEnv, "support-desk-no-email", "a ticket without an email address: answered at once, no tool",
            "Hello, my invoice is wrong.");

        // Plain runs.
        await ClerkAsync(corpus, "clerk", "clerk-ok", "an idempotent tool (intent, result) then a write tool (intent, result)", "order-1");
        await ClerkAsync(corpus, "flaky", "tool-error", "a read tool fails (exit 3, stderr); the error goes back to the model", "order-2");
        await ClerkAsync(corpus, "counter", "budget-steps", "two calls in one answer, then more: the steps budget (4) stops the run", "order-3");
        await ClerkAsync(corpus, "looper", "loop-warn-then-stop", "the same call again and again: loop detection warns once, then stops the run", "order-4");
        await ClerkAsync(corpus, "napper", "budget-time-at-boundary", "a tool takes 1.3s of a 1s time budget: the run stops before the next model call", "order-15");
        await ClerkAsync(corpus, "slowpoke", "budget-time-in-flight", "the model takes 0.7s a call with a 1s time budget: the second call is stopped in flight", "order-16");
        await ClerkAsync(corpus, "sloppy", "rejected-call", "a call with arguments the schema rejects goes back to the model (tool.rejected); it fixes them", "order-5");

        // Crashes (SIGKILL at a crash point), then the same command again: it resumes the run.
        await ClerkAsync(corpus, "clerk", "crash-after-model", "killed after the model answered, before the answer was journaled: asked again on resume", "order-6", crashAt: "after-model");
        await ClerkAsync(corpus, "clerk", "idempotent-retry", "killed after the idempotent tool's intent: re-run on resume with the same key", "order-7", crashAt: "after-intent");
        await ClerkAsync(corpus, "clerk", "crash-after-result", "killed after a read/idempotent result was journaled: nothing re-run", "order-8", crashAt: "after-result");
        await ClerkAsync(corpus, "clerk", "in-doubt-write-resolved-done", "killed after the write tool's intent: the run waits; a person resolves it as done",
            "order-9", crashAt: "after-intent:2", resolve: ["--as", "done", "--result", "checked by hand: recorded"]);
        await ClerkAsync(corpus, "clerk", "in-doubt-write-resolved-retry", "killed after the write tool ran, before its result: a person resolves it as retry",
            "order-10", crashAt: "after-tool:2", resolve: ["--as", "retry"]);
        await ClerkAsync(corpus, "clerk", "in-doubt-write-resolved-failed", "killed after the write tool's intent: a person resolves it as failed",
            "order-11", crashAt: "after-intent:2", resolve: ["--as", "failed"]);
        await ClerkAsync(corpus, "deadline-clerk", "in-doubt-write-expired", "killed after the write tool's intent: nobody decides before inDoubtTimeout (1s); the call counts as failed",
            "order-12", crashAt: "after-intent", expire: true);

        // Cancellations, through the engine's command.
        await CanceledInFlightAsync(corpus);
        await CanceledWhileWaitingAsync(corpus);

        Assert.Equal(_written.Count, Directory.GetFiles(corpus, "*.jsonl").Length);
        Assert.True(_written.Count >= 19, $"recorded {_written.Count} runs");
    }

    private async Task SampleAsync(string corpus, string sample, Dictionary<string, string> env, string name, string scenario, string input)
    {
        var db = Path.Combine(_dir, name + ".db");
        using var p = BureauProcess.Start(sample, env, "run", "bureau.yaml", "--agent", "triage", "--input", input, "--db", db, "--json");
        Assert.True(await p.WaitAsync(ProcessTimeout) == 0, p.Stderr);
        await SaveAsync(corpus, db, name, "support-desk.yaml", scenario);
    }

    private async Task ClerkAsync(string corpus, string agent, string name, string scenario, string input,
        string? crashAt = null, string[]? resolve = null, bool expire = false)
    {
        var db = Path.Combine(_dir, name + ".db");
        string[] run = ["run", CorpusManifest.FileName, "--agent", agent, "--input", input, "--idempotency-key", name, "--db", db, "--json"];
        var env = new Dictionary<string, string>();
        if (crashAt is not null)
        {
            using var crashing = BureauProcess.Start(_dir, new Dictionary<string, string> { ["BUREAU_CRASH_AT"] = crashAt }, run);
            var code = await crashing.WaitAsync(ProcessTimeout);
            Assert.True(code is 137 or -9 or 9, $"{name}: expected a SIGKILL at {crashAt}, got exit {code}\n{crashing.Stderr}");
        }
        using (var p = BureauProcess.Start(_dir, env, run))
        {
            var code = await p.WaitAsync(ProcessTimeout);
            Assert.True(code is 0 or 1 or 3, $"{name}: exit {code}\n{p.Stderr}");
        }
        if (resolve is not null)
        {
            var (runId, waiting) = await WaitingAsync(db);
            using var p = BureauProcess.Start(_dir, env, ["runs", "resolve", runId, "--step", waiting.Step.ToString(System.Globalization.CultureInfo.InvariantCulture), .. resolve, "--file", CorpusManifest.FileName, "--db", db]);
            Assert.True(await p.WaitAsync(ProcessTimeout) is 0 or 1, p.Stderr);
        }
        if (expire)
        {
            var (_, waiting) = await WaitingAsync(db);
            var left = waiting.Deadline!.Value - DateTimeOffset.UtcNow;
            if (left > TimeSpan.Zero) await Task.Delay(left + TimeSpan.FromMilliseconds(200));
            using var p = BureauProcess.Start(_dir, env, "runs", "resume", CorpusManifest.FileName, "--db", db);
            Assert.True(await p.WaitAsync(ProcessTimeout) == 0, p.Stderr);
        }
        await SaveAsync(corpus, db, name, CorpusManifest.FileName, scenario);
    }

    private static async Task<(string RunId, WaitingFor Waiting)> WaitingAsync(string db)
    {
        await using var store = new SqliteRunStore(new SqliteStoreOptions { Path = db });
        await store.InitializeAsync();
        var run = Assert.Single((await store.ListRunsAsync(new RunQuery())).Items);
        Assert.True(run.WaitingFor is not null, $"run {run.Id} is {run.Status.ToWireName()}, expected it to wait");
        return (run.Id, run.WaitingFor);
    }

    /// <summary>An in-process engine on <paramref name="db"/> (the processes above have exited: the lock is free).</summary>
    private async Task<(ServiceProvider Services, BureauEngine Engine)> StartEngineAsync(string db)
    {
        var definitions = Bureau.Manifests.ManifestLoader.LoadFile(Path.Combine(_dir, CorpusManifest.FileName)).Definitions!;
        var services = new ServiceCollection();
        services.AddBureau().AddDefinitions(definitions).UseSqliteStorage(o => o.Path = db);
        var provider = services.BuildServiceProvider();
        await provider.GetRequiredService<IRunStore>().InitializeAsync();
        var engine = provider.GetRequiredService<BureauEngine>();
        await engine.StartAsync();
        return (provider, engine);
    }

    private async Task CanceledInFlightAsync(string corpus)
    {
        const string name = "canceled-in-flight";
        var db = Path.Combine(_dir, name + ".db");
        var (services, engine) = await StartEngineAsync(db);
        await using (services)
        {
            var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            using var sub = engine.Events.SubscribeAll(e => { if (e.Activity == "tool.started") started.TrySetResult(); });
            var run = (await engine.SubmitAsync(new RunRequest("waiter", "order-13", Actor: "recorder"))).Run;
            await started.Task.WaitAsync(ProcessTimeout);
            Assert.Equal(RunStatus.Canceled, await engine.CancelAsync(run.Id, "recorder", "the customer withdrew the ticket"));
            await engine.StopAsync();
        }
        await SaveAsync(corpus, db, name, CorpusManifest.FileName, "canceled while its (slow) tool ran: the tool is stopped, the cancellation journaled");
    }

    private async Task CanceledWhileWaitingAsync(string corpus)
    {
        const string name = "canceled-while-waiting";
        var db = Path.Combine(_dir, name + ".db");
        string[] run = ["run", CorpusManifest.FileName, "--agent", "clerk", "--input", "order-14", "--idempotency-key", name, "--db", db, "--json"];
        using (var crashing = BureauProcess.Start(_dir, new Dictionary<string, string> { ["BUREAU_CRASH_AT"] = "after-intent:2" }, run))
            await crashing.WaitAsync(ProcessTimeout);
        using (var p = BureauProcess.Start(_dir, new Dictionary<string, string>(), run))
            Assert.Equal(3, await p.WaitAsync(ProcessTimeout));
        var (runId, _) = await WaitingAsync(db);
        var (services, engine) = await StartEngineAsync(db);
        await using (services)
        {
            Assert.Equal(RunStatus.Canceled, await engine.CancelAsync(runId, "recorder", "nobody could check the ledger"));
            await engine.StopAsync();
        }
        await SaveAsync(corpus, db, name, CorpusManifest.FileName, "killed after the write tool's intent; while it waits for a person, it is canceled");
    }

    private async Task SaveAsync(string corpus, string db, string name, string manifest, string scenario)
    {
        await using var store = new SqliteRunStore(new SqliteStoreOptions { Path = db });
        await store.InitializeAsync();
        var run = Assert.Single((await store.ListRunsAsync(new RunQuery())).Items);
        Assert.True(run.Status.IsTerminal(), $"{name}: run {run.Id} is {run.Status.ToWireName()}");
        var journal = await store.ReadJournalAsync(run.Id);
        var header = new JsonObject
        {
            ["fixture"] = name,
            ["scenario"] = scenario,
            ["manifest"] = manifest,
            ["agent"] = run.Agent,
            ["status"] = run.Status.ToWireName(),
            ["steps"] = journal.Count,
            ["recordedWith"] = "the scripted model and real bureau processes (tests/Bureau.Durability.Tests/Replay/CorpusRecorder.cs)",
        };
        using (var writer = new StreamWriter(Path.Combine(corpus, name + ".jsonl")))
            ReplayJournalFile.Write(writer, run.Id, header, journal);
        _written.Add(name);
    }
}
