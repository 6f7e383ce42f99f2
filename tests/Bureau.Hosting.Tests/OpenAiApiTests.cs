using System.Net;
using System.Text.Json.Nodes;
using Microsoft.Extensions.AI;
using Xunit;

namespace Bureau.Hosting.Tests;

/// <summary>
/// The OpenAI-compatible API on the wire (in memory): chat completions and responses start durable runs and answer
/// with their output, usage and run id; streams follow the protocols' event shapes; a run waiting for approval
/// answers with what it waits for; errors come in OpenAI's shape and change nothing.
/// </summary>
public sealed class OpenAiApiTests : IAsyncDisposable
{
    private readonly TestHost _host = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask DisposeAsync() => _host.DisposeAsync();

    private Task StartAsync() => _host.StartAsync(Configure);

    /// <summary>refunder (a refund that needs approval), spinner (a run that fails: it spends its steps budget) and the team desk
    /// (echo, then refunder), beside the host's echo agents.</summary>
    internal static void Configure(BureauBuilder b) => b
        .AddModel(new ScriptedModelDefinition
        {
            Name = "script",
            Rules =
            [
                new ScriptRule { When = new ScriptCondition { TurnFrom = 1, TurnTo = 1 }, Calls = [new ScriptToolCall { Tool = "refund", Arguments = new JsonObject { ["amount"] = 250 } }] },
                new ScriptRule { Reply = "done: {{last}}" },
            ],
        })
        .AddModel(new ScriptedModelDefinition
        {
            Name = "looper",
            Rules = [new ScriptRule { Calls = [new ScriptToolCall { Tool = "lookup", Arguments = new JsonObject { ["q"] = "x" } }] }],
        })
        .AddTool(AIFunctionFactory.Create((int amount) => "refunded " + amount, "refund"), ToolEffect.Write)
        .AddTool(AIFunctionFactory.Create((string q) => "found " + q, "lookup"), ToolEffect.Read)
        .AddAgent(new AgentDefinition { Name = "refunder", Model = "script", Tools = ["refund"] })
        .AddAgent(new AgentDefinition { Name = "spinner", Model = "looper", Tools = ["lookup"], Budgets = new AgentBudgets { MaxSteps = 2 } })
        .AddTeam(new TeamDefinition { Name = "desk", Pattern = TeamPattern.Sequential, Members = ["echo", "refunder"], Description = "Echo, then a refund." })
        .AddPolicy(new PolicyRule
        {
            Name = "refunds",
            When = new PolicyConditions { Tools = ["refund"] },
            Action = PolicyAction.RequireApproval,
            Reason = "refunds need a lead",
            Approval = new ApprovalSpec { Levels = [new(["support-leads", "approver"], TimeSpan.FromMinutes(30))] }, // the role approver: any approver key
        });

    private async Task<HttpResponseMessage> PostAsync(string path, string json, string? key = null) =>
        await _host.Client.SendAsync(Http.Json(HttpMethod.Post, path, json, key), Ct);

    /// <summary>Asserts OpenAI's error shape with this status, type, param and code; returns the error object.</summary>
    private static async Task<JsonObject> ErrorAsync(HttpResponseMessage res, int status, string type, string? param, string? code = null)
    {
        var text = await res.Content.ReadAsStringAsync(Ct);
        Assert.True(status == (int)res.StatusCode, $"expected {status}, got {(int)res.StatusCode}: {text}");
        Assert.Equal("application/json", res.Content.Headers.ContentType?.MediaType);
        var error = JsonNode.Parse(text)!["error"]!.AsObject();
        Assert.Equal(type, (string?)error["type"]);
        Assert.Equal(param, (string?)error["param"]);
        if (code is not null) Assert.Equal(code, (string?)error["code"]);
        Assert.False(string.IsNullOrEmpty((string?)error["message"]), text);
        Assert.True(error.ContainsKey("code") && error.ContainsKey("param"), text);
        return error;
    }

