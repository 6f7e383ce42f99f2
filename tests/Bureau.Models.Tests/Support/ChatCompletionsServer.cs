using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;

namespace Bureau.Models.Tests.Support;

/// <summary>One request the server received.</summary>
internal sealed record ReceivedRequest(string Method, string Path, string? Authorization, string Body)
{
    public JsonObject Json => JsonNode.Parse(Body)!.AsObject();
}

/// <summary>How the server answers one request.</summary>
internal delegate Task Responder(HttpListenerResponse response, CancellationToken stopping);

/// <summary>
/// A real HTTP server on 127.0.0.1 that speaks the Chat Completions wire format. Request N gets
/// responder N (the last responder answers every request after it) and every request is recorded.
/// </summary>
internal sealed class ChatCompletionsServer : IAsyncDisposable
{
    private readonly HttpListener _listener;
    private readonly Responder[] _responders;
    private readonly CancellationTokenSource _stopping = new();
    private readonly ConcurrentQueue<ReceivedRequest> _requests = new();
    private readonly ConcurrentBag<Task> _handlers = [];
    private readonly Task _loop;
    private int _count;

    private ChatCompletionsServer(HttpListener listener, int port, Responder[] responders)
    {
        _listener = listener;
        _responders = responders;
        Endpoint = new Uri($"http://127.0.0.1:{port}/v1");
        _loop = AcceptAsync();
    }

    /// <summary>The base address to give the client (<c>/v1</c>; the client posts to <c>/v1/chat/completions</c>).</summary>
    public Uri Endpoint { get; }

    /// <summary>The requests received so far, in order of arrival.</summary>
    public IReadOnlyList<ReceivedRequest> Requests => [.. _requests];

    /// <summary>
    /// The requests received once at least <paramref name="count"/> have arrived (or after 10 s): a client
    /// that gave up may do so before the server has finished reading what it sent.
    /// </summary>
    public async Task<IReadOnlyList<ReceivedRequest>> WaitForRequestsAsync(int count)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (_requests.Count < count && DateTime.UtcNow < deadline) await Task.Delay(20);
        return Requests;
    }

    public static ChatCompletionsServer Start(params Responder[] responders)
    {
        if (responders.Length == 0) throw new ArgumentException("Give the server at least one responder.", nameof(responders));
        for (var attempt = 0; ; attempt++)
        {
            var port = FreePort();
            var listener = new HttpListener();
            listener.Prefixes.Add($"http://127.0.0.1:{port}/");
            try
            {
                listener.Start();
                return new ChatCompletionsServer(listener, port, responders);
            }
            catch (HttpListenerException) when (attempt < 5)
            {
                listener.Close();   // the port was taken between probing and binding: try another
            }
        }
    }

    private static int FreePort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }

    private async Task AcceptAsync()
    {
        while (!_stopping.IsCancellationRequested)
        {
            HttpListenerContext context;
            try
            {
                context = await _listener.GetContextAsync();
            }
            catch (Exception) when (_stopping.IsCancellationRequested)
            {
                return;
            }
            _handlers.Add(HandleAsync(context));
        }
    }

    private async Task HandleAsync(HttpListenerContext context)
    {
        var request = context.Request;
        string body;
        using (var reader = new StreamReader(request.InputStream, Encoding.UTF8))
        {
            body = await reader.ReadToEndAsync(_stopping.Token);
        }
        _requests.Enqueue(new ReceivedRequest(request.HttpMethod, request.Url!.AbsolutePath, request.Headers["Authorization"], body));
        var index = Interlocked.Increment(ref _count) - 1;
        var responder = _responders[Math.Min(index, _responders.Length - 1)];
        try
        {
            await responder(context.Response, _stopping.Token);
            context.Response.Close();
        }
        catch (Exception)
        {
            context.Response.Abort();   // the client went away or the server is stopping
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        _listener.Stop();
        _listener.Close();
        try { await _loop; } catch (Exception) { /* stopping */ }
        foreach (var handler in _handlers)
        {
            try { await handler; } catch (Exception) { /* aborted */ }
        }
        _stopping.Dispose();
    }

    // ----- responders -----

    /// <summary>Answers with a JSON body.</summary>
    public static Responder Json(string json, int status = 200, params (string Name, string Value)[] headers) => async (response, ct) =>
    {
        response.StatusCode = status;
        response.ContentType = "application/json";
        foreach (var (name, value) in headers) response.AddHeader(name, value);
        var bytes = Encoding.UTF8.GetBytes(json);
        response.ContentLength64 = bytes.Length;
        await response.OutputStream.WriteAsync(bytes, ct);
    };

    /// <summary>Answers with an error status and an OpenAI-style error body.</summary>
    public static Responder Error(int status, params (string Name, string Value)[] headers) =>
        Json($$$"""{"error":{"message":"server says {{{status}}}","type":"server_error","code":null}}""", status, headers);

    /// <summary>Answers with server-sent events, one <c>data:</c> line per chunk, then <c>[DONE]</c>.</summary>
    public static Responder Sse(params string[] chunks) => async (response, ct) =>
    {
        response.StatusCode = 200;
        response.ContentType = "text/event-stream";
        response.SendChunked = true;
        foreach (var chunk in chunks.Append("[DONE]"))
        {
            var bytes = Encoding.UTF8.GetBytes($"data: {chunk}\n\n");
            await response.OutputStream.WriteAsync(bytes, ct);
            await response.OutputStream.FlushAsync(ct);
        }
    };

    /// <summary>Waits (until the server stops) and then answers.</summary>
    public static Responder Slow(TimeSpan delay, Responder then) => async (response, ct) =>
    {
        await Task.Delay(delay, ct);
        await then(response, ct);
    };

    /// <summary>A complete chat.completion body with a text answer and usage.</summary>
    public static string Completion(string text, int promptTokens = 12, int completionTokens = 3) => $$$"""
        {"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"gpt-test",
         "choices":[{"index":0,"message":{"role":"assistant","content":{{{JsonValue.Create(text).ToJsonString()}}}},"finish_reason":"stop","logprobs":null}],
         "usage":{"prompt_tokens":{{{promptTokens}}},"completion_tokens":{{{completionTokens}}},"total_tokens":{{{promptTokens + completionTokens}}}}}
        """;
}
