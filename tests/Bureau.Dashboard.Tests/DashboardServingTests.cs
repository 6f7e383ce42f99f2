using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using Bureau.Hosting;
using Xunit;

namespace Bureau.Dashboard.Tests;

/// <summary>How the host serves the Dashboard's files, where it mounts them, and the runs' event stream the list follows.</summary>
public sealed class DashboardServingTests : IAsyncDisposable
{
    private readonly DashboardHost _host = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask DisposeAsync() => _host.DisposeAsync();

    [Fact]
    public async Task Root_ServesThePage_WithAStrictContentSecurityPolicy_AndItsFilesFromTheAssembly()
    {
        await _host.StartAsync();

        using var page = await _host.Client.GetAsync("/", Ct);
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        Assert.Equal("text/html", page.Content.Headers.ContentType?.MediaType);
        var csp = page.Headers.GetValues("Content-Security-Policy").Single();
        Assert.Contains("script-src 'self'", csp);
        Assert.Contains("frame-ancestors 'none'", csp);
        Assert.DoesNotContain("unsafe-inline", csp);
        Assert.Equal("nosniff", page.Headers.GetValues("X-Content-Type-Options").Single());
        var html = await page.Content.ReadAsStringAsync(Ct);
        Assert.Contains("src=\"dashboard/app.js\"", html);
        Assert.Contains("href=\"dashboard/app.css\"", html);
        Assert.Contains("<meta name=\"bureau-mount\" content=\"/\">", html);
        Assert.DoesNotContain("http", html.Replace("http-equiv", "", StringComparison.Ordinal)); // nothing from elsewhere

        using var js = await _host.Client.GetAsync("/dashboard/app.js", Ct);
        Assert.Equal(HttpStatusCode.OK, js.StatusCode);
        Assert.Equal("text/javascript", js.Content.Headers.ContentType?.MediaType);
        Assert.DoesNotContain("innerHTML", await js.Content.ReadAsStringAsync(Ct));

        using var again = new HttpRequestMessage(HttpMethod.Get, "/dashboard/app.js");
        again.Headers.IfNoneMatch.Add(js.Headers.ETag!);
        using var notModified = await _host.Client.SendAsync(again, Ct);
        Assert.Equal(HttpStatusCode.NotModified, notModified.StatusCode);

        using var missing = await _host.Client.GetAsync("/dashboard/secrets.json", Ct);
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
    }

    [Fact]
    public async Task MountedUnderAPath_RedirectsToTheSlash_AndLinksItsFilesThere()
    {
        await _host.StartAsync("/bureau");

        using var noSlash = await new HttpClient(new HttpClientHandler { AllowAutoRedirect = false }) { BaseAddress = _host.Client.BaseAddress }.GetAsync("/bureau", Ct);
        Assert.Equal(HttpStatusCode.Redirect, noSlash.StatusCode);
        Assert.Equal("/bureau/", noSlash.Headers.Location?.OriginalString);

        var html = await _host.Client.GetStringAsync("/bureau/", Ct);
        Assert.Contains("<meta name=\"bureau-mount\" content=\"/bureau/\">", html);
        using var css = await _host.Client.GetAsync("/bureau/dashboard/app.css", Ct);
        Assert.Equal(HttpStatusCode.OK, css.StatusCode);
        using var root = await _host.Client.GetAsync("/", Ct);
        Assert.Equal(HttpStatusCode.NotFound, root.StatusCode);
    }

    [Theory]
    [InlineData("bureau")]
    [InlineData("/a//b")]
    [InlineData("/a/../b")]
    [InlineData("/a b")]
    [InlineData("/<x>")]
    public void AMountPathThatIsNotAPlainPath_IsRefused_NamingIt(string path)
    {
        var ex = Assert.Throws<ArgumentException>(() => DashboardEndpoints.NormalizeMount(path));
        Assert.Contains($"'{path}'", ex.Message);
    }

    [Fact]
    public async Task RunListEvents_SendsARunsSummaryWhenItIsSubmittedAndWhenItEnds()
    {
        await _host.StartAsync();
        using var req = new HttpRequestMessage(HttpMethod.Get, "/v1/runs/events");
        using var res = await _host.Client.SendAsync(req, HttpCompletionOption.ResponseHeadersRead, Ct);
        Assert.Equal(HttpStatusCode.OK, res.StatusCode);
        Assert.Equal("text/event-stream", res.Content.Headers.ContentType?.MediaType);
        using var reader = new StreamReader(await res.Content.ReadAsStreamAsync(Ct), Encoding.UTF8);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(60));
        Assert.Equal(": subscribed", await reader.ReadLineAsync(timeout.Token));

        var id = await _host.SubmitAsync("echo", "watch me");
        var statuses = new List<string>();
        string? eventName = null;
        while (!statuses.Contains("succeeded"))
        {
            var line = await reader.ReadLineAsync(timeout.Token) ?? throw new EndOfStreamException("the stream ended");
            if (line.StartsWith("event: ", StringComparison.Ordinal)) eventName = line["event: ".Length..];
            else if (line.StartsWith("data: ", StringComparison.Ordinal) && eventName == "run")
            {
                var run = JsonNode.Parse(line["data: ".Length..])!.AsObject();
                Assert.Equal((id, "echo", "watch me"), ((string)run["id"]!, (string)run["agent"]!, (string)run["input"]!));
                statuses.Add((string)run["status"]!);
            }
        }
        Assert.Equal("echo: watch me", (string?)(await _host.Engine.GetRunAsync(id, Ct))!.Output);
    }

    [Fact]
    public async Task RunListEvents_WithKeys_NeedsOne()
    {
        await _host.StartAsync();
        var viewer = await _host.CreateKeyAsync(ApiKeyRole.Viewer);
        using var anonymous = await _host.Client.GetAsync("/v1/runs/events", HttpCompletionOption.ResponseHeadersRead, Ct);
        Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);

        using var req = new HttpRequestMessage(HttpMethod.Get, "/v1/runs/events");
        req.Headers.Authorization = new AuthenticationHeaderValue("Bearer", viewer);
        using var res = await _host.Client.SendAsync(req, HttpCompletionOption.ResponseHeadersRead, Ct);
        Assert.Equal(HttpStatusCode.OK, res.StatusCode);
    }
}
