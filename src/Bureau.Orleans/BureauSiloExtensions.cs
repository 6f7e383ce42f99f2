using System.Net;
using System.Net.Sockets;
using Bureau.Orleans;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Orleans.Configuration;

namespace Bureau;

/// <summary>Wires Bureau's engine into an Orleans silo.</summary>
public static class BureauSiloExtensions
{
    /// <summary>
    /// Runs Bureau in this silo: run grains, and the engine started once the silo is up (it then
    /// resumes unfinished runs) and stopped gracefully before the silo goes down.
    /// The <see cref="BureauEngine"/> must be registered as a singleton.
    /// </summary>
    public static ISiloBuilder AddBureau(this ISiloBuilder silo)
    {
        silo.Services.TryAddSingleton<RunCompletions>();
        silo.Services.TryAddSingleton<OrleansRunActivator>();
        silo.Services.AddSingleton<ILifecycleParticipant<ISiloLifecycle>, EngineLifecycle>();
        silo.Configure<GrainCollectionOptions>(o => o.CollectionAge = TimeSpan.FromMinutes(2));
        return silo;
    }

    /// <summary>
    /// The embedded default: one silo on the loopback interface, on free ports, so several Bureau
    /// processes can run on one machine.
    /// </summary>
    public static ISiloBuilder UseEmbeddedSilo(this ISiloBuilder silo, string clusterId = "bureau")
    {
        silo.UseLocalhostClustering(siloPort: FreePort(), gatewayPort: FreePort(), serviceId: "bureau", clusterId: clusterId);
        silo.Configure<EndpointOptions>(o => o.AdvertisedIPAddress = IPAddress.Loopback);
        return silo.AddBureau();
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
