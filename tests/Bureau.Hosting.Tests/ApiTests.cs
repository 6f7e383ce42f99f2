using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Bureau.Hosting.Tests;

public sealed class AnonymousHostFixture : IAsyncLifetime
{
    public TestHost Host { get; } = new();
    public ValueTask InitializeAsync() => new(Host.StartAsync());
    public ValueTask DisposeAsync() => Host.DisposeAsync();
}

/// <summary>Every route and error of /v1 on a host without keys (loopback clients have every right).</summary>
public sealed class ApiTests(AnonymousHostFixture fixture) : IClassFixture<AnonymousHostFixture>
{
    private TestHost Host => fixture.Host;
    private HttpClient Client => fixture.Host.Client;
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private async Task<JsonObject> SubmitAsync(string agent, string input, string? idempotencyKey = null, HttpStatusCode expected = HttpStatusCode.Accepted)
    {
        var req = Http.Json(HttpMethod.Post, "/v1/runs", new JsonObject { ["agent"] = agent, ["input"] = input }.ToJsonString());
        if (idempotencyKey is not null) req.Headers.Add("Idempotency-Key", idempotencyKey);
        using var res = await Client.SendAsync(req, Ct);
        Assert.True(expected == res.StatusCode, $"{res.StatusCode}: {await res.Content.ReadAsStringAsync(Ct)}");
        return await Http.BodyAsync(res);
    }

    private async Task<RunRecord> WaitAsync(string id)
    {
        return await Host.WaitAsync(id);
    }

    [Fact]
    public async Task PostRuns_ValidBody_Returns202WithLocationAndIsDurable()
    {
        var req = Http.Json(HttpMethod.Post, "/v1/runs", """{"agent":"echo","input":"hello"}""");
        using var res = await Client.SendAsync(req, Ct);
        Assert.Equal(HttpStatusCode.Accepted, res.StatusCode);
        var body = await Http.BodyAsync(res);
        var id = (string)body["id"]!;
        Assert.Equal($"/v1/runs/{id}", res.Headers.Location!.ToString());
        Assert.Equal("echo", (string?)body["agent"]);
        Assert.NotNull(await Host.Engine.Store.GetRunAsync(id, Ct)); // in the store when the 202 came back
        var run = await WaitAsync(id);
        Assert.Equal(RunStatus.Succeeded, run.Status);
        Assert.Equal("echo: hello", run.Output);
    }

    [Fact]
    public async Task GetRun_Finished_ReturnsTheRunsShowDocument()
    {
        var id = (string)(await SubmitAsync("echo", "doc"))["id"]!;
        var run = await WaitAsync(id);
        using var res = await Client.GetAsync($"/v1/runs/{id}", Ct);
        Assert.Equal(HttpStatusCode.OK, res.StatusCode);
        var doc = await Http.BodyAsync(res);
        var expected = RunDocuments.Full(run, await Host.Engine.ReadJournalAsync(id, 0, Ct));
        Assert.True(JsonNode.DeepEquals(expected, doc), $"expected {expected.ToJsonString()}\nactual {doc.ToJsonString()}");
        Assert.Equal("succeeded", (string?)doc["status"]);
        Assert.Equal("echo: doc", (string?)doc["output"]);
        var steps = doc["steps"]!.AsArray();
        Assert.Equal(Enumerable.Range(1, steps.Count).Select(i => (long)i), steps.Select(s => (long)s!["n"]!));
        Assert.Equal("run.started", (string?)steps[0]!["kind"]);
        Assert.Equal("run.finished", (string?)steps[^1]!["kind"]);
    }

    [Fact]
    public async Task PostRuns_SameIdempotencyKey_ReturnsSameRunWith200AndStartsNothing()
    {
        var key = "idem-" + Guid.NewGuid().ToString("n");
        var first = await SubmitAsync("pager", "same", key, HttpStatusCode.Accepted);
        var second = await SubmitAsync("pager", "same", key, HttpStatusCode.OK);
        Assert.Equal((string?)first["id"], (string?)second["id"]);
        var page = await Host.Engine.ListRunsAsync(new RunQuery { Agent = "pager", Limit = 1000 }, Ct);
        Assert.Single(page.Items, r => r.Input == "same");
    }

    [Fact]
    public async Task PostRuns_IdempotencyKeyReusedWithOtherInput_Returns409AndStartsNothing()
    {
        var key = "idem-" + Guid.NewGuid().ToString("n");
        var first = await SubmitAsync("echo", "one", key);
        var req = Http.Json(HttpMethod.Post, "/v1/runs", """{"agent":"echo","input":"two"}""");
        req.Headers.Add("Idempotency-Key", key);
        using var res = await Client.SendAsync(req, Ct);
        await Http.ProblemAsync(res, 409, "Idempotency-Key", (string)first["id"]!);
        var all = await Host.Engine.ListRunsAsync(new RunQuery { Agent = "echo", Limit = 1000 }, Ct);
        Assert.DoesNotContain(all.Items, r => r.Input == "two");
    }

