using System.CommandLine;
using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Bureau.Storage.Sqlite;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Bureau.Cli.Bench;

/// <summary>
/// <c>bureau bench ingest</c>: N CloudEvents posted to <c>POST /v1/events</c> over loopback by C concurrent clients; each
/// is answered 202 only once its run is durable (fsync'd). Reports accepted events per second, answer latency and peak
/// RSS; then the floor: the same events published in process (no HTTP), through the same ingest path. The runs the events
/// start execute meanwhile (a scripted model answering at once), as they would in a host.
/// </summary>
internal static class IngestBench
{
    public static Command Create()
    {
        var events = new Option<int>("--events") { Description = "N: events posted (each starts one run).", DefaultValueFactory = _ => 20_000 };
        var clients = new Option<int>("--clients") { Description = "C: concurrent HTTP clients.", DefaultValueFactory = _ => 64 };
        var slots = new Option<int>("--run-slots") { Description = "Runs executing at once while events arrive (Bureau:MaxConcurrentRuns).", DefaultValueFactory = _ => 64 };
        var db = new Option<string>("--db") { Description = "The database file (deleted and recreated for each system).", DefaultValueFactory = _ => Path.Combine(Path.GetTempPath(), "bureau-bench", "ingest.db") };
        var durability = CliShared.DurabilityOption();
        var skipFloor = new Option<bool>("--no-floor") { Description = "Measure over HTTP only." };
        var warmup = new Option<int>("--warmup") { Description = "Events posted first by the same C clients and left out of the report (JIT, connections, pools), then 1 s for their runs and the JIT's second tier.", DefaultValueFactory = _ => 2_000 };
        var cmd = new Command("ingest", "Durable accepted events per second: N CloudEvents posted to /v1/events over loopback by C clients (202 once the run is durable); then the in-process floor.")
        {
            events, clients, slots, db, durability, skipFloor, warmup,
        };
        cmd.SetAction(async (parse, ct) =>
        {
            var (n, c, s, path) = (parse.GetValue(events), parse.GetValue(clients), parse.GetValue(slots), parse.GetValue(db)!);
            if (n < 1 || c < 1 || s < 1) throw new CliUsageException("--events, --clients and --run-slots must be at least 1");
            var w = parse.GetValue(warmup);
            if (w < 0) throw new CliUsageException("--warmup must be 0 or more");
            var d = CliShared.ParseDurability(parse.GetValue(durability)!);
            var progress = new Progress<string>(m => Console.Error.WriteLine("ingest: " + m));
            Console.Out.WriteLine(RunDocuments.ToJson(await RunAsync(n, c, s, path, d, http: true, progress, ct, w)));
            if (!parse.GetValue(skipFloor)) Console.Out.WriteLine(RunDocuments.ToJson(await RunAsync(n, c, s, path, d, http: false, progress, ct, w)));
            return 0;
        });
        return cmd;
    }

    internal static BureauDefinitions Definitions()
    {
        var d = new BureauDefinitions();
        d.Add(new ScriptedModelDefinition { Name = "scripted", Rules = [new ScriptRule { Reply = "handled {{input}}" }] });
        d.Add(new AgentDefinition { Name = "sink", Model = "scripted", Instructions = "Handle the event." });
        d.Add(new TopicTriggerDefinition { Name = "ingest", Agent = "sink", Topic = "bench.event", Input = "{{$.data.n}}" });
        return d;
    }

    private static byte[] Event(int i) => Encoding.UTF8.GetBytes(
        $$$"""{"specversion":"1.0","id":"ev-{{{i}}}","source":"/bench","type":"bench.event","data":{"n":{{{i}}}}}""");

