using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using Xunit;

namespace Bureau.Durability.Tests;

/// <summary>
/// `bureau keys` and `bureau serve` as a user runs them: keys created on the command line are printed
/// once, never listed, checked by a real server per role, and a revoked key stops working at once.
/// </summary>
public sealed class ServeKeysTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bureau-serve-keys", Guid.NewGuid().ToString("n"));
    private static readonly TimeSpan ProcessTimeout = TimeSpan.FromSeconds(60);
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ServeKeysTests()
    {
        Directory.CreateDirectory(_dir);
        File.WriteAllText(Path.Combine(_dir, "bureau.yaml"), """
            models:
              script:
                provider: scripted
                rules:
                  - reply: "hello {{input}}"
            agents:
              greeter:
                model: script
            """);
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private async Task<BureauProcess> BureauAsync(int expectedExit, params string[] args)
    {
        var p = BureauProcess.Start(_dir, new Dictionary<string, string>(), args);
        var code = await p.WaitAsync(ProcessTimeout);
        Assert.True(code == expectedExit, $"bureau {string.Join(' ', args)} exited {code}, expected {expectedExit}\n{p.Stdout}\n{p.Stderr}");
        return p;
    }

    private static HttpRequestMessage Request(HttpMethod method, string path, string? key, string? json = null)
    {
        var req = new HttpRequestMessage(method, path);
        if (key is not null) req.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        if (json is not null) req.Content = new StringContent(json, Encoding.UTF8, "application/json");
        return req;
    }

    [Fact]
    public async Task KeysFromTheCli_AreCheckedPerRoleByARealServer_AndRevocationIsImmediate()
    {
        var db = Path.Combine(_dir, "keys.db");
        string viewer, operatorKey;
        using (var p = await BureauAsync(0, "keys", "create", "--role", "viewer", "--name", "dashboard", "--db", db)) viewer = p.Stdout.Trim();
        using (var p = await BureauAsync(0, "keys", "create", "--role", "operator", "--name", "ci", "--db", db)) operatorKey = p.Stdout.Trim();
        Assert.StartsWith("bk_", viewer);
        Assert.NotEqual(viewer, operatorKey);
        using (await BureauAsync(2, "keys", "create", "--role", "superuser", "--db", db)) { } // a bad role is a usage error

        JsonArray items;
        using (var list = await BureauAsync(0, "keys", "list", "--json", "--db", db))
        {
            Assert.DoesNotContain(viewer, list.Stdout);       // only hashes are stored: a key is never shown again
            Assert.DoesNotContain(operatorKey, list.Stdout);
            items = JsonNode.Parse(list.Stdout)!["items"]!.AsArray();
        }
        Assert.Equal(["operator", "viewer"], items.Select(i => (string)i!["role"]!).Order());
        var viewerId = (string)items.Single(i => (string?)i!["name"] == "dashboard")!["id"]!;

        var url = $"http://127.0.0.1:{ServeSupport.FreePort()}";
        using var server = BureauProcess.Start(_dir, new Dictionary<string, string>(), "serve", "bureau.yaml", "--db", db, "--urls", url);
        using var http = new HttpClient { BaseAddress = new Uri(url), Timeout = TimeSpan.FromSeconds(20) };
        await ServeSupport.WaitReadyAsync(http, server, ProcessTimeout, Ct);

        using (var res = await http.SendAsync(Request(HttpMethod.Get, "/v1/agents", null), Ct)) Assert.Equal(HttpStatusCode.Unauthorized, res.StatusCode);
        using (var res = await http.SendAsync(Request(HttpMethod.Get, "/v1/agents", "bk_not_a_key"), Ct)) Assert.Equal(HttpStatusCode.Unauthorized, res.StatusCode);
        using (var res = await http.SendAsync(Request(HttpMethod.Get, "/v1/agents", viewer), Ct)) Assert.Equal(HttpStatusCode.OK, res.StatusCode);
        const string body = """{"agent":"greeter","input":"ada"}""";
        using (var res = await http.SendAsync(Request(HttpMethod.Post, "/v1/runs", viewer, body), Ct)) Assert.Equal(HttpStatusCode.Forbidden, res.StatusCode);

        string id;
        using (var res = await http.SendAsync(Request(HttpMethod.Post, "/v1/runs", operatorKey, body), Ct))
        {
            Assert.Equal(HttpStatusCode.Accepted, res.StatusCode);
            id = (string)JsonNode.Parse(await res.Content.ReadAsStringAsync(Ct))!["id"]!;
        }
        using (var res = await http.SendAsync(Request(HttpMethod.Get, $"/v1/runs/{id}/events", viewer), HttpCompletionOption.ResponseContentRead, Ct))
        {
            var events = await res.Content.ReadAsStringAsync(Ct); // the stream ends after `end`
            Assert.Contains("event: run.finished", events);
            Assert.Contains("event: end", events);
            Assert.Contains("hello ada", events);
        }

        using (await BureauAsync(0, "keys", "revoke", viewerId, "--db", db)) { }
        using (var res = await http.SendAsync(Request(HttpMethod.Get, "/v1/agents", viewer), Ct)) Assert.Equal(HttpStatusCode.Unauthorized, res.StatusCode);
        using (var res = await http.SendAsync(Request(HttpMethod.Get, $"/v1/runs/{id}", operatorKey), Ct)) Assert.Equal(HttpStatusCode.OK, res.StatusCode);

        server.Terminate();
        Assert.Equal(0, await server.WaitAsync(ProcessTimeout));
    }
}
