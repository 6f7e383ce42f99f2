using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Routing.Template;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Bureau.Hosting;

/// <summary>
/// The answer under <c>/v1</c> when no endpoint takes the request: 405 naming the methods the path allows (and the
/// <c>Allow</c> header) when some endpoint has the path, else 404 saying there is no such endpoint. Both are problems,
/// like every other error of the API. Mapped by <c>MapBureau()</c> as a fallback of the <c>/v1</c> group (the lowest
/// priority, so any endpoint of Bureau's or of the app that takes the request wins), without middleware.
/// </summary>
/// <remarks>
/// A catch-all endpoint takes every method, so routing no longer answers a wrong method with its own bare 405 for
/// paths under <c>/v1</c>: the fallback works out which methods the path allows from the app's endpoints (the
/// <see cref="EndpointDataSource"/>, every endpoint whose route pattern matches the path). Route constraints are not
/// evaluated: a path whose endpoint allows the request's method but was refused by a constraint is a 404.
/// </remarks>
internal static class NoSuchEndpoint
{
    /// <summary>Marks the fallback: the <c>/v1</c> filter lets it answer without an API key (it reveals no more than routing would).</summary>
    internal sealed class Marker;

    public static void Map(RouteGroupBuilder v1)
    {
        v1.MapFallback("{**path}", (Delegate)Answer).WithMetadata(new Marker()).ExcludeFromDescription();
    }

    private static IResult Answer(HttpContext ctx)
    {
        var request = ctx.Request;
        var path = request.PathBase.Add(request.Path);
        var allowed = AllowedMethods(ctx, request.Path);
        if (allowed.Count > 0 && !allowed.Contains(request.Method, StringComparer.OrdinalIgnoreCase))
        {
            var allow = string.Join(", ", allowed);
            ctx.Response.Headers.Allow = allow;
            return Problems.Create(StatusCodes.Status405MethodNotAllowed, "method-not-allowed",
                $"{path} does not take {request.Method}; it allows {allow}", extra: new() { ["allow"] = allowed });
        }
        var listed = ctx.RequestServices.GetService<IOptions<BureauHttpOptions>>()?.Value.MapOpenApi ?? false
            ? "the endpoints are listed in the OpenAPI document at /openapi/v1.json and in docs/api.md"
            : "the endpoints are listed in docs/api.md";
        return Problems.Create(StatusCodes.Status404NotFound, "no-such-endpoint",
            $"there is no endpoint {request.Method} {path}; {listed}");
    }

    /// <summary>
    /// The methods of the endpoints (other than this fallback) whose route pattern matches <paramref name="path"/>, in
    /// the order they are mapped; none when no endpoint has the path or one of them takes any method.
    /// </summary>
    internal static IReadOnlyList<string> AllowedMethods(HttpContext ctx, PathString path)
    {
        var methods = new List<string>();
        var source = ctx.RequestServices.GetRequiredService<EndpointDataSource>();
        foreach (var endpoint in source.Endpoints)
        {
            if (endpoint is not RouteEndpoint route || endpoint.Metadata.GetMetadata<Marker>() is not null) continue;
            var matcher = new TemplateMatcher(new RouteTemplate(route.RoutePattern), new RouteValueDictionary(route.RoutePattern.Defaults));
            if (!matcher.TryMatch(path, new RouteValueDictionary())) continue;
            // An endpoint of the path that takes any method: the method is not what was refused.
            if (endpoint.Metadata.GetMetadata<IHttpMethodMetadata>() is not { HttpMethods.Count: > 0 } metadata) return [];
            foreach (var method in metadata.HttpMethods)
            {
                if (!methods.Contains(method, StringComparer.OrdinalIgnoreCase)) methods.Add(method);
            }
        }
        return methods;
    }
}
