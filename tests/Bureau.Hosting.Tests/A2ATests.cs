using System.Diagnostics;
using System.Net;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using System.Net.Sockets;
using Xunit;

namespace Bureau.Hosting.Tests;

/// <summary>
/// A2A 1.0 driven by a client nobody here wrote: the A2A JS SDK (@a2a-js/sdk, from tests/a2a: test.sh runs npm ci
/// there) against a host on a loopback port, over each binding; it reads the agent card, sends, streams, gets, lists,
/// subscribes and cancels (tests/a2a/client.mjs asserts each answer).
/// </summary>
public sealed class A2AClientTests : IAsyncDisposable
{
    private readonly TestHost _host = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;
    private static readonly string s_tools = Path.Combine(NodeTool.RepoRoot, "tests", "a2a");

    public ValueTask DisposeAsync() => _host.DisposeAsync();

    private async Task<string> StartAsync()
    {
        await _host.StartAsync(configureHost: b => b.WebHost.UseUrls("http://127.0.0.1:0"), testServer: false);
        return _host.App.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.Single();
    }

    [Theory]
    [InlineData("JSONRPC")]
    [InlineData("HTTP+JSON")]
    public async Task JsSdkClient_SendsStreamsGetsListsSubscribesCancels(string binding)
    {
        var url = await StartAsync();

        var (code, output) = await NodeAsync(url, binding, key: null);

        Assert.True(code == 0, output);
        Assert.Contains($"OK {binding}", output);
        // The tasks are runs: two of agent echo (the message sent twice started one), the slow one canceled.
        var echo = (await _host.Engine.ListRunsAsync(new RunQuery { Agent = "echo" }, Ct)).Items;
        Assert.Equal(2, echo.Count);
        Assert.All(echo, r => Assert.Equal(RunStatus.Succeeded, r.Status));
        Assert.All(echo, r => Assert.StartsWith("a2a:", r.IdempotencyKey));
        var slow = Assert.Single((await _host.Engine.ListRunsAsync(new RunQuery { Agent = "slow" }, Ct)).Items);
        Assert.Equal(RunStatus.Canceled, slow.Status);
    }

    [Fact]
    public async Task JsSdkClient_WithApiKeys_ReadsTheCardsBearerSchemeAndSendsTheKey()
    {
        var url = await StartAsync();
        var key = await _host.CreateKeyAsync(ApiKeyRole.Operator);

        var (code, output) = await NodeAsync(url, "HTTP+JSON", key);

        Assert.True(code == 0, output);
        var run = (await _host.Engine.ListRunsAsync(new RunQuery { Agent = "echo" }, Ct)).Items[^1];
        Assert.StartsWith("key:", run.Actor);
    }

    private static async Task<(int Code, string Output)> NodeAsync(string url, string binding, string? key)
    {
        NodeTool.Require(Path.Combine(s_tools, "node_modules", "@a2a-js", "sdk"), "tests/a2a");
        string[] args = key is null ? ["client.mjs", url, binding] : ["client.mjs", url, binding, key];
        var (code, stdout, stderr) = await NodeTool.RunAsync("node", args, s_tools, TimeSpan.FromMinutes(3));
        return (code, stdout + stderr);
    }
}

/// <summary>A2A's cards, errors, access and state mapping, request by request.</summary>
public sealed class A2AProtocolTests : IAsyncDisposable
{
    private readonly TestHost _host = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask DisposeAsync() => _host.DisposeAsync();

    private static string Rpc(string method, string @params, string id = "7") =>
        $$"""{"jsonrpc":"2.0","id":{{id}},"method":"{{method}}","params":{{@params}}}""";

    private async Task<(HttpStatusCode Status, JsonObject Body)> RpcAsync(string path, string body, string? key = null)
    {
        using var res = await _host.Client.SendAsync(Http.Json(HttpMethod.Post, path, body, key), Ct);
        return (res.StatusCode, await Http.BodyAsync(res));
    }

    private static JsonObject Error(JsonObject body, int code)
    {
        Assert.Equal("2.0", (string?)body["jsonrpc"]);
        var error = body["error"]?.AsObject();
        Assert.True(error is not null && (int)error["code"]! == code, $"expected error {code}: {body.ToJsonString()}");
        Assert.False(string.IsNullOrEmpty((string?)error["message"]));
        return error;
    }

