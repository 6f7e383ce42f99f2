using Bureau.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Routing;

namespace Bureau;

/// <summary>Maps Bureau's Dashboard.</summary>
public static class BureauDashboardExtensions
{
    /// <summary>
    /// Maps the Dashboard at <paramref name="path"/> (default <c>/</c>): static pages embedded in this assembly
    /// (no build step, nothing from a CDN) that read the REST API of <c>MapBureau()</c>: runs with live
    /// updates, a run's timeline, agents and teams, the approvals inbox and failures. The pages hold no data
    /// and need no key to load; every call they make to <c>/v1</c> is checked as any other (a key typed into
    /// the page, or keyless loopback access). <c>bureau serve</c> maps it at <c>/</c>; an application that owns
    /// <c>/</c> mounts it elsewhere, e.g. <c>app.MapBureauDashboard("/bureau")</c>.
    /// </summary>
    public static IEndpointConventionBuilder MapBureauDashboard(this IEndpointRouteBuilder endpoints, string path = "/")
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        ArgumentNullException.ThrowIfNull(path);
        return DashboardEndpoints.Map(endpoints, path);
    }
}
