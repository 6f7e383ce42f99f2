// Bureau.LoadGen: drives a running Bureau host on loopback and prints one JSON line per measurement.
//   submit: POST /v1/runs for --duration seconds (or --count runs), --concurrency requests in flight:
//           accepted runs/s (each one durable before its 202) and latency percentiles.
//   sse:    one run, --subscribers clients on its event stream: events delivered, and wall time per event delivered.
// Usage: dotnet run -c Release --project benchmarks/Bureau.LoadGen -- submit --url http://127.0.0.1:5080 --agent NAME
//        [--input TEXT] [--duration 10] [--count N] [--concurrency 32] [--key KEY]
//        dotnet run ... -- sse --url ... --agent NAME [--input TEXT] [--subscribers 100] [--key KEY]
using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;

var mode = args.Length > 0 ? args[0] : "";
var opts = new Dictionary<string, string>(StringComparer.Ordinal);
for (var i = 1; i + 1 < args.Length; i += 2) opts[args[i]] = args[i + 1];
string Opt(string name, string fallback) => opts.TryGetValue(name, out var v) ? v : fallback;
int IntOpt(string name, int fallback, int min, int max)
{
    var text = Opt(name, fallback.ToString());
    if (!int.TryParse(text, out var n) || n < min || n > max) Fail($"{name} must be an integer from {min} to {max}, not '{text}'");
    return n;
}
static void Fail(string message)
{
    Console.Error.WriteLine("loadgen: " + message);
    Environment.Exit(2);
}

if (mode is not ("submit" or "sse")) Fail("usage: loadgen submit|sse --url URL --agent NAME [options] (see Program.cs)");
if (!Uri.TryCreate(Opt("--url", "http://127.0.0.1:5080"), UriKind.Absolute, out var url)) Fail("--url is not an absolute URL");
if (!(url!.IsLoopback)) Fail($"--url must be a loopback address (127.0.0.1, [::1], localhost), not {url.Host}: this tool never loads another machine");
var agent = Opt("--agent", "");
if (agent.Length == 0) Fail("--agent is required");
var input = Opt("--input", "load test");
var key = opts.GetValueOrDefault("--key");

using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 1024, PooledConnectionLifetime = TimeSpan.FromMinutes(5) })
{
    BaseAddress = url,
    Timeout = TimeSpan.FromSeconds(30),
};
if (key is not null) http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
var body = new JsonObject { ["agent"] = agent, ["input"] = input }.ToJsonString();

async Task<string> SubmitAsync()
{
    using var res = await http.PostAsync("/v1/runs", new StringContent(body, Encoding.UTF8, "application/json"));
    var text = await res.Content.ReadAsStringAsync();
    if (res.StatusCode != HttpStatusCode.Accepted) throw new InvalidOperationException($"POST /v1/runs answered {(int)res.StatusCode}: {text}");
    return (string)JsonNode.Parse(text)!["id"]!;
}

if (mode == "submit")
{
    var duration = IntOpt("--duration", 10, 1, 300);
    var count = IntOpt("--count", int.MaxValue, 1, int.MaxValue);
    var concurrency = IntOpt("--concurrency", 32, 1, 1024);
    try { await SubmitAsync(); } // warm the connection and the server's first request
    catch (Exception ex) when (ex is HttpRequestException or InvalidOperationException) { Fail($"{url} does not take runs: {ex.Message}"); }
    var latencies = new List<double>[concurrency];
    var errors = 0;
    var issued = 0;
    var clock = Stopwatch.StartNew();
    var stopAt = TimeSpan.FromSeconds(duration);
    await Task.WhenAll(Enumerable.Range(0, concurrency).Select(async w =>
    {
        var mine = latencies[w] = [];
        while (clock.Elapsed < stopAt && Interlocked.Increment(ref issued) <= count)
        {
            var start = Stopwatch.GetTimestamp();
            try
            {
                await SubmitAsync();
                mine.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
            }
            catch (Exception ex) when (ex is HttpRequestException or InvalidOperationException or TaskCanceledException)
            {
                if (Interlocked.Increment(ref errors) == 1) Console.Error.WriteLine("loadgen: " + ex.Message);
            }
        }
    }));
    var elapsed = clock.Elapsed.TotalSeconds;
    var all = latencies.SelectMany(l => l).Order().ToArray();
    double P(double q) => all.Length == 0 ? 0 : all[Math.Min(all.Length - 1, (int)Math.Ceiling(q * all.Length) - 1)];
    Console.WriteLine(new JsonObject
    {
        ["scenario"] = "submit",
        ["url"] = url.ToString(),
        ["concurrency"] = concurrency,
        ["accepted"] = all.Length,
        ["errors"] = errors,
        ["seconds"] = Math.Round(elapsed, 3),
        ["accepted_runs_per_s"] = Math.Round(all.Length / elapsed, 1),
        ["p50_ms"] = Math.Round(P(0.50), 3),
        ["p95_ms"] = Math.Round(P(0.95), 3),
        ["p99_ms"] = Math.Round(P(0.99), 3),
        ["max_ms"] = Math.Round(all.Length == 0 ? 0 : all[^1], 3),
    }.ToJsonString());
    return;
}

// sse: N subscribers follow one run from its first entry to its end event.
var subscribers = IntOpt("--subscribers", 100, 1, 2000);
var runId = "";
try { runId = await SubmitAsync(); }
catch (Exception ex) when (ex is HttpRequestException or InvalidOperationException) { Fail($"{url} does not take runs: {ex.Message}"); }
var sw = Stopwatch.StartNew();
var counts = await Task.WhenAll(Enumerable.Range(0, subscribers).Select(async _ =>
{
    using var req = new HttpRequestMessage(HttpMethod.Get, $"/v1/runs/{runId}/events");
    using var res = await http.SendAsync(req, HttpCompletionOption.ResponseHeadersRead);
    res.EnsureSuccessStatusCode();
    using var reader = new StreamReader(await res.Content.ReadAsStreamAsync());
    var events = 0;
    string? line;
    while ((line = await reader.ReadLineAsync()) is not null)
    {
        if (line.StartsWith("id: ", StringComparison.Ordinal)) events++;
        if (line == "event: end") break;
    }
    return events;
}));
var seconds = sw.Elapsed.TotalSeconds;
var delivered = counts.Sum();
Console.WriteLine(new JsonObject
{
    ["scenario"] = "sse-fanout",
    ["url"] = url.ToString(),
    ["run"] = runId,
    ["subscribers"] = subscribers,
    ["events_per_subscriber"] = counts.Length == 0 ? 0 : counts.Max(),
    ["events_delivered"] = delivered,
    ["seconds"] = Math.Round(seconds, 3),
    ["events_delivered_per_s"] = Math.Round(delivered / seconds, 1),
    ["us_per_event_delivered"] = delivered == 0 ? 0 : Math.Round(seconds * 1e6 / delivered, 2),
}.ToJsonString());