    [Fact]
    public async Task HostCard_ListsTheAgentsAsSkills_AgentCard_PointsAtItsOwnEndpoints()
    {
        await _host.StartAsync();

        var card = await Http.BodyAsync(await _host.Client.GetAsync("/.well-known/agent-card.json", Ct));
        Assert.Equal(["echo", "pager", "slow"], card["skills"]!.AsArray().Select(s => (string)s!["id"]!));
        Assert.Equal("http://localhost/a2a", (string?)card["supportedInterfaces"]![0]!["url"]);
        Assert.Null(card["securitySchemes"]); // no keys: loopback only, nothing to declare

        var echo = await Http.BodyAsync(await _host.Client.GetAsync("/a2a/agents/echo/.well-known/agent-card.json", Ct));
        Assert.Equal(("echo", "Answers with its input."), ((string?)echo["name"], (string?)echo["description"]));
        var interfaces = echo["supportedInterfaces"]!.AsArray();
        Assert.Equal(["JSONRPC", "HTTP+JSON"], interfaces.Select(i => (string)i!["protocolBinding"]!));
        Assert.All(interfaces, i => Assert.Equal(("http://localhost/a2a/agents/echo", "1.0"), ((string?)i!["url"], (string?)i["protocolVersion"])));
        Assert.True((bool)echo["capabilities"]!["streaming"]!);

        // A2A has its own contract: the OpenAPI document of /v1 leaves it out.
        Assert.DoesNotContain("/a2a", await _host.Client.GetStringAsync("/openapi/v1.json", Ct));

        using var unknown = await _host.Client.GetAsync("/a2a/agents/nobody/.well-known/agent-card.json", Ct);
        Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
        Assert.Contains("echo, pager, slow", (string?)(await Http.BodyAsync(unknown))["error"]!["message"]);
    }

    [Fact]
    public async Task Card_WithKeys_IsPublicAndDeclaresTheBearerKey_CallsWithoutAKeyAreRefused()
    {
        await _host.StartAsync();
        var viewer = await _host.CreateKeyAsync(ApiKeyRole.Viewer);

        var card = await Http.BodyAsync(await _host.Client.GetAsync("/a2a/agents/echo/.well-known/agent-card.json", Ct));
        Assert.Equal("Bearer", (string?)card["securitySchemes"]!["bureauApiKey"]!["httpAuthSecurityScheme"]!["scheme"]);
        Assert.NotNull(card["securityRequirements"]![0]!["schemes"]!["bureauApiKey"]);

        var send = Rpc("SendMessage", """{"message":{"messageId":"m1","role":"ROLE_USER","parts":[{"text":"hi"}]}}""");
        var (status, body) = await RpcAsync("/a2a/agents/echo", send);
        Assert.Equal(HttpStatusCode.Unauthorized, status);
        Assert.Equal("Authorization", (string?)Error(body, -32600)["data"]!["field"]);

        (status, body) = await RpcAsync("/a2a/agents/echo", send, viewer);
        Assert.Equal(HttpStatusCode.Forbidden, status);
        Assert.Contains("operator", (string?)Error(body, -32600)["message"]);

        using var rest = await _host.Client.SendAsync(Http.Get("/a2a/agents/echo/tasks"), Ct);
        Assert.Equal(HttpStatusCode.Unauthorized, rest.StatusCode);
        Assert.Equal("UNAUTHENTICATED", (string?)(await Http.BodyAsync(rest))["error"]!["status"]);

        // A viewer reads: let in, and told the task does not exist.
        (status, body) = await RpcAsync("/a2a/agents/echo", Rpc("GetTask", """{"id":"nope"}"""), viewer);
        Assert.Equal(HttpStatusCode.OK, status);
        Error(body, -32001);
        Assert.Empty((await _host.Engine.ListRunsAsync(new RunQuery(), Ct)).Items); // nothing refused started anything
    }

