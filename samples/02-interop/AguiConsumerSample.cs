using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json.Nodes;

namespace InteropSample;

/// <summary>One AG-UI event as it came off the stream: its type and its JSON.</summary>
public sealed record AguiEvent(string Type, JsonObject Data);

/// <summary>
/// An AG-UI stream consumer: posts a <c>RunAgentInput</c> to <c>/v1/agents/{name}/agui</c> and reads the server-sent
/// events (RUN_STARTED, STEP_*, TEXT_MESSAGE_*, TOOL_CALL_*, RUN_FINISHED) until the stream ends (docs/interop.md).
/// </summary>
public static class AguiConsumerSample
{
    public static async Task<IReadOnlyList<AguiEvent>> StreamAsync(Uri bureau, string key, string agent, string text, CancellationToken cancellationToken = default)
    {
        using var http = new HttpClient { BaseAddress = bureau, Timeout = TimeSpan.FromMinutes(5) };
        var input = new JsonObject
        {
            ["threadId"] = "thread-" + Guid.NewGuid().ToString("n"),
            ["runId"] = "run-" + Guid.NewGuid().ToString("n"),
            ["messages"] = new JsonArray(new JsonObject { ["id"] = "m1", ["role"] = "user", ["content"] = text }),
            ["tools"] = new JsonArray(),
            ["context"] = new JsonArray(),
            ["state"] = new JsonObject(),
            ["forwardedProps"] = new JsonObject(),
        };
        using var request = new HttpRequestMessage(HttpMethod.Post, $"v1/agents/{agent}/agui") { Content = JsonContent.Create(input) };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("text/event-stream"));
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        response.EnsureSuccessStatusCode();
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancellationToken));
        var events = new List<AguiEvent>();
        while (await reader.ReadLineAsync(cancellationToken) is { } line)
        {
            if (!line.StartsWith("data:", StringComparison.Ordinal)) continue; // comments (keep-alives) and blank lines
            var data = JsonNode.Parse(line["data:".Length..])!.AsObject();
            events.Add(new AguiEvent((string)data["type"]!, data));
        }
        return events;
    }
}
