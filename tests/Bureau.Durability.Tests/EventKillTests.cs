using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Bureau.Storage.Sqlite;
using Xunit;

namespace Bureau.Durability.Tests;

/// <summary>
/// A real `bureau serve` process receives CloudEvents (POST /v1/events) and signed GitHub webhooks in a loop while it is
/// SIGKILLed three times at random moments and restarted on the same database; senders retry what got no answer, as
/// webhook senders do. Every event that got a 2xx started exactly one run, and every answer for an event named that run.
/// </summary>
public sealed class EventKillTests : IDisposable
{
    private const string Secret = "kill-test-secret";
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bureau-event-kill", Guid.NewGuid().ToString("n"));
    private static readonly TimeSpan ProcessTimeout = TimeSpan.FromSeconds(60);

    public EventKillTests()
    {
        Directory.CreateDirectory(_dir);
        File.WriteAllText(Path.Combine(_dir, "bureau.yaml"), $$$"""
            models:
              script: { provider: scripted, rules: [ { reply: "handled" } ] }
            agents:
              handler: { model: script }
            triggers:
              escalations: { kind: topic, topic: ticket.escalated, agent: handler, input: "{{$.data.n}}" }
              issues: { kind: webhook, source: github, secret: {{{Secret}}}, events: [issues.opened], agent: handler, input: "{{$.issue.title}}" }
            """);
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private BureauProcess Serve(string db, string url) => BureauProcess.Start(_dir, new Dictionary<string, string>(), "serve", "bureau.yaml", "--db", db, "--urls", url);

    private static HttpRequestMessage Request(int i)
    {
        if (i % 2 == 0)
        {
            var ev = new JsonObject { ["specversion"] = "1.0", ["id"] = $"ev-{i:000}", ["source"] = "/kill", ["type"] = "ticket.escalated", ["data"] = new JsonObject { ["n"] = i } };
            return new HttpRequestMessage(HttpMethod.Post, "/v1/events") { Content = new StringContent(ev.ToJsonString(), Encoding.UTF8, "application/cloudevents+json") };
        }
        var body = new JsonObject { ["action"] = "opened", ["issue"] = new JsonObject { ["title"] = $"issue {i}" } }.ToJsonString();
        var req = new HttpRequestMessage(HttpMethod.Post, "/v1/hooks/issues") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        req.Headers.Add("X-Hub-Signature-256", "sha256=" + Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(Secret), Encoding.UTF8.GetBytes(body))));
        req.Headers.Add("X-GitHub-Event", "issues");
        req.Headers.Add("X-GitHub-Delivery", $"d-{i:000}");
        return req;
    }

    private static string KeyOf(int i) => i % 2 == 0 ? $"event:ev-{i:000}:escalations" : $"trigger:issues:d-{i:000}";

    [Fact]
    public async Task Serve_KilledThreeTimesWhileEventsArrive_EveryAcknowledgedEventStartedExactlyOneRun()
    {
        const int events = 300, kills = 3;
        var ct = TestContext.Current.CancellationToken;
        var db = Path.Combine(_dir, "serve.db");
        var url = $"http://127.0.0.1:{ServeSupport.FreePort()}";
        using var http = new HttpClient { BaseAddress = new Uri(url), Timeout = TimeSpan.FromSeconds(60) };
        var answered = new System.Collections.Concurrent.ConcurrentDictionary<int, string>(); // event -> run id in its 2xx
        var conflicts = new System.Collections.Concurrent.ConcurrentBag<string>();
        var server = Serve(db, url);
        try
        {
            await ServeSupport.WaitReadyAsync(http, server, ProcessTimeout, ct);

            var gate = new SemaphoreSlim(8);
            var senders = Enumerable.Range(0, events).Select(async i =>
            {
                await gate.WaitAsync(ct);
                try
                {
                    for (var attempt = 0; ; attempt++)
                    {
                        try
                        {
                            using var res = await http.SendAsync(Request(i), ct);
                            if ((int)res.StatusCode is >= 200 and < 300)
                            {
                                var body = JsonNode.Parse(await res.Content.ReadAsStringAsync(ct))!;
                                var id = i % 2 == 0 ? (string)body["runs"]![0]!["run"]!["id"]! : (string)body["run"]!["id"]!;
                                if (answered.TryGetValue(i, out var before) && before != id) conflicts.Add($"{KeyOf(i)}: {before} then {id}");
                                answered[i] = id;
                                if (attempt == 0 && i % 7 == 0) continue; // some events are sent again after their 2xx: a redelivery
                                return;
                            }
                            if (res.StatusCode != HttpStatusCode.ServiceUnavailable)
                                throw new InvalidOperationException($"{KeyOf(i)}: {(int)res.StatusCode} {await res.Content.ReadAsStringAsync(ct)}");
                        }
                        catch (HttpRequestException) { }
                        catch (TaskCanceledException) when (!ct.IsCancellationRequested) { }
                        if (attempt > 2000) throw new TimeoutException($"{KeyOf(i)} was never acknowledged");
                        await Task.Delay(20, ct); // no answer: the sender tries again with the same event id
                    }
                }
                finally
                {
                    gate.Release();
                }
            }).ToList();

            var random = new Random(20261206);
            for (var k = 0; k < kills; k++)
            {
                await Task.Delay(random.Next(150, 900), ct);
                server.Kill();
                server.Dispose();
                server = Serve(db, url);
                await ServeSupport.WaitReadyAsync(http, server, ProcessTimeout, ct);
            }
            await Task.WhenAll(senders);
            server.Terminate();
            await server.WaitAsync(ProcessTimeout);
        }
        finally
        {
            server.Dispose(); // a failure must not leave the host running
        }

        Assert.Empty(conflicts);
        Assert.Equal(events, answered.Count);
        await using var store = new SqliteRunStore(new SqliteStoreOptions { Path = db });
        await store.InitializeAsync(ct);
        var runs = new List<RunRecord>();
        foreach (var prefix in new[] { "event:", "trigger:" })
            runs.AddRange((await store.ListRunsAsync(new RunQuery { IdempotencyKeyPrefix = prefix, Limit = 1000 }, ct)).Items);
        Assert.Equal(events, runs.Count); // nothing that was not acknowledged at some point, nothing twice
        var byKey = runs.ToDictionary(r => r.IdempotencyKey!, r => r.Id);
        foreach (var (i, runId) in answered)
        {
            Assert.True(byKey.TryGetValue(KeyOf(i), out var stored), $"{KeyOf(i)} was answered 2xx with run {runId}, but no run has its key");
            Assert.Equal(stored, runId);
        }
    }
}
