using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Xunit;

namespace Bureau.Hosting.Tests;

/// <summary>
/// The OpenAPI document as clients see it: the served one agrees with docs/openapi.json, an independent linter
/// (Redocly CLI, recommended rules) finds nothing, and the types a generator (openapi-typescript) makes from it
/// accept the host's real answers (TypeScript's compiler checks each captured answer against its operation's type,
/// fields missing or undocumented included). The node tools come from tests/openapi (test.sh runs npm ci there).
/// </summary>
public sealed class OpenApiContractTests : IAsyncLifetime
{
    private readonly TestHost _host = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;
    private static readonly string s_root = NodeTool.RepoRoot;
    private static readonly string s_tools = Path.Combine(s_root, "tests", "openapi");
    private static readonly string s_committed = Path.Combine(s_root, "docs", "openapi.json");

    public ValueTask InitializeAsync() => new(_host.StartAsync());
    public ValueTask DisposeAsync() => _host.DisposeAsync();

    [Fact]
    public async Task ServedDocument_AgreesWithTheCommittedOne()
    {
        var served = await ServedDocumentAsync();
        if (Environment.GetEnvironmentVariable("BUREAU_UPDATE_OPENAPI") == "1") await File.WriteAllTextAsync(s_committed, served, Ct);
        var committed = File.Exists(s_committed) ? (await File.ReadAllTextAsync(s_committed, Ct)).ReplaceLineEndings("\n") : "(missing)";
        Assert.True(served == committed,
            "docs/openapi.json differs from the document the host serves: regenerate it with " +
            "BUREAU_UPDATE_OPENAPI=1 dotnet test tests/Bureau.Hosting.Tests --filter OpenApiContractTests, and review the diff");
    }

    [Fact]
    public async Task Lint_RecommendedRules_FindNothing()
    {
        var file = await WriteServedAsync();
        var (code, output) = await NodeAsync("redocly", "lint", file, "--config", Path.Combine(s_tools, "redocly.yaml"), "--format=json");
        var json = output[output.IndexOf('{')..(output.LastIndexOf('}') + 1)];
        var problems = JsonNode.Parse(json)!["problems"]!.AsArray();
        Assert.True(code == 0 && problems.Count == 0, $"redocly lint (exit {code}), errors and warnings:\n{output}");
    }

    [Fact]
    public async Task GeneratedTypes_AcceptTheHostsRealAnswers()
    {
        var file = await WriteServedAsync();
        var dir = Path.GetDirectoryName(file)!;
        var (code, output) = await NodeAsync("openapi-typescript", file, "--output", Path.Combine(dir, "api.ts"));
        Assert.True(code == 0, $"openapi-typescript (exit {code}):\n{output}");

        var answers = await CaptureAnswersAsync();
        var check = new StringBuilder("""
            import type { operations } from "./api";
            type Body<Op extends keyof operations, S extends keyof operations[Op]["responses"]> =
              operations[Op]["responses"][S] extends { content: infer C } ? C[keyof C] : never;

            """);
        var i = 0;
        foreach (var (operation, status, json) in answers)
            check.Append(CultureInvariant($"export const answer{i++}: Body<\"{operation}\", {status}> = {json};\n"));
        await File.WriteAllTextAsync(Path.Combine(dir, "check.ts"), check.ToString(), Ct);
        (code, output) = await NodeAsync("tsc", "--noEmit", "--strict", "--target", "es2022", "--module", "es2022", "--moduleResolution", "bundler", Path.Combine(dir, "check.ts"));
        Assert.True(code == 0, $"the generated types do not accept the host's answers (tsc exit {code}):\n{output}\n\nchecked:\n{check}");
        Assert.True(answers.Count >= 28, $"only {answers.Count} answers were captured");
    }