    [Fact]
    public async Task UnknownTask_IsTaskNotFound_InBothBindings()
    {
        await _host.StartAsync();

        var (status, body) = await RpcAsync("/a2a/agents/echo", Rpc("GetTask", """{"id":"r-missing"}""", "\"abc\""));
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("abc", (string?)body["id"]);
        Assert.Equal("r-missing", (string?)Error(body, -32001)["data"]!["taskId"]);

        using var rest = await _host.Client.GetAsync("/a2a/agents/echo/tasks/r-missing", Ct);
        Assert.Equal(HttpStatusCode.NotFound, rest.StatusCode);
        var error = (await Http.BodyAsync(rest))["error"]!;
        Assert.Equal(("NOT_FOUND", "TASK_NOT_FOUND"), ((string?)error["status"], (string?)error["details"]![0]!["reason"]));

        // Another agent's task is not found through this agent's endpoint.
        var (_, sent) = await RpcAsync("/a2a/agents/pager", Rpc("SendMessage", """{"message":{"messageId":"p1","parts":[{"text":"x"}]}}"""));
        var pagerTask = (string)sent["result"]!["task"]!["id"]!;
        (_, body) = await RpcAsync("/a2a/agents/echo", Rpc("GetTask", $$"""{"id":"{{pagerTask}}"}"""));
        Error(body, -32001);
    }

    [Theory]
    [InlineData("SendMessage", """{}""", "message")]
    [InlineData("SendMessage", """{"message":{"messageId":"m","parts":[]}}""", "message.parts")]
    [InlineData("SendMessage", """{"message":{"messageId":5,"parts":[{"text":"x"}]}}""", "message.messageId")]
    [InlineData("SendMessage", """{"message":{"messageId":"m","role":"ROLE_AGENT","parts":[{"text":"x"}]}}""", "message.role")]
    [InlineData("SendMessage", """{"message":{"messageId":"m","parts":[{"text":"x"}]},"configuration":{"historyLength":-1}}""", "configuration.historyLength")]
    [InlineData("ListTasks", """{"pageSize":0}""", "pageSize")]
    [InlineData("ListTasks", """{"status":"TASK_STATE_SLEEPING"}""", "status")]
    [InlineData("GetTask", """{}""", "id")]
    public async Task BadParams_AreInvalidParamsNamingTheField_AndStartNothing(string method, string @params, string field)
    {
        await _host.StartAsync();

        var (status, body) = await RpcAsync("/a2a/agents/echo", Rpc(method, @params));

        Assert.Equal(HttpStatusCode.OK, status);
        var error = Error(body, -32602);
        Assert.Equal(field, (string?)error["data"]!["field"]);
        Assert.Contains(field, (string?)error["message"]);
        Assert.Empty((await _host.Engine.ListRunsAsync(new RunQuery(), Ct)).Items);
    }

    [Fact]
    public async Task NotJsonRpc_ParseErrorUnknownMethodFileParts_HaveTheirCodes()
    {
        await _host.StartAsync();

        Error((await RpcAsync("/a2a/agents/echo", "{nope")).Body, -32700);
        Error((await RpcAsync("/a2a/agents/echo", """{"jsonrpc":"1.0","id":1,"method":"GetTask"}""")).Body, -32600);
        Error((await RpcAsync("/a2a/agents/echo", Rpc("tasks/get", "{}"))).Body, -32601);
        var file = Error((await RpcAsync("/a2a/agents/echo", Rpc("SendMessage", """{"message":{"messageId":"f","parts":[{"url":"https://example.com/a.pdf"}]}}"""))).Body, -32005);
        Assert.Equal("message.parts[0]", (string?)file["data"]!["field"]);
        var (status, body) = await RpcAsync("/a2a/agents/nobody", Rpc("GetTask", """{"id":"x"}"""));
        Assert.Equal(HttpStatusCode.NotFound, status);
        Error(body, -32600);
    }

