using Xunit;

namespace Bureau.Durability.Tests;

/// <summary>
/// The CLI given what a hurried user types: a mistyped command or option, a directory where a file is
/// expected, a limit out of range, an empty input. Each is bad usage (exit 2, docs/cli.md) with a message
/// naming what is wrong, not exit 1 (which scripts read as "the run failed") or a wrong diagnosis.
/// </summary>
public sealed class CliBadInputTests : IDisposable
{
    private static readonly TimeSpan ProcessTimeout = TimeSpan.FromSeconds(90);
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bureau-cli-bad-input", Guid.NewGuid().ToString("n"));

    private const string Manifest = """
        version: 2
        models:
          s:
            provider: scripted
            rules:
              - reply: "echo: {{last}}"
        agents:
          echo: { model: s, instructions: "Repeat." }
        """;

    public CliBadInputTests()
    {
        Directory.CreateDirectory(_dir);
        File.WriteAllText(Path.Combine(_dir, "bureau.yaml"), Manifest);
        Directory.CreateDirectory(Path.Combine(_dir, "folder"));
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private Task<(int Code, string Stdout, string Stderr)> BureauAsync(params string[] args) => BureauProcess.RunAsync(_dir, ProcessTimeout, args);

    [Theory]
    [InlineData("no-such-command")]
    [InlineData("run", "bureau.yaml")]
    [InlineData("runs", "list", "--limit", "abc")]
    public async Task ParseErrors_AreBadUsage_Exit2(params string[] args)
    {
        var result = await BureauAsync(args);
        Assert.True(result.Code == 2, $"exit {result.Code}\n{result.Stdout}\n{result.Stderr}");
    }

    [Fact]
    public async Task Replay_ADirectoryOrAMissingRecordedRun_SaysWhatItIs_NotThatTheDefaultDatabaseIsMissing()
    {
        var dir = await BureauAsync("replay", "folder");
        Assert.True(dir.Code == 2, $"exit {dir.Code}\n{dir.Stderr}");
        Assert.Contains("'folder' is a directory: give a run's id (in --db) or a recorded run's file (*.jsonl)", dir.Stderr);

        var missing = await BureauAsync("replay", "ticket-7.jsonl");
        Assert.True(missing.Code == 2, $"exit {missing.Code}\n{missing.Stderr}");
        Assert.Contains("no recorded run at 'ticket-7.jsonl'", missing.Stderr);
    }

    [Fact]
    public async Task Validate_ADirectory_SaysItIsADirectory()
    {
        var result = await BureauAsync("validate", "folder");
        Assert.Equal(2, result.Code);
        Assert.Contains("folder:1:1: error: is a directory, not a manifest file", result.Stderr);
    }

    [Fact]
    public async Task Run_ManifestOrDbThatIsADirectory_SaysSo_AndCreatesNothing()
    {
        var manifest = await BureauAsync("run", "folder", "--agent", "echo", "--input", "hi", "--db", "a.db");
        Assert.Equal(2, manifest.Code);
        Assert.Contains("is a directory, not a manifest file", manifest.Stderr);

        var db = await BureauAsync("run", "bureau.yaml", "--agent", "echo", "--input", "hi", "--db", "folder");
        Assert.True(db.Code == 2, $"exit {db.Code}\n{db.Stderr}");
        Assert.Contains("--db 'folder' is a directory; name the database file", db.Stderr);
        Assert.DoesNotContain("read-only", db.Stderr);
        Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(_dir, "folder")));
        Assert.False(File.Exists(Path.Combine(_dir, "a.db")));
    }

    [Fact]
    public async Task RunsList_DbThatIsADirectory_OrFailuresLimitOutOfRange_Exit2NamingIt()
    {
        var dir = await BureauAsync("runs", "list", "--db", "folder");
        Assert.Equal(2, dir.Code);
        Assert.Contains("--db 'folder' is a directory", dir.Stderr);

        // runs list --limit out of range: NewUserCliTests.RunsList_ALimitOutsideOneTo1000_IsBadUsage_NamingTheOption.
        var run = await BureauAsync("run", "bureau.yaml", "--agent", "echo", "--input", "hi", "--db", "r.db");
        Assert.True(run.Code == 0, run.Stderr);
        var failures = await BureauAsync("runs", "failures", "--db", "r.db", "--limit", "-5");
        Assert.True(failures.Code == 2, $"runs failures --limit -5: exit {failures.Code}\n{failures.Stdout}\n{failures.Stderr}");
        Assert.Contains("--limit must be at least 1, not -5", failures.Stderr);
    }

    [Fact]
    public async Task Run_EmptyInput_IsBadUsage_WithoutTheParameterSuffix_NothingStored()
    {
        var result = await BureauAsync("run", "bureau.yaml", "--agent", "echo", "--input", "", "--db", "e.db");
        Assert.True(result.Code == 2, $"exit {result.Code}\n{result.Stderr}");
        Assert.Contains("bureau: input is empty: agent 'echo' needs an input", result.Stderr);
        Assert.DoesNotContain("(Parameter", result.Stderr);
        var list = await BureauAsync("runs", "list", "--db", "e.db", "--json");
        Assert.Contains("\"items\":[]", list.Stdout);
    }

    [Fact]
    public async Task AnotherApplicationsSqliteDatabase_IsRefused_AndGetsNoBureauTables()
    {
        var foreign = Path.Combine(_dir, "crm.db");
        using (var c = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={foreign};Pooling=False"))
        {
            c.Open();
            using var create = c.CreateCommand();
            create.CommandText = "CREATE TABLE customers (id INTEGER, name TEXT); INSERT INTO customers VALUES (1, 'ann');";
            create.ExecuteNonQuery();
        }

        var list = await BureauAsync("runs", "list", "--db", "crm.db");
        Assert.True(list.Code == 2, $"exit {list.Code}\n{list.Stdout}\n{list.Stderr}");
        Assert.Contains("--db 'crm.db' is the SQLite database of something else (tables customers), not Bureau's", list.Stderr);
        var run = await BureauAsync("run", "bureau.yaml", "--agent", "echo", "--input", "hi", "--db", "crm.db");
        Assert.Equal(2, run.Code);

        using var check = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={foreign};Mode=ReadOnly;Pooling=False");
        check.Open();
        using var tables = check.CreateCommand();
        tables.CommandText = "SELECT group_concat(name) FROM sqlite_master WHERE type = 'table'";
        Assert.Equal("customers", tables.ExecuteScalar());
    }

    [Fact]
    public async Task BureausOwnDatabase_IsStillRead()
    {
        var run = await BureauAsync("run", "bureau.yaml", "--agent", "echo", "--input", "hi", "--db", "own.db");
        Assert.True(run.Code == 0, run.Stderr);
        var list = await BureauAsync("runs", "list", "--db", "own.db", "--json");
        Assert.True(list.Code == 0, list.Stderr);
        Assert.Contains("\"input\":\"hi\"", list.Stdout);
    }

    [Fact]
    public async Task RunsExport_OutThatIsADirectoryOrInAMissingFolder_Exit2NamingIt_NotACrash()
    {
        var run = await BureauAsync("run", "bureau.yaml", "--agent", "echo", "--input", "hi", "--db", "x.db");
        Assert.True(run.Code == 0, run.Stderr);

        var dir = await BureauAsync("runs", "export", "--out", "folder", "--db", "x.db");
        Assert.True(dir.Code == 2, $"exit {dir.Code}\n{dir.Stderr}");
        Assert.Contains("--out 'folder' is a directory", dir.Stderr);
        Assert.DoesNotContain("Unhandled exception", dir.Stderr);

        var missing = await BureauAsync("runs", "export", "--out", Path.Combine("no-such-folder", "runs.jsonl"), "--db", "x.db");
        Assert.True(missing.Code == 2, $"exit {missing.Code}\n{missing.Stderr}");
        Assert.Contains("cannot be written", missing.Stderr);
        Assert.DoesNotContain("Unhandled exception", missing.Stderr);
    }

    [Fact]
    public async Task Serve_WithAnInvalidApiOption_IsBadUsageNamingTheKey_NotACrash()
    {
        // docs/configuration.md: a bad value stops the start with an error naming its key.
        using var serve = BureauProcess.Start(_dir, new Dictionary<string, string> { ["Bureau__MaxRequestBodyBytes"] = "10" },
            "serve", "bureau.yaml", "--db", Path.Combine(_dir, "serve.db"), "--urls", "http://127.0.0.1:0");
        var code = await serve.WaitAsync(ProcessTimeout);

        Assert.True(code == 2, $"exit {code}\n{serve.Stderr}");
        Assert.Contains("bureau: Bureau:MaxRequestBodyBytes must be at least 1024 (is 10)", serve.Stderr);
        Assert.DoesNotContain("Unhandled exception", serve.Stderr);
    }
}
