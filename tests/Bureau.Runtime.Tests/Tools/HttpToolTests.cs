using Bureau.Tools;
using Xunit;
using static Bureau.Tests.Tools.ToolTestSupport;

namespace Bureau.Tests.Tools;

public sealed class HttpToolTests
{
    private static BureauTool Tool(Uri url, string method = "POST", Dictionary<string, string>? headers = null, TimeSpan? timeout = null, int maxResponseBytes = 1024 * 1024) =>
        new ToolFactory().Create(new HttpToolDefinition
        {
            Name = "svc",
            Url = url,
            Method = method,
            Headers = headers ?? [],
            Timeout = timeout,
            MaxResponseBytes = maxResponseBytes,
        });

    [Fact]
    public async Task InvokeAsync_Post_SendsJsonBodyIdempotencyKeyAndHeaders_BodyIsTheResult()
    {
        await using var server = new LoopbackServer((ctx, body) => LoopbackServer.Respond(ctx, 200, "echo: " + body));
        var tool = Tool(new Uri(server.BaseAddress, "echo"), headers: new() { ["X-Api-Version"] = "2" });

        var outcome = await tool.InvokeAsync(Invocation("svc", """{"text":"hi"}""", runId: "r9", step: 4), TestContext.Current.CancellationToken);

        Assert.Equal(ToolOutcome.Success("""echo: {"text":"hi"}"""), outcome);
        var request = Assert.Single(server.Requests);
        Assert.Equal("POST", request.Method);
        Assert.Equal("/echo", request.Url.AbsolutePath);
        Assert.Equal("r9:4", request.Headers["Idempotency-Key"]);
        Assert.Equal("2", request.Headers["X-Api-Version"]);
        Assert.StartsWith("application/json", request.Headers["Content-Type"]);
    }

    [Fact]
    public async Task InvokeAsync_InATracedCall_SendsTheCallsSpanAsTraceparent()
    {
        await using var server = new LoopbackServer((ctx, _) => LoopbackServer.Respond(ctx, 200, "ok"));
        var tool = Tool(server.BaseAddress);
        using var span = new System.Diagnostics.Activity("execute_tool svc").SetIdFormat(System.Diagnostics.ActivityIdFormat.W3C).Start();

        await tool.InvokeAsync(Invocation("svc"), TestContext.Current.CancellationToken);

        Assert.Equal(span.Id, Assert.Single(server.Requests).Headers["traceparent"]);
    }

    [Fact]
    public async Task InvokeAsync_Untraced_SendsNoTraceparent()
    {
        await using var server = new LoopbackServer((ctx, _) => LoopbackServer.Respond(ctx, 200, "ok"));
        var tool = Tool(server.BaseAddress);
        System.Diagnostics.Activity.Current = null;

        await tool.InvokeAsync(Invocation("svc"), TestContext.Current.CancellationToken);

        Assert.Null(Assert.Single(server.Requests).Headers["traceparent"]);
    }

    [Fact]
    public async Task InvokeAsync_ConfiguredIdempotencyKeyHeader_IsReplacedByTheCallsKey()
    {
        await using var server = new LoopbackServer((ctx, _) => LoopbackServer.Respond(ctx, 200, "ok"));
        var tool = Tool(server.BaseAddress, headers: new() { ["Idempotency-Key"] = "static" });

        await tool.InvokeAsync(Invocation("svc"), TestContext.Current.CancellationToken);

        Assert.Equal("run1:7", Assert.Single(server.Requests).Headers["Idempotency-Key"]);
    }

    [Fact]
    public async Task InvokeAsync_Get_SendsArgumentsAsTheQueryString()
    {
        await using var server = new LoopbackServer((ctx, _) => LoopbackServer.Respond(ctx, 200, "found"));
        var tool = Tool(new Uri(server.BaseAddress, "customers?region=eu"), method: "get");

        var outcome = await tool.InvokeAsync(
            Invocation("svc", """{"q":"ann & bob","n":2,"vip":true,"filter":{"since":2024},"gone":null}"""),
            TestContext.Current.CancellationToken);

        Assert.Equal(ToolOutcome.Success("found"), outcome);
        var request = Assert.Single(server.Requests);
        Assert.Equal("GET", request.Method);
        Assert.Equal("", request.Body);
        Assert.Equal("run1:7", request.Headers["Idempotency-Key"]);
        var query = System.Web.HttpUtility.ParseQueryString(request.Url.Query);
        Assert.Equal(["region", "q", "n", "vip", "filter"], query.AllKeys.Select(k => k ?? ""));
        Assert.Equal(("eu", "ann & bob", "2", "true", """{"since":2024}"""), (query["region"], query["q"], query["n"], query["vip"], query["filter"]));
    }