    [Fact]
    public async Task ChatCompletion_StartsADurableRun_AnswersItsOutputUsageAndId()
    {
        await StartAsync();
        using var res = await PostAsync("/v1/chat/completions", """{"model":"echo","messages":[{"role":"user","content":"hello"}]}""");
        Assert.Equal(HttpStatusCode.OK, res.StatusCode);
        var body = await Http.BodyAsync(res);
        var runId = (string)body["id"]!;
        Assert.Equal(runId, res.Headers.GetValues("x-bureau-run-id").Single());
        Assert.Equal("succeeded", res.Headers.GetValues("x-bureau-run-status").Single());
        Assert.Equal(("chat.completion", "echo"), ((string)body["object"]!, (string)body["model"]!));
        var choice = body["choices"]![0]!;
        Assert.Equal(("assistant", "echo: hello", "stop"), ((string)choice["message"]!["role"]!, (string)choice["message"]!["content"]!, (string)choice["finish_reason"]!));
        Assert.Equal((3, 2, 5), ((int)body["usage"]!["prompt_tokens"]!, (int)body["usage"]!["completion_tokens"]!, (int)body["usage"]!["total_tokens"]!));

        var run = await _host.Engine.GetRunAsync(runId, Ct);
        Assert.Equal((RunStatus.Succeeded, "echo", "hello", "echo: hello", "loopback"), (run!.Status, run.Agent, run.Input, run.Output, run.Actor));
    }

    [Fact]
    public async Task ChatCompletion_ScriptedAgent_IsLabelledScripted_ARealModelsIsNot()
    {
        await StartAsync();
        using (var res = await PostAsync("/v1/chat/completions", """{"model":"spinner","messages":[{"role":"user","content":"look"}]}"""))
        {
            // spinner fails (its steps budget), but what answered is still labelled: a scripted model
            Assert.Equal("true", res.Headers.GetValues(OpenAiApi.ScriptedHeader).Single());
        }
        using (var res = await PostAsync("/v1/chat/completions", """{"model":"echo","messages":[{"role":"user","content":"hello"}]}"""))
        {
            Assert.False(res.Headers.Contains(OpenAiApi.ScriptedHeader));
            Assert.Null((await Http.BodyAsync(res))["bureau"]!["scripted"]);
        }
        using (var res = await PostAsync("/v1/responses", """{"model":"desk","input":"refund order 9"}"""))
        {
            Assert.Equal("true", res.Headers.GetValues(OpenAiApi.ScriptedHeader).Single());   // a team with a scripted member
            Assert.True((bool)(await Http.BodyAsync(res))["bureau"]!["scripted"]!);
        }
    }

    [Fact]
    public async Task ChatCompletion_EarlierMessagesAreContext_TheLastUserMessageIsAnswered()
    {
        await StartAsync();
        using var res = await PostAsync("/v1/chat/completions", """
            {"model":"echo","messages":[
              {"role":"system","content":"Be brief."},
              {"role":"user","content":"My order is 42."},
              {"role":"assistant","content":"Noted."},
              {"role":"user","content":[{"type":"text","text":"Where is it?"}]}]}
            """);
        Assert.Equal(HttpStatusCode.OK, res.StatusCode);
        var run = await _host.Engine.GetRunAsync((string)(await Http.BodyAsync(res))["id"]!, Ct);
        Assert.Equal("Earlier in this conversation:\n[system] Be brief.\n[user] My order is 42.\n[assistant] Noted.\n\nThe message to answer:\nWhere is it?", run!.Input);
    }

    [Fact]
    public async Task ChatCompletion_SameIdempotencyKey_AnswersTheSameRun()
    {
        await StartAsync();
        var req1 = Http.Json(HttpMethod.Post, "/v1/chat/completions", """{"model":"echo","messages":[{"role":"user","content":"once"}]}""");
        req1.Headers.Add("Idempotency-Key", "chat-1");
        var req2 = Http.Json(HttpMethod.Post, "/v1/chat/completions", """{"model":"echo","messages":[{"role":"user","content":"once"}]}""");
        req2.Headers.Add("Idempotency-Key", "chat-1");
        using var first = await _host.Client.SendAsync(req1, Ct);
        using var second = await _host.Client.SendAsync(req2, Ct);
        Assert.Equal((string?)(await Http.BodyAsync(first))["id"], (string?)(await Http.BodyAsync(second))["id"]);
        Assert.Single((await _host.Engine.ListRunsAsync(new RunQuery { Agent = "echo" }, Ct)).Items);
    }

