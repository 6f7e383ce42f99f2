using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Bureau.Tests.Support;

/// <summary>What the faulty server does with one request.</summary>
public abstract record Fault
{
    /// <summary>Answers with a text completion.</summary>
    public sealed record Answer(string Text) : Fault;
    /// <summary>Answers with an error status (and a Retry-After header, when given).</summary>
    public sealed record Status(int Code, string? RetryAfter = null) : Fault;
    /// <summary>Never answers (until the client goes away or the server stops).</summary>
    public sealed record Hang : Fault;

    public static Fault Ok(string text = "ok") => new Answer(text);
}

/// <summary>
/// A loopback OpenAI-compatible Chat Completions server (Kestrel on 127.0.0.1, port 0) that injects faults:
/// request N (from 1) gets <c>script(N)</c>. It counts every request it receives, so tests count attempts where
/// they land.
/// </summary>
public sealed class FaultyChatServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly Func<int, Fault> _script;
    private int _count;

    private FaultyChatServer(WebApplication app, Func<int, Fault> script)
    {
        _app = app;
        _script = script;
    }

    /// <summary>The base address (<c>/v1</c>).</summary>
    public Uri Endpoint { get; private set; } = null!;

    /// <summary>Requests received so far.</summary>
    public int Requests => Volatile.Read(ref _count);

    public static async Task<FaultyChatServer> StartAsync(Func<int, Fault> script)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(k => k.Listen(System.Net.IPAddress.Loopback, 0));
        var app = builder.Build();
        var server = new FaultyChatServer(app, script);
        app.MapPost("/v1/chat/completions", server.HandleAsync);
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        server.Endpoint = new Uri(address.TrimEnd('/') + "/v1");
        return server;
    }

    private async Task HandleAsync(HttpContext ctx)
    {
        var n = Interlocked.Increment(ref _count);
        switch (_script(n))
        {
            case Fault.Answer a:
                ctx.Response.ContentType = "application/json";
                await ctx.Response.WriteAsync(Completion(a.Text), ctx.RequestAborted);
                break;
            case Fault.Status s:
                ctx.Response.StatusCode = s.Code;
                if (s.RetryAfter is not null) ctx.Response.Headers.RetryAfter = s.RetryAfter;
                ctx.Response.ContentType = "application/json";
                await ctx.Response.WriteAsync($$$"""{"error":{"message":"injected {{{s.Code}}}","type":"server_error","code":null}}""", ctx.RequestAborted);
                break;
            case Fault.Hang:
                try { await Task.Delay(Timeout.Infinite, ctx.RequestAborted); }
                catch (OperationCanceledException) { /* the client gave up */ }
                break;
        }
    }

    private static string Completion(string text) => $$$"""
        {"id":"chatcmpl-{{{Guid.NewGuid():n}}}","object":"chat.completion","created":1700000000,"model":"faulty-test-model",
         "choices":[{"index":0,"message":{"role":"assistant","content":{{{JsonValue.Create(text).ToJsonString()}}}},"finish_reason":"stop","logprobs":null}],
         "usage":{"prompt_tokens":100,"completion_tokens":20,"total_tokens":120}}
        """;

    public async ValueTask DisposeAsync()
    {
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        await _app.StopAsync(stop.Token);
        await _app.DisposeAsync();
    }
}
