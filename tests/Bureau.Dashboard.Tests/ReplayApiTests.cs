using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using Xunit;

namespace Bureau.Dashboard.Tests;

/// <summary>
/// <c>POST /v1/runs/{id}/replay</c> and <c>POST /v1/runs/{id}/whatif</c> against the real host (scripted models): the
/// replay check reproduces a finished run, a what-if forks it onto another model and says where the two diverge, and
/// neither changes the host's store; bad requests are refused naming the field, and a what-if needs an operator.
/// </summary>
public sealed class ReplayApiTests : IAsyncDisposable
{
    private readonly DashboardHost _host = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask DisposeAsync() => _host.DisposeAsync();

    private async Task<string> FinishedLookerRunAsync()
    {
        _host.OpenLookup();
        var id = await _host.SubmitAsync("looker", "where is order 7?");
        Assert.Equal(RunStatus.Succeeded, (await _host.WaitAsync(id, orWaiting: false)).Status);
        return id;
    }

    private async Task<(HttpStatusCode Status, JsonNode? Body)> PostAsync(string path, JsonObject? body = null, string? key = null)
    {
        using var req = new HttpRequestMessage(HttpMethod.Post, path);
        if (body is not null) req.Content = new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json");
        if (key is not null) req.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        using var res = await _host.Client.SendAsync(req, Ct);
        var text = await res.Content.ReadAsStringAsync(Ct);
        return (res.StatusCode, text.Length == 0 ? null : JsonNode.Parse(text));
    }

    [Fact]
    public async Task Replay_OfAFinishedRun_ReproducesEveryStep()
    {
        await _host.StartAsync();
        var id = await FinishedLookerRunAsync();
        var journal = await _host.Engine.ReadJournalAsync(id, 0, Ct);

        var (status, doc) = await PostAsync($"/v1/runs/{id}/replay");

        Assert.True(status == HttpStatusCode.OK, $"{status}: {doc}");
        Assert.Equal(id, (string)doc!["runId"]!);
        Assert.Equal("looker", (string)doc["agent"]!);
        Assert.True((bool)doc["reproduced"]!);
        Assert.Equal(journal.Count, (int)doc["steps"]!);
        Assert.Equal(journal.Count, (long)doc["stepsReproduced"]!);
        Assert.Null(doc["divergence"]);
    }

    [Fact]
    public async Task WhatIf_OnAnotherModel_DivergesAfterTheSharedSteps_AndLeavesTheHostsStoreAlone()
    {
        await _host.StartAsync();
        var id = await FinishedLookerRunAsync();
        var before = await _host.Engine.ListRunsAsync(new RunQuery { Limit = 100 }, Ct);

        var (status, doc) = await PostAsync($"/v1/runs/{id}/whatif", new JsonObject { ["fromStep"] = 1, ["model"] = "look-direct" });

        Assert.True(status == HttpStatusCode.OK, $"{status}: {doc}");
        var fork = doc!["fork"]!;
        Assert.Equal(("succeeded", "answered without looking", "look-direct"), ((string)fork["status"]!, (string?)fork["output"], (string)fork["model"]!));
        Assert.True((bool)fork["scripted"]!); // the fork's answers come from a scripted model, and say so
        Assert.Equal(2, (long)doc["divergesAt"]!); // the original called lookup at step 2; the fork answered
        var steps = doc["steps"]!.AsArray();
        Assert.True((bool)steps[0]!["shared"]!);
        Assert.Equal("run.started", (string)steps[0]!["fork"]!["kind"]!);
        Assert.False((bool)steps[1]!["same"]!);
        Assert.Equal("model.response", (string)steps[1]!["original"]!["kind"]!);
        Assert.Equal("answered without looking", (string)steps[1]!["fork"]!["text"]!);
        Assert.Contains(steps, s => s!["fork"]?["kind"]?.GetValue<string>() == "run.finished");

        // Nothing was written to the host's store: the same runs, the original unchanged, no fork among them.
        var after = await _host.Engine.ListRunsAsync(new RunQuery { Limit = 100 }, Ct);
        Assert.Equal(before.Items.Select(r => (r.Id, r.Version)), after.Items.Select(r => (r.Id, r.Version)));
        Assert.Null(await _host.Engine.GetRunAsync((string)fork["id"]!, Ct));
    }

    [Fact]
    public async Task WhatIf_FromALaterStep_SharesTheToolCall_AndTheForkGoesOnFromItsResult()
    {
        await _host.StartAsync();
        var id = await FinishedLookerRunAsync();
        var journal = await _host.Engine.ReadJournalAsync(id, 0, Ct);
        var lastResult = journal.Last(r => r.Entry is ToolCompleted).N;

        var (status, doc) = await PostAsync($"/v1/runs/{id}/whatif", new JsonObject { ["fromStep"] = lastResult, ["model"] = "look-direct" });

        Assert.True(status == HttpStatusCode.OK, $"{status}: {doc}");
        var steps = doc!["steps"]!.AsArray();
        Assert.All(steps.Take((int)lastResult), s => Assert.True((bool)s!["shared"]!));
        Assert.Equal(lastResult + 1, (long)doc["divergesAt"]!);
        Assert.Equal("answered without looking", (string?)doc["fork"]!["output"]);
    }

