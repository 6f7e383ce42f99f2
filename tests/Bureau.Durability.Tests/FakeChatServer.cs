using System.Collections.Concurrent;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Bureau.Durability.Tests;

/// <summary>
/// An OpenAI-compatible Chat Completions server on loopback. For run input r: turn 1 calls `charge`,
/// turn 2 calls `ledger`, turn 3 answers `done r`. Every answer's `model` is `fake-{seq}` with a
/// global sequence number, so a test can tell whether a journaled answer was requested again later.
/// </summary>
public sealed class FakeChatServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private long _seq;

    /// <summary>(input, turn) → every sequence number issued for it, in order.</summary>
    public ConcurrentDictionary<(string Input, int Turn), ConcurrentQueue<long>> Issued { get; } = new();

    private FakeChatServer(WebApplication app) => _app = app;

    public string BaseUrl { get; private set; } = "";

    /// <summary>When set, every other request (the 1st, 3rd, ...) is answered 429 with <c>Retry-After: 1</c>.</summary>
    public bool ThrottleHalf { get; set; }

    /// <summary>Requests answered 429.</summary>
    public int Throttled => Volatile.Read(ref _throttled);

    private int _requests, _throttled;

    public static async Task<FakeChatServer> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        var app = builder.Build();
        var server = new FakeChatServer(app);
        app.MapPost("/v1/chat/completions", server.HandleAsync);
        await app.StartAsync();
        server.BaseUrl = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First() + "/v1";
        return server;
    }

    private async Task HandleAsync(HttpContext ctx)
    {
        if (Interlocked.Increment(ref _requests) % 2 == 1 && ThrottleHalf)
        {
            Interlocked.Increment(ref _throttled);
            ctx.Response.StatusCode = 429;
            ctx.Response.Headers.RetryAfter = "1";
            ctx.Response.ContentType = "application/json";
            await ctx.Response.WriteAsync("""{"error":{"message":"rate limited (injected)","type":"rate_limit_error","code":null}}""");
            return;
        }
        var body = await JsonNode.ParseAsync(ctx.Request.Body);
        var messages = body!["messages"]!.AsArray();
        var input = messages.First(m => (string?)m!["role"] == "user")!["content"] switch
        {
            JsonValue v => (string)v!,
            JsonArray parts => (string)parts[0]!["text"]!,
            var other => other!.ToJsonString(),
        };
        var turn = messages.Count(m => (string?)m!["role"] == "assistant") + 1;
        var seq = Interlocked.Increment(ref _seq);
        Issued.GetOrAdd((input, turn), _ => new ConcurrentQueue<long>()).Enqueue(seq);

        JsonObject message = turn switch
        {
            1 => ToolCall(seq, "charge", input),
            2 => ToolCall(seq, "ledger", input),
            _ => new JsonObject { ["role"] = "assistant", ["content"] = $"done {input}" },
        };
        var response = new JsonObject
        {
            ["id"] = $"chatcmpl-{seq}",
            ["object"] = "chat.completion",
            ["created"] = 1700000000,
            ["model"] = $"fake-{seq}",
            ["choices"] = new JsonArray(new JsonObject
            {
                ["index"] = 0,
                ["message"] = message,
                ["finish_reason"] = turn <= 2 ? "tool_calls" : "stop",
            }),
            ["usage"] = new JsonObject { ["prompt_tokens"] = 10, ["completion_tokens"] = 5, ["total_tokens"] = 15 },
        };
        ctx.Response.ContentType = "application/json";
        await ctx.Response.WriteAsync(response.ToJsonString());
    }

    private static JsonObject ToolCall(long seq, string tool, string input) => new()
    {
        ["role"] = "assistant",
        ["content"] = null,
        ["tool_calls"] = new JsonArray(new JsonObject
        {
            ["id"] = $"call_{seq}",
            ["type"] = "function",
            ["function"] = new JsonObject { ["name"] = tool, ["arguments"] = JsonSerializer.Serialize(new { n = input }) },
        }),
    };

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