    [Fact]
    public async Task HostEndpoint_RoutesByMetadataAgent_AndAsksForOneWhenSeveralAreDeployed()
    {
        await _host.StartAsync();

        var error = Error((await RpcAsync("/a2a", Rpc("SendMessage", """{"message":{"messageId":"h1","parts":[{"text":"x"}]}}"""))).Body, -32602);
        Assert.Equal("metadata.agent", (string?)error["data"]!["field"]);

        var (_, body) = await RpcAsync("/a2a", Rpc("SendMessage", """{"message":{"messageId":"h2","parts":[{"text":"routed"}]},"metadata":{"agent":"echo"}}"""));
        var task = body["result"]!["task"]!;
        Assert.Equal("TASK_STATE_COMPLETED", (string?)task["status"]!["state"]);
        Assert.Equal("echo: routed", (string?)task["artifacts"]![0]!["parts"]![0]!["text"]);
        Assert.Equal("echo", (string?)task["metadata"]!["agent"]);
        Assert.Null(task["metadata"]!["scripted"]);   // echo is no scripted model: no label (a scripted agent's tasks say scripted: true)

        // A message for that (finished) task needs no agent named: the task says whose it is; it takes no more messages.
        var followUp = Error((await RpcAsync("/a2a", Rpc("SendMessage",
            $$$"""{"message":{"messageId":"h3","taskId":"{{{(string)task["id"]!}}}","parts":[{"text":"more"}]}}"""))).Body, -32004);
        Assert.Contains("TASK_STATE_COMPLETED", (string?)followUp["message"]);
    }

    [Fact]
    public async Task RunWaitingForApproval_IsInputRequired_ThenCompletedOnceApproved()
    {
        await _host.StartAsync(b => b.AddScriptedRefunder());

        // Blocking send: it returns when the task needs a person, not when it finishes.
        using var res = await _host.Client.SendAsync(Http.Json(HttpMethod.Post, "/a2a/agents/refunder/message:send",
            """{"message":{"messageId":"r1","contextId":"ticket-7","role":"ROLE_USER","parts":[{"text":"refund order 7"}]}}"""), Ct);
        Assert.Equal(HttpStatusCode.OK, res.StatusCode);
        var task = (await Http.BodyAsync(res))["task"]!;
        var id = (string)task["id"]!;
        Assert.Equal(("TASK_STATE_INPUT_REQUIRED", "ticket-7"), ((string?)task["status"]!["state"], (string?)task["contextId"]));
        Assert.Contains("approval", (string?)task["status"]!["message"]!["parts"]![0]!["text"]);

        // A message to it is refused (a person decides, through approvals), and the run is untouched.
        using var answer = await _host.Client.SendAsync(Http.Json(HttpMethod.Post, "/a2a/agents/refunder/message:send",
            $$$"""{"message":{"messageId":"r2","taskId":"{{{id}}}","parts":[{"text":"yes"}]}}"""), Ct);
        Assert.Equal(HttpStatusCode.BadRequest, answer.StatusCode);
        Assert.Equal("UNSUPPORTED_OPERATION", (string?)(await Http.BodyAsync(answer))["error"]!["details"]![0]!["reason"]);

        var run = await _host.Engine.GetRunAsync(id, Ct);
        using var decided = await _host.Client.SendAsync(Http.Json(HttpMethod.Post, $"/v1/approvals/{id}:{run!.WaitingFor!.Step}/decision", """{"decision":"approve"}"""), Ct);
        Assert.Equal(HttpStatusCode.Accepted, decided.StatusCode);
        await _host.WaitAsync(id);

        var done = await Http.BodyAsync(await _host.Client.GetAsync($"/a2a/agents/refunder/tasks/{id}", Ct));
        Assert.Equal("TASK_STATE_COMPLETED", (string?)done["status"]!["state"]);
        Assert.Equal("done: refunded 250", (string?)done["artifacts"]![0]!["parts"]![0]!["text"]);
        Assert.True((bool)done["metadata"]!["scripted"]!);   // refunder answers with the scripted model: labelled
        var listed = await Http.BodyAsync(await _host.Client.GetAsync("/a2a/agents/refunder/tasks?contextId=ticket-7", Ct));
        Assert.Equal(id, (string?)Assert.Single(listed["tasks"]!.AsArray())!["id"]);
    }