    [Theory]
    [InlineData(503, "HTTP 503 Service Unavailable: ledger is down")]
    [InlineData(404, "HTTP 404 Not Found: no such customer")]
    public async Task InvokeAsync_ErrorStatus_IsAToolErrorWithStatusAndBody(int status, string expected)
    {
        var body = status == 503 ? "ledger is down" : "no such customer";
        await using var server = new LoopbackServer((ctx, _) => LoopbackServer.Respond(ctx, status, body));

        var outcome = await Tool(server.BaseAddress).InvokeAsync(Invocation("svc"), TestContext.Current.CancellationToken);

        Assert.Equal(ToolOutcome.Error(expected, status >= 500 ? ToolFailure.Unavailable : ToolFailure.Error), outcome);   // 5xx: retriable
    }

    [Fact]
    public async Task InvokeAsync_ErrorStatusWithLongBody_CarriesAnExcerpt()
    {
        await using var server = new LoopbackServer((ctx, _) => LoopbackServer.Respond(ctx, 500, "stack: " + new string('x', 5000)));

        var outcome = await Tool(server.BaseAddress).InvokeAsync(Invocation("svc"), TestContext.Current.CancellationToken);

        Assert.True(outcome.IsError);
        Assert.StartsWith("HTTP 500 Internal Server Error: stack: xxx", outcome.Content);
        Assert.EndsWith("…", outcome.Content);
        Assert.InRange(outcome.Content.Length, 500, 540);
    }

    [Fact]
    public async Task InvokeAsync_SlowServer_TimesOut()
    {
        using var release = new CancellationTokenSource();
        await using var server = new LoopbackServer(async (ctx, _) =>
        {
            try { await Task.Delay(Timeout.Infinite, release.Token); } catch (OperationCanceledException) { }
            ctx.Response.Abort();
        });

        var outcome = await Tool(server.BaseAddress, timeout: TimeSpan.FromMilliseconds(300)).InvokeAsync(Invocation("svc"), TestContext.Current.CancellationToken);
        release.Cancel();

        Assert.Equal(ToolOutcome.Error("tool 'svc' timed out after 300ms", ToolFailure.Timeout), outcome);
    }

    [Fact]
    public async Task InvokeAsync_OversizeBody_IsCutAndSaysSo()
    {
        await using var server = new LoopbackServer((ctx, _) => LoopbackServer.Respond(ctx, 200, new string('b', 50_000)));

        var outcome = await Tool(server.BaseAddress, maxResponseBytes: 1000).InvokeAsync(Invocation("svc"), TestContext.Current.CancellationToken);

        Assert.Equal(ToolOutcome.Success(new string('b', 1000) + "\n[output truncated at 1000 bytes]"), outcome);
    }

    [Fact]
    public async Task InvokeAsync_NothingListening_IsAToolError()
    {
        // A bound socket that does not listen: connections are refused, and no other test can take the port meanwhile.
        using var reserved = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        reserved.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        var url = new Uri($"http://127.0.0.1:{((System.Net.IPEndPoint)reserved.LocalEndPoint!).Port}/");

        var outcome = await Tool(url).InvokeAsync(Invocation("svc"), TestContext.Current.CancellationToken);

        Assert.True(outcome.IsError);
        Assert.StartsWith("tool 'svc' failed: ", outcome.Content);
    }

    [Fact]
    public void WithQuery_EscapesNamesAndValues()
    {
        var url = HttpTool.WithQuery(new Uri("http://127.0.0.1/x"), ParseJson("""{"a b":"c/d?e"}"""));

        Assert.Equal("http://127.0.0.1/x?a%20b=c%2Fd%3Fe", url.AbsoluteUri);
    }
}