    /// <summary>One real answer per documented operation and status that a host without triggers can give.</summary>
    private async Task<List<(string Operation, int Status, string Json)>> CaptureAnswersAsync()
    {
        var answers = new List<(string, int, string)>();
        var client = _host.Client;

        async Task<JsonNode> Capture(string operation, HttpRequestMessage request, HttpStatusCode expected)
        {
            using var response = await client.SendAsync(request, Ct);
            var body = await response.Content.ReadAsStringAsync(Ct);
            Assert.True(response.StatusCode == expected, $"{operation}: {(int)response.StatusCode} {body}");
            if (body.Length > 0) answers.Add((operation, (int)expected, body));
            return body.Length > 0 ? JsonNode.Parse(body)! : new JsonObject();
        }
        static HttpRequestMessage Get(string path) => new(HttpMethod.Get, path);
        static HttpRequestMessage Post(string path, string json, string type = "application/json") =>
            new(HttpMethod.Post, path) { Content = new StringContent(json, Encoding.UTF8, type) };

        var started = await Capture("StartRun", Post("/v1/runs", """{"agent":"echo","input":"typed"}"""), HttpStatusCode.Accepted);
        var id = (string)started["id"]!;
        await _host.WaitAsync(id);
        await Capture("StartRun", Post("/v1/runs", """{"agent":"echo","input":"typed"}""").WithHeader("Idempotency-Key", "k1"), HttpStatusCode.Accepted);
        await Capture("StartRun", Post("/v1/runs", """{"agent":"echo","input":"typed"}""").WithHeader("Idempotency-Key", "k1"), HttpStatusCode.OK);
        await Capture("GetRun", Get($"/v1/runs/{id}"), HttpStatusCode.OK);
        await Capture("ListRuns", Get("/v1/runs?limit=2"), HttpStatusCode.OK);
        await Capture("ReplayRun", new HttpRequestMessage(HttpMethod.Post, $"/v1/runs/{id}/replay"), HttpStatusCode.OK);
        await Capture("ReplayRun", new HttpRequestMessage(HttpMethod.Post, "/v1/runs/no-such-run/replay"), HttpStatusCode.NotFound);
        await Capture("WhatIfRun", Post($"/v1/runs/{id}/whatif", """{"fromStep":1}"""), HttpStatusCode.OK);
        await Capture("WhatIfRun", Post($"/v1/runs/{id}/whatif", """{"fromStep":0}"""), HttpStatusCode.BadRequest);
        var slow = (string)(await Capture("StartRun", Post("/v1/runs", """{"agent":"slow","input":"held"}"""), HttpStatusCode.Accepted))["id"]!;
        await Capture("CancelRun", Post($"/v1/runs/{slow}/cancel", """{"reason":"typed client"}"""), HttpStatusCode.Accepted);
        await _host.WaitAsync(slow);
        await Capture("GetRun", Get($"/v1/runs/{slow}"), HttpStatusCode.OK);
        await Capture("GetRun", Get("/v1/runs/no-such-run"), HttpStatusCode.NotFound);
        await Capture("StartRun", Post("/v1/runs", """{"agent":"nobody","input":"x"}"""), HttpStatusCode.NotFound);
        await Capture("ListAgents", Get("/v1/agents"), HttpStatusCode.OK);
        await Capture("GetAgent", Get("/v1/agents/echo"), HttpStatusCode.OK);
        await Capture("DependencyHealth", Get("/v1/health/dependencies"), HttpStatusCode.OK);
        await Capture("RunFailures", Get("/v1/failures"), HttpStatusCode.OK);
        await Capture("Costs", Get("/v1/costs"), HttpStatusCode.OK);
        await Capture("Costs", Get("/v1/costs?by=day"), HttpStatusCode.OK);
        await Capture("ListApprovals", Get("/v1/approvals"), HttpStatusCode.OK);
        await Capture("PublishEvent", Post("/v1/events", """{"specversion":"1.0","id":"e1","source":"/tests","type":"nobody.listens"}""", "application/cloudevents+json"), HttpStatusCode.OK);
        await Capture("ListDeadLetters", Get("/v1/events/dead"), HttpStatusCode.OK);
        await Capture("GetDeadLetter", Get("/v1/events/dead/none"), HttpStatusCode.NotFound);
        await Capture("OpenAiChatCompletions", Post("/v1/chat/completions", """{"model":"nobody","messages":[{"role":"user","content":"hi"}]}"""), HttpStatusCode.NotFound);
        await Capture("OpenAiChatCompletions", Post("/v1/chat/completions", """{"model":"echo"}"""), HttpStatusCode.BadRequest);
        await Capture("ListMemory", Get("/v1/memory/team:support"), HttpStatusCode.OK);
        await Capture("GetMemoryFact", Get("/v1/memory/team:support/nothing"), HttpStatusCode.NotFound);
        await Capture("AddBoardTask", Post("/v1/boards/support/tasks", """{"id":"t1","title":"Call Ada back"}"""), HttpStatusCode.Created);
        await Capture("ChangeBoardTask", Post("/v1/boards/support/tasks/t1/claim", "{}"), HttpStatusCode.OK);
        await Capture("ChangeBoardTask", Post("/v1/boards/support/tasks/t1/claim", "{}"), HttpStatusCode.Conflict);
        await Capture("AddBoardDecision", Post("/v1/boards/support/decisions", """{"title":"Refunds","text":"Up to 50 EUR without approval"}"""), HttpStatusCode.Created);
        await Capture("SetBoardKey", new HttpRequestMessage(HttpMethod.Put, "/v1/boards/support/keys/shift") { Content = new StringContent("""{"value":"ada","expectedVersion":0}""", Encoding.UTF8, "application/json") }, HttpStatusCode.OK);
        await Capture("GetBoard", Get("/v1/boards/support"), HttpStatusCode.OK);
        await Capture("ListKeys", Get("/v1/keys"), HttpStatusCode.OK);
        // Last: once a key exists, the host requires one.
        var key = await Capture("CreateKey", Post("/v1/keys", """{"role":"admin","name":"typed"}"""), HttpStatusCode.Created);
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", (string)key["key"]!);
        await Capture("ListKeys", Get("/v1/keys?revoked=true"), HttpStatusCode.OK);
        client.DefaultRequestHeaders.Authorization = null;
        await Capture("ListKeys", Get("/v1/keys"), HttpStatusCode.Unauthorized);
        return answers;
    }