    public static TheoryData<string, string, int, string> BadSubmissions => new()
    {
        { """{"input":"x"}""", "application/json", 400, "agent" },
        { """{"agent":"echo"}""", "application/json", 400, "input" },
        { """{"agent":"echo","input":42}""", "application/json", 400, "input" },
        { """{"agent":["echo"],"input":"x"}""", "application/json", 400, "agent" },
        { """{"agent":"echo","input":"x","inptu":"y"}""", "application/json", 400, "inptu" },
        { """{"agent":"echo","input":""" , "application/json", 400, "body" },
        { """[1,2]""", "application/json", 400, "body" },
        { "", "application/json", 400, "body" },
        { """{"agent":"echo","input":"x"}""", "text/plain", 415, "Content-Type" },
        { """{"agent":"nobody","input":"x"}""", "application/json", 404, "agent" },
        { """{"agent":"echo","input":"  "}""", "application/json", 400, "input" },
    };

    [Theory]
    [MemberData(nameof(BadSubmissions))]
    public async Task PostRuns_BadRequest_ProblemNamesTheFieldAndNothingStarts(string body, string contentType, int status, string field)
    {
        var before = (await Host.Engine.ListRunsAsync(new RunQuery { Limit = 1 }, Ct)).Items.FirstOrDefault()?.Id;
        var req = new HttpRequestMessage(HttpMethod.Post, "/v1/runs") { Content = new StringContent(body, Encoding.UTF8, contentType) };
        using var res = await Client.SendAsync(req, Ct);
        await Http.ProblemAsync(res, status, field);
        var latest = await Host.Engine.ListRunsAsync(new RunQuery { Limit = 50 }, Ct);
        Assert.DoesNotContain(latest.Items, r => r.Agent == "nobody");
        Assert.DoesNotContain(latest.Items, r => r.Input == "x");
        _ = before;
    }

    [Fact]
    public async Task PostRuns_InvalidJson_DetailSaysWhereAndWhy_InPlainWords()
    {
        var req = new HttpRequestMessage(HttpMethod.Post, "/v1/runs") { Content = new StringContent("{\"agent\":\"echo\",\n \"input\":\"x\",}", Encoding.UTF8, "application/json") };
        using var res = await Client.SendAsync(req, Ct);

        var problem = await Http.ProblemAsync(res, 400, "body");
        var detail = (string?)problem["detail"];
        Assert.StartsWith("the body is not valid JSON at line 2, position 14: ", detail); // the } after the trailing comma, counted from 1
        Assert.DoesNotContain("LineNumber", detail);
    }

    [Fact]
    public async Task ListRuns_ACursorThisApiDidNotReturn_SaysWhatACursorIs_Once()
    {
        using var res = await Client.GetAsync("/v1/runs?cursor=zzz", Ct);

        var problem = await Http.ProblemAsync(res, 400, "cursor");
        Assert.Equal("cursor 'zzz' is not one this API returned: pass a page's \"next\" as it came, or no cursor for the first page", (string?)problem["detail"]);
    }

    [Fact]
    public async Task PostRuns_BodyOverLimit_Returns413AndChangesNothing()
    {
        var input = new string('a', 70 * 1024); // the test host's limit is 64 KiB
        var req = Http.Json(HttpMethod.Post, "/v1/runs", new JsonObject { ["agent"] = "echo", ["input"] = input }.ToJsonString());
        using var res = await Client.SendAsync(req, Ct);
        await Http.ProblemAsync(res, 413, "body");
        var runs = await Host.Engine.ListRunsAsync(new RunQuery { Limit = 1000 }, Ct);
        Assert.DoesNotContain(runs.Items, r => r.Input.Length == input.Length);
    }

    [Fact]
    public async Task PostRuns_ChunkedBodyOverLimit_Returns413()
    {
        var input = new string('b', 70 * 1024);
        var content = new StreamContent(new MemoryStream(Encoding.UTF8.GetBytes(new JsonObject { ["agent"] = "echo", ["input"] = input }.ToJsonString())));
        content.Headers.ContentType = new("application/json");
        var req = new HttpRequestMessage(HttpMethod.Post, "/v1/runs") { Content = content };
        req.Headers.TransferEncodingChunked = true;
        using var res = await Client.SendAsync(req, Ct);
        await Http.ProblemAsync(res, 413, "body");
    }

    [Fact]
    public async Task GetRun_Unknown_Returns404NamingTheRun()
    {
        using var res = await Client.GetAsync("/v1/runs/nosuchrun", Ct);
        await Http.ProblemAsync(res, 404, runId: "nosuchrun");
    }

