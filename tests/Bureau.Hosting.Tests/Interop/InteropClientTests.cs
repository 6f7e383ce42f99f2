using System.ClientModel;
using System.Diagnostics;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using OpenAI;
using Xunit;

namespace Bureau.Hosting.Tests;

/// <summary>
/// Clients nobody here wrote, against a real host on a loopback port with an API key: the official <c>openai</c>
/// npm client (a node script, Interop/js) and M.E.AI's OpenAI <see cref="IChatClient"/>.
/// </summary>
public sealed class InteropClientTests : IAsyncDisposable
{
    private readonly TestHost _host = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask DisposeAsync() => _host.DisposeAsync();

    private async Task<(string Url, string Key)> StartAsync(ApiKeyRole role = ApiKeyRole.Operator)
    {
        await _host.StartAsync(OpenAiApiTests.Configure, b => b.WebHost.UseUrls("http://127.0.0.1:0"), testServer: false);
        var url = _host.App.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.Single();
        return (url, await _host.CreateKeyAsync(role));
    }

    [Fact]
    public async Task AguiClient_EveryEventValid_TextToolCallsStepsInterruptResumeAndError()
    {
        var script = Node.Script("agui-client.mjs", "@ag-ui/client");
        var (url, key) = await StartAsync(ApiKeyRole.Admin);
        var output = await Node.RunAsync(script, new() { ["BUREAU_URL"] = url, ["BUREAU_KEY"] = key });
        var dump = output.ToJsonString();

        Assert.True(output["invalid"]!.AsArray().Count == 0, "events that fail AG-UI's schemas: " + output["invalid"]!.ToJsonString());

        var raw = output["raw"]!;
        Assert.Equal(["RUN_STARTED", "STEP_STARTED", "TEXT_MESSAGE_START", "TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_END", "STEP_FINISHED", "RUN_FINISHED"],
            raw["types"]!.AsArray().Select(t => (string)t!));
        Assert.Equal(("thread-raw", "run-raw-1"), ((string)raw["first"]!["threadId"]!, (string)raw["first"]!["runId"]!));
        Assert.Equal("echo: raw ag-ui", (string?)raw["text"]);
        Assert.Equal(("success", "echo: raw ag-ui"), ((string)raw["last"]!["outcome"]!["type"]!, (string)raw["last"]!["result"]!));
        var rawRun = await _host.Engine.GetRunAsync((string)raw["runId"]!, Ct);
        Assert.Equal((RunStatus.Succeeded, "raw ag-ui"), (rawRun!.Status, rawRun.Input));
        Assert.Equal(5, (int)raw["last"]!["usage"]![0]!["totalTokens"]!);

        var echo = output["echo"]!;
        Assert.Equal("success", (string?)echo["finished"]!["outcome"]);
        var answer = echo["messages"]!.AsArray().Last()!;
        Assert.Equal(("assistant", "echo: from the ag-ui client"), ((string)answer["role"]!, (string)answer["content"]!));

        var refund = output["refund"]!;
        Assert.True(refund["interrupt"] is JsonObject, dump);
        Assert.Equal("interrupt", (string?)refund["first"]!["finished"]!["outcome"]);
        var interrupt = refund["interrupt"]!;
        var waitingRunId = (string)interrupt["metadata"]!["bureau"]!["runId"]!;
        Assert.Equal(("approval", "refund"), ((string)interrupt["reason"]!, (string)interrupt["metadata"]!["bureau"]!["tool"]!));
        Assert.StartsWith(waitingRunId + ":", (string)interrupt["id"]!);
        Assert.Contains("TOOL_CALL_START", refund["first"]!["events"]!.AsArray().Select(t => (string)t!));
        Assert.Equal("success", (string?)refund["second"]!["finished"]!["outcome"]);
        var finalRun = await _host.Engine.GetRunAsync(waitingRunId, Ct);
        Assert.Equal((RunStatus.Succeeded, "done: refunded 250"), (finalRun!.Status, finalRun.Output));
        var messages = refund["messages"]!.AsArray();
        var call = messages.Single(m => m!["toolCalls"] is JsonArray { Count: > 0 })!["toolCalls"]![0]!;
        Assert.Equal(("refund", 250), ((string)call["function"]!["name"]!, (int)JsonNode.Parse((string)call["function"]!["arguments"]!)!["amount"]!));
        var result = messages.Single(m => (string?)m!["role"] == "tool")!;
        Assert.Equal(((string?)call["id"], "refunded 250"), ((string?)result["toolCallId"], (string?)result["content"]));
        Assert.Equal("done: refunded 250", (string?)messages.Last()!["content"]);

        var replay = output["replay"]!;
        var types = replay["types"]!.AsArray().Select(t => (string)t!).ToList();
        Assert.Equal("RUN_STARTED", types[0]);
        Assert.Equal(["TOOL_CALL_START", "TOOL_CALL_ARGS", "TOOL_CALL_END"], types.SkipWhile(t => t != "TOOL_CALL_START").Take(3));
        Assert.Equal(["refunded 250"], replay["results"]!.AsArray().Select(r => (string)r!));
        Assert.Equal("success", (string?)replay["last"]!["outcome"]!["type"]);

        var failing = output["failing"]!;
        Assert.True(failing["error"] is JsonObject, dump);
        Assert.Equal("budget", (string?)failing["error"]!["code"]);
        Assert.Equal("RUN_ERROR", (string?)failing["events"]!.AsArray().Last());
    }

