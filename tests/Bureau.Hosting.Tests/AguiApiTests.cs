using System.Net;
using System.Text.Json.Nodes;
using Xunit;

namespace Bureau.Hosting.Tests;

/// <summary>
/// AG-UI on the wire (in memory): a team's members as steps, an interrupt that names the member run waiting for
/// approval, resume by an approver only, and bad inputs refused with the field named and nothing started.
/// (Every event against AG-UI's own schemas and client: InteropClientTests.)
/// </summary>
public sealed class AguiApiTests : IAsyncDisposable
{
    private readonly TestHost _host = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask DisposeAsync() => _host.DisposeAsync();

    private static string Input(string threadId, string runId, string text) =>
        new JsonObject
        {
            ["threadId"] = threadId, ["runId"] = runId, ["state"] = new JsonObject(), ["tools"] = new JsonArray(), ["context"] = new JsonArray(),
            ["messages"] = new JsonArray(new JsonObject { ["id"] = "u1", ["role"] = "user", ["content"] = text }),
        }.ToJsonString();

    private async Task<List<JsonObject>> StreamAsync(HttpRequestMessage request)
    {
        using var res = await _host.Client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, Ct);
        Assert.True(res.StatusCode == HttpStatusCode.OK, await res.Content.ReadAsStringAsync(Ct));
        Assert.Equal("text/event-stream", res.Content.Headers.ContentType?.MediaType);
        using var sse = new SseReader(await res.Content.ReadAsStreamAsync(Ct));
        var events = new List<JsonObject>();
        while (await sse.NextAsync(Ct) is { } e) if (e.Event != ":comment") events.Add(e.Json);
        return events;
    }

    [Fact]
    public async Task Team_MembersAreSteps_InterruptNamesTheWaitingMember_ResumeFinishesIt()
    {
        await _host.StartAsync(OpenAiApiTests.Configure);
        var events = await StreamAsync(Http.Json(HttpMethod.Post, "/v1/agents/desk/agui", Input("t1", "r1", "refund order 9")));
        var types = events.Select(e => (string)e["type"]!).ToList();
        Assert.Equal("RUN_STARTED", types[0]);
        Assert.Equal("RUN_FINISHED", types[^1]);
        var steps = events.Where(e => (string?)e["type"] is "STEP_STARTED").Select(e => (string)e["stepName"]!).ToList();
        Assert.Equal(2, steps.Count);
        Assert.Contains(" echo (run ", steps[0]);
        Assert.Contains(" refunder (run ", steps[1]);
        Assert.Equal(steps, events.Where(e => (string?)e["type"] is "STEP_FINISHED").Select(e => (string)e["stepName"]!));
        var teamRunId = (string)events[0]["metadata"]!["bureau"]!["runId"]!;
        var interrupt = events[^1]["outcome"]!["interrupts"]![0]!;
        Assert.Equal("interrupt", (string?)events[^1]["outcome"]!["type"]);
        Assert.True((bool)events[^1]["metadata"]!["bureau"]!["scripted"]!);   // refunder answers with the scripted model: labelled
        var memberRunId = (string)interrupt["metadata"]!["bureau"]!["runId"]!;
        Assert.Equal(teamRunId, (await _host.Engine.GetRunAsync(memberRunId, Ct))!.ParentRunId);
        Assert.StartsWith(memberRunId + ":", (string)interrupt["id"]!);

        var resume = new JsonObject
        {
            ["threadId"] = "t1", ["runId"] = "r2", ["messages"] = new JsonArray(),
            ["resume"] = new JsonArray(new JsonObject { ["interruptId"] = (string)interrupt["id"]!, ["status"] = "resolved", ["payload"] = new JsonObject { ["approved"] = true } }),
        };
        var resumed = await StreamAsync(Http.Json(HttpMethod.Post, "/v1/agents/desk/agui", resume.ToJsonString()));
        Assert.Equal(("RUN_STARTED", "r2"), ((string)resumed[0]["type"]!, (string)resumed[0]["runId"]!));
        var last = resumed[^1];
        Assert.Equal(("RUN_FINISHED", "success", "done: refunded 250"), ((string)last["type"]!, (string)last["outcome"]!["type"]!, (string)last["result"]!));
        Assert.Equal("done: refunded 250", string.Concat(resumed.Where(e => (string?)e["type"] == "TEXT_MESSAGE_CONTENT").Select(e => (string)e["delta"]!)));
        Assert.Equal(RunStatus.Succeeded, (await _host.Engine.GetRunAsync(teamRunId, Ct))!.Status);
    }

    [Fact]
    public async Task GetRunAgui_ReplaysAFinishedRun_UnknownRunIs404()
    {
        await _host.StartAsync();
        using var start = await _host.Client.SendAsync(Http.Json(HttpMethod.Post, "/v1/runs", """{"agent":"echo","input":"replay me"}"""), Ct);
        var runId = (string)(await Http.BodyAsync(start))["id"]!;
        await _host.WaitAsync(runId);
        var events = await StreamAsync(Http.Get($"/v1/runs/{runId}/agui"));
        Assert.Equal(["RUN_STARTED", "STEP_STARTED", "TEXT_MESSAGE_START", "TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_END", "STEP_FINISHED", "RUN_FINISHED"],
            events.Select(e => (string)e["type"]!));
        Assert.Equal((runId, runId), ((string)events[0]["threadId"]!, (string)events[0]["runId"]!));
        Assert.Equal("echo: replay me", (string?)events[3]["delta"]);
        var stamps = events.Select(e => (long)e["timestamp"]!).ToList();
        Assert.Equal(stamps.Order(), stamps); // a replay's events carry the journal's times, in order
        using var missing = await _host.Client.GetAsync("/v1/runs/nope/agui", Ct);
        await Http.ProblemAsync(missing, 404, runId: "nope");
    }

    [Fact]
    public async Task BadInputs_ProblemNamingTheField_NothingStarted_ResumeNeedsAnApprover()
    {
        await _host.StartAsync(OpenAiApiTests.Configure);
        using (var res = await _host.Client.SendAsync(Http.Json(HttpMethod.Post, "/v1/agents/echo/agui", """{"runId":"r","messages":[]}"""), Ct))
            await Http.ProblemAsync(res, 400, "threadId");
        using (var res = await _host.Client.SendAsync(Http.Json(HttpMethod.Post, "/v1/agents/echo/agui",
                   """{"threadId":"t","runId":"r","messages":[{"id":"a","role":"assistant","content":"hi"}]}"""), Ct))
            await Http.ProblemAsync(res, 400, "messages[0].role");
        using (var res = await _host.Client.SendAsync(Http.Json(HttpMethod.Post, "/v1/agents/nobody/agui", Input("t", "r", "x")), Ct))
            await Http.ProblemAsync(res, 404, "agent");
        using (var res = await _host.Client.SendAsync(Http.Json(HttpMethod.Post, "/v1/agents/echo/agui",
                   """{"threadId":"t","runId":"r","messages":[],"resume":[{"interruptId":"nope:3","status":"resolved","payload":{"approved":true}}]}"""), Ct))
            await Http.ProblemAsync(res, 404, "resume[0].interruptId");
        using (var res = await _host.Client.SendAsync(Http.Json(HttpMethod.Post, "/v1/agents/echo/agui",
                   """{"threadId":"t","runId":"r","messages":[],"resume":[{"interruptId":"x:1","status":"maybe"}]}"""), Ct))
            await Http.ProblemAsync(res, 400, "resume[0].status");
        Assert.Empty((await _host.Engine.ListRunsAsync(new RunQuery(), Ct)).Items);

        var operatorKey = await _host.CreateKeyAsync(ApiKeyRole.Operator);
        var approverKey = await _host.CreateKeyAsync(ApiKeyRole.Approver);
        var viewerKey = await _host.CreateKeyAsync(ApiKeyRole.Viewer);
        using (var forbidden = await _host.Client.SendAsync(Http.Json(HttpMethod.Post, "/v1/agents/echo/agui",
                   """{"threadId":"t","runId":"r","messages":[],"resume":[{"interruptId":"x:1","status":"resolved","payload":{"approved":true}}]}""", operatorKey), Ct))
            await Http.ProblemAsync(forbidden, 403, "resume");
        using (var forbidden = await _host.Client.SendAsync(Http.Json(HttpMethod.Post, "/v1/agents/echo/agui", Input("t", "r", "x"), approverKey), Ct))
            await Http.ProblemAsync(forbidden, 403);
        using (var forbidden = await _host.Client.SendAsync(Http.Json(HttpMethod.Post, "/v1/agents/echo/agui", Input("t", "r", "x"), viewerKey), Ct))
            await Http.ProblemAsync(forbidden, 403);
        Assert.Empty((await _host.Engine.ListRunsAsync(new RunQuery(), Ct)).Items);

        // An operator starts the run; an approver (not an operator) answers its interrupt and follows it to the end.
        var waiting = await StreamAsync(Http.Json(HttpMethod.Post, "/v1/agents/refunder/agui", Input("t2", "r1", "refund order 5"), operatorKey));
        var interruptId = (string)waiting[^1]["outcome"]!["interrupts"]![0]!["id"]!;
        var resume = new JsonObject
        {
            ["threadId"] = "t2", ["runId"] = "r2", ["messages"] = new JsonArray(),
            ["resume"] = new JsonArray(new JsonObject { ["interruptId"] = interruptId, ["status"] = "resolved", ["payload"] = new JsonObject { ["approved"] = false, ["reason"] = "not this one" } }),
        };
        var resumed = await StreamAsync(Http.Json(HttpMethod.Post, "/v1/agents/refunder/agui", resume.ToJsonString(), approverKey));
        Assert.Equal("success", (string?)resumed[^1]["outcome"]!["type"]);
        var rejected = resumed.Single(e => (string?)e["type"] == "TOOL_CALL_RESULT");
        Assert.Equal((string)waiting[^1]["outcome"]!["interrupts"]![0]!["toolCallId"]!, (string?)rejected["toolCallId"]);
    }

    [Fact]
    public async Task Resume_WithAnEditTheToolRefuses_Is400NamingIt_TheInterruptStaysOpen()
    {
        await _host.StartAsync(b => b.AddScriptedRefunder(editableArguments: true));
        var waiting = await StreamAsync(Http.Json(HttpMethod.Post, "/v1/agents/refunder/agui", Input("t", "r1", "refund order 5")));
        var interruptId = (string)waiting[^1]["outcome"]!["interrupts"]![0]!["id"]!;
        string Resume(JsonObject payload) => new JsonObject
        {
            ["threadId"] = "t", ["runId"] = "r2", ["messages"] = new JsonArray(),
            ["resume"] = new JsonArray(new JsonObject { ["interruptId"] = interruptId, ["status"] = "resolved", ["payload"] = payload }),
        }.ToJsonString();

        using (var refused = await _host.Client.SendAsync(Http.Json(HttpMethod.Post, "/v1/agents/refunder/agui",
                   Resume(new JsonObject { ["approved"] = true, ["arguments"] = new JsonObject { ["amount"] = "lots" } })), Ct))
        {
            var problem = await Http.ProblemAsync(refused, 400, "resume[0].payload.arguments");
            Assert.Contains("invalid arguments for tool 'refund'", (string?)problem["detail"]);
        }
        Assert.Single(await _host.Engine.ListApprovalsAsync(cancellationToken: Ct)); // still open: nothing was decided

        var resumed = await StreamAsync(Http.Json(HttpMethod.Post, "/v1/agents/refunder/agui",
            Resume(new JsonObject { ["approved"] = true, ["arguments"] = new JsonObject { ["amount"] = 120 } })));
        Assert.Equal("done: refunded 120", string.Concat(resumed.Where(e => (string?)e["type"] == "TEXT_MESSAGE_CONTENT").Select(e => (string)e["delta"]!)));
    }
}
