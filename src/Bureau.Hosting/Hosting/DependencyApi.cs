using System.Text.Json.Nodes;
using Bureau.Resilience;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace Bureau.Hosting;

/// <summary><c>GET /v1/health/dependencies</c> (the models' and tools' breakers and counters) and <c>GET /v1/failures</c>.</summary>
internal static class DependencyApi
{
    public static IResult Dependencies(HttpContext ctx)
    {
        var health = ctx.RequestServices.GetRequiredService<DependencyHealth>();
        var items = new JsonArray();
        foreach (var d in health.Snapshot()) items.Add(ToJson(d));
        return BureauApi.Json(new JsonObject { ["items"] = items });
    }

    /// <summary>One dependency as JSON (also what <c>bureau health</c> prints).</summary>
    public static JsonObject ToJson(DependencyStatus d) => new()
    {
        ["name"] = d.Name,
        ["circuit"] = d.Circuit,
        ["retryAt"] = d.RetryAt,
        ["calls"] = d.Calls,
        ["failures"] = d.Failures,
        ["rejected"] = d.Rejected,
        ["inFlight"] = d.InFlight,
        ["waiting"] = d.Waiting,
        ["maxConcurrency"] = d.MaxConcurrency,
        ["lastError"] = d.LastError,
        ["lastFailureAt"] = d.LastFailureAt,
        ["connection"] = d.Connection,
        ["nextAttemptAt"] = d.NextAttemptAt,
        ["notApplied"] = d.NotApplied is { } lines ? new JsonArray([.. lines.Select(l => (JsonNode)JsonValue.Create(l))]) : null,
    };

    public static async Task<IResult> FailuresAsync(HttpContext ctx)
    {
        DateTimeOffset? since = null;
        if (ctx.Request.Query.TryGetValue("since", out var text) && text.ToString().Length > 0)
        {
            if (!DateTimeOffset.TryParse(text.ToString(), System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.AssumeUniversal, out var at))
                throw ApiException.BadField("since", $"since must be a time such as 2026-12-06T10:00:00Z, not '{text}'");
            since = at;
        }
        var engine = ctx.RequestServices.GetRequiredService<BureauEngine>();
        var groups = await FailureReport.ReadAsync(engine.Store, since, 10_000, ctx.RequestAborted);
        return BureauApi.Json(FailureReport.ToJson(groups));
    }
}

internal sealed record DependencyDoc(string Name, string Circuit, DateTimeOffset? RetryAt, long Calls, long Failures, long Rejected, int InFlight, int Waiting,
    int? MaxConcurrency, string? LastError, DateTimeOffset? LastFailureAt, string? Connection = null, DateTimeOffset? NextAttemptAt = null, IReadOnlyList<string>? NotApplied = null);
internal sealed record DependencyListDoc(IReadOnlyList<DependencyDoc> Items);
internal sealed record FailureGroupDoc(string Cause, string? Kind, string? Dependency, int Count, DateTimeOffset FirstSeen, DateTimeOffset LastSeen, string ExampleRun, long? ExampleStep,
    string? Signature, string Hint, IReadOnlyDictionary<string, int> ByDay);
internal sealed record FailureListDoc(IReadOnlyList<FailureGroupDoc> Groups);