    [Fact]
    public async Task OpenAiNpmClient_PlainStreamedResponsesModelsAndErrors()
    {
        var script = Node.Script("openai-client.mjs", "openai");
        var (url, key) = await StartAsync();
        var output = await Node.RunAsync(script, new() { ["BUREAU_URL"] = url, ["BUREAU_KEY"] = key });

        var models = output["models"]!.AsArray().Select(m => (string)m!["id"]!).ToList();
        Assert.Equal(["desk", "echo", "pager", "refunder", "slow", "spinner"], models);

        var plain = output["plain"]!;
        Assert.Equal(("echo: from node", "assistant", "stop", "chat.completion"), ((string)plain["content"]!, (string)plain["role"]!, (string)plain["finish"]!, (string)plain["object"]!));
        Assert.Equal((string?)plain["id"], (string?)plain["header"]);
        Assert.Equal((3, 2, 5), ((int)plain["usage"]!["prompt_tokens"]!, (int)plain["usage"]!["completion_tokens"]!, (int)plain["usage"]!["total_tokens"]!));
        var run = await _host.Engine.GetRunAsync((string)plain["id"]!, Ct);
        Assert.Equal((RunStatus.Succeeded, "from node"), (run!.Status, run.Input));
        Assert.StartsWith("key:", run.Actor);

        var streamed = output["streamed"]!;
        Assert.Equal("echo: streamed from node", (string?)streamed["text"]);
        Assert.Equal("stop", (string?)streamed["finish"]);
        Assert.Equal(5, (int)streamed["usage"]!["total_tokens"]!);
        var streamedId = (string)Assert.Single(streamed["ids"]!.AsArray())!;
        Assert.Equal("echo: streamed from node", (await _host.Engine.GetRunAsync(streamedId, Ct))!.Output);

        var responses = output["responses"]!;
        Assert.Equal(("completed", "echo: responses from node", 5), ((string)responses["status"]!, (string)responses["text"]!, (int)responses["usage"]!["total_tokens"]!));
        Assert.Equal(((string?)responses["id"], "completed", "echo: responses from node"),
            ((string?)output["retrieved"]!["id"], (string)output["retrieved"]!["status"]!, (string)output["retrieved"]!["text"]!));

        var rs = output["responsesStreamed"]!;
        Assert.Equal("response.created", (string?)rs["types"]![0]);
        Assert.Equal("response.completed", (string?)rs["types"]!.AsArray()[^1]);
        Assert.Contains("response.output_text.delta", rs["types"]!.AsArray().Select(t => (string)t!));
        Assert.Equal("echo: responses streamed from node", (string?)rs["delta"]);
        Assert.Equal("completed", (string?)rs["completed"]!["status"]);

        var errors = output["errors"]!;
        AssertError(errors["unknownModel"]!, "NotFoundError", 404, "invalid_request_error", "model", "model_not_found");
        AssertError(errors["lastNotUser"]!, "BadRequestError", 400, "invalid_request_error", "messages[1].role", null);
        AssertError(errors["clientTools"]!, "BadRequestError", 400, "invalid_request_error", "tools", null);
        AssertError(errors["failedRun"]!, "UnprocessableEntityError", 422, "run_failed", null, "budget");
        Assert.True((bool)errors["failedRunStreamed"]!["thrown"]!, errors["failedRunStreamed"]!.ToJsonString());
        Assert.Equal("run_failed", (string?)errors["failedRunStreamed"]!["type"]);
        AssertError(errors["badKey"]!, "AuthenticationError", 401, "invalid_request_error", "Authorization", "invalid_api_key");
    }

