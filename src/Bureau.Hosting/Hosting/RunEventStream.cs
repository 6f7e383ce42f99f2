using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace Bureau.Hosting;

/// <summary>
/// <c>GET /v1/runs/{id}/events</c>: the run's journal as Server-Sent Events, one per entry
/// (<c>id:</c> its step number, <c>event:</c> its kind, <c>data:</c> the step's JSON), then live entries
/// as they are committed, then <c>event: end</c> with the run's summary. Activities (a model call or a
/// tool starting) come as <c>event: activity</c> without an id. <c>: ping</c> comments keep an idle
/// stream open. <c>Last-Event-ID</c> (or <c>?after=N</c>) resumes after that step.
/// </summary>
internal static class RunEventStream
{
    private static readonly JsonSerializerOptions Compact = RunDocuments.JsonOptions;

    public static async Task<IResult> StreamAsync(HttpContext ctx, string id)
    {
        var engine = ctx.RequestServices.GetRequiredService<BureauEngine>();
        var options = ctx.RequestServices.GetRequiredService<IOptions<BureauHttpOptions>>().Value;
        var time = ctx.RequestServices.GetRequiredService<TimeProvider>();
        var lifetime = ctx.RequestServices.GetRequiredService<IHostApplicationLifetime>();

        var after = ParseAfter(ctx);
        _ = await engine.GetRunAsync(id, ctx.RequestAborted) ?? throw new RunNotFoundException(id);

        var response = ctx.Response;
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = "text/event-stream";
        response.Headers.CacheControl = "no-cache";
        response.Headers["X-Accel-Buffering"] = "no";
        ctx.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        await response.StartAsync(ctx.RequestAborted);

        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted, lifetime.ApplicationStopping);
        var ct = stop.Token;
        var finished = false;
        try
        {
            await using var events = engine.WatchAsync(id, after, includeActivity: true, cancellationToken: ct).GetAsyncEnumerator(ct);
            var next = events.MoveNextAsync().AsTask();
            while (true)
            {
                using (var beat = CancellationTokenSource.CreateLinkedTokenSource(ct))
                {
                    var delay = Task.Delay(options.HeartbeatInterval, time, beat.Token);
                    if (await Task.WhenAny(next, delay) != next)
                    {
                        await response.WriteAsync(": ping\n\n", ct);
                        await response.Body.FlushAsync(ct);
                        continue;
                    }
                    await beat.CancelAsync();
                }
                if (!await next) break;
                await WriteAsync(response, events.Current, ct);
                next = events.MoveNextAsync().AsTask();
            }
            finished = true;
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // The client went away or the host is stopping: the client reconnects with Last-Event-ID.
        }
        if (finished)
        {
            var run = await engine.GetRunAsync(id, CancellationToken.None);
            if (run is not null)
            {
                var end = RunDocuments.Summary(run);
                await response.WriteAsync($"event: end\ndata: {end.ToJsonString(Compact)}\n\n", CancellationToken.None);
                await response.Body.FlushAsync(CancellationToken.None);
            }
        }
        return Results.Empty;
    }

    private static long ParseAfter(HttpContext ctx)
    {
        var header = ctx.Request.Headers["Last-Event-ID"].ToString();
        var field = "Last-Event-ID";
        if (header.Length == 0)
        {
            header = ctx.Request.Query["after"].ToString();
            field = "after";
        }
        if (header.Length == 0) return 0;
        if (!long.TryParse(header, NumberStyles.None, CultureInfo.InvariantCulture, out var after))
            throw ApiException.BadField(field, $"{field} must be a step number (0 or more), not '{header}'");
        return after;
    }

    private static async Task WriteAsync(HttpResponse response, RunEvent e, CancellationToken ct)
    {
        if (e.Record is { } r)
        {
            // The step's JSON bytes as the journal serializes them (BureauJson.SerializeStep), written as they are.
            await response.WriteAsync($"id: {r.N.ToString(CultureInfo.InvariantCulture)}\nevent: {r.Entry.Kind}\ndata: ", ct);
            await response.Body.WriteAsync(BureauJson.SerializeStep(r), ct);
            await response.WriteAsync("\n\n", ct);
        }
        else
        {
            var data = new JsonObject { ["activity"] = e.Activity, ["detail"] = e.Detail };
            await response.WriteAsync("event: activity\ndata: " + data.ToJsonString(Compact) + "\n\n", ct);
        }
        await response.Body.FlushAsync(ct);
    }
}
