using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Bureau.Tools;

/// <summary>
/// Calls a remote A2A agent (<see cref="A2AToolDefinition"/>): JSON-RPC <c>SendMessage</c>, blocking, with the call's
/// idempotency key as the messageId. A completed task's artifacts (their text parts) are the result; a task that
/// failed, was canceled or rejected, or that needs input, is a tool error saying so; a JSON-RPC error is a tool error
/// with its code.
/// </summary>
internal sealed class A2ATool : BureauTool
{
    private readonly A2AToolDefinition _definition;
    private readonly HttpClient _client;

    public A2ATool(A2AToolDefinition definition, HttpClient client) : base(definition)
    {
        if (!definition.Url.IsAbsoluteUri || (definition.Url.Scheme != Uri.UriSchemeHttp && definition.Url.Scheme != Uri.UriSchemeHttps))
            throw new ArgumentException($"tool '{definition.Name}': url must be an absolute http or https address (the agent's JSON-RPC interface), was '{definition.Url}'", nameof(definition));
        if (definition.MaxResultChars <= 0)
            throw new ArgumentException($"tool '{definition.Name}': maxResultChars must be positive, was {definition.MaxResultChars}", nameof(definition));
        _definition = definition;
        _client = client;
    }

    /// <inheritdoc />
    protected override bool HonoursCancellation => true;

    protected override async Task<ToolOutcome> InvokeCoreAsync(ToolInvocation invocation, CancellationToken cancellationToken)
    {
        var args = invocation.Arguments;
        var text = args.ValueKind == JsonValueKind.Object && args.TryGetProperty("message", out var m) && m.ValueKind == JsonValueKind.String ? m.GetString()! : null;
        if (string.IsNullOrEmpty(text)) return ToolOutcome.Error($"tool '{Name}': 'message' is required (the text to send the agent)");
        var message = new JsonObject
        {
            ["messageId"] = invocation.IdempotencyKey,
            ["role"] = "ROLE_USER",
            ["parts"] = new JsonArray(new JsonObject { ["text"] = text }),
        };
        if (args.TryGetProperty("contextId", out var c) && c.ValueKind == JsonValueKind.String && c.GetString() is { Length: > 0 } contextId) message["contextId"] = contextId;
        var rpc = new JsonObject
        {
            ["jsonrpc"] = "2.0",
            ["id"] = invocation.IdempotencyKey,
            ["method"] = "SendMessage",
            ["params"] = new JsonObject { ["message"] = message, ["configuration"] = new JsonObject { ["returnImmediately"] = false } },
        };

        using var request = new HttpRequestMessage(HttpMethod.Post, _definition.Url)
        {
            Content = new StringContent(rpc.ToJsonString(), new UTF8Encoding(false), "application/json"),
        };
        foreach (var (name, value) in _definition.Headers) request.Headers.TryAddWithoutValidation(name, value);
        request.Headers.TryAddWithoutValidation("A2A-Version", "1.0");
        using var response = await _client.SendAsync(request, cancellationToken);
        var body = await response.Content.ReadAsStringAsync(cancellationToken);
        JsonObject? answer;
        try
        {
            answer = JsonNode.Parse(body) as JsonObject;
        }
        catch (JsonException)
        {
            answer = null;
        }
        var code = (int)response.StatusCode;
        var unavailable = code is 408 or 429 || code >= 500;
        if (answer?["error"] is JsonObject error)
        {
            return ToolOutcome.Error($"the agent answered error {(int?)error["code"]}: {(string?)error["message"]}",
                unavailable ? ToolFailure.Unavailable : ToolFailure.Error);
        }
        if (!response.IsSuccessStatusCode || answer?["result"] is not JsonObject result)
        {
            var excerpt = body.Length > 500 ? body[..500] + "..." : body;
            return ToolOutcome.Error($"the agent did not answer a JSON-RPC result (HTTP {code}): {excerpt}", unavailable ? ToolFailure.Unavailable : ToolFailure.Error);
        }

        if (result["message"] is JsonObject reply) return Result(Text(reply["parts"]));
        if (result["task"] is not JsonObject task) return ToolOutcome.Error("the agent's answer holds neither a task nor a message");
        var state = (string?)task["status"]?["state"];
        var why = Text(task["status"]?["message"]?["parts"]);
        return state switch
        {
            "TASK_STATE_COMPLETED" => Result(string.Join("\n", (task["artifacts"] as JsonArray ?? []).Select(a => Text(a?["parts"])).Where(t => t.Length > 0)) is { Length: > 0 } output
                ? output
                : Text((task["history"] as JsonArray)?.LastOrDefault(h => (string?)h?["role"] == "ROLE_AGENT")?["parts"])),
            "TASK_STATE_INPUT_REQUIRED" or "TASK_STATE_AUTH_REQUIRED" =>
                ToolOutcome.Error($"the agent's task {(string?)task["id"]} needs {(state == "TASK_STATE_AUTH_REQUIRED" ? "authentication" : "input")} it cannot get from this call{(why.Length > 0 ? ": " + why : "")}"),
            _ => ToolOutcome.Error($"the agent's task {(string?)task["id"]} ended {state ?? "without a state"}{(why.Length > 0 ? ": " + why : "")}"),
        };
    }

    private ToolOutcome Result(string text) => ToolOutcome.Success(text.Length <= _definition.MaxResultChars
        ? text
        : text[.._definition.MaxResultChars] + $"\n[cut: the agent's answer was {text.Length} characters, more than {_definition.MaxResultChars}]");

    /// <summary>The text of parts: text parts as they are, data parts as JSON.</summary>
    private static string Text(JsonNode? parts) => parts is JsonArray array
        ? string.Join("\n", array.Select(p => p?["text"] is JsonValue t ? (string?)t : p?["data"] is { } d ? d.ToJsonString() : null).Where(s => s is not null))
        : "";
}
