using System.Net;
using Xunit;

namespace Bureau.Hosting.Tests;

/// <summary>
/// POST /v1/runs/{id}/replay takes no fields: no body or <c>{}</c> replays, and a field (a what-if's <c>fromStep</c>, a
/// typo) is a 400 naming it, the way every other endpoint treats a field it does not know, instead of a plain replay.
/// </summary>
public sealed class ReplayBodyTests : IAsyncDisposable
{
    private readonly TestHost _host = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask DisposeAsync() => _host.DisposeAsync();

    [Fact]
    public async Task Replay_RefusesAnyField_NamingIt_AndReplaysWithNoBodyOrAnEmptyObject()
    {
        await _host.StartAsync();
        using var submitted = await _host.Client.SendAsync(Http.Json(HttpMethod.Post, "/v1/runs", """{"agent":"echo","input":"hi"}"""), Ct);
        var id = (string)(await Http.BodyAsync(submitted))["id"]!;
        Assert.Equal(RunStatus.Succeeded, (await _host.WaitAsync(id)).Status);

        foreach (var (json, field) in new[] { ("""{"fromStpe":3}""", "fromStpe"), ("""{"fromStep":1}""", "fromStep") })
        {
            using var refused = await _host.Client.SendAsync(Http.Json(HttpMethod.Post, $"/v1/runs/{id}/replay", json), Ct);
            var problem = await Http.ProblemAsync(refused, 400, field);
            Assert.Contains($"unknown field '{field}'", (string)problem["detail"]!);
            Assert.Contains("takes no fields", (string)problem["detail"]!);
        }

        using (var empty = await _host.Client.SendAsync(Http.Json(HttpMethod.Post, $"/v1/runs/{id}/replay", "{}"), Ct))
        {
            Assert.Equal(HttpStatusCode.OK, empty.StatusCode);
            Assert.True((bool)(await Http.BodyAsync(empty))["reproduced"]!);
        }
        using (var none = await _host.Client.PostAsync($"/v1/runs/{id}/replay", null, Ct))
        {
            Assert.Equal(HttpStatusCode.OK, none.StatusCode);
            Assert.True((bool)(await Http.BodyAsync(none))["reproduced"]!);
        }
    }
}