    private static void AssertError(JsonNode e, string name, int status, string type, string? param, string? code)
    {
        Assert.True((bool)e["thrown"]!, e.ToJsonString());
        Assert.Equal((name, status, type, param), ((string)e["name"]!, (int)e["status"]!, (string)e["type"]!, (string?)e["param"]));
        if (code is not null) Assert.Equal(code, (string?)e["code"]);
    }

    [Fact]
    public async Task MeaiOpenAiChatClient_GetResponseAndStreaming()
    {
        var (url, key) = await StartAsync();
        var openai = new OpenAIClient(new ApiKeyCredential(key), new OpenAIClientOptions { Endpoint = new Uri(url + "/v1"), NetworkTimeout = TimeSpan.FromSeconds(60) });
        using IChatClient chat = openai.GetChatClient("echo").AsIChatClient();

        var response = await chat.GetResponseAsync("from M.E.AI", cancellationToken: Ct);
        Assert.Equal("echo: from M.E.AI", response.Text);
        Assert.Equal(ChatFinishReason.Stop, response.FinishReason);
        Assert.Equal(5, response.Usage?.TotalTokenCount);
        var run = await _host.Engine.GetRunAsync(response.ResponseId!, Ct);
        Assert.Equal((RunStatus.Succeeded, "from M.E.AI"), (run!.Status, run.Input));

        var history = new List<ChatMessage>
        {
            new(ChatRole.System, "Be brief."),
            new(ChatRole.User, "My order is 42."),
            new(ChatRole.Assistant, "Noted."),
            new(ChatRole.User, "streamed"),
        };
        var updates = new List<ChatResponseUpdate>();
        await foreach (var u in chat.GetStreamingResponseAsync(history, cancellationToken: Ct)) updates.Add(u);
        var streamed = updates.ToChatResponse();
        Assert.StartsWith("echo: Earlier in this conversation:\n[system] Be brief.", streamed.Text);
        Assert.EndsWith("The message to answer:\nstreamed", streamed.Text);
        Assert.Equal(ChatFinishReason.Stop, streamed.FinishReason);
        var streamedRun = await _host.Engine.GetRunAsync(streamed.ResponseId!, Ct);
        Assert.Equal(streamed.Text, streamedRun!.Output);
    }
}

/// <summary>Runs the node scripts of Interop/js (test.sh installs node and their packages).</summary>
internal static class Node
{
    public static string Dir { get; } = Path.Combine(NodeTool.RepoRoot, "tests", "Bureau.Hosting.Tests", "Interop", "js");

    /// <summary>The script's path; fails the test, saying how to install it, when <paramref name="package"/> is not installed.</summary>
    public static string Script(string name, string package)
    {
        NodeTool.Require(Path.Combine(Dir, "node_modules", package), "tests/Bureau.Hosting.Tests/Interop/js");
        return Path.Combine(Dir, name);
    }

    /// <summary>Runs the script and parses the JSON it prints; fails with its stderr when it exits non-zero.</summary>
    public static async Task<JsonObject> RunAsync(string script, Dictionary<string, string> env, TimeSpan? timeout = null)
    {
        var (code, text, stderr) = await NodeTool.RunAsync("node", [script], Dir, timeout ?? TimeSpan.FromMinutes(2), env);
        Assert.True(code == 0, $"node {Path.GetFileName(script)} exited with {code}: {stderr}\n{text}");
        return JsonNode.Parse(text)!.AsObject();
    }
}
