using Xunit;

namespace Bureau.Durability.Tests.Replay;

/// <summary><c>bureau replay</c> as a user runs it: real processes, the scripted model, a SQLite database.</summary>
public sealed class ReplayCommandTests : IAsyncLifetime
{
    private static readonly TimeSpan ProcessTimeout = TimeSpan.FromSeconds(90);
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bureau-replay-cli", Guid.NewGuid().ToString("n"));
    private readonly Dictionary<string, string> _env = new();

    public ValueTask InitializeAsync()
    {
        Directory.CreateDirectory(_dir);
        File.WriteAllText(Path.Combine(_dir, "bureau.yaml"), CorpusManifest.Yaml);
        foreach (var (name, text) in CorpusManifest.Scripts) File.WriteAllText(Path.Combine(_dir, name), text);
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
        return ValueTask.CompletedTask;
    }

    private async Task<(int Code, string Stdout, string Stderr)> BureauAsync(IDictionary<string, string> env, params string[] args)
    {
        using var p = BureauProcess.Start(_dir, env, args);
        var code = await p.WaitAsync(ProcessTimeout);
        return (code, p.Stdout, p.Stderr);
    }

    private static string RunId(string runJson) =>
        System.Text.Json.JsonDocument.Parse(runJson).RootElement.GetProperty("runId").GetString()!;

    [Fact]
    public async Task Replay_FinishedRunThenChangedManifest_ExitsZeroThenOneNamingTheStep()
    {
        var run = await BureauAsync(_env, "run", "bureau.yaml", "--agent", "clerk", "--input", "order-1", "--db", "r.db", "--json");
        Assert.True(run.Code == 0, run.Stderr);
        var id = RunId(run.Stdout);

        var same = await BureauAsync(_env, "replay", id, "--db", "r.db");
        Assert.True(same.Code == 0, same.Stdout + same.Stderr);
        Assert.Equal($"run {id} (clerk): replayed 9 steps, 0 divergences", same.Stdout.Trim());

        // The ledger tool, a write when the run was recorded, is declared idempotent now.
        var changedYaml = CorpusManifest.Yaml.Replace("effect: write\n    parameters", "effect: idempotent\n    parameters", StringComparison.Ordinal);
        Assert.NotEqual(CorpusManifest.Yaml, changedYaml);
        File.WriteAllText(Path.Combine(_dir, "changed.yaml"), changedYaml);
        var changed = await BureauAsync(_env, "replay", id, "--db", "r.db", "--file", "changed.yaml");
        Assert.True(changed.Code == 1, changed.Stdout + changed.Stderr);
        Assert.Contains($"run {id} (clerk): divergence at step 6 of 9", changed.Stdout);
        Assert.Contains("\"effect\":\"write\"", changed.Stdout);
        Assert.Contains("\"effect\":\"idempotent\"", changed.Stdout);
        Assert.Equal(0, (await BureauAsync(_env, "replay", id, "--db", "r.db")).Code); // the database was not touched
    }

    [Fact]
    public async Task Replay_RecordedRunFile_UsesTheManifestItsHeaderNames()
    {
        var fixture = Path.Combine(Corpus.Folder, "in-doubt-write-resolved-done.jsonl");
        var runId = Bureau.Replay.ReplayJournalFile.Read(fixture).RunId;

        var replay = await BureauAsync(_env, "replay", fixture);

        Assert.True(replay.Code == 0, replay.Stdout + replay.Stderr);
        Assert.Equal($"run {runId} (clerk): replayed 13 steps, 0 divergences", replay.Stdout.Trim());

        File.WriteAllText(Path.Combine(_dir, "bad.jsonl"), "{\"format\":\"something else\"}\n");
        var bad = await BureauAsync(_env, "replay", "bad.jsonl");
        Assert.Equal(2, bad.Code);
        Assert.Contains("bad.jsonl:1: not a recorded run's line", bad.Stderr);
    }

    [Fact]
    public async Task Replay_UnknownOrUnfinishedRun_ExitsTwoNamingIt()
    {
        var unknown = await BureauAsync(_env, "replay", "no-such-run", "--db", "r.db");
        Assert.Equal(2, unknown.Code);
        Assert.Contains("no database at 'r.db'", unknown.Stderr);

        var crashed = await BureauAsync(new Dictionary<string, string> { ["BUREAU_CRASH_AT"] = "after-intent:2" },
            "run", "bureau.yaml", "--agent", "clerk", "--input", "order-2", "--db", "r.db");
        Assert.True(crashed.Code is 137 or -9 or 9, crashed.Stderr);
        var list = await BureauAsync(_env, "runs", "list", "--db", "r.db", "--json");
        var id = System.Text.Json.JsonDocument.Parse(list.Stdout).RootElement.GetProperty("items")[0].GetProperty("id").GetString()!;

        var unfinished = await BureauAsync(_env, "replay", id, "--db", "r.db");
        Assert.Equal(2, unfinished.Code);
        Assert.Contains($"run {id} is running; only a finished run", unfinished.Stderr);

        var missing = await BureauAsync(_env, "replay", "no-such-run", "--db", "r.db");
        Assert.Equal(2, missing.Code);
        Assert.Contains("run no-such-run does not exist in r.db", missing.Stderr);

        var noManifest = await BureauAsync(_env, "replay", id, "--db", "r.db", "--file", "nope.yaml");
        Assert.Equal(2, noManifest.Code);
        Assert.Contains("no manifest at 'nope.yaml'", noManifest.Stderr);
    }
}