    [Fact]
    public async Task ListRuns_PagesWithCursor_CoverEveryRunOnceNewestFirst()
    {
        var agent = "pager";
        var mine = new List<string>();
        for (var i = 0; i < 5; i++) mine.Add((string)(await SubmitAsync(agent, $"page-{i}"))["id"]!);
        var seen = new List<string>();
        string? cursor = null;
        var pages = 0;
        do
        {
            using var res = await Client.GetAsync($"/v1/runs?agent={agent}&limit=2" + (cursor is null ? "" : "&cursor=" + Uri.EscapeDataString(cursor)), Ct);
            Assert.Equal(HttpStatusCode.OK, res.StatusCode);
            var page = await Http.BodyAsync(res);
            var items = page["items"]!.AsArray();
            Assert.True(items.Count <= 2);
            Assert.All(items, i => Assert.Equal(agent, (string?)i!["agent"]));
            Assert.All(items, i => Assert.Null(i!["steps"]));
            seen.AddRange(items.Select(i => (string)i!["id"]!));
            cursor = (string?)page["next"];
            pages++;
        }
        while (cursor is not null && pages < 100);
        Assert.Equal(seen.Count, seen.Distinct().Count());
        Assert.Superset(mine.ToHashSet(), seen.ToHashSet());
        var myOrder = seen.Where(mine.Contains).ToList();
        Assert.Equal(Enumerable.Reverse(mine), myOrder); // newest first
        Assert.True(pages >= 3);
    }

    [Fact]
    public async Task ListRuns_StatusFilter_ReturnsOnlyThatStatus()
    {
        var id = (string)(await SubmitAsync("echo", "filter"))["id"]!;
        await WaitAsync(id);
        using var res = await Client.GetAsync("/v1/runs?status=succeeded&agent=echo&limit=1000", Ct);
        var items = (await Http.BodyAsync(res))["items"]!.AsArray();
        Assert.Contains(items, i => (string?)i!["id"] == id);
        Assert.All(items, i => Assert.Equal("succeeded", (string?)i!["status"]));
    }

    [Theory]
    [InlineData("status=done", "status")]
    [InlineData("limit=0", "limit")]
    [InlineData("limit=abc", "limit")]
    [InlineData("limit=5000", "limit")]
    [InlineData("cursor=not-a-cursor", "cursor")]
    public async Task ListRuns_BadQuery_Returns400NamingTheParameter(string query, string field)
    {
        using var res = await Client.GetAsync("/v1/runs?" + query, Ct);
        await Http.ProblemAsync(res, 400, field);
    }

    [Fact]
    public async Task Cancel_RunningRun_Returns202AndTheRunEndsCanceled()
    {
        var id = (string)(await SubmitAsync("slow", "cancel-me"))["id"]!;
        using var res = await Client.SendAsync(Http.Json(HttpMethod.Post, $"/v1/runs/{id}/cancel", """{"reason":"changed my mind"}"""), Ct);
        Assert.Equal(HttpStatusCode.Accepted, res.StatusCode);
        var run = await WaitAsync(id);
        Assert.Equal(RunStatus.Canceled, run.Status);
        var journal = await Host.Engine.ReadJournalAsync(id, 0, Ct);
        var canceled = journal.Select(j => j.Entry).OfType<RunCanceled>().Single();
        Assert.Equal(("changed my mind", "loopback"), (canceled.Reason, canceled.Actor));
    }

    [Fact]
    public async Task Cancel_WithoutBody_Returns202()
    {
        var id = (string)(await SubmitAsync("slow", "cancel-no-body"))["id"]!;
        using var res = await Client.PostAsync($"/v1/runs/{id}/cancel", null, Ct);
        Assert.Equal(HttpStatusCode.Accepted, res.StatusCode);
        Assert.Equal(RunStatus.Canceled, (await WaitAsync(id)).Status);
    }

    [Fact]
    public async Task Cancel_FinishedRun_Returns409NamingTheRun()
    {
        var id = (string)(await SubmitAsync("echo", "done-already"))["id"]!;
        await WaitAsync(id);
        using var res = await Client.PostAsync($"/v1/runs/{id}/cancel", null, Ct);
        var problem = await Http.ProblemAsync(res, 409, runId: id);
        Assert.Equal("succeeded", (string?)problem["runStatus"]);
    }

    [Fact]
    public async Task Cancel_UnknownRun_Returns404()
    {
        using var res = await Client.PostAsync("/v1/runs/nosuchrun/cancel", null, Ct);
        await Http.ProblemAsync(res, 404, runId: "nosuchrun");
    }