    [Fact]
    public async Task RestStream_IsServerSentEventsOfStreamResponses_EndingWithTheFinalStatus()
    {
        await _host.StartAsync();

        using var req = Http.Json(HttpMethod.Post, "/a2a/agents/echo/message:stream", """{"message":{"messageId":"s1","parts":[{"text":"live"}]}}""");
        using var res = await _host.Client.SendAsync(req, HttpCompletionOption.ResponseHeadersRead, Ct);
        Assert.Equal("text/event-stream", res.Content.Headers.ContentType?.MediaType);
        var text = await res.Content.ReadAsStringAsync(Ct);
        var events = text.Split("\n\n", StringSplitOptions.RemoveEmptyEntries)
            .Where(e => e.StartsWith("data: ", StringComparison.Ordinal))
            .Select(e => JsonNode.Parse(e["data: ".Length..])!.AsObject()).ToList();

        Assert.Equal("task", events[0].First().Key);
        var artifact = Assert.Single(events, e => e.ContainsKey("artifactUpdate"))["artifactUpdate"]!;
        Assert.Equal(("echo: live", true), ((string?)artifact["artifact"]!["parts"]![0]!["text"], (bool)artifact["lastChunk"]!));
        Assert.Equal("TASK_STATE_COMPLETED", (string?)events[^1]["statusUpdate"]!["status"]!["state"]);
    }
}

/// <summary>A2A push notifications: configs kept durably, SSRF checks, delivery with retries and backoff.</summary>
public sealed class A2APushTests : IAsyncDisposable
{
    private readonly TestHost _host = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask DisposeAsync() => _host.DisposeAsync();

    private Task StartAsync(bool allowPrivate) => _host.StartAsync(configureHost: b => b.Services.Configure<A2AOptions>(o =>
    {
        o.AllowPrivatePushUrls = allowPrivate;
        o.PushRetryDelay = TimeSpan.FromMilliseconds(200);
    }));

    private async Task<JsonObject> RpcAsync(string method, string @params)
    {
        using var res = await _host.Client.SendAsync(Http.Json(HttpMethod.Post, "/a2a/agents/slow",
            $$"""{"jsonrpc":"2.0","id":1,"method":"{{method}}","params":{{@params}}}"""), Ct);
        Assert.Equal(HttpStatusCode.OK, res.StatusCode);
        return await Http.BodyAsync(res);
    }

    private async Task<string> PendingTaskAsync(string text, string push = "")
    {
        var body = await RpcAsync("SendMessage",
            $$$"""{"message":{"messageId":"{{{Guid.NewGuid()}}}","parts":[{"text":"{{{text}}}"}]},"configuration":{"returnImmediately":true{{{push}}}}}""");
        return (string)body["result"]!["task"]!["id"]!;
    }

    [Theory]
    [InlineData("127.0.0.1", true)]
    [InlineData("10.1.2.3", true)]
    [InlineData("172.16.5.4", true)]
    [InlineData("192.168.1.1", true)]
    [InlineData("169.254.169.254", true)]
    [InlineData("100.64.0.1", true)]
    [InlineData("0.0.0.0", true)]
    [InlineData("::1", true)]
    [InlineData("fe80::1", true)]
    [InlineData("fd00::1", true)]
    [InlineData("::ffff:127.0.0.1", true)]
    [InlineData("8.8.8.8", false)]
    [InlineData("172.32.0.1", false)]
    [InlineData("2606:4700:4700::1111", false)]
    public void NonPublicAddresses_AreRecognized(string address, bool nonPublic) =>
        Assert.Equal(nonPublic, Bureau.Hosting.A2A.A2APushTargets.IsNonPublic(IPAddress.Parse(address)));

    [Theory]
    [InlineData("http://127.0.0.1:9/hook", "non-public")]
    [InlineData("http://localhost/hook", "non-public")]
    [InlineData("http://169.254.169.254/latest/meta-data", "non-public")]
    [InlineData("http://[::1]/hook", "non-public")]
    [InlineData("ftp://example.com/hook", "http or https")]
    [InlineData("http://user:pw@example.com/hook", "credentials")]
    public async Task PushUrl_ToAPrivateAddressOrNotHttp_IsRefusedNamingTheField_AndNothingIsStarted(string url, string says)
    {
        await StartAsync(allowPrivate: false);
        var task = await PendingTaskAsync("wait");

        var error = (await RpcAsync("CreateTaskPushNotificationConfig", $$"""{"taskId":"{{task}}","url":"{{url}}"}"""))["error"]!;
        Assert.Equal(-32602, (int)error["code"]!);
        Assert.Equal("url", (string?)error["data"]!["field"]);
        Assert.Contains(says, (string?)error["message"]);

        // The same URL given with a message refuses the message: no run is started.
        error = (await RpcAsync("SendMessage",
            $$$$"""{"message":{"messageId":"m-push","parts":[{"text":"x"}]},"configuration":{"taskPushNotificationConfig":{"url":"{{{{url}}}}"}}}"""))["error"]!;
        Assert.Equal("configuration.taskPushNotificationConfig.url", (string?)error["data"]!["field"]);
        Assert.Single((await _host.Engine.ListRunsAsync(new RunQuery { Agent = "slow" }, Ct)).Items);
        var list = await RpcAsync("ListTaskPushNotificationConfigs", $$"""{"taskId":"{{task}}"}""");
        Assert.Empty(list["result"]!["configs"]!.AsArray());
        _host.Gate.Open("wait"); // lets the host stop without waiting for the run
    }

