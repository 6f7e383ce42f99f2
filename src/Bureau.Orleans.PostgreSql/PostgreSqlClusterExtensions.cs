using System.Net;
using System.Net.Sockets;
using Bureau.Orleans.PostgreSql;
using Bureau.Storage.PostgreSql;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using Orleans.Configuration;

namespace Bureau;

/// <summary>Cluster mode: several Bureau processes on one PostgreSQL database form an Orleans cluster.</summary>
public static class PostgreSqlClusterExtensions
{
    /// <summary>
    /// Joins this process to a cluster whose membership lives in PostgreSQL (Orleans' ADO.NET clustering; its scripts
    /// are applied at start in their own schema). Runs execute in grains on the node whose scheduler claimed them;
    /// claims are leased for <see cref="PostgreSqlClusterOptions.ClaimLease"/>, and when the membership declares a node
    /// dead the survivors release its claims so its runs resume at once. Options from <c>Bureau:Cluster</c>, then
    /// <paramref name="configure"/>; the connection string defaults to the PostgreSQL store's. Each node needs its own
    /// <c>Bureau:NodeId</c>; left at its default (<c>local</c>), one is made from the machine's name and a random suffix.
    /// </summary>
    public static TBuilder UsePostgreSqlCluster<TBuilder>(this TBuilder builder, Action<PostgreSqlClusterOptions>? configure = null) where TBuilder : IBureauBuilder
    {
        ArgumentNullException.ThrowIfNull(builder);
        var services = builder.Services;
        services.AddOptions<PostgreSqlClusterOptions>()
            .Configure<IServiceProvider>((o, sp) =>
            {
                sp.GetService<IConfiguration>()?.GetSection(PostgreSqlClusterOptions.SectionName).Bind(o);
                if (string.IsNullOrWhiteSpace(o.ConnectionString)) o.ConnectionString = sp.GetService<IOptions<PostgreSqlStoreOptions>>()?.Value.ConnectionString;
            })
            .ValidateOnStart();
        if (configure is not null) services.Configure(configure);
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<PostgreSqlClusterOptions>, ClusterOptionsValidator>());
        services.AddOptions<BureauOptions>().PostConfigure<IOptions<PostgreSqlClusterOptions>>((b, cluster) =>
        {
            b.ClaimLease = cluster.Value.ClaimLease;
            if (b.NodeId == "local") b.NodeId = DefaultNodeId.Value;
        });
        services.TryAddSingleton<ClusterEndpoints>();
        services.TryAddSingleton<ClusterDataSource>();
        builder.UseOrleans(silo =>
        {
            silo.UseAdoNetClustering(ob => ob.Configure<ClusterDataSource>((o, ds) =>
            {
                o.Invariant = "Npgsql";
                o.DataSource = ds.DataSource;
            }));
            silo.Services.AddOptions<ClusterOptions>().Configure<IOptions<PostgreSqlClusterOptions>>((o, c) =>
            {
                o.ClusterId = c.Value.ClusterId;
                o.ServiceId = c.Value.ServiceId;
            });
            silo.Services.AddOptions<EndpointOptions>().Configure<ClusterEndpoints>((o, e) =>
            {
                o.AdvertisedIPAddress = e.Address;
                o.SiloPort = e.SiloPort;
                o.GatewayPort = e.GatewayPort;
            });
            silo.Services.AddOptions<ClusterMembershipOptions>().Configure<IOptions<PostgreSqlClusterOptions>>((o, c) => o.ProbeTimeout = c.Value.ProbeTimeout);
            silo.Services.AddSingleton<ILifecycleParticipant<ISiloLifecycle>, SchemaLifecycle>();
        });
        return builder;
    }

    /// <summary>A node id for this process when none is configured: the machine's name and a random suffix.</summary>
    internal static readonly Lazy<string> DefaultNodeId = new(() =>
        $"{Environment.MachineName.ToLowerInvariant()}-{Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(3))}");

    private sealed class ClusterOptionsValidator : IValidateOptions<PostgreSqlClusterOptions>
    {
        public ValidateOptionsResult Validate(string? name, PostgreSqlClusterOptions options)
        {
            try
            {
                options.Validate();
                return ValidateOptionsResult.Success;
            }
            catch (ArgumentException ex)
            {
                return ValidateOptionsResult.Fail(ex.Message.Split(" (Parameter")[0]);
            }
        }
    }
}

/// <summary>This node's address and ports, the free ones taken once.</summary>
internal sealed class ClusterEndpoints
{
    public ClusterEndpoints(IOptions<PostgreSqlClusterOptions> options)
    {
        var o = options.Value;
        Address = IPAddress.Parse(o.AdvertisedAddress);
        SiloPort = o.SiloPort > 0 ? o.SiloPort : FreePort(Address);
        GatewayPort = o.GatewayPort > 0 ? o.GatewayPort : FreePort(Address);
    }

    public IPAddress Address { get; }
    public int SiloPort { get; }
    public int GatewayPort { get; }

    private static int FreePort(IPAddress address)
    {
        using var l = new TcpListener(address, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }
}

/// <summary>The pool Orleans' membership queries use: its connections have Orleans' schema as their search path.</summary>
internal sealed class ClusterDataSource : IAsyncDisposable
{
    public ClusterDataSource(IOptions<PostgreSqlClusterOptions> options)
    {
        var o = options.Value;
        var cs = new NpgsqlConnectionStringBuilder(o.ConnectionString) { SearchPath = o.Schema };
        if (string.IsNullOrEmpty(cs.ApplicationName)) cs.ApplicationName = "bureau-cluster";
        DataSource = NpgsqlDataSource.Create(cs.ConnectionString);
    }

    public NpgsqlDataSource DataSource { get; }

    public ValueTask DisposeAsync() => DataSource.DisposeAsync();
}

/// <summary>Applies Orleans' scripts before the membership table is first read.</summary>
internal sealed partial class SchemaLifecycle(IOptions<PostgreSqlClusterOptions> options, ILogger<SchemaLifecycle> logger) : ILifecycleParticipant<ISiloLifecycle>
{
    public void Participate(ISiloLifecycle lifecycle) =>
        lifecycle.Subscribe(nameof(SchemaLifecycle), ServiceLifecycleStage.First, async ct =>
        {
            var o = options.Value;
            IReadOnlyList<string> applied;
            try
            {
                applied = await ClusterSchema.ApplyAsync(o.ConnectionString!, o.Schema, ct);
            }
            catch (Exception ex) when (ex is NpgsqlException or System.Net.Sockets.SocketException or TimeoutException)
            {
                var cs = new NpgsqlConnectionStringBuilder(o.ConnectionString);
                throw new InvalidOperationException($"cluster mode: could not prepare Orleans' membership tables in PostgreSQL {cs.Host}:{cs.Port}/{cs.Database} (schema {o.Schema}): {ex.Message}", ex);
            }
            if (applied.Count > 0) Log.Applied(logger, o.Schema, string.Join(", ", applied));
        });

    private static partial class Log
    {
        [LoggerMessage(170, LogLevel.Information, "Applied Orleans' scripts to schema {Schema}: {Scripts}")]
        public static partial void Applied(ILogger logger, string schema, string scripts);
    }
}