    [Fact]
    public async Task Resolve_RunNotWaiting_Returns409WithRunAndStep()
    {
        var id = (string)(await SubmitAsync("echo", "not-waiting"))["id"]!;
        await WaitAsync(id);
        using var res = await Client.SendAsync(Http.Json(HttpMethod.Post, $"/v1/runs/{id}/resolve", """{"step":3,"as":"done","result":"ok"}"""), Ct);
        var problem = await Http.ProblemAsync(res, 409, runId: id);
        Assert.Equal(3, (long)problem["step"]!);
    }

    [Theory]
    [InlineData("""{"as":"done"}""", "step")]
    [InlineData("""{"step":"three","as":"done"}""", "step")]
    [InlineData("""{"step":0,"as":"done"}""", "step")]
    [InlineData("""{"step":3}""", "as")]
    [InlineData("""{"step":3,"as":"maybe"}""", "as")]
    [InlineData("""{"step":3,"as":"done","result":7}""", "result")]
    public async Task Resolve_BadBody_Returns400NamingTheField(string body, string field)
    {
        var id = (string)(await SubmitAsync("echo", "resolve-bad"))["id"]!;
        using var res = await Client.SendAsync(Http.Json(HttpMethod.Post, $"/v1/runs/{id}/resolve", body), Ct);
        await Http.ProblemAsync(res, 400, field);
    }

    [Fact]
    public async Task Resolve_UnknownRun_Returns404()
    {
        using var res = await Client.SendAsync(Http.Json(HttpMethod.Post, "/v1/runs/nosuchrun/resolve", """{"step":3,"as":"retry"}"""), Ct);
        await Http.ProblemAsync(res, 404, runId: "nosuchrun");
    }

    [Fact]
    public async Task Agents_ListAndGet_DescribeWhatIsDeployed()
    {
        using var list = await Client.GetAsync("/v1/agents", Ct);
        var items = (await Http.BodyAsync(list))["items"]!.AsArray();
        Assert.Equal(["echo", "pager", "slow"], items.Select(i => (string)i!["name"]!));
        using var one = await Client.GetAsync("/v1/agents/slow", Ct);
        var agent = await Http.BodyAsync(one);
        Assert.Equal(("gate", "Wait for the gate.", "custom"), ((string?)agent["model"], (string?)agent["instructions"], (string?)agent["provider"]));
        using var missing = await Client.GetAsync("/v1/agents/nobody", Ct);
        await Http.ProblemAsync(missing, 404, "name");
    }

    [Fact]
    public async Task Health_LiveAndReady_Return200()
    {
        using var live = await Client.GetAsync("/healthz", Ct);
        Assert.Equal(HttpStatusCode.OK, live.StatusCode);
        using var ready = await Client.GetAsync("/readyz", Ct);
        Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
        Assert.Equal("ready", (string?)(await Http.BodyAsync(ready))["status"]);
    }

    [Fact]
    public async Task OpenApi_Document_ListsEveryRoute()
    {
        using var res = await Client.GetAsync("/openapi/v1.json", Ct);
        Assert.Equal(HttpStatusCode.OK, res.StatusCode);
        var paths = (await Http.BodyAsync(res))["paths"]!.AsObject();
        foreach (var p in new[] { "/v1/runs", "/v1/runs/{id}", "/v1/runs/{id}/cancel", "/v1/runs/{id}/resolve", "/v1/runs/{id}/events", "/v1/agents", "/v1/agents/{name}", "/v1/keys", "/v1/keys/{id}" })
            Assert.True(paths.ContainsKey(p), $"{p} is missing from the OpenAPI document: {string.Join(", ", paths.Select(x => x.Key))}");
    }

    [Fact]
    public async Task Keys_WithoutKeysLoopbackIsAdmin_CreateListRevoke()
    {
        // Uses its own host: creating a key switches the host to keys-required.
        await using var host = new TestHost();
        await host.StartAsync();
        using var created = await host.Client.SendAsync(Http.Json(HttpMethod.Post, "/v1/keys", """{"role":"viewer","name":"dash"}"""), Ct);
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var key = await Http.BodyAsync(created);
        var text = (string)key["key"]!;
        Assert.StartsWith("bk_" + (string)key["id"]! + "_", text);
        // Now a key exists: anonymous loopback is over.
        using var anonymous = await host.Client.GetAsync("/v1/runs", Ct);
        await Http.ProblemAsync(anonymous, 401, "Authorization");
        using var withKey = await host.Client.SendAsync(Http.Get("/v1/runs", text), Ct);
        Assert.Equal(HttpStatusCode.OK, withKey.StatusCode);
        var stored = await host.App.Services.GetRequiredService<IApiKeyStore>().FindAsync((string)key["id"]!, Ct);
        Assert.Equal(ApiKeys.Hash(text), stored!.Hash);
        Assert.DoesNotContain(text, File.ReadAllText(host.Db + "-wal", Encoding.Latin1) + File.ReadAllText(host.Db, Encoding.Latin1));
    }
}