    [Fact]
    public async Task BadRequests_AreRefused_NamingTheField_AndAnUnfinishedRunIsAConflict()
    {
        await _host.StartAsync();
        var id = await FinishedLookerRunAsync();
        var journal = await _host.Engine.ReadJournalAsync(id, 0, Ct);

        var (s1, d1) = await PostAsync($"/v1/runs/{id}/whatif", new JsonObject { ["fromStep"] = 0 });
        Assert.Equal((HttpStatusCode.BadRequest, "fromStep"), (s1, (string?)d1!["field"]));
        Assert.Contains($"between 1 and {journal.Count - 1}", (string)d1["detail"]!);

        var (s2, d2) = await PostAsync($"/v1/runs/{id}/whatif", new JsonObject { ["fromStep"] = journal.Count });
        Assert.Equal((HttpStatusCode.BadRequest, "fromStep"), (s2, (string?)d2!["field"]));

        var (s3, d3) = await PostAsync($"/v1/runs/{id}/whatif", new JsonObject { ["fromStep"] = 1, ["model"] = "no-such-model" });
        Assert.Equal((HttpStatusCode.BadRequest, "model"), (s3, (string?)d3!["field"]));
        Assert.Contains("look-direct", (string)d3["detail"]!); // the models it could be

        var (s4, d4) = await PostAsync($"/v1/runs/{id}/whatif", new JsonObject { ["fromStep"] = 1, ["temperature"] = 2 });
        Assert.Equal((HttpStatusCode.BadRequest, "temperature"), (s4, (string?)d4!["field"]));

        var (s5, d5) = await PostAsync($"/v1/runs/{id}/whatif", new JsonObject { ["model"] = "look-direct" });
        Assert.Equal((HttpStatusCode.BadRequest, "fromStep"), (s5, (string?)d5!["field"]));

        var (s6, _) = await PostAsync("/v1/runs/no-such-run/replay");
        Assert.Equal(HttpStatusCode.NotFound, s6);
        var (s7, _) = await PostAsync("/v1/runs/no-such-run/whatif", new JsonObject { ["fromStep"] = 1 });
        Assert.Equal(HttpStatusCode.NotFound, s7);

        // A team run cannot be replayed yet: said, not attempted.
        var team = await _host.SubmitAsync("pair", "twice");
        await _host.WaitAsync(team, orWaiting: false);
        var (s8, d8) = await PostAsync($"/v1/runs/{team}/replay");
        Assert.Equal((HttpStatusCode.BadRequest, "not-replayable"), (s8, (string?)d8!["code"]));

        // A waiting run has not finished: 409 for both.
        var waiting = await _host.SubmitAsync("refunder", "refund order 9");
        Assert.Equal(RunStatus.Waiting, (await _host.WaitAsync(waiting)).Status);
        var (s9, d9) = await PostAsync($"/v1/runs/{waiting}/replay");
        Assert.Equal(HttpStatusCode.Conflict, s9);
        Assert.Contains("waiting", (string)d9!["detail"]!);
        var (s10, _) = await PostAsync($"/v1/runs/{waiting}/whatif", new JsonObject { ["fromStep"] = 1 });
        Assert.Equal(HttpStatusCode.Conflict, s10);
        Assert.Equal(RunStatus.Waiting, (await _host.Engine.GetRunAsync(waiting, Ct))!.Status);
    }

    [Fact]
    public async Task WithKeys_AViewerMayCheckAReplay_ButAWhatIfNeedsAnOperator()
    {
        await _host.StartAsync();
        var id = await FinishedLookerRunAsync();
        var viewer = await _host.CreateKeyAsync(ApiKeyRole.Viewer);
        var operatorKey = await _host.CreateKeyAsync(ApiKeyRole.Operator);

        var (anonymous, _) = await PostAsync($"/v1/runs/{id}/replay");
        Assert.Equal(HttpStatusCode.Unauthorized, anonymous);
        var (replay, _) = await PostAsync($"/v1/runs/{id}/replay", key: viewer);
        Assert.Equal(HttpStatusCode.OK, replay);
        var (refused, _) = await PostAsync($"/v1/runs/{id}/whatif", new JsonObject { ["fromStep"] = 1, ["model"] = "look-direct" }, viewer);
        Assert.Equal(HttpStatusCode.Forbidden, refused);
        var (allowed, doc) = await PostAsync($"/v1/runs/{id}/whatif", new JsonObject { ["fromStep"] = 1, ["model"] = "look-direct" }, operatorKey);
        Assert.True(allowed == HttpStatusCode.OK, $"{allowed}: {doc}");
    }
}
