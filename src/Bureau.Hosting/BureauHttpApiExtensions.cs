using Bureau.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace Bureau;

/// <summary>Registers what <c>MapBureau()</c> serves.</summary>
public static class BureauHttpApiExtensions
{
    /// <summary>
    /// Adds the services of Bureau's REST API (API keys and roles, the loopback rule, the OpenAPI
    /// document) and the schedule triggers' service; options from the section <c>Bureau</c> (<see cref="BureauHttpOptions"/>). Map the
    /// endpoints with <c>app.MapBureau()</c>.
    /// </summary>
    public static TBuilder AddHttpApi<TBuilder>(this TBuilder builder, Action<BureauHttpOptions>? configure = null) where TBuilder : IBureauBuilder
    {
        ArgumentNullException.ThrowIfNull(builder);
        var services = builder.Services;
        if (configure is not null) services.Configure(configure);
        if (services.Any(d => d.ServiceType == typeof(ApiAccess))) return builder;
        services.AddOptions<BureauHttpOptions>().BindIfConfigured(BureauOptions.SectionName).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<BureauHttpOptions>, BureauHttpOptionsValidator>());
        services.AddSingleton<ApiAccess>();
        services.AddHostedService<BureauHostService>();
        Triggers.ScheduleService.Register(services); // a host that serves the API (and its webhooks) fires the schedules too
        services.AddOpenApi(OpenApiContract.Configure);
        McpAgentServer.Register(services); // the agents as MCP tools at /mcp (MapBureau maps it)
        return builder;
    }
}
