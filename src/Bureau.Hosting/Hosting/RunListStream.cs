using System.Text.Json;
using System.Threading.Channels;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace Bureau.Hosting;

/// <summary>
/// <c>GET /v1/runs/events</c>: every run's status changes as Server-Sent Events, for a live list of runs
/// (the dashboard's). Each change is <c>event: run</c> with the run's summary (the document of
/// <c>GET /v1/runs</c>' items) read after the change was committed: a run submitted, started waiting,
/// resumed, finished or canceled. Changes that come in a burst are sent once per run. Nothing is replayed
/// (a client reads <c>GET /v1/runs</c> first, then applies what comes); when the client falls too far
/// behind, <c>event: resync</c> tells it to read the list again. <c>: ping</c> keeps an idle stream open.
/// </summary>
internal static class RunListStream
{
    private const int Backlog = 1024;
    private static readonly JsonSerializerOptions Compact = RunDocuments.JsonOptions;

    /// <summary>The journal entries that change a run's status (or create it).</summary>
    private static bool ChangesStatus(JournalRecord r) =>
        r.Entry is RunStarted or RunWaiting or RunResumed or RunFinished or RunCanceled;

    public static async Task<IResult> StreamAsync(HttpContext ctx)
    {
        var engine = ctx.RequestServices.GetRequiredService<BureauEngine>();
        var options = ctx.RequestServices.GetRequiredService<IOptions<BureauHttpOptions>>().Value;
        var time = ctx.RequestServices.GetRequiredService<TimeProvider>();
        var lifetime = ctx.RequestServices.GetRequiredService<IHostApplicationLifetime>();

        // The bus calls this on the journal writer's thread: it only drops the run id into a bounded channel.
        var changed = Channel.CreateBounded<string>(new BoundedChannelOptions(Backlog) { FullMode = BoundedChannelFullMode.DropWrite, SingleReader = true });
        var overflowed = 0;
        using var subscription = engine.Events.SubscribeAll(e =>
        {
            if (e.Record is { } r && ChangesStatus(r) && !changed.Writer.TryWrite(e.RunId)) Volatile.Write(ref overflowed, 1);
        });

        var response = ctx.Response;
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = "text/event-stream";
        response.Headers.CacheControl = "no-cache";
        response.Headers["X-Accel-Buffering"] = "no";
        ctx.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        await response.StartAsync(ctx.RequestAborted);
        // Tells the client the subscription is in place: what it lists after this is not missed.
        await response.WriteAsync(": subscribed\n\n", ctx.RequestAborted);
        await response.Body.FlushAsync(ctx.RequestAborted);

        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted, lifetime.ApplicationStopping);
        var ct = stop.Token;
        var batch = new List<string>();
        try
        {
            while (true)
            {
                using (var beat = CancellationTokenSource.CreateLinkedTokenSource(ct))
                {
                    var ready = changed.Reader.WaitToReadAsync(beat.Token).AsTask();
                    var delay = Task.Delay(options.HeartbeatInterval, time, beat.Token);
                    if (await Task.WhenAny(ready, delay) != ready)
                    {
                        await response.WriteAsync(": ping\n\n", ct);
                        await response.Body.FlushAsync(ct);
                        continue;
                    }
                    await beat.CancelAsync();
                    if (!await ready) break;
                }

                batch.Clear();
                while (changed.Reader.TryRead(out var id)) if (!batch.Contains(id, StringComparer.Ordinal)) batch.Add(id);
                if (Interlocked.Exchange(ref overflowed, 0) == 1)
                {
                    await response.WriteAsync("event: resync\ndata: {}\n\n", ct);
                }
                else
                {
                    foreach (var id in batch)
                    {
                        var run = await engine.GetRunAsync(id, ct);
                        if (run is null) continue; // deleted by retention in between
                        await response.WriteAsync("event: run\ndata: " + RunDocuments.Summary(run).ToJsonString(Compact) + "\n\n", ct);
                    }
                }
                await response.Body.FlushAsync(ct);
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // The client went away or the host is stopping: the client reads the list again when it reconnects.
        }
        return Results.Empty;
    }
}