    internal static async Task<JsonObject> RunAsync(int n, int clients, int slots, string path, StoreDurability durability, bool http, IProgress<string> progress, CancellationToken ct,
        int warmup)
    {
        AgentLoopBench.DeleteDb(path);
        GC.Collect();
        try { File.WriteAllText("/proc/self/clear_refs", "5"); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [], ContentRootPath = Directory.GetCurrentDirectory() });
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        CliComposition.Add(builder.Services, Definitions(), path, durability, slots).AddHttpApi();
        await using var app = builder.Build();
        app.MapBureau();
        await app.StartAsync(ct);
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        var ingest = app.Services.GetRequiredService<Triggers.TriggerIngest>();
        using var client = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = clients, PooledConnectionLifetime = Timeout.InfiniteTimeSpan })
        {
            BaseAddress = new Uri(address),
        };

        // Warm-up (not counted; negative ids): the same concurrent clients, so the paths, connections and pools the
        // measurement uses are ready, then a second for the warm-up's runs to end and the JIT's second tier to land.
        if (warmup > 0)
        {
            var warm = -1;
            await Task.WhenAll(Enumerable.Range(0, Math.Min(clients, warmup)).Select(_ => Task.Run(async () =>
            {
                for (var i = Interlocked.Increment(ref warm); i < warmup; i = Interlocked.Increment(ref warm)) await PostAsync(-1 - i);
            }, ct)));
            await Task.Delay(TimeSpan.FromSeconds(1), ct);
        }

        var latencies = new double[n];
        var refused = 0;
        var next = -1;
        var wall = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, clients).Select(_ => Task.Run(async () =>
        {
            while (true)
            {
                var i = Interlocked.Increment(ref next);
                if (i >= n) return;
                var start = Stopwatch.GetTimestamp();
                if (!await PostAsync(i)) Interlocked.Increment(ref refused);
                latencies[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                if (i % 5000 == 4999) progress.Report($"{(http ? "http" : "in-process")}: {i + 1}/{n} accepted");
            }
        }, ct)));
        var seconds = wall.Elapsed.TotalSeconds;
        var peak = AgentLoopBench.PeakRssMb();
        await app.StopAsync(CancellationToken.None);

        var stored = await CountRunsAsync(path, ct);
        Array.Sort(latencies);
        double Pct(double p) => latencies[Math.Min(n - 1, (int)Math.Ceiling(p * n) - 1)];
        return new JsonObject
        {
            ["system"] = http ? "bureau-http" : "bureau-in-process",
            ["workload"] = "ingest",
            ["events"] = n,
            ["clients"] = clients,
            ["warmup"] = warmup,
            ["run_slots"] = slots,
            ["durability"] = durability == StoreDurability.Full ? "full" : "process",
            ["seconds"] = Math.Round(seconds, 2),
            ["events_per_s"] = Math.Round(n / seconds, 0),
            ["latency_p50_ms"] = Math.Round(Pct(0.50), 2),
            ["latency_p99_ms"] = Math.Round(Pct(0.99), 2),
            ["refused"] = refused,
            ["runs_stored"] = stored,
            ["peak_rss_mb"] = Math.Round(peak, 1),
            ["cores"] = Environment.ProcessorCount,
        };

        async Task<bool> PostAsync(int i)
        {
            if (!http)
            {
                using var doc = JsonDocument.Parse(Event(i));
                var outcomes = await ingest.PublishAsync(doc.RootElement, ct);
                return outcomes.Count == 1 && outcomes[0].Result is not null;
            }
            using var content = new ByteArrayContent(Event(i));
            content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/cloudevents+json");
            using var response = await client.PostAsync("/v1/events", content, ct);
            return response.StatusCode is HttpStatusCode.Accepted or HttpStatusCode.OK;
        }
    }

    private static async Task<long> CountRunsAsync(string path, CancellationToken ct)
    {
        await using var connection = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={path};Mode=ReadOnly;Pooling=false");
        await connection.OpenAsync(ct);
        await using var cmd = connection.CreateCommand();
        cmd.CommandText = "SELECT COUNT(*) FROM runs WHERE idempotency_key LIKE 'event:ev-%' AND idempotency_key NOT LIKE 'event:ev--%'"; // not the warm-up's
        return (long)(await cmd.ExecuteScalarAsync(ct))!;
    }
}
