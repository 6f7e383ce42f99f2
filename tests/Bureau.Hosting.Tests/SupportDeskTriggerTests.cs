using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Xunit;

namespace Bureau.Hosting.Tests;

/// <summary>
/// The support-desk sample's triggers, on its own manifest: GitHub's example payloads (Fixtures/octokit, from the
/// @octokit/webhooks-examples package) start triage, a Slack mention starts triage, and triage's emit tool escalates a
/// ticket on the bus, where the resolution team picks it up (an event chain).
/// </summary>
public sealed class SupportDeskTriggerTests : IAsyncDisposable
{
    private const string DevSecret = "dev-only-not-a-secret"; // the manifest's default when the environment sets none
    private readonly TestHost _host = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask DisposeAsync() => _host.DisposeAsync();

    private static string RepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Bureau.slnx"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("Bureau.slnx not found above " + AppContext.BaseDirectory);
    }

    private Task StartAsync() => _host.StartAsync(b => b.AddManifest(Path.Combine(RepoRoot(), "samples", "support-desk", "bureau.yaml")));

    private static byte[] Fixture(string name) => File.ReadAllBytes(Path.Combine(RepoRoot(), "tests", "Bureau.Hosting.Tests", "Fixtures", "octokit", name));

    private static HttpRequestMessage GitHub(byte[] body, string ev, string delivery)
    {
        var req = new HttpRequestMessage(HttpMethod.Post, "/v1/hooks/github-issues") { Content = new ByteArrayContent(body) };
        req.Content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
        req.Headers.Add("X-Hub-Signature-256", "sha256=" + Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(DevSecret), body)));
        req.Headers.Add("X-GitHub-Event", ev);
        req.Headers.Add("X-GitHub-Delivery", delivery);
        return req;
    }

    [Fact]
    public async Task GitHubExamplePayloads_OpenedStartsTriage_LabeledIgnored_PingPong()
    {
        await StartAsync();
        using var ping = await _host.Client.SendAsync(GitHub(Fixture("ping.json"), "ping", "p-1"), Ct);
        Assert.Equal("pong", (string?)(await Http.BodyAsync(ping))["status"]);

        using var labeled = await _host.Client.SendAsync(GitHub(Fixture("issues.labeled.json"), "issues", "d-2"), Ct);
        Assert.Equal(HttpStatusCode.OK, labeled.StatusCode);
        Assert.Equal("ignored", (string?)(await Http.BodyAsync(labeled))["status"]);

        using var opened = await _host.Client.SendAsync(GitHub(Fixture("issues.opened.json"), "issues", "d-1"), Ct);
        Assert.Equal(HttpStatusCode.Accepted, opened.StatusCode);
        var run = await _host.WaitAsync((string)(await Http.BodyAsync(opened))["run"]!["id"]!);
        Assert.Equal(("triage", "Spelling error in the README file: It looks like you accidently spelled 'commit' with two 't's.", "trigger:github-issues"),
            (run.Agent, run.Input, run.Actor));
        Assert.True(run.Status == RunStatus.Succeeded, $"{run.Status}: {run.Error}");
        Assert.Contains("email address", run.Output); // no email in the issue: triage asks for it
    }

    [Fact]
    public async Task SlackMention_StartsTriageOnTheMessageText()
    {
        await StartAsync();
        // The shape of Slack's Events API app_mention callback (api.slack.com/events/app_mention).
        var body = """
            {"token":"XXYYZZ","team_id":"T123ABC456","api_app_id":"A123ABC456","type":"event_callback","event_id":"Ev123ABC456","event_time":1515449522,
             "event":{"type":"app_mention","user":"U123ABC456","text":"<@U0LAN0Z89> is the refund for order 1001 done?","ts":"1515449522.000016","channel":"C123ABC456","event_ts":"1515449522000016"}}
            """;
        var ts = DateTimeOffset.UtcNow.ToUnixTimeSeconds().ToString(System.Globalization.CultureInfo.InvariantCulture);
        var req = new HttpRequestMessage(HttpMethod.Post, "/v1/hooks/slack-mentions") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        req.Headers.Add("X-Slack-Request-Timestamp", ts);
        req.Headers.Add("X-Slack-Signature", "v0=" + Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(DevSecret), Encoding.UTF8.GetBytes($"v0:{ts}:{body}"))));
        using var res = await _host.Client.SendAsync(req, Ct);
        Assert.Equal(HttpStatusCode.Accepted, res.StatusCode);
        var run = await _host.WaitAsync((string)(await Http.BodyAsync(res))["run"]!["id"]!);
        Assert.Equal(("triage", "<@U0LAN0Z89> is the refund for order 1001 done?"), (run.Agent, run.Input));
    }

    [Fact]
    public async Task TriageEscalates_EmitStartsTheResolutionTeam()
    {
        await StartAsync();
        var triage = await _host.Engine.SubmitAsync(new RunRequest("triage", "Please escalate: I was charged twice for order 1001 and the app shows an error"), Ct);
        var done = await _host.WaitAsync(triage.Run.Id);
        Assert.True(done.Status == RunStatus.Succeeded, $"{done.Status}: {done.Error} {done.WaitingFor} {string.Join(" / ", (await _host.Engine.ReadJournalAsync(done.Id, cancellationToken: Ct)).Select(r => r.Entry.ToString()))}");
        Assert.Contains("escalated to the resolution team", done.Output);

        var chained = (await _host.Engine.ListRunsAsync(new RunQuery { IdempotencyKeyPrefix = $"event:{triage.Run.Id}:" }, Ct)).Items;
        var teamRunId = Assert.Single(chained).Id;
        using (var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct))
        {
            timeout.CancelAfter(TimeSpan.FromSeconds(30));
            await foreach (var _ in _host.Engine.WatchAsync(teamRunId, cancellationToken: timeout.Token)) { } // a team waits while its members run: until it ends
        }
        var resolution = (await _host.Engine.GetRunAsync(teamRunId, Ct))!;
        Assert.Equal(("resolution", "trigger:ticket-escalated", "Please escalate: I was charged twice for order 1001 and the app shows an error"),
            (resolution.Agent, resolution.Actor, resolution.Input));
        Assert.True(resolution.Status == RunStatus.Succeeded, $"{resolution.Status}: {resolution.Error}");

        // The tree, as the runs list shows it: specialists (a router) then reply (writer and reviewer).
        async Task<IReadOnlyList<RunRecord>> ChildrenAsync(string parent) => (await _host.Engine.ListRunsAsync(new RunQuery { ParentRunId = parent }, Ct)).Items;
        var stages = await ChildrenAsync(teamRunId);
        Assert.Equal(["reply", "specialists"], stages.Select(c => c.Agent).Order());
        Assert.All(stages, c => Assert.Equal((RunKinds.Team, RunStatus.Succeeded, teamRunId), (c.Kind, c.Status, c.RootRunId)));

        // The ticket is about a charge and an app error: the planner routed it to both specialists, and both ran as children.
        var specialists = await ChildrenAsync(stages.Single(c => c.Agent == "specialists").Id);
        Assert.Equal(["billing", "planner", "technical"], specialists.Select(c => c.Agent).Order());
        Assert.All(specialists, c => Assert.Equal(RunStatus.Succeeded, c.Status));

        // The reviewer sent a draft back at least once, its feedback reached the writer, and it approved the last one.
        var reply = await ChildrenAsync(stages.Single(c => c.Agent == "reply").Id);
        var reviews = reply.Where(c => c.Agent == "reviewer").ToList();
        var sentBack = reviews.Where(r => !r.Output!.TrimStart().StartsWith("APPROVED", StringComparison.OrdinalIgnoreCase)).ToList();
        Assert.NotEmpty(sentBack);
        Assert.Contains(reviews, r => r.Output!.TrimStart().StartsWith("APPROVED", StringComparison.OrdinalIgnoreCase));
        var writers = reply.Where(c => c.Agent == "writer").ToList();
        Assert.Equal(reviews.Count, writers.Count); // one draft per round
        Assert.Contains(writers, w => w.Input.Contains(sentBack[0].Output!, StringComparison.Ordinal));
        Assert.Contains(writers, w => w.Output == stages.Single(c => c.Agent == "reply").Output); // the team's answer is the approved draft
    }

    [Fact]
    public async Task NightlySummary_IsAQueueOneScheduleOfTheSummarizer()
    {
        await StartAsync();
        var nightly = Assert.IsType<ScheduleTriggerDefinition>(_host.Engine.Definitions.Triggers["nightly-summary"]);
        Assert.Equal(("summarizer", "0 2 * * *", CatchUpPolicy.Once, OverlapPolicy.QueueOne), (nightly.Agent, nightly.Cron, nightly.CatchUp, nightly.Overlap));
    }
}
