using System.Net;
using System.Net.Sockets;
using Bureau.Orleans;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Orleans.Configuration;

namespace Bureau;

/// <summary>Runs Bureau's executors in Orleans grains.</summary>
public static class BureauOrleansExtensions
{
    /// <summary>
    /// Executes each run in its own grain (one activation cluster-wide) inside an Orleans silo hosted
    /// by this application. Without <paramref name="configureSilo"/>, the silo is the embedded one: a
    /// single silo on loopback, on free ports. The silo starts the engine once it is active and stops
    /// it before it goes down.
    /// </summary>
    public static TBuilder UseOrleans<TBuilder>(this TBuilder builder, Action<ISiloBuilder>? configureSilo = null) where TBuilder : IBureauBuilder
    {
        ArgumentNullException.ThrowIfNull(builder);
        var services = builder.Services;
        services.TryAddSingleton<EngineStartedBySilo>();
        services.AddOrleans(silo =>
        {
            if (configureSilo is null) silo.UseEmbeddedSilo();
            else configureSilo(silo);
            silo.AddBureauGrains();
        });
        return builder;
    }

    /// <summary>
    /// Adds Bureau's run grains to a silo, and starts the engine (which then resumes unfinished runs)
    /// once the silo is up, stopping it gracefully before the silo goes down. The silo is named after
    /// <see cref="BureauOptions.NodeId"/>; when the cluster's membership declares a silo dead, the survivors
    /// release its claims at once so its unfinished runs resume without waiting for its leases to run out.
    /// The <see cref="BureauEngine"/> must be registered (<c>AddBureau()</c>).
    /// </summary>
    public static ISiloBuilder AddBureauGrains(this ISiloBuilder silo)
    {
        silo.Services.TryAddSingleton<OrleansRunActivator>();
        silo.Services.AddSingleton<ILifecycleParticipant<ISiloLifecycle>, EngineLifecycle>();
        // The silo's name is the node id its scheduler claims runs under: a dead silo's claims are known by it (fast failover).
        silo.Services.AddOptions<SiloOptions>().Configure<Microsoft.Extensions.Options.IOptions<BureauOptions>>((o, bureau) => o.SiloName = bureau.Value.NodeId);
        silo.Services.AddSingleton<ILifecycleParticipant<ISiloLifecycle>, ClusterFailover>();
        silo.Configure<GrainCollectionOptions>(o => o.CollectionAge = TimeSpan.FromMinutes(2));
        return silo;
    }

    /// <summary>The embedded default: one silo on the loopback interface, on free ports, so several Bureau processes can run on one machine.</summary>
    public static ISiloBuilder UseEmbeddedSilo(this ISiloBuilder silo, string clusterId = "bureau")
    {
        silo.UseLocalhostClustering(siloPort: FreePort(), gatewayPort: FreePort(), serviceId: "bureau", clusterId: clusterId);
        silo.Configure<EndpointOptions>(o => o.AdvertisedIPAddress = IPAddress.Loopback);
        return silo;
    }

    private static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    private sealed class EngineLifecycle(BureauEngine engine, OrleansRunActivator activator) : ILifecycleParticipant<ISiloLifecycle>
    {
        public void Participate(ISiloLifecycle lifecycle) =>
            lifecycle.Subscribe(nameof(BureauEngine), ServiceLifecycleStage.Active,
                async ct =>
                {
                    engine.Activator = activator;
                    await engine.StartAsync(ct);
                },
                ct => engine.StopAsync(ct));
    }
}