    private async Task<string> ServedDocumentAsync()
    {
        using var response = await _host.Client.GetAsync("/openapi/v1.json", Ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var doc = JsonNode.Parse(await response.Content.ReadAsStringAsync(Ct))!.AsObject();
        // Where this host listens: each host says its own; the committed document names bureau serve's default.
        doc["servers"] = new JsonArray(new JsonObject { ["url"] = "http://127.0.0.1:5080", ["description"] = "bureau serve's default address" });
        return doc.ToJsonString(new JsonSerializerOptions { WriteIndented = true }).ReplaceLineEndings("\n") + "\n";
    }

    private async Task<string> WriteServedAsync()
    {
        var dir = Path.Combine(Path.GetTempPath(), "bureau-openapi-tests", Guid.NewGuid().ToString("n"));
        Directory.CreateDirectory(dir);
        var file = Path.Combine(dir, "openapi.json");
        await File.WriteAllTextAsync(file, await ServedDocumentAsync(), Ct);
        return file;
    }

    private static async Task<(int Code, string Output)> NodeAsync(string tool, params string[] arguments)
    {
        var bin = Path.Combine(s_tools, "node_modules", ".bin", tool);
        NodeTool.Require(bin, "tests/openapi");
        var (code, stdout, stderr) = await NodeTool.RunAsync(bin, arguments, s_tools, TimeSpan.FromMinutes(3),
            new Dictionary<string, string> { ["REDOCLY_TELEMETRY"] = "off", ["REDOCLY_SUPPRESS_UPDATE_NOTICE"] = "true" });
        return (code, stdout + stderr);
    }

    private static string CultureInvariant(FormattableString s) => FormattableString.Invariant(s);
}

internal static class RequestExtensions
{
    public static HttpRequestMessage WithHeader(this HttpRequestMessage request, string name, string value)
    {
        request.Headers.Add(name, value);
        return request;
    }
}
