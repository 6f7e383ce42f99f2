using System.Net;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Bureau.Hosting.Tests;

public sealed class KeyedHostFixture : IAsyncLifetime
{
    public TestHost Host { get; } = new();
    public Dictionary<ApiKeyRole, string> Keys { get; } = [];

    public async ValueTask InitializeAsync()
    {
        foreach (var role in Enum.GetValues<ApiKeyRole>()) Keys[role] = await Host.CreateKeyAsync(role);
        await Host.StartAsync();
    }

    public ValueTask DisposeAsync() => Host.DisposeAsync();
}

/// <summary>Keys and roles: 401 without a valid key, 403 for a role that may not, the right answer otherwise.</summary>
public sealed class AccessTests(KeyedHostFixture fixture) : IClassFixture<KeyedHostFixture>
{
    private HttpClient Client => fixture.Host.Client;
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static readonly string[] ReadRoutes = ["/v1/runs", "/v1/agents", "/v1/agents/echo"];

    private async Task<string> FinishedRunAsync()
    {
        using var res = await Client.SendAsync(Http.Json(HttpMethod.Post, "/v1/runs", """{"agent":"echo","input":"access"}""", fixture.Keys[ApiKeyRole.Operator]), Ct);
        Assert.Equal(HttpStatusCode.Accepted, res.StatusCode);
        var id = (string)(await Http.BodyAsync(res))["id"]!;
        await fixture.Host.WaitAsync(id);
        return id;
    }

    [Theory]
    [InlineData(null)]
    [InlineData("Bearer not-a-key")]
    [InlineData("Basic dXNlcjpwYXNz")]
    [InlineData("Bearer bk_aaaaaaaaaaaa_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")]
    public async Task AnyRoute_WithoutValidKey_Returns401(string? authorization)
    {
        foreach (var route in ReadRoutes.Append("/v1/keys"))
        {
            var req = new HttpRequestMessage(HttpMethod.Get, route);
            if (authorization is not null) req.Headers.TryAddWithoutValidation("Authorization", authorization);
            using var res = await Client.SendAsync(req, Ct);
            await Http.ProblemAsync(res, 401, "Authorization");
        }
        using var post = await Client.SendAsync(Http.Json(HttpMethod.Post, "/v1/runs", """{"agent":"echo","input":"no key"}"""), Ct);
        await Http.ProblemAsync(post, 401);
    }

    [Theory]
    [InlineData(ApiKeyRole.Viewer)]
    [InlineData(ApiKeyRole.Operator)]
    [InlineData(ApiKeyRole.Approver)]
    [InlineData(ApiKeyRole.Admin)]
    public async Task EveryRole_CanRead(ApiKeyRole role)
    {
        var id = await FinishedRunAsync();
        foreach (var route in ReadRoutes.Append($"/v1/runs/{id}"))
        {
            using var res = await Client.SendAsync(Http.Get(route, fixture.Keys[role]), Ct);
            Assert.True(res.StatusCode == HttpStatusCode.OK, $"{role} GET {route}: {res.StatusCode}");
        }
        using var events = await Client.SendAsync(Http.Get($"/v1/runs/{id}/events", fixture.Keys[role]), Ct);
        Assert.Equal(HttpStatusCode.OK, events.StatusCode);
    }

    [Theory]
    [InlineData(ApiKeyRole.Viewer, false)]
    [InlineData(ApiKeyRole.Operator, true)]
    [InlineData(ApiKeyRole.Approver, false)]
    [InlineData(ApiKeyRole.Admin, true)]
    public async Task StartAndCancel_NeedOperatorOrAdmin(ApiKeyRole role, bool allowed)
    {
        using var start = await Client.SendAsync(Http.Json(HttpMethod.Post, "/v1/runs", """{"agent":"echo","input":"role start"}""", fixture.Keys[role]), Ct);
        if (allowed) Assert.Equal(HttpStatusCode.Accepted, start.StatusCode);
        else await Http.ProblemAsync(start, 403);

        var id = await FinishedRunAsync();
        using var cancel = await Client.SendAsync(new HttpRequestMessage(HttpMethod.Post, $"/v1/runs/{id}/cancel") { Headers = { Authorization = new("Bearer", fixture.Keys[role]) } }, Ct);
        if (allowed) await Http.ProblemAsync(cancel, 409, runId: id); // allowed through; the run had finished
        else await Http.ProblemAsync(cancel, 403);
    }

