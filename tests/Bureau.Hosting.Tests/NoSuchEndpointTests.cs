using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Xunit;

namespace Bureau.Hosting.Tests;

/// <summary>
/// Under /v1 a path no endpoint has is a 404 problem pointing at the endpoint list, and a path with the wrong method a
/// 405 problem naming the methods it allows (and the Allow header); the app's own endpoints, under /v1 or elsewhere,
/// and paths outside /v1 keep what routing answers.
/// </summary>
public sealed class NoSuchEndpointTests : IAsyncDisposable
{
    private readonly TestHost _host = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask DisposeAsync() => _host.DisposeAsync();

    private Task StartAsync() => _host.StartAsync(mapApp: app =>
    {
        app.MapGet("/v1/custom/{id}", (string id) => Results.Text("custom " + id)); // the app's own endpoint under /v1
        app.MapGet("/mine", () => Results.Text("mine"));
    });

    private async Task<HttpResponseMessage> SendAsync(HttpMethod method, string path) =>
        await _host.Client.SendAsync(new HttpRequestMessage(method, path), Ct);

    [Fact]
    public async Task UnknownPathUnderV1_Is404Problem_PointingAtTheEndpointList()
    {
        await StartAsync();
        foreach (var (method, path) in new[] { (HttpMethod.Get, "/v1/nothing"), (HttpMethod.Post, "/v1/runs/r1/nothing"), (HttpMethod.Delete, "/v1/"), (HttpMethod.Get, "/v1") })
        {
            using var res = await SendAsync(method, path);
            var problem = await Http.ProblemAsync(res, 404);
            Assert.Equal("no-such-endpoint", (string?)problem["code"]);
            var detail = (string)problem["detail"]!;
            Assert.Contains($"no endpoint {method.Method} {path}", detail);
            Assert.Contains("/openapi/v1.json", detail);
            Assert.Contains("docs/api.md", detail);
        }
    }

    [Fact]
    public async Task KnownPathWrongMethod_Is405Problem_NamingTheAllowedMethods()
    {
        await StartAsync();
        using (var res = await SendAsync(HttpMethod.Delete, "/v1/runs"))
        {
            var problem = await Http.ProblemAsync(res, 405);
            Assert.Equal("method-not-allowed", (string?)problem["code"]);
            Assert.Equal(["GET", "POST"], res.Content.Headers.Allow.Order());
            Assert.Contains("does not take DELETE", (string)problem["detail"]!);
            Assert.Contains("GET", (string)problem["detail"]!);
            Assert.Contains("POST", (string)problem["detail"]!);
        }
        using (var res = await SendAsync(HttpMethod.Get, "/v1/runs/r1/cancel"))
        {
            await Http.ProblemAsync(res, 405);
            Assert.Equal(["POST"], res.Content.Headers.Allow);
        }
        using (var res = await SendAsync(HttpMethod.Put, "/v1/keys/k1"))
        {
            await Http.ProblemAsync(res, 405);
            Assert.Equal(["DELETE"], res.Content.Headers.Allow);
        }
        // The app's own endpoint under /v1 counts: its path is known, its method named.
        using (var res = await SendAsync(HttpMethod.Post, "/v1/custom/7"))
        {
            await Http.ProblemAsync(res, 405);
            Assert.Equal(["GET"], res.Content.Headers.Allow);
        }
        using (var ok = await SendAsync(HttpMethod.Get, "/v1/custom/7"))
        {
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
            Assert.Equal("custom 7", await ok.Content.ReadAsStringAsync(Ct));
        }
        // The right method still reaches the endpoint.
        using (var list = await SendAsync(HttpMethod.Get, "/v1/runs"))
            Assert.Equal(HttpStatusCode.OK, list.StatusCode);
    }

    [Fact]
    public async Task PathsOutsideV1_AreLeftToTheApp()
    {
        await StartAsync();
        using (var missing = await SendAsync(HttpMethod.Get, "/nothing"))
        {
            Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
            Assert.Equal("", await missing.Content.ReadAsStringAsync(Ct));
        }
        using (var wrong = await SendAsync(HttpMethod.Post, "/mine"))
        {
            Assert.Equal(HttpStatusCode.MethodNotAllowed, wrong.StatusCode);
            Assert.Equal("", await wrong.Content.ReadAsStringAsync(Ct));
        }
        using (var mine = await SendAsync(HttpMethod.Get, "/mine"))
            Assert.Equal("mine", await mine.Content.ReadAsStringAsync(Ct));
    }
}