    [Fact]
    public async Task ChatCompletion_Streamed_RoleThenContentThenStopThenUsageThenDone()
    {
        await StartAsync();
        using var req = Http.Json(HttpMethod.Post, "/v1/chat/completions",
            """{"model":"echo","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"stream me"}]}""");
        using var res = await _host.Client.SendAsync(req, HttpCompletionOption.ResponseHeadersRead, Ct);
        Assert.Equal("text/event-stream", res.Content.Headers.ContentType?.MediaType);
        var runId = res.Headers.GetValues("x-bureau-run-id").Single();
        using var sse = new SseReader(await res.Content.ReadAsStreamAsync(Ct));
        var chunks = new List<JsonObject>();
        var sawDone = false;
        while (await sse.NextAsync(Ct) is { } e)
        {
            if (e.Event == ":comment") continue;
            if (e.Data == "[DONE]") { sawDone = true; break; }
            chunks.Add(e.Json);
        }
        Assert.True(sawDone, "the stream ends with data: [DONE]");
        Assert.All(chunks, c => Assert.Equal((runId, "chat.completion.chunk", "echo"), ((string)c["id"]!, (string)c["object"]!, (string)c["model"]!)));
        Assert.Equal("assistant", (string?)chunks[0]["choices"]![0]!["delta"]!["role"]);
        var text = string.Concat(chunks.Where(c => c["choices"]!.AsArray().Count > 0).Select(c => (string?)c["choices"]![0]!["delta"]!["content"]));
        Assert.Equal("echo: stream me", text);
        Assert.Equal("stop", (string?)chunks[^2]["choices"]![0]!["finish_reason"]);
        Assert.Empty(chunks[^1]["choices"]!.AsArray());
        Assert.Equal(5, (int)chunks[^1]["usage"]!["total_tokens"]!);
    }