    [Theory]
    [InlineData(ApiKeyRole.Viewer, false)]
    [InlineData(ApiKeyRole.Operator, false)]
    [InlineData(ApiKeyRole.Approver, true)]
    [InlineData(ApiKeyRole.Admin, true)]
    public async Task Resolve_NeedsApproverOrAdmin(ApiKeyRole role, bool allowed)
    {
        var id = await FinishedRunAsync();
        using var res = await Client.SendAsync(Http.Json(HttpMethod.Post, $"/v1/runs/{id}/resolve", """{"step":2,"as":"done"}""", fixture.Keys[role]), Ct);
        if (allowed) await Http.ProblemAsync(res, 409, runId: id); // allowed through; the run is not waiting
        else await Http.ProblemAsync(res, 403);
    }

    [Theory]
    [InlineData(ApiKeyRole.Viewer)]
    [InlineData(ApiKeyRole.Operator)]
    [InlineData(ApiKeyRole.Approver)]
    public async Task Keys_NonAdmin_Returns403(ApiKeyRole role)
    {
        using var list = await Client.SendAsync(Http.Get("/v1/keys", fixture.Keys[role]), Ct);
        await Http.ProblemAsync(list, 403);
        using var create = await Client.SendAsync(Http.Json(HttpMethod.Post, "/v1/keys", """{"role":"admin"}""", fixture.Keys[role]), Ct);
        await Http.ProblemAsync(create, 403);
    }

    [Fact]
    public async Task Keys_Admin_CreatesListsAndRevokes()
    {
        var admin = fixture.Keys[ApiKeyRole.Admin];
        using var bad = await Client.SendAsync(Http.Json(HttpMethod.Post, "/v1/keys", """{"role":"root"}""", admin), Ct);
        await Http.ProblemAsync(bad, 400, "role");
        using var created = await Client.SendAsync(Http.Json(HttpMethod.Post, "/v1/keys", """{"role":"viewer","name":"temp"}""", admin), Ct);
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var doc = await Http.BodyAsync(created);
        var (id, key) = ((string)doc["id"]!, (string)doc["key"]!);

        using var list = await Client.SendAsync(Http.Get("/v1/keys", admin), Ct);
        var items = (await Http.BodyAsync(list))["items"]!.AsArray();
        var listed = Assert.Single(items, i => (string?)i!["id"] == id);
        Assert.Null(listed!["key"]); // never shown again
        Assert.Equal("viewer", (string?)listed["role"]);

        using (var ok = await Client.SendAsync(Http.Get("/v1/runs", key), Ct)) Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        using (var revoke = await Client.SendAsync(new HttpRequestMessage(HttpMethod.Delete, $"/v1/keys/{id}") { Headers = { Authorization = new("Bearer", admin) } }, Ct))
            Assert.Equal(HttpStatusCode.NoContent, revoke.StatusCode);
        using (var again = await Client.SendAsync(new HttpRequestMessage(HttpMethod.Delete, $"/v1/keys/{id}") { Headers = { Authorization = new("Bearer", admin) } }, Ct))
            await Http.ProblemAsync(again, 404, "id");
        using var revoked = await Client.SendAsync(Http.Get("/v1/runs", key), Ct);
        await Http.ProblemAsync(revoked, 401, "Authorization");
    }

    [Fact]
    public async Task Key_WithWrongSecret_Returns401()
    {
        var viewer = fixture.Keys[ApiKeyRole.Viewer];
        var forged = viewer[..^4] + (viewer[^4..] == "aaaa" ? "bbbb" : "aaaa");
        using var res = await Client.SendAsync(Http.Get("/v1/runs", forged), Ct);
        await Http.ProblemAsync(res, 401, "Authorization");
    }

    [Fact]
    public async Task Health_NeedsNoKey()
    {
        using var res = await Client.GetAsync("/healthz", Ct);
        Assert.Equal(HttpStatusCode.OK, res.StatusCode);
    }

    [Fact]
    public async Task NoSuchEndpoint_AndWrongMethod_AnswerTheSameWithOrWithoutAKey()
    {
        // As routing did before they were problems: a 404 or 405 says no more than the endpoint list does, so no key is asked.
        foreach (var key in new[] { null, fixture.Keys[ApiKeyRole.Viewer] })
        {
            using (var missing = await Client.SendAsync(Http.Get("/v1/nothing", key), Ct))
                Assert.Equal("no-such-endpoint", (string?)(await Http.ProblemAsync(missing, 404))["code"]);
            var wrong = new HttpRequestMessage(HttpMethod.Delete, "/v1/runs");
            if (key is not null) wrong.Headers.Authorization = new("Bearer", key);
            using var refused = await Client.SendAsync(wrong, Ct);
            Assert.Equal("method-not-allowed", (string?)(await Http.ProblemAsync(refused, 405))["code"]);
        }
    }
}

