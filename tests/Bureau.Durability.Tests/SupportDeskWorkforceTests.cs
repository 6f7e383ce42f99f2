using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Xunit;

namespace Bureau.Durability.Tests;

/// <summary>
/// The support-desk sample's standing team, end to end on `bureau serve` and its scripted models: triage hands each ticket
/// to billing through the board; the first ticket from a customer teaches billing where invoices go (remembered in the
/// team's memory); the second ticket from the same customer is answered with it, and `bureau runs show` prints the recall
/// with its provenance (the first ticket's run).
/// </summary>
public sealed class SupportDeskWorkforceTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bureau-support-desk-workforce", Guid.NewGuid().ToString("n"));
    private static readonly TimeSpan ProcessTimeout = TimeSpan.FromSeconds(90);

    public SupportDeskWorkforceTests() => Directory.CreateDirectory(_dir);

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private static string SampleDir()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Bureau.slnx"))) dir = dir.Parent;
        return Path.Combine(dir?.FullName ?? throw new InvalidOperationException("Bureau.slnx not found"), "samples", "support-desk");
    }

    private static async Task<JsonNode> TaskDoneAsync(HttpClient http, string id, CancellationToken ct)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(90);
        while (true)
        {
            using var res = await http.GetAsync($"/v1/workforce/tasks/{id}", ct);
            if (res.StatusCode == HttpStatusCode.OK)
            {
                var task = JsonNode.Parse(await res.Content.ReadAsStringAsync(ct))!;
                var status = (string)task["status"]!;
                if (status is "succeeded" or "failed" or "canceled") return task;
            }
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"workforce task {id} did not finish within 90 s");
            await Task.Delay(50, ct);
        }
    }

    /// <summary>Sends a ticket to triage; returns billing's task (the one triage delegated) once it is done.</summary>
    private static async Task<JsonNode> TicketAsync(HttpClient http, string id, string text, CancellationToken ct)
    {
        var body = new JsonObject { ["skill"] = "triage", ["input"] = text, ["id"] = id }.ToJsonString();
        using var res = await http.PostAsync("/v1/workforce/tasks", new StringContent(body, Encoding.UTF8, "application/json"), ct);
        Assert.Equal(HttpStatusCode.Accepted, res.StatusCode);
        var triage = await TaskDoneAsync(http, id, ct);
        Assert.Equal(("succeeded", "desk-triage"), ((string)triage["status"]!, (string)triage["agent"]!));
        var delegated = Regex.Match((string)triage["output"]!, @"task (d-\S+) on the desk board");
        Assert.True(delegated.Success, $"triage did not delegate: {triage["output"]}");
        var billing = await TaskDoneAsync(http, delegated.Groups[1].Value, ct);
        Assert.Equal(("succeeded", "desk-billing", "agent:desk-triage"), ((string)billing["status"]!, (string)billing["agent"]!, (string)billing["source"]!));
        return billing;
    }

    [Fact]
    public async Task ASecondTicketFromTheSameCustomer_IsAnsweredWithWhatTheFirstTaught_WithProvenance()
    {
        var ct = TestContext.Current.CancellationToken;
        var db = Path.Combine(_dir, "desk.db");
        var url = $"http://127.0.0.1:{ServeSupport.FreePort()}";
        using var http = new HttpClient { BaseAddress = new Uri(url), Timeout = TimeSpan.FromSeconds(60) };
        var manifest = Path.Combine(SampleDir(), "bureau.yaml");
        var server = BureauProcess.Start(SampleDir(), new Dictionary<string, string>(), "serve", manifest, "--db", db, "--urls", url);
        string firstRun, secondRun;
        try
        {
            await ServeSupport.WaitReadyAsync(http, server, ProcessTimeout, ct);

            var first = await TicketAsync(http, "ticket-1", "From alice@example.com: please send invoices to accounts@acme.test from now on.", ct);
            Assert.Equal("Billing: noted. From now on your invoices go to accounts@acme.test.", (string)first["output"]!);

            var second = await TicketAsync(http, "ticket-2", "From alice@example.com: I did not get my March invoice. Where did it go?", ct);
            var answer = (string)second["output"]!;
            Assert.Contains("invoices go to accounts@acme.test", answer);        // what the first ticket taught
            Assert.Contains($"agent desk-billing, run {first["runId"]}", answer); // and who taught it
            (firstRun, secondRun) = ((string)first["runId"]!, (string)second["runId"]!);

            using var status = await http.GetAsync("/v1/workforce", ct);
            var agents = JsonNode.Parse(await status.Content.ReadAsStringAsync(ct))!["agents"]!.AsArray().ToDictionary(a => (string)a!["name"]!);
            Assert.Equal((2L, 2L), ((long)agents["desk-triage"]!["finished"]!, (long)agents["desk-billing"]!["finished"]!));
        }
        finally
        {
            server.Terminate();
            await server.WaitAsync(ProcessTimeout);
            server.Dispose();
        }

        using var show = BureauProcess.Start(_dir, new Dictionary<string, string>(), "runs", "show", secondRun, "--db", db);
        Assert.Equal(0, await show.WaitAsync(ProcessTimeout));
        Assert.Contains($"recall customer:alice@example.com in team:support-desk: team:support-desk/customer:alice@example.com v1 by desk-billing (run {firstRun})", show.Stdout);
        using var showFirst = BureauProcess.Start(_dir, new Dictionary<string, string>(), "runs", "show", firstRun, "--db", db);
        Assert.Equal(0, await showFirst.WaitAsync(ProcessTimeout));
        Assert.Contains("remember team:support-desk/customer:alice@example.com: written v1", showFirst.Stdout);
        TestContext.Current.TestOutputHelper?.WriteLine(show.Stdout);
    }
}
