using System.Net;
using Xunit;

namespace Bureau.Hosting.Tests;

/// <summary>POST /v1/runs/{id}/rollback: starts one rollback run per run (asking again returns it), refuses an unfinished or unknown run.</summary>
public sealed class RollbackApiTests : IAsyncDisposable
{
    private readonly TestHost _host = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask DisposeAsync() => _host.DisposeAsync();

    [Fact]
    public async Task Rollback_FinishedRun_OneRollbackRun_UnfinishedOrUnknownRefused()
    {
        await _host.StartAsync();
        using var res = await _host.Client.SendAsync(Http.Json(HttpMethod.Post, "/v1/runs", """{"agent":"echo","input":"hi"}"""), Ct);
        var id = (string)(await Http.BodyAsync(res))["id"]!;
        await _host.WaitAsync(id);

        using (var refused = await _host.Client.SendAsync(Http.Json(HttpMethod.Post, $"/v1/runs/{id}/rollback", """{"reason":"wrong refund"}"""), Ct))
        {
            var problem = await Http.ProblemAsync(refused, 400, "reason");
            Assert.Contains("unknown field 'reason'", (string)problem["detail"]!);
        }
        Assert.Empty((await _host.Engine.ListRunsAsync(new RunQuery { ParentRunId = id }, Ct)).Items); // refused: no rollback started

        using var first = await _host.Client.PostAsync($"/v1/runs/{id}/rollback", null, Ct);
        Assert.Equal(HttpStatusCode.Accepted, first.StatusCode);
        var rollbackId = (string)(await Http.BodyAsync(first))["id"]!;
        using var again = await _host.Client.PostAsync($"/v1/runs/{id}/rollback", null, Ct);
        Assert.Equal(HttpStatusCode.OK, again.StatusCode);
        Assert.Equal(rollbackId, (string)(await Http.BodyAsync(again))["id"]!);
        var rollback = await _host.WaitAsync(rollbackId);
        Assert.Equal((RunStatus.Succeeded, RunKinds.Rollback, id), (rollback.Status, rollback.Kind, rollback.ParentRunId));
        Assert.Contains("no completed writes", rollback.Output);

        using (var slow = await _host.Client.SendAsync(Http.Json(HttpMethod.Post, "/v1/runs", """{"agent":"slow","input":"wait"}"""), Ct))
        {
            var running = (string)(await Http.BodyAsync(slow))["id"]!;
            using var refused = await _host.Client.PostAsync($"/v1/runs/{running}/rollback", null, Ct);
            Assert.Equal(HttpStatusCode.Conflict, refused.StatusCode);
            Assert.Contains("only a finished run can be rolled back", (string?)(await Http.BodyAsync(refused))["detail"]);
            _host.Gate.Open("wait");
            await _host.WaitAsync(running);
        }
        using var unknown = await _host.Client.PostAsync("/v1/runs/nope/rollback", null, Ct);
        Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
    }
}