    [Fact]
    public async Task Responses_Plain_AndStreamed_AnswerTheRunAsAResponse()
    {
        await StartAsync();
        using (var res = await PostAsync("/v1/responses", """{"model":"echo","input":"respond","instructions":"Be kind."}"""))
        {
            Assert.Equal(HttpStatusCode.OK, res.StatusCode);
            var body = await Http.BodyAsync(res);
            Assert.Equal(("response", "completed"), ((string)body["object"]!, (string)body["status"]!));
            Assert.Equal("echo: Earlier in this conversation:", ((string)body["output"]![0]!["content"]![0]!["text"]!).Split('\n')[0]);
            Assert.Equal(5, (int)body["usage"]!["total_tokens"]!);
            var run = await _host.Engine.GetRunAsync((string)body["id"]!, Ct);
            Assert.EndsWith("The message to answer:\nrespond", run!.Input);
        }

        using var req = Http.Json(HttpMethod.Post, "/v1/responses", """{"model":"echo","input":[{"role":"user","content":[{"type":"input_text","text":"flow"}]}],"stream":true}""");
        using var streamed = await _host.Client.SendAsync(req, HttpCompletionOption.ResponseHeadersRead, Ct);
        using var sse = new SseReader(await streamed.Content.ReadAsStreamAsync(Ct));
        var events = new List<SseEvent>();
        while (await sse.NextAsync(Ct) is { } e) if (e.Event != ":comment") events.Add(e);
        Assert.Equal(
            ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added", "response.output_text.delta",
             "response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"],
            events.Select(e => e.Event));
        Assert.All(events, e => Assert.Equal(e.Event, (string?)e.Json["type"]));
        Assert.Equal(Enumerable.Range(0, events.Count), events.Select(e => (int)e.Json["sequence_number"]!));
        Assert.Equal("echo: flow", (string?)events[4].Json["delta"]);
        var completed = events[^1].Json["response"]!;
        Assert.Equal((streamed.Headers.GetValues("x-bureau-run-id").Single(), "completed", 5),
            ((string)completed["id"]!, (string)completed["status"]!, (int)completed["usage"]!["total_tokens"]!));
    }

    [Fact]
    public async Task RunWaitingForApproval_AnswersWhatItWaitsFor_ThenTheResponseCompletesOnceApproved()
    {
        await StartAsync();
        using var res = await PostAsync("/v1/chat/completions", """{"model":"refunder","messages":[{"role":"user","content":"refund order 7"}]}""");
        Assert.Equal(HttpStatusCode.OK, res.StatusCode);
        Assert.Equal("waiting", res.Headers.GetValues("x-bureau-run-status").Single());
        var body = await Http.BodyAsync(res);
        var runId = (string)body["id"]!;
        var waiting = body["bureau"]!["waiting_for"]!;
        var approvalId = (string)waiting["approval_id"]!;
        Assert.Equal(("approval", "refund", runId), ((string)waiting["reason"]!, (string)waiting["tool"]!, approvalId.Split(':')[0]));
        var content = (string)body["choices"]![0]!["message"]!["content"]!;
        Assert.Contains($"POST /v1/approvals/{approvalId}/decision", content);
        Assert.Contains(runId, content);

        using (var pending = await _host.Client.GetAsync($"/v1/responses/{runId}", Ct))
        {
            var doc = await Http.BodyAsync(pending);
            Assert.Equal(("incomplete", "waiting"), ((string)doc["status"]!, (string)doc["incomplete_details"]!["reason"]!));
        }
        using (var approve = await PostAsync($"/v1/approvals/{approvalId}/decision", """{"decision":"approve"}"""))
            Assert.Equal(HttpStatusCode.Accepted, approve.StatusCode);
        await _host.WaitAsync(runId);
        using var done = await _host.Client.GetAsync($"/v1/responses/{runId}", Ct);
        var final = await Http.BodyAsync(done);
        Assert.Equal(("completed", "done: refunded 250"), ((string)final["status"]!, (string)final["output"]![0]!["content"]![0]!["text"]!));
    }

    [Fact]
    public async Task TeamWhoseMemberWaitsForApproval_AnswersWithTheMemberRunAndApprovalId()
    {
        await StartAsync();
        using var res = await PostAsync("/v1/chat/completions", """{"model":"desk","messages":[{"role":"user","content":"refund order 9"}]}""");
        Assert.Equal(HttpStatusCode.OK, res.StatusCode);
        var body = await Http.BodyAsync(res);
        var teamRunId = (string)body["id"]!;
        var waiting = body["bureau"]!["waiting_for"]!;
        var memberRunId = (string)waiting["run_id"]!;
        Assert.NotEqual(teamRunId, memberRunId);
        var member = await _host.Engine.GetRunAsync(memberRunId, Ct);
        Assert.Equal((teamRunId, "refunder", RunStatus.Waiting), (member!.ParentRunId, member.Agent, member.Status));
        Assert.Contains($"its member run {memberRunId}", (string)body["choices"]![0]!["message"]!["content"]!);

        using (var approve = await PostAsync($"/v1/approvals/{(string)waiting["approval_id"]!}/decision", """{"decision":"approve"}"""))
            Assert.Equal(HttpStatusCode.Accepted, approve.StatusCode);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(30));
        await foreach (var _ in _host.Engine.WatchAsync(teamRunId, 0, cancellationToken: timeout.Token)) { } // to its end (the team waits for its members meanwhile)
        Assert.Equal(RunStatus.Succeeded, (await _host.Engine.GetRunAsync(teamRunId, Ct))!.Status);
    }

    [Fact]
    public async Task StreamCutByARestart_TheRunGoesOn_ItsResponseIsReadByItsId()
    {
        await StartAsync();
        using var req = Http.Json(HttpMethod.Post, "/v1/chat/completions", """{"model":"slow","stream":true,"messages":[{"role":"user","content":"survive"}]}""");
        var res = await _host.Client.SendAsync(req, HttpCompletionOption.ResponseHeadersRead, Ct);
        var runId = res.Headers.GetValues("x-bureau-run-id").Single();
        using (var sse = new SseReader(await res.Content.ReadAsStreamAsync(Ct)))
        {
            var first = await sse.NextAsync(Ct);
            Assert.Equal("assistant", (string?)first!.Json["choices"]![0]!["delta"]!["role"]); // accepted, durable, the model is being asked
        }
        res.Dispose();

        await _host.RestartAsync(Configure); // the stream is gone; the run is in the store
        _host.Gate.Open("survive");
        await _host.WaitAsync(runId);
        using var get = await _host.Client.GetAsync($"/v1/responses/{runId}", Ct);
        var doc = await Http.BodyAsync(get);
        Assert.Equal(("completed", "opened: survive"), ((string)doc["status"]!, (string)doc["output"]![0]!["content"]![0]!["text"]!));
    }

    [Fact]
    public async Task FailedRun_Chat422NamingTheRun_ResponsesStatusFailed()
    {
        await StartAsync();
        using var res = await PostAsync("/v1/chat/completions", """{"model":"spinner","messages":[{"role":"user","content":"spin"}]}""");
        var error = await ErrorAsync(res, 422, "run_failed", null, "budget");
        var runId = res.Headers.GetValues("x-bureau-run-id").Single();
        Assert.Contains(runId, (string)error["message"]!);
        Assert.Equal(RunStatus.Failed, (await _host.Engine.GetRunAsync(runId, Ct))!.Status);

        using var responses = await PostAsync("/v1/responses", """{"model":"spinner","input":"spin"}""");
        var body = await Http.BodyAsync(responses);
        Assert.Equal(("failed", "server_error"), ((string)body["status"]!, (string)body["error"]!["code"]!));
    }

    [Fact]
    public async Task BadRequests_OpenAiErrorShapeNamingTheField_NothingStarted()
    {
        await StartAsync();
        using (var res = await PostAsync("/v1/chat/completions", """{"model":"nobody","messages":[{"role":"user","content":"x"}]}"""))
            Assert.Contains("echo", (string)(await ErrorAsync(res, 404, "invalid_request_error", "model", "model_not_found"))["message"]!);
        using (var res = await PostAsync("/v1/chat/completions", """{"model":"echo"}"""))
            await ErrorAsync(res, 400, "invalid_request_error", "messages");
        using (var res = await PostAsync("/v1/chat/completions", """{"messages":[{"role":"user","content":"x"}]}"""))
            await ErrorAsync(res, 400, "invalid_request_error", "model");
        using (var res = await PostAsync("/v1/chat/completions", """{"model":"echo","messages":[{"role":"user","content":"x"},{"role":"assistant","content":"y"}]}"""))
            await ErrorAsync(res, 400, "invalid_request_error", "messages[1].role");
        using (var res = await PostAsync("/v1/chat/completions", """{"model":"echo","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"http://x"}}]}]}"""))
            await ErrorAsync(res, 400, "invalid_request_error", "messages[0].content[0].type");
        using (var res = await PostAsync("/v1/chat/completions", """{"model":"echo","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}]}"""))
            await ErrorAsync(res, 400, "invalid_request_error", "tools");
        using (var res = await PostAsync("/v1/chat/completions", """{"model":"echo","messages":[{"role":"user","content":"x"}],"stream":"yes"}"""))
            await ErrorAsync(res, 400, "invalid_request_error", "stream");
        using (var res = await PostAsync("/v1/chat/completions", """{"model":"echo","messages":[{"role":"user","content":"x"}],"messages":[]}"""))
            await ErrorAsync(res, 400, "invalid_request_error", "messages");
        using (var res = await PostAsync("/v1/responses", """{"model":"echo","input":[{"type":"function_call_output","call_id":"c","output":"o"}]}"""))
            await ErrorAsync(res, 400, "invalid_request_error", "input[0].type");
        using (var res = await PostAsync("/v1/responses", """{"model":"echo","input":"x","previous_response_id":"nope"}"""))
            await ErrorAsync(res, 404, "invalid_request_error", "previous_response_id");
        using (var res = await _host.Client.GetAsync("/v1/responses/nope", Ct))
            await ErrorAsync(res, 404, "invalid_request_error", "id");
        Assert.Empty((await _host.Engine.ListRunsAsync(new RunQuery(), Ct)).Items);
    }

    [Fact]
    public async Task Models_ListsAgentsAndTeams()
    {
        await StartAsync();
        var body = await Http.BodyAsync(await _host.Client.GetAsync("/v1/models", Ct));
        Assert.Equal("list", (string?)body["object"]);
        var ids = body["data"]!.AsArray().Select(m => (string)m!["id"]!).ToList();
        Assert.Equal(["desk", "echo", "pager", "refunder", "slow", "spinner"], ids);
        Assert.Equal("bureau:team", (string?)body["data"]![0]!["owned_by"]);
        Assert.All(body["data"]!.AsArray(), m => Assert.Equal("model", (string?)m!["object"]));
        using var one = await _host.Client.GetAsync("/v1/models/echo", Ct);
        Assert.Equal("Answers with its input.", (string?)(await Http.BodyAsync(one))["description"]);
        using var missing = await _host.Client.GetAsync("/v1/models/nobody", Ct);
        await ErrorAsync(missing, 404, "invalid_request_error", "model", "model_not_found");
    }

    [Fact]
    public async Task Keys_SameRolesAsTheRest_ErrorsInOpenAiShape()
    {
        await StartAsync();
        var viewer = await _host.CreateKeyAsync(ApiKeyRole.Viewer);
        var operatorKey = await _host.CreateKeyAsync(ApiKeyRole.Operator);
        const string chat = """{"model":"echo","messages":[{"role":"user","content":"k"}]}""";
        using (var res = await PostAsync("/v1/chat/completions", chat))
            await ErrorAsync(res, 401, "invalid_request_error", "Authorization", "invalid_api_key");
        using (var res = await PostAsync("/v1/chat/completions", chat, viewer))
            await ErrorAsync(res, 403, "permission_error", null, "insufficient_permissions");
        using (var res = await _host.Client.SendAsync(Http.Get("/v1/models", viewer), Ct))
            Assert.Equal(HttpStatusCode.OK, res.StatusCode);
        using (var res = await PostAsync("/v1/chat/completions", chat, operatorKey))
        {
            Assert.Equal(HttpStatusCode.OK, res.StatusCode);
            var run = await _host.Engine.GetRunAsync((string)(await Http.BodyAsync(res))["id"]!, Ct);
            Assert.StartsWith("key:", run!.Actor);
        }
        // The REST API keeps its problem+json answers.
        using var rest = await PostAsync("/v1/runs", """{"agent":"echo","input":"x"}""");
        await Http.ProblemAsync(rest, 401, "Authorization");
    }
}
