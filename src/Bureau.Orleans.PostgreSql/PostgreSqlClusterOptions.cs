using System.Net;
using System.Text.RegularExpressions;
using Npgsql;

namespace Bureau.Orleans.PostgreSql;

/// <summary>Options of cluster mode (configuration section <c>Bureau:Cluster</c>); see docs/cluster.md.</summary>
public sealed partial class PostgreSqlClusterOptions
{
    /// <summary>The configuration section the options are bound from.</summary>
    public const string SectionName = "Bureau:Cluster";

    /// <summary>The database of the membership table. Default: <c>Bureau:PostgreSql:ConnectionString</c> (the runs' database).</summary>
    public string? ConnectionString { get; set; }

    /// <summary>The schema Orleans' tables live in, apart from Bureau's (created if missing). Default <c>bureau_orleans</c>.</summary>
    public string Schema { get; set; } = "bureau_orleans";

    /// <summary>The cluster's name: nodes with the same cluster id and database form one cluster. Default <c>bureau</c>.</summary>
    public string ClusterId { get; set; } = "bureau";

    /// <summary>Orleans' service id (stable across deployments of one application). Default <c>bureau</c>.</summary>
    public string ServiceId { get; set; } = "bureau";

    /// <summary>The port silos talk to each other on; 0 (default) takes a free one at start.</summary>
    public int SiloPort { get; set; }

    /// <summary>The port Orleans clients would connect to; 0 (default) takes a free one at start.</summary>
    public int GatewayPort { get; set; }

    /// <summary>
    /// The address this node is reached at by the others, and listens on. Default <c>127.0.0.1</c> (nodes on one
    /// machine); on several machines, this machine's address on the network between them.
    /// </summary>
    public string AdvertisedAddress { get; set; } = "127.0.0.1";

    /// <summary>
    /// The lease of a node's claims on unfinished runs in cluster mode (replaces <c>Bureau:ClaimLease</c>). A node that
    /// stops renewing (hung, cut off, killed while the membership has not noticed) loses its runs to the others after it.
    /// Default 15 s.
    /// </summary>
    public TimeSpan ClaimLease { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>
    /// How long a silo waits for the answer to a liveness probe; after 3 missed probes in a row, and another silo's
    /// vote where there is one, a silo is declared dead and its runs move. Default 3 s (about 10 s to declare a killed node dead).
    /// </summary>
    public TimeSpan ProbeTimeout { get; set; } = TimeSpan.FromSeconds(3);

    /// <summary>Throws if an option is out of range; the message names its key.</summary>
    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(ConnectionString))
            throw new ArgumentException("Bureau:Cluster:ConnectionString (or Bureau:PostgreSql:ConnectionString) must be set: cluster mode keeps its membership in PostgreSQL", nameof(ConnectionString));
        try
        {
            _ = new NpgsqlConnectionStringBuilder(ConnectionString);
        }
        catch (ArgumentException ex)
        {
            throw new ArgumentException($"Bureau:Cluster:ConnectionString is not a valid connection string: {ex.Message}", nameof(ConnectionString), ex);
        }
        if (!SchemaName().IsMatch(Schema ?? ""))
            throw new ArgumentException($"Bureau:Cluster:Schema '{Schema}' must be 1 to 63 lower-case letters, digits or '_', starting with a letter or '_'", nameof(Schema));
        if (string.IsNullOrWhiteSpace(ClusterId)) throw new ArgumentException("Bureau:Cluster:ClusterId must not be empty", nameof(ClusterId));
        if (string.IsNullOrWhiteSpace(ServiceId)) throw new ArgumentException("Bureau:Cluster:ServiceId must not be empty", nameof(ServiceId));
        if (SiloPort is < 0 or > 65535) throw new ArgumentException($"Bureau:Cluster:SiloPort must be 0 (a free port) or a port number (is {SiloPort})", nameof(SiloPort));
        if (GatewayPort is < 0 or > 65535) throw new ArgumentException($"Bureau:Cluster:GatewayPort must be 0 (a free port) or a port number (is {GatewayPort})", nameof(GatewayPort));
        if (!IPAddress.TryParse(AdvertisedAddress, out _))
            throw new ArgumentException($"Bureau:Cluster:AdvertisedAddress '{AdvertisedAddress}' must be an IP address (for example 10.0.0.5)", nameof(AdvertisedAddress));
        if (ClaimLease < TimeSpan.FromSeconds(3)) throw new ArgumentException($"Bureau:Cluster:ClaimLease must be at least 3 seconds (is {ClaimLease})", nameof(ClaimLease));
        if (ProbeTimeout < TimeSpan.FromSeconds(1)) throw new ArgumentException($"Bureau:Cluster:ProbeTimeout must be at least 1 second (is {ProbeTimeout})", nameof(ProbeTimeout));
    }

    [GeneratedRegex("^[a-z_][a-z0-9_]{0,62}$")]
    private static partial Regex SchemaName();
}
