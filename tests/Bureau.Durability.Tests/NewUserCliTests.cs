using System.CommandLine;
using Bureau.Cli.Commands;
using Bureau.Storage.Sqlite;
using Xunit;

namespace Bureau.Durability.Tests;

/// <summary>
/// What a first-time user of the `bureau` command meets: exit codes as docs/cli.md lists them (2 for bad usage, also
/// when System.CommandLine finds it), a run id in `runs list` that can be copied, and `health` asking where `serve`
/// listens by default.
/// </summary>
public sealed class NewUserCliTests : IAsyncLifetime
{
    private const string RunId = "01m97me55gmxmcs1pq"; // the length of a real run id
    private static readonly TimeSpan ProcessTimeout = TimeSpan.FromSeconds(90);
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bureau-newuser", Guid.NewGuid().ToString("n"));
    private string Db => Path.Combine(_dir, "runs.db");

    public async ValueTask InitializeAsync()
    {
        Directory.CreateDirectory(_dir);
        await using var store = new SqliteRunStore(new SqliteStoreOptions { Path = Db });
        await store.InitializeAsync();
        var at = new DateTimeOffset(2026, 12, 6, 9, 0, 0, TimeSpan.Zero);
        const string output = "Sorry about the double charge on order 1042. Refund RF-85CB1230 of 30 EUR is filed; you will see it soon.";
        await store.SubmitAsync(new NewRun { Id = RunId, Agent = "triage", Input = "charged twice", Started = new RunStarted("triage", "charged twice"), CreatedAt = at });
        await store.AppendAsync(new AppendRequest
        {
            RunId = RunId, ExpectedVersion = 1, At = at, Entries = [new RunFinished(RunStatus.Succeeded, output, null, null)],
            Update = new RunUpdate { Status = RunStatus.Succeeded, Output = output },
        });
    }

    public ValueTask DisposeAsync()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
        return ValueTask.CompletedTask;
    }

    private Task<(int Code, string Stdout, string Stderr)> BureauAsync(params string[] args) => BureauProcess.RunAsync(_dir, ProcessTimeout, args);

    [Fact]
    public async Task RunsList_ToAPipe_PrintsEachRunOnOneLine_WithItsIdWhole()
    {
        var (code, stdout, stderr) = await BureauAsync("runs", "list", "--db", Db);

        Assert.True(code == 0, $"exit {code}\n{stdout}\n{stderr}");
        Assert.Contains(RunId, stdout);
        var row = Assert.Single(stdout.Split('\n'), l => l.Contains(RunId, StringComparison.Ordinal)); // one line per run, for grep
        Assert.Contains("triage", row);
        Assert.Contains("Sorry about the double charge on order 1042.", row);
    }

    [Theory]
    [InlineData("0")]
    [InlineData("-5")]
    [InlineData("1001")]
    public async Task RunsList_ALimitOutsideOneTo1000_IsBadUsage_NamingTheOption(string limit)
    {
        var (code, stdout, stderr) = await BureauAsync("runs", "list", "--db", Db, "--limit", limit);

        Assert.True(code == 2, $"exit {code}\n{stdout}\n{stderr}");
        Assert.Contains($"--limit must be an integer from 1 to 1000, not {limit}", stderr);
    }

    [Fact]
    public async Task AMissingOrUnknownOption_IsBadUsage_Exit2_AndHelpIsExit0()
    {
        var missing = await BureauAsync("run", "bureau.yaml", "--agent", "triage", "--db", Db);
        Assert.True(missing.Code == 2, $"exit {missing.Code}\n{missing.Stdout}\n{missing.Stderr}");
        Assert.Contains("Option '--input' is required.", missing.Stderr);

        var unknown = await BureauAsync("runs", "list", "--db", Db, "--staus", "failed");
        Assert.True(unknown.Code == 2, $"exit {unknown.Code}\n{unknown.Stdout}\n{unknown.Stderr}");
        Assert.Contains("--staus", unknown.Stderr);

        var help = await BureauAsync("run", "--help");
        Assert.True(help.Code == 0, $"exit {help.Code}\n{help.Stdout}\n{help.Stderr}");
        Assert.Contains("--agent", help.Stdout);
    }

    [Fact]
    public async Task Serve_OnAPortInUse_IsBadUsage_SayingHowToPickAnother()
    {
        File.WriteAllText(Path.Combine(_dir, "bureau.yaml"), """
            models:
              m: { provider: scripted, rules: [ { reply: "ok" } ] }
            agents:
              echo: { model: m }
            """);
        using var taken = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        taken.Start();
        var port = ((System.Net.IPEndPoint)taken.LocalEndpoint).Port;

        var (code, stdout, stderr) = await BureauAsync("serve", "bureau.yaml", "--db", Path.Combine(_dir, "serve.db"), "--urls", $"http://127.0.0.1:{port}");

        Assert.True(code == 2, $"exit {code}\n{stdout}\n{stderr}");
        Assert.Contains($"http://127.0.0.1:{port}", stderr);
        Assert.Contains("address already in use", stderr);
        Assert.Contains("--urls http://127.0.0.1:PORT", stderr);
    }

    [Fact]
    public void Health_WithoutUrl_AsksTheAddressServeListensOnByDefault()
    {
        var parse = HealthCommand.Create().Parse([]);

        Assert.Empty(parse.Errors);
        Assert.Equal(ServeCommand.DefaultUrls, parse.GetValue<string>("--url"));
    }
}
