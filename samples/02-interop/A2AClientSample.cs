using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json.Nodes;

namespace InteropSample;

/// <summary>
/// An A2A 1.0 client (JSON-RPC binding, plain HTTP): reads the agent's card, sends a message, reads the task's answer
/// from its artifacts (docs/a2a.md). The task is a durable Bureau run.
/// </summary>
public static class A2AClientSample
{
    public static async Task<string> SendAsync(Uri bureau, string key, string agent, string text, CancellationToken cancellationToken = default)
    {
        using var http = new HttpClient { BaseAddress = bureau };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        var card = await http.GetFromJsonAsync<JsonObject>($"a2a/agents/{agent}/.well-known/agent-card.json", cancellationToken)
                   ?? throw new InvalidOperationException("no agent card");
        var endpoint = (string?)card["supportedInterfaces"]?.AsArray().FirstOrDefault(i => (string?)i?["protocolBinding"] == "JSONRPC")?["url"]
                       ?? new Uri(bureau, $"a2a/agents/{agent}").AbsoluteUri;
        var request = new JsonObject
        {
            ["jsonrpc"] = "2.0",
            ["id"] = 1,
            ["method"] = "SendMessage",
            ["params"] = new JsonObject
            {
                ["message"] = new JsonObject
                {
                    ["role"] = "ROLE_USER",
                    ["messageId"] = Guid.NewGuid().ToString(),
                    ["parts"] = new JsonArray(new JsonObject { ["text"] = text }),
                },
            },
        };
        using var response = await http.PostAsJsonAsync(endpoint, request, cancellationToken);
        response.EnsureSuccessStatusCode();
        var body = await response.Content.ReadFromJsonAsync<JsonObject>(cancellationToken) ?? throw new InvalidOperationException("no JSON-RPC answer");
        if (body["error"] is JsonObject error) throw new InvalidOperationException($"A2A error {error["code"]}: {error["message"]}");
        var task = body["result"]?["task"] ?? throw new InvalidOperationException("SendMessage answered no task: " + body.ToJsonString());
        var state = (string?)task["status"]?["state"];
        var answer = string.Concat(task["artifacts"]?.AsArray().SelectMany(a => a?["parts"]?.AsArray() ?? []).Select(p => (string?)p?["text"]) ?? []);
        return $"{answer} ({state}, task {task["id"]})";
    }
}
