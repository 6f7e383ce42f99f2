using System.Text.Json.Nodes;
using Xunit;

namespace Bureau.Durability.Tests;

/// <summary>
/// A team run from the real <c>bureau</c> process: <c>bureau run --agent TEAM</c> follows the team while its
/// members run, and <c>bureau runs show ID --tree</c> prints the tree of child runs it left in the database.
/// </summary>
public sealed class TeamCommandTests : IDisposable
{
    private static readonly TimeSpan ProcessTimeout = TimeSpan.FromSeconds(120);
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bureau-team-cli", Guid.NewGuid().ToString("n"));

    public TeamCommandTests()
    {
        Directory.CreateDirectory(_dir);
        // desk: a pipeline of a parallel pair (billing and technical), then a writer; every member on the scripted model.
        File.WriteAllText(Path.Combine(_dir, "bureau.yaml"), """
            models:
              billing-script: { provider: scripted, rules: [ { reply: "Billing: charged twice" } ] }
              technical-script: { provider: scripted, rules: [ { reply: "Technical: clear the cache" } ] }
              writer-script: { provider: scripted, rules: [ { reply: "Dear customer, we fixed both." } ] }
            agents:
              billing: { model: billing-script }
              technical: { model: technical-script }
              writer: { model: writer-script }
            teams:
              pair: { pattern: parallel, members: [billing, technical] }
              desk: { pattern: sequential, members: [pair, writer] }
            """);
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private async Task<BureauProcess> BureauAsync(int expectedExit, params string[] args)
    {
        var p = BureauProcess.Start(_dir, new Dictionary<string, string>(), args);
        var exit = await p.WaitAsync(ProcessTimeout);
        Assert.True(exit == expectedExit, $"bureau {string.Join(' ', args)}: exit {exit}\n{p.Stdout}\n{p.Stderr}");
        return p;
    }

    [Fact]
    public async Task RunATeam_ThenRunsShowTree_ListsEveryChildUnderItsParent()
    {
        var db = Path.Combine(_dir, "runs.db");
        string id;
        using (var run = await BureauAsync(0, "run", "bureau.yaml", "--agent", "desk", "--input", "charged twice and the app fails", "--db", db, "--json"))
        {
            var doc = JsonNode.Parse(run.Stdout)!;
            Assert.Equal(("succeeded", "Dear customer, we fixed both."), ((string)doc["status"]!, (string)doc["output"]!));
            Assert.Contains("team 'desk' has members on SCRIPTED models", run.Stderr);
            id = (string)doc["runId"]!;
        }

        using var show = await BureauAsync(0, "runs", "show", id, "--tree", "--db", db);
        var lines = show.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.True(lines.Length == 5, show.Stdout);
        Assert.StartsWith($"{id}  team desk  succeeded", lines[0]);
        Assert.Matches(@"^├─ \S+  team pair  succeeded", lines[1]);
        // The pair's members run in parallel: both are under it, in the order they were created.
        Assert.Equal(["agent billing", "agent technical"], lines[2..4].Select(l => System.Text.RegularExpressions.Regex.Match(l, @"agent \w+").Value).Order());
        Assert.Matches(@"^│  ├─ \S+  agent \w+  succeeded", lines[2]);
        Assert.Matches(@"^│  └─ \S+  agent \w+  succeeded", lines[3]);
        Assert.Matches(@"^└─ \S+  agent writer  succeeded  tokens \d+  Dear customer, we fixed both\.$", lines[4]);
        Assert.Contains("Billing: charged twice", show.Stdout);
        Assert.Contains("Technical: clear the cache", show.Stdout);

        // The same tree in the runs list: the team's children name it as their parent.
        using var list = await BureauAsync(0, "runs", "list", "--db", db, "--json");
        var items = JsonNode.Parse(list.Stdout)!["items"]!.AsArray();
        Assert.Equal(5, items.Count);
        Assert.Equal(["pair", "writer"], items.Where(r => (string?)r!["parentRunId"] == id).Select(r => (string)r!["agent"]!).Order());
    }
}
