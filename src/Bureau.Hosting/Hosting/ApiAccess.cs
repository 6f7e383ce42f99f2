using System.Net;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Primitives;

namespace Bureau.Hosting;

/// <summary>What a route needs.</summary>
internal enum ApiPermission
{
    /// <summary>Any role.</summary>
    Read,
    /// <summary>operator or admin.</summary>
    StartOrCancel,
    /// <summary>approver or admin.</summary>
    Resolve,
    /// <summary>admin only.</summary>
    ManageKeys,
}

/// <summary>Who is calling: a key (by id) or a loopback client while no key exists.</summary>
internal sealed record ApiCaller(string Actor, ApiKeyRole Role, string? Name = null);

/// <summary>
/// Checks each <c>/v1</c> request: with keys in the store, an <c>Authorization: Bearer bk_...</c>
/// key whose role allows the route; with none, only loopback clients (with every right), and
/// never a browser page from another origin.
/// </summary>
internal sealed class ApiAccess(IApiKeyStore keys)
{
    public const string CallerItem = "bureau.caller";

    public static ApiCaller Caller(HttpContext ctx) => (ApiCaller)ctx.Items[CallerItem]!;

    /// <summary>The caller, or an exception carrying the 401/403 problem.</summary>
    public async Task<ApiCaller> AuthorizeAsync(HttpContext ctx, ApiPermission needed)
    {
        var ct = ctx.RequestAborted;
        var header = ctx.Request.Headers.Authorization;
        ApiCaller caller;
        if (!StringValues.IsNullOrEmpty(header))
        {
            var text = header.ToString();
            if (!text.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
                throw new ApiException(StatusCodes.Status401Unauthorized, "unauthorized", "the Authorization header must be 'Bearer bk_...'", field: "Authorization");
            var key = text["Bearer ".Length..].Trim();
            if (!ApiKeys.TryParseId(key, out var id))
                throw new ApiException(StatusCodes.Status401Unauthorized, "unauthorized", "the API key is malformed (expected bk_ID_SECRET)", field: "Authorization");
            var record = await keys.FindAsync(id, ct);
            if (record is null || !ApiKeys.Matches(record, key))
                throw new ApiException(StatusCodes.Status401Unauthorized, "unauthorized", $"the API key bk_{id} is unknown or revoked", field: "Authorization");
            caller = new ApiCaller("key:" + id, record.Role, record.Name);
        }
        else if (await keys.AnyActiveAsync(ct))
        {
            throw new ApiException(StatusCodes.Status401Unauthorized, "unauthorized", "this route needs an API key: send 'Authorization: Bearer bk_...'", field: "Authorization");
        }
        else
        {
            CheckAnonymousLoopback(ctx);
            caller = new ApiCaller("loopback", ApiKeyRole.Admin);
        }

        if (!Allows(caller.Role, needed))
        {
            throw new ApiException(StatusCodes.Status403Forbidden, "forbidden",
                $"this route needs the role {Needed(needed)}; the key {caller.Actor["key:".Length..]} has the role {caller.Role.ToWireName()}");
        }
        ctx.Items[CallerItem] = caller;
        return caller;
    }

    public static bool Allows(ApiKeyRole role, ApiPermission needed) => needed switch
    {
        ApiPermission.Read => true,
        ApiPermission.StartOrCancel => role is ApiKeyRole.Operator or ApiKeyRole.Admin,
        ApiPermission.Resolve => role is ApiKeyRole.Approver or ApiKeyRole.Admin,
        ApiPermission.ManageKeys => role is ApiKeyRole.Admin,
        _ => false,
    };

    /// <summary>For a route whose need depends on the request (checked after the body is read): 403 unless the caller's role allows <paramref name="needed"/>.</summary>
    public static void Demand(HttpContext ctx, ApiPermission needed, string what, string? field = null)
    {
        var caller = Caller(ctx);
        if (!Allows(caller.Role, needed))
            throw new ApiException(StatusCodes.Status403Forbidden, "forbidden", $"{what} needs the role {Needed(needed)}; the caller has the role {caller.Role.ToWireName()}", field);
    }

    private static string Needed(ApiPermission p) => p switch
    {
        ApiPermission.StartOrCancel => "operator (or admin)",
        ApiPermission.Resolve => "approver (or admin)",
        ApiPermission.ManageKeys => "admin",
        _ => "viewer",
    };

    /// <summary>
    /// Without keys, only a client on this machine is served: the connection must come from loopback,
    /// the Host header must name loopback (DNS rebinding), and a browser page from another origin
    /// (an Origin header that is not loopback) is refused, so a web page cannot drive the API.
    /// </summary>
    private static void CheckAnonymousLoopback(HttpContext ctx)
    {
        var remote = ctx.Connection.RemoteIpAddress;
        if (remote is not null && !IPAddress.IsLoopback(remote))
            throw new ApiException(StatusCodes.Status403Forbidden, "forbidden", $"no API keys exist, so only loopback clients are served (this request came from {remote})");
        var host = ctx.Request.Host.Host;
        if (!string.IsNullOrEmpty(host) && !BureauHostService.IsLoopbackHost(host))
            throw new ApiException(StatusCodes.Status403Forbidden, "forbidden", $"no API keys exist, so only requests addressed to loopback are served (Host is '{host}')", field: "Host");
        var origin = ctx.Request.Headers.Origin.ToString();
        if (origin.Length > 0 && !(Uri.TryCreate(origin, UriKind.Absolute, out var o) && BureauHostService.IsLoopbackHost(o.Host.Trim('[', ']'))))
            throw new ApiException(StatusCodes.Status403Forbidden, "forbidden", $"no API keys exist, so requests from web pages of other origins are refused (Origin is '{origin}')", field: "Origin");
    }
}
