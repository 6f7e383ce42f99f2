using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace Bureau.Hosting;

/// <summary><c>GET /v1/costs?by=agent|day&amp;since=&amp;until=</c>: tokens and cost per agent or per UTC day (<see cref="CostReport"/>).</summary>
internal static class CostsApi
{
    public static async Task<IResult> GetAsync(HttpContext ctx)
    {
        var q = ctx.Request.Query;
        var byText = q.TryGetValue("by", out var b) && b.ToString().Length > 0 ? b.ToString() : "agent";
        if (!CostReport.TryParseGrouping(byText, out var by))
            throw ApiException.BadField("by", $"by must be agent or day, not '{byText}'");
        var query = new CostQuery { By = by, Since = Bound(ctx, "since"), Until = Bound(ctx, "until") };
        if (query.Since is { } since && query.Until is { } until && since >= until)
            throw ApiException.BadField("until", $"until ({until:u}) must be after since ({since:u})");
        var engine = ctx.RequestServices.GetRequiredService<BureauEngine>();
        var rows = await engine.Store.ReadCostsAsync(query, ctx.RequestAborted);
        return BureauApi.Json(CostReport.ToJson(rows, query));
    }

    private static DateTimeOffset? Bound(HttpContext ctx, string name)
    {
        if (!ctx.Request.Query.TryGetValue(name, out var text) || text.ToString().Length == 0) return null;
        return CostReport.TryParseTime(text.ToString(), out var at)
            ? at
            : throw ApiException.BadField(name, $"{name} must be a day such as 2026-12-06 or a time such as 2026-12-06T10:00:00Z, not '{text}'");
    }
}

/// <summary>One row: <c>agent</c> when grouped by agent, <c>day</c> when grouped by day.</summary>
internal sealed record CostRowDoc(long Runs, long InputTokens, long OutputTokens, double Cost, string? Agent = null, string? Day = null);
internal sealed record CostTotalDoc(long Runs, long InputTokens, long OutputTokens, double Cost);
internal sealed record CostReportDoc(string By, DateTimeOffset? Since, DateTimeOffset? Until, IReadOnlyList<CostRowDoc> Rows, CostTotalDoc Total);