    [Fact]
    public async Task Push_WhenAllowed_SendsTheTasksChanges_ARefusedDeliveryIsRetried()
    {
        var attempts = 0;
        await using var receiver = new Bureau.Tests.Tools.LoopbackServer((ctx, _) =>
            Bureau.Tests.Tools.LoopbackServer.Respond(ctx, Interlocked.Increment(ref attempts) == 1 ? 503 : 200, "")); // the first delivery fails
        await StartAsync(allowPrivate: true);

        var push = $$$""","taskPushNotificationConfig":{"url":"{{{receiver.BaseAddress}}}hook","token":"tok-1","authentication":{"scheme":"Bearer","credentials":"c1"}}""";
        var task = await PendingTaskAsync("pushed", push);
        _host.Gate.Open("pushed");
        Assert.Equal(RunStatus.Succeeded, (await _host.WaitAsync(task)).Status);

        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!receiver.Requests.Any(r => r.Body.Contains("TASK_STATE_COMPLETED", StringComparison.Ordinal)) && DateTime.UtcNow < deadline)
            await Task.Delay(100, Ct);
        var requests = receiver.Requests.ToList();
        Assert.True(requests.Count >= 3, string.Join("\n", requests.Select(r => r.Body)));
        Assert.Equal(requests[0].Body, requests[1].Body); // the refused delivery, sent again
        Assert.All(requests, r => Assert.Equal(("POST", "tok-1", "Bearer c1"), (r.Method, r.Headers["X-A2A-Notification-Token"], r.Headers["Authorization"])));
        var bodies = requests.Skip(1).Select(r => JsonNode.Parse(r.Body)!.AsObject()).ToList();
        Assert.Equal(task, (string?)bodies[0]["task"]!["id"]);
        Assert.Equal("opened: pushed", (string?)Assert.Single(bodies, b => b.ContainsKey("artifactUpdate"))["artifactUpdate"]!["artifact"]!["parts"]![0]!["text"]);
        Assert.Equal("TASK_STATE_COMPLETED", (string?)bodies[^1]["statusUpdate"]!["status"]!["state"]);
    }

    [Fact]
    public async Task PushConfigs_CreateGetListDelete_OverRest_SecretsAreNotShownBack()
    {
        await using var receiver = new Bureau.Tests.Tools.LoopbackServer((ctx, _) => Bureau.Tests.Tools.LoopbackServer.Respond(ctx, 200, ""));
        await StartAsync(allowPrivate: true);
        var task = await PendingTaskAsync("kept");
        var configs = $"/a2a/agents/slow/tasks/{task}/pushNotificationConfigs";

        using var created = await _host.Client.SendAsync(Http.Json(HttpMethod.Post, configs, $$"""{"id":"c-1","url":"{{receiver.BaseAddress}}hook","token":"secret-token"}"""), Ct);
        Assert.Equal(HttpStatusCode.OK, created.StatusCode);
        Assert.Equal((task, "c-1"), ((string?)(await Http.BodyAsync(created))["taskId"], (string?)(await Http.BodyAsync(created))["id"]));

        var listed = (await Http.BodyAsync(await _host.Client.GetAsync(configs, Ct)))["configs"]!.AsArray();
        Assert.Equal(("c-1", "(set)"), ((string?)Assert.Single(listed)!["id"], (string?)listed[0]!["token"]));
        var one = await Http.BodyAsync(await _host.Client.GetAsync(configs + "/c-1", Ct));
        Assert.Equal($"{receiver.BaseAddress}hook", (string?)one["url"]);

        // Kept durably: a restarted host still has it (the task finished meanwhile: its configs stay readable).
        _host.Gate.Open("kept");
        await _host.WaitAsync(task);
        await _host.RestartAsync(configureHost: b => b.Services.Configure<A2AOptions>(o => o.AllowPrivatePushUrls = true));
        Assert.Single((await Http.BodyAsync(await _host.Client.GetAsync(configs, Ct)))["configs"]!.AsArray());

        using var deleted = await _host.Client.DeleteAsync(configs + "/c-1", Ct);
        Assert.Equal(HttpStatusCode.OK, deleted.StatusCode);
        Assert.Empty((await Http.BodyAsync(await _host.Client.GetAsync(configs, Ct)))["configs"]!.AsArray());
        using var gone = await _host.Client.GetAsync(configs + "/c-1", Ct);
        Assert.Equal(HttpStatusCode.NotFound, gone.StatusCode);
    }
}

