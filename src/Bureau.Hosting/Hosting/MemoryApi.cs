using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Bureau.Hosting;

/// <summary>
/// Read access to long-term memory (docs/memory.md): <c>GET /v1/memory/{scope}</c> lists a scope's current facts,
/// <c>GET /v1/memory/{scope}/{key}</c> shows one fact with every version (provenance, supersession). Writes go
/// through agents' tools (journaled) or <see cref="IMemoryStore"/> in C#, not through the API.
/// </summary>
internal static class MemoryApi
{
    public static void Map(RouteGroupBuilder v1)
    {
        v1.MapGet("/memory/{scope}", (Delegate)ListAsync).WithMetadata(new PermissionMetadata(ApiPermission.Read))
            .WithName("ListMemory").WithSummary("A memory scope's current facts (scope KIND:ID, e.g. team:support), by key, paged with ?after=KEY&limit=N.")
            .Produces<MemoryListDoc>().ProducesProblem(400).ProducesProblem(404);
        v1.MapGet("/memory/{scope}/{*key}", (Delegate)GetAsync).WithMetadata(new PermissionMetadata(ApiPermission.Read))
            .WithName("GetMemoryFact").WithSummary("One fact: its current value and every version, with who wrote it (run, step, agent, time) and what superseded it.")
            .Produces<MemoryFactHistoryDoc>().ProducesProblem(400).ProducesProblem(404);
    }

    private static IMemoryStore Store(HttpContext ctx) => ctx.RequestServices.GetService<IMemoryStore>()
        ?? throw new ApiException(StatusCodes.Status404NotFound, "no-memory", "this host has no memory store");

    private static void CheckScope(string scope)
    {
        if (MemoryScopes.Problem(scope) is { } problem) throw ApiException.BadField("scope", problem);
    }

    /// <summary><c>GET /v1/memory/{scope}?after=KEY&amp;limit=N</c>.</summary>
    public static async Task<IResult> ListAsync(HttpContext ctx, string scope)
    {
        CheckScope(scope);
        var limit = 100;
        if (ctx.Request.Query.TryGetValue("limit", out var l) && (!int.TryParse(l.ToString(), out limit) || limit is < 1 or > 1000))
            throw ApiException.BadField("limit", $"limit must be a whole number from 1 to 1000, not '{l}'");
        var after = ctx.Request.Query["after"].ToString();
        var facts = await Store(ctx).ListAsync(scope, string.IsNullOrEmpty(after) ? null : after, limit, ctx.RequestAborted);
        return BureauApi.Json(new JsonObject
        {
            ["scope"] = scope,
            ["items"] = new JsonArray([.. facts.Select(f => (JsonNode)FactDocument(f))]),
            ["next"] = facts.Count == limit ? facts[^1].Key : null,
        });
    }

    /// <summary><c>GET /v1/memory/{scope}/{key}</c>.</summary>
    public static async Task<IResult> GetAsync(HttpContext ctx, string scope, string key)
    {
        CheckScope(scope);
        if (MemoryScopes.KeyProblem(key) is { } problem) throw ApiException.BadField("key", problem);
        var history = await Store(ctx).HistoryAsync(scope, key, ctx.RequestAborted);
        if (history.Count == 0) throw new ApiException(StatusCodes.Status404NotFound, "not-found", $"memory scope {scope} has no fact '{key}'", "key");
        var head = history[^1];
        return BureauApi.Json(new JsonObject
        {
            ["scope"] = scope,
            ["key"] = key,
            ["current"] = head.IsForgotten ? null : FactDocument(head),
            ["forgotten"] = head.IsForgotten,
            ["versions"] = new JsonArray([.. history.Select(f => (JsonNode)FactDocument(f))]),
        });
    }

    /// <summary>A fact version as the API shows it.</summary>
    internal static JsonObject FactDocument(MemoryFact f) => new()
    {
        ["scope"] = f.Scope,
        ["key"] = f.Key,
        ["version"] = f.Version,
        ["value"] = f.Value,
        ["forgotten"] = f.IsForgotten ? true : null,
        ["supersedes"] = f.Supersedes,
        ["supersededBy"] = f.SupersededBy,
        ["provenance"] = new JsonObject
        {
            ["runId"] = f.Provenance.RunId,
            ["step"] = f.Provenance.Step,
            ["agent"] = f.Provenance.Agent,
            ["actor"] = f.Provenance.Actor,
            ["at"] = f.Provenance.At,
        },
    };
}

// Shapes for the OpenAPI document.
internal sealed record MemoryProvenanceDoc(string? RunId, long? Step, string? Agent, string? Actor, DateTimeOffset At);
/// <summary>One version of a fact; <c>forgotten</c> appears (true) on the version that forgot it.</summary>
internal sealed record MemoryFactDoc(string Scope, string Key, long Version, string? Value, long? Supersedes, long? SupersededBy,
    MemoryProvenanceDoc Provenance, bool? Forgotten = null);
internal sealed record MemoryListDoc(string Scope, IReadOnlyList<MemoryFactDoc> Items, string? Next);
internal sealed record MemoryFactHistoryDoc(string Scope, string Key, MemoryFactDoc? Current, bool Forgotten, IReadOnlyList<MemoryFactDoc> Versions);