/// <summary>The loopback rule: without keys, only this machine is served, and a non-loopback bind is refused.</summary>
public sealed class LoopbackRuleTests(AnonymousHostFixture fixture) : IClassFixture<AnonymousHostFixture>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task NoKeys_RequestFromAnotherMachine_Returns403()
    {
        var ctx = await fixture.Host.App.GetTestServer().SendAsync(c =>
        {
            c.Request.Method = "GET";
            c.Request.Path = "/v1/runs";
            c.Connection.RemoteIpAddress = IPAddress.Parse("192.0.2.10");
        }, Ct);
        Assert.Equal(403, ctx.Response.StatusCode);
    }

    [Theory]
    [InlineData("Origin", "https://evil.example")]
    [InlineData("Host", "evil.example:5080")]
    public async Task NoKeys_BrowserPageOfAnotherOrigin_Returns403(string header, string value)
    {
        var req = Http.Json(HttpMethod.Post, "/v1/runs", """{"agent":"echo","input":"csrf"}""");
        if (header == "Host") req.Headers.Host = value; else req.Headers.Add(header, value);
        using var res = await fixture.Host.Client.SendAsync(req, Ct);
        await Http.ProblemAsync(res, 403, header);
    }

    [Fact]
    public async Task NoKeys_LoopbackOrigin_IsServed()
    {
        var req = Http.Get("/v1/agents");
        req.Headers.Add("Origin", "http://127.0.0.1:5080");
        using var res = await fixture.Host.Client.SendAsync(req, Ct);
        Assert.Equal(HttpStatusCode.OK, res.StatusCode);
    }

    [Theory]
    [InlineData("http://0.0.0.0:5080")]
    [InlineData("http://*:5080")]
    [InlineData("http://192.0.2.10:5080")]
    public async Task NoKeys_NonLoopbackBind_RefusesToStart(string url)
    {
        await using var host = new TestHost();
        var ex = await Assert.ThrowsAnyAsync<Exception>(() => host.StartAsync(configureHost: b =>
            b.Services.AddSingleton<IServer>(new AddressOnlyServer(url)), testServer: false));
        Assert.Contains("refuses to listen on " + url, ex.ToString());
        Assert.Contains("bureau keys create", ex.ToString());
    }

    [Fact]
    public async Task WithKeys_NonLoopbackBind_Starts()
    {
        await using var host = new TestHost();
        await host.CreateKeyAsync(ApiKeyRole.Admin);
        await host.StartAsync(configureHost: b => b.Services.AddSingleton<IServer>(new AddressOnlyServer("http://0.0.0.0:5080")), testServer: false);
    }

    [Theory]
    [InlineData("http://127.0.0.1:5080", true)]
    [InlineData("http://localhost:5080", true)]
    [InlineData("http://[::1]:5080", true)]
    [InlineData("https://127.0.0.2:443/base", true)]
    [InlineData("http://0.0.0.0:5080", false)]
    [InlineData("http://[::]:5080", false)]
    [InlineData("http://+:5080", false)]
    [InlineData("http://example.com:5080", false)]
    public void IsLoopbackUrl_Classifies(string url, bool loopback) =>
        Assert.Equal(loopback, BureauHostService.IsLoopbackUrl(url));

    /// <summary>A server that reports an address without opening any socket (tests stay on loopback).</summary>
    private sealed class AddressOnlyServer : IServer
    {
        public AddressOnlyServer(string url)
        {
            var addresses = new ServerAddressesFeature();
            addresses.Addresses.Add(url);
            Features.Set<IServerAddressesFeature>(addresses);
        }

        public IFeatureCollection Features { get; } = new FeatureCollection();
        public Task StartAsync<TContext>(IHttpApplication<TContext> application, CancellationToken cancellationToken) where TContext : notnull => Task.CompletedTask;
        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
        public void Dispose() { }
    }

    private sealed class ServerAddressesFeature : IServerAddressesFeature
    {
        public ICollection<string> Addresses { get; } = new List<string>();
        public bool PreferHostingUrls { get; set; }
    }
}
