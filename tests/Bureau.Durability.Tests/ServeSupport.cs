using System.Net;
using System.Net.Sockets;

namespace Bureau.Durability.Tests;

/// <summary>Starting and probing real `bureau serve` processes.</summary>
internal static class ServeSupport
{
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<int, byte> s_handedOut = new();

    /// <summary>
    /// A loopback port free right now, and never handed out before in this process: tests run in parallel, and the
    /// kernel may give a port released a moment ago to the next caller, so two tests could otherwise serve on one port
    /// (the second's requests then reach the first's server, with its keys and its database).
    /// </summary>
    public static int FreePort()
    {
        while (true)
        {
            using var l = new TcpListener(IPAddress.Loopback, 0);
            l.Start();
            var port = ((IPEndPoint)l.LocalEndpoint).Port;
            if (s_handedOut.TryAdd(port, 0)) return port;
        }
    }

    /// <summary>
    /// <c>bureau serve bureau.yaml</c> in <paramref name="dir"/> on <paramref name="db"/> at <paramref name="url"/>, with
    /// <c>LEDGER_DIR</c> set to <paramref name="dir"/> and, when given, the crash point <c>BUREAU_CRASH_AT</c>.
    /// </summary>
    public static BureauProcess Serve(string dir, string db, string url, string? crashAt = null)
    {
        var env = new Dictionary<string, string> { ["LEDGER_DIR"] = dir };
        if (crashAt is not null) env["BUREAU_CRASH_AT"] = crashAt;
        return BureauProcess.Start(dir, env, "serve", "bureau.yaml", "--db", db, "--urls", url);
    }

    /// <summary><c>POST /v1/runs</c> of <paramref name="agent"/> with <paramref name="input"/>: asserts the 202 and returns the run's id.</summary>
    public static async Task<string> PostRunAsync(HttpClient http, string agent, string input, CancellationToken ct)
    {
        using var res = await http.PostAsync("/v1/runs", new StringContent(
            new System.Text.Json.Nodes.JsonObject { ["agent"] = agent, ["input"] = input }.ToJsonString(), System.Text.Encoding.UTF8, "application/json"), ct);
        Xunit.Assert.Equal(HttpStatusCode.Accepted, res.StatusCode);
        return (string)System.Text.Json.Nodes.JsonNode.Parse(await res.Content.ReadAsStringAsync(ct))!["id"]!;
    }

    /// <summary>Polls /readyz as a load balancer would, until it answers 200 or <paramref name="timeout"/> passes.</summary>
    public static async Task WaitReadyAsync(HttpClient http, BureauProcess p, TimeSpan timeout, CancellationToken ct)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            try
            {
                using var res = await http.GetAsync("/readyz", ct);
                if (res.IsSuccessStatusCode) return;
            }
            catch (HttpRequestException) { }
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"bureau serve was not ready within {timeout.TotalSeconds}s\n{p.Stderr}");
            await Task.Delay(50, ct);
        }
    }

    /// <summary>
    /// Submits <paramref name="runs"/> runs of <paramref name="agent"/> (input and Idempotency-Key k000, k001, ...), eight at a
    /// time, each sent again with its key until the server accepts it, as a client does while the server is down.
    /// <c>Accepted</c> maps each key to its run; <c>Conflicts</c> lists keys answered with two different runs.
    /// </summary>
    public static (System.Collections.Concurrent.ConcurrentDictionary<string, string> Accepted, System.Collections.Concurrent.ConcurrentBag<string> Conflicts, Task Done)
        SubmitWithRetries(HttpClient http, string agent, int runs, CancellationToken ct)
    {
        var accepted = new System.Collections.Concurrent.ConcurrentDictionary<string, string>(); // key -> run id
        var conflicts = new System.Collections.Concurrent.ConcurrentBag<string>();
        var gate = new SemaphoreSlim(8);
        var submitters = Enumerable.Range(0, runs).Select(async i =>
        {
            var key = $"k{i:000}";
            await gate.WaitAsync(ct);
            try
            {
                for (var attempt = 0; ; attempt++)
                {
                    try
                    {
                        var req = new HttpRequestMessage(HttpMethod.Post, "/v1/runs")
                        {
                            Content = new StringContent(new System.Text.Json.Nodes.JsonObject { ["agent"] = agent, ["input"] = key }.ToJsonString(), System.Text.Encoding.UTF8, "application/json"),
                        };
                        req.Headers.Add("Idempotency-Key", key);
                        using var res = await http.SendAsync(req, ct);
                        if (res.StatusCode is System.Net.HttpStatusCode.Accepted or System.Net.HttpStatusCode.OK)
                        {
                            var id = (string)System.Text.Json.Nodes.JsonNode.Parse(await res.Content.ReadAsStringAsync(ct))!["id"]!;
                            if (accepted.TryGetValue(key, out var before) && before != id) conflicts.Add($"{key}: {before} then {id}");
                            accepted[key] = id;
                            return;
                        }
                    }
                    catch (HttpRequestException) { }
                    catch (TaskCanceledException) when (!ct.IsCancellationRequested) { }
                    if (attempt > 2000) throw new TimeoutException($"{key} was never accepted");
                    await Task.Delay(20, ct); // the server is down: retry with the same key, as a client would
                }
            }
            finally
            {
                gate.Release();
            }
        }).ToList();
        return (accepted, conflicts, Task.WhenAll(submitters));
    }
}
