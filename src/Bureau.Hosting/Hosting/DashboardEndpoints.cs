using System.Collections.Frozen;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Bureau.Hosting;

/// <summary>
/// The Dashboard's files, embedded in this assembly (<c>Dashboard/*</c>, see docs/decisions/0022): the page
/// at the mount path, its script and style sheet under <c>dashboard/</c> beside it. Served with a strict
/// Content-Security-Policy (scripts and styles from this origin only, no inline script, no frames).
/// </summary>
internal static class DashboardEndpoints
{
    /// <summary>What the page may do: its own script and styles, calls to its own origin, nothing else.</summary>
    public const string ContentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

    private sealed record Asset(byte[] Bytes, string ContentType, string ETag);

    private static readonly FrozenDictionary<string, (string Resource, string ContentType)> Files = new Dictionary<string, (string, string)>(StringComparer.Ordinal)
    {
        ["index.html"] = ("Bureau.Dashboard.index.html", "text/html; charset=utf-8"),
        ["app.js"] = ("Bureau.Dashboard.app.js", "text/javascript; charset=utf-8"),
        ["app.css"] = ("Bureau.Dashboard.app.css", "text/css; charset=utf-8"),
    }.ToFrozenDictionary(StringComparer.Ordinal);

    public static IEndpointConventionBuilder Map(IEndpointRouteBuilder endpoints, string path)
    {
        var mount = NormalizeMount(path);
        var assets = new Dictionary<string, Asset>(StringComparer.Ordinal);
        foreach (var (name, (resource, type)) in Files)
        {
            var bytes = Read(resource);
            if (name == "index.html") bytes = Encoding.UTF8.GetBytes(Encoding.UTF8.GetString(bytes).Replace("%BASE%", mount, StringComparison.Ordinal));
            assets[name] = new Asset(bytes, type, "\"" + Convert.ToHexStringLower(SHA256.HashData(bytes).AsSpan(0, 12)) + "\"");
        }
        var index = assets["index.html"];

        var group = endpoints.MapGroup(mount == "/" ? "/" : mount.TrimEnd('/'));
        group.MapGet("/", (HttpContext ctx) =>
        {
            // "/bureau" and "/bureau/" reach the same route; the page's relative links need the slash.
            if (!ctx.Request.Path.Value!.EndsWith('/')) return Results.Redirect(ctx.Request.PathBase + mount);
            return Serve(ctx, index);
        }).WithName("Dashboard");
        group.MapGet("/dashboard/{file}", (HttpContext ctx, string file) =>
            file != "index.html" && assets.TryGetValue(file, out var asset) ? Serve(ctx, asset) : Results.NotFound());
        group.ExcludeFromDescription();
        return group;
    }

    /// <summary>"/", "/bureau" or "/bureau/" become "/" and "/bureau/"; anything else is refused, naming the path.</summary>
    internal static string NormalizeMount(string path)
    {
        if (path.Length == 0 || path[0] != '/' || path.Contains("//", StringComparison.Ordinal)
            || !path.All(c => char.IsAsciiLetterOrDigit(c) || c is '/' or '-' or '_' or '.') || path.Split('/').Any(s => s is "." or ".."))
        {
            throw new ArgumentException($"the dashboard's path must start with '/' and hold only letters, digits, '-', '_', '.' and single '/' (is '{path}')", nameof(path));
        }
        return path.EndsWith('/') ? path : path + "/";
    }

    private static byte[] Read(string resource)
    {
        using var stream = typeof(DashboardEndpoints).Assembly.GetManifestResourceStream(resource)
            ?? throw new InvalidOperationException($"the dashboard's file {resource} is not embedded in {typeof(DashboardEndpoints).Assembly.GetName().Name}");
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    }

    private static IResult Serve(HttpContext ctx, Asset asset)
    {
        var headers = ctx.Response.Headers;
        headers.CacheControl = "no-cache";
        headers.ETag = asset.ETag;
        headers.XContentTypeOptions = "nosniff";
        headers["Referrer-Policy"] = "no-referrer";
        headers.ContentSecurityPolicy = ContentSecurityPolicy;
        headers.XFrameOptions = "DENY";
        if (ctx.Request.Headers.IfNoneMatch.ToString() == asset.ETag) return Results.StatusCode(StatusCodes.Status304NotModified);
        return Results.Bytes(asset.Bytes, asset.ContentType);
    }
}
