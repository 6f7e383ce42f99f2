using System.Net;
using System.Text.Json.Nodes;
using Xunit;

namespace Bureau.Hosting.Tests;

/// <summary>GET /v1/runs/{id}/events: journal replay, live entries, end event, heartbeats, Last-Event-ID.</summary>
public sealed class EventStreamTests(AnonymousHostFixture fixture) : IClassFixture<AnonymousHostFixture>
{
    private TestHost Host => fixture.Host;
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private async Task<string> SubmitAsync(string agent, string input)
    {
        using var res = await Host.Client.SendAsync(Http.Json(HttpMethod.Post, "/v1/runs", new JsonObject { ["agent"] = agent, ["input"] = input }.ToJsonString()), Ct);
        Assert.Equal(HttpStatusCode.Accepted, res.StatusCode);
        return (string)(await Http.BodyAsync(res))["id"]!;
    }

    private async Task<(HttpResponseMessage Response, SseReader Reader)> OpenAsync(string id, long? lastEventId = null)
    {
        var req = Http.Get($"/v1/runs/{id}/events");
        if (lastEventId is not null) req.Headers.Add("Last-Event-ID", lastEventId.Value.ToString());
        var res = await Host.Client.SendAsync(req, HttpCompletionOption.ResponseHeadersRead, Ct);
        Assert.Equal(HttpStatusCode.OK, res.StatusCode);
        Assert.Equal("text/event-stream", res.Content.Headers.ContentType?.MediaType);
        return (res, new SseReader(await res.Content.ReadAsStreamAsync(Ct)));
    }