/// <summary>The <c>a2a</c> tool kind: a Bureau agent calls a remote A2A agent (here another Bureau host on a loopback port).</summary>
public sealed class A2AToolTests : IAsyncDisposable
{
    private readonly TestHost _remote = new();
    private readonly TestHost _host = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask DisposeAsync()
    {
        await _host.DisposeAsync();
        await _remote.DisposeAsync();
    }

    private async Task<string> StartRemoteAsync()
    {
        await _remote.StartAsync(configureHost: b => b.WebHost.UseUrls("http://127.0.0.1:0"), testServer: false);
        return _remote.App.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.Single();
    }

    private Task StartCallerAsync(Uri url, string message) => _host.StartAsync(b => b
        .AddModel(new ScriptedModelDefinition
        {
            Name = "script",
            Rules =
            [
                new ScriptRule { When = new ScriptCondition { TurnFrom = 1, TurnTo = 1 }, Calls = [new ScriptToolCall { Tool = "ask-echo", Arguments = new JsonObject { ["message"] = message } }] },
                new ScriptRule { Reply = "done: {{last}}" },
            ],
        })
        .AddTool(new A2AToolDefinition { Name = "ask-echo", Url = url, Effect = ToolEffect.Idempotent, Description = "Ask the echo agent." })
        .AddAgent(new AgentDefinition { Name = "caller", Model = "script", Tools = ["ask-echo"] }));

    [Fact]
    public async Task Agent_CallsARemoteA2AAgent_ItsOutputIsTheToolResult_TheCallKeyIsTheMessageId()
    {
        var remote = await StartRemoteAsync();
        await StartCallerAsync(new Uri(remote + "/a2a/agents/echo"), "ping");

        using var res = await _host.Client.SendAsync(Http.Json(HttpMethod.Post, "/v1/runs", """{"agent":"caller","input":"go"}"""), Ct);
        var run = await _host.WaitAsync((string)(await Http.BodyAsync(res))["id"]!);

        Assert.Equal((RunStatus.Succeeded, "done: echo: ping"), (run.Status, run.Output));
        var journal = await _host.Engine.ReadJournalAsync(run.Id, 0, Ct);
        var intent = Assert.Single(journal.Select(r => r.Entry).OfType<ToolIntent>()); // an idempotent tool's call is journaled before it runs
        var remoteRun = Assert.Single((await _remote.Engine.ListRunsAsync(new RunQuery { Agent = "echo" }, Ct)).Items);
        Assert.EndsWith(":echo:" + intent.IdempotencyKey, remoteRun.IdempotencyKey); // sent again, the same message: one remote run
    }

    [Fact]
    public async Task RemoteError_IsAToolErrorTheModelSees()
    {
        var remote = await StartRemoteAsync();
        await StartCallerAsync(new Uri(remote + "/a2a/agents/nobody"), "ping");

        using var res = await _host.Client.SendAsync(Http.Json(HttpMethod.Post, "/v1/runs", """{"agent":"caller","input":"go"}"""), Ct);
        var run = await _host.WaitAsync((string)(await Http.BodyAsync(res))["id"]!);

        var completed = Assert.Single((await _host.Engine.ReadJournalAsync(run.Id, 0, Ct)).Select(r => r.Entry).OfType<ToolCompleted>());
        Assert.True(completed.IsError);
        Assert.Contains("no agent or team 'nobody'", completed.Content);
    }
}
