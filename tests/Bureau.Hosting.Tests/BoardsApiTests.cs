using System.Net;
using Xunit;

namespace Bureau.Hosting.Tests;

/// <summary>/v1/boards: tasks claimed once by racing HTTP clients, a refused change names who holds the task, keys are compare-and-set.</summary>
public sealed class BoardsApiTests : IAsyncDisposable
{
    private readonly TestHost _host = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask DisposeAsync() => _host.DisposeAsync();

    private async Task<HttpResponseMessage> SendAsync(HttpMethod method, string url, string json, string? key = null) =>
        await _host.Client.SendAsync(Http.Json(method, url, json, key), Ct);

    [Fact]
    public async Task Claim_TwentyClientsRacing_ExactlyOneGets200_TheOthers409NamingTheWinner()
    {
        await _host.StartAsync();
        var keys = new List<string>();
        for (var i = 0; i < 20; i++) keys.Add(await _host.CreateKeyAsync(ApiKeyRole.Operator));
        using var added = await SendAsync(HttpMethod.Post, "/v1/boards/desk/tasks", """{"id":"refund-42","title":"Refund customer 42"}""", keys[0]);
        Assert.Equal(HttpStatusCode.Created, added.StatusCode);

        var claims = await Task.WhenAll(keys.Select(k => SendAsync(HttpMethod.Post, "/v1/boards/desk/tasks/refund-42/claim", "{}", k)));

        var winner = Assert.Single(claims, r => r.StatusCode == HttpStatusCode.OK);
        var claimedBy = (string)(await Http.BodyAsync(winner))["claimedBy"]!;
        foreach (var loser in claims.Where(r => r != winner))
        {
            var problem = await Http.ProblemAsync(loser, 409, "id");
            Assert.Equal(claimedBy, (string)problem["claimedBy"]!);
            Assert.Contains("claimed (" + claimedBy + ")", (string)problem["detail"]!);
        }
        using var board = await _host.Client.SendAsync(Http.Get("/v1/boards/desk", keys[1]), Ct);
        var task = (await Http.BodyAsync(board))["tasks"]![0]!;
        Assert.Equal(("claimed", claimedBy, 2), ((string)task["status"]!, (string)task["claimedBy"]!, (int)task["version"]!));
        foreach (var c in claims) c.Dispose();
    }

    [Fact]
    public async Task Complete_ByTheClaimer_Block_Decisions_AndKeys()
    {
        await _host.StartAsync();
        using (await SendAsync(HttpMethod.Post, "/v1/boards/desk/tasks", """{"id":"a","title":"A"}""")) { }
        using (await SendAsync(HttpMethod.Post, "/v1/boards/desk/tasks", """{"id":"b","title":"B","detail":"more"}""")) { }
        using var claim = await SendAsync(HttpMethod.Post, "/v1/boards/desk/tasks/a/claim", "{}");
        using var done = await SendAsync(HttpMethod.Post, "/v1/boards/desk/tasks/a/complete", """{"result":"refunded"}""");
        using var blocked = await SendAsync(HttpMethod.Post, "/v1/boards/desk/tasks/b/block", """{"reason":"waiting for the customer"}""");
        using var decision = await SendAsync(HttpMethod.Post, "/v1/boards/desk/decisions", """{"title":"refunds","text":"over 100 EUR need a supervisor"}""");
        using var key1 = await SendAsync(HttpMethod.Put, "/v1/boards/desk/keys/oncall", """{"value":"tom","expectedVersion":0}""");
        using var stale = await SendAsync(HttpMethod.Put, "/v1/boards/desk/keys/oncall", """{"value":"ann","expectedVersion":0}""");
        using var missing = await SendAsync(HttpMethod.Post, "/v1/boards/desk/tasks/zzz/claim", "{}");
        using var badAction = await SendAsync(HttpMethod.Post, "/v1/boards/desk/tasks/a/steal", "{}");
        using var blank = await SendAsync(HttpMethod.Post, "/v1/boards/desk/tasks", """{"id":"c","title":"  "}""");

        Assert.Equal("refunded", (string)(await Http.BodyAsync(done))["note"]!);
        Assert.Equal("blocked", (string)(await Http.BodyAsync(blocked))["status"]!);
        Assert.Equal(HttpStatusCode.Created, decision.StatusCode);
        Assert.Equal(1, (int)(await Http.BodyAsync(key1))["version"]!);
        var conflict = await Http.ProblemAsync(stale, 409, "expectedVersion");
        Assert.Equal(("tom", 1), ((string)conflict["currentValue"]!, (int)conflict["currentVersion"]!));
        await Http.ProblemAsync(missing, 404, "id");
        await Http.ProblemAsync(badAction, 400, "action");
        await Http.ProblemAsync(blank, 400, "title");
        using var board = await _host.Client.GetAsync("/v1/boards/desk", Ct);
        var doc = await Http.BodyAsync(board);
        Assert.Equal(["done", "blocked"], doc["tasks"]!.AsArray().Select(t => (string)t!["status"]!));
        Assert.Equal("refunds", (string)doc["decisions"]![0]!["title"]!);
        Assert.Equal("tom", (string)doc["keys"]![0]!["value"]!);
    }
}