    /// <summary>Reads numbered events until <c>end</c>; fails with what it saw if the stream stalls.</summary>
    private static async Task<(List<SseEvent> Steps, SseEvent End)> ReadToEndAsync(SseReader reader, string runId)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(20));
        var steps = new List<SseEvent>();
        while (true)
        {
            SseEvent? e;
            try { e = await reader.NextAsync(timeout.Token); }
            catch (OperationCanceledException) { throw new TimeoutException($"run {runId}: no end event within 20 s; saw steps {string.Join(",", steps.Select(s => s.Id))}"); }
            Assert.True(e is not null, $"run {runId}: the stream closed before the end event; saw steps {string.Join(",", steps.Select(s => s.Id))}");
            if (e.Event == "end") return (steps, e);
            if (e.Id is not null) steps.Add(e);
        }
    }

    [Fact]
    public async Task Events_FinishedRun_ReplaysEveryStepThenEnd()
    {
        var id = await SubmitAsync("echo", "sse-finished");
        await Host.WaitAsync(id);
        var (res, reader) = await OpenAsync(id);
        using (res) using (reader)
        {
            var (steps, end) = await ReadToEndAsync(reader, id);
            var journal = await Host.Engine.ReadJournalAsync(id, 0, Ct);
            Assert.Equal(journal.Select(j => j.N.ToString()), steps.Select(s => s.Id));
            Assert.Equal(journal.Select(j => j.Entry.Kind), steps.Select(s => s.Event));
            for (var i = 0; i < journal.Count; i++)
                Assert.True(JsonNode.DeepEquals(RunDocuments.Step(journal[i]), steps[i].Json), $"step {journal[i].N} differs");
            Assert.Equal("succeeded", (string?)end.Json["status"]);
            Assert.Null(end.Id);
            Assert.Null(await reader.NextAsync(Ct)); // the stream closes after end
        }
    }

    [Fact]
    public async Task Events_LastEventId_ResumesAfterThatStepWithoutRepeats()
    {
        var id = await SubmitAsync("echo", "sse-resume");
        await Host.WaitAsync(id);
        var journal = await Host.Engine.ReadJournalAsync(id, 0, Ct);
        var (res, reader) = await OpenAsync(id, lastEventId: 1);
        using (res) using (reader)
        {
            var (steps, _) = await ReadToEndAsync(reader, id);
            Assert.Equal(journal.Skip(1).Select(j => j.N.ToString()), steps.Select(s => s.Id));
        }
        var (res2, reader2) = await OpenAsync(id, lastEventId: journal[^1].N);
        using (res2) using (reader2)
        {
            var (steps, end) = await ReadToEndAsync(reader2, id);
            Assert.Empty(steps);
            Assert.Equal("succeeded", (string?)end.Json["status"]);
        }
    }

    [Fact]
    public async Task Events_LiveRun_HeartbeatsWhileIdleThenStreamsToEnd()
    {
        var input = "sse-live-" + Guid.NewGuid().ToString("n");
        var id = await SubmitAsync("slow", input);
        var (res, reader) = await OpenAsync(id);
        using (res) using (reader)
        {
            var first = await reader.NextAsync(Ct);
            Assert.Equal(("1", "run.started"), (first!.Id, first.Event));
            // The model is held: the stream idles and must send heartbeats (50 ms in the test host).
            using (var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct))
            {
                timeout.CancelAfter(TimeSpan.FromSeconds(20));
                while (reader.Pings < 2)
                {
                    var e = await reader.NextAsync(timeout.Token);
                    Assert.True(e is not null && e.Id is null, $"run {id}: unexpected {e?.Event ?? "end of stream"} while the model is held");
                }
            }
            Host.Gate.Open(input);
            var (steps, end) = await ReadToEndAsync(reader, id);
            var all = new[] { first }.Concat(steps).Select(s => long.Parse(s.Id!)).ToList();
            Assert.Equal(Enumerable.Range(1, all.Count).Select(i => (long)i), all); // gap-free, no repeats
            Assert.Equal("succeeded", (string?)end.Json["status"]);
            Assert.Equal("opened: " + input, (string?)end.Json["output"]);
        }
    }

    [Fact]
    public async Task Events_ReconnectWithLastEventIdMidRun_NoGapNoRepeat()
    {
        var input = "sse-reconnect-" + Guid.NewGuid().ToString("n");
        var id = await SubmitAsync("slow", input);
        string lastId;
        var (res, reader) = await OpenAsync(id);
        using (res) using (reader)
        {
            var first = await reader.NextAsync(Ct);
            lastId = first!.Id!;
        } // the client drops the connection mid-run
        Host.Gate.Open(input);
        await Host.WaitAsync(id);
        var (res2, reader2) = await OpenAsync(id, long.Parse(lastId));
        using (res2) using (reader2)
        {
            var (steps, _) = await ReadToEndAsync(reader2, id);
            var journal = await Host.Engine.ReadJournalAsync(id, 0, Ct);
            Assert.Equal(journal.Select(j => j.N.ToString()), new[] { lastId }.Concat(steps.Select(s => s.Id!)));
        }
    }

    [Fact]
    public async Task Events_ActivitiesComeWithoutIds()
    {
        var input = "sse-activity-" + Guid.NewGuid().ToString("n");
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var sub = Host.Engine.Events.SubscribeAll(e =>
        {
            if (e.Activity == "model.started") started.TrySetResult();
        });
        var id = await SubmitAsync("slow", input);
        // Connect only once the model call is in flight: its activity was published before anyone listened,
        // and the stream must still tell the newcomer what the run is doing.
        await started.Task.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        var (res, reader) = await OpenAsync(id);
        using (res) using (reader)
        {
            SseEvent? e;
            do { e = await reader.NextAsync(Ct); } while (e is not null && e.Event != "activity");
            Assert.NotNull(e);
            Assert.Null(e.Id);
            Assert.Equal("model.started", (string?)e.Json["activity"]);
            Host.Gate.Open(input);
            await ReadToEndAsync(reader, id);
        }
    }

    [Fact]
    public async Task Events_UnknownRun_Returns404()
    {
        using var res = await Host.Client.GetAsync("/v1/runs/nosuchrun/events", Ct);
        await Http.ProblemAsync(res, 404, runId: "nosuchrun");
    }

    [Fact]
    public async Task Events_BadLastEventId_Returns400()
    {
        var id = await SubmitAsync("echo", "sse-bad-id");
        var req = Http.Get($"/v1/runs/{id}/events");
        req.Headers.Add("Last-Event-ID", "seven");
        using var res = await Host.Client.SendAsync(req, Ct);
        await Http.ProblemAsync(res, 400, "Last-Event-ID");
    }
}
