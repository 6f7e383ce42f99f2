using Npgsql;

namespace Bureau.Orleans.PostgreSql;

/// <summary>One silo of the membership table, and the unfinished runs its node holds claims on.</summary>
internal sealed record ClusterNode(string Node, string Address, int Port, int Generation, string Host, string Status, DateTimeOffset Started,
    DateTimeOffset LastHeartbeat, int Runs);

/// <summary>What <c>bureau cluster status</c> shows: the nodes (newest first), and unfinished runs no node holds.</summary>
internal sealed record ClusterState(string ClusterId, IReadOnlyList<ClusterNode> Nodes, int Unclaimed);

/// <summary>Reads the cluster's state from PostgreSQL: Orleans' membership table and the runs' claims.</summary>
internal static class ClusterStatus
{
    /// <summary>Orleans' <c>SiloStatus</c> values as the membership table stores them.</summary>
    internal static string StatusName(int status) => status switch
    {
        1 => "created",
        2 => "joining",
        3 => "active",
        4 => "shutting-down",
        5 => "stopping",
        6 => "dead",
        _ => "none",
    };

    /// <summary>
    /// The silos of <paramref name="clusterId"/> (dead ones too, until Orleans prunes them), each with the count of
    /// unfinished runs (queued or running) claimed under its name; a name several silos had (restarts) counts for its live
    /// silo, else its newest. Claim owners with no silo in the table are listed as nodes of status <c>unknown</c>.
    /// </summary>
    public static async Task<ClusterState> ReadAsync(string connectionString, string clusterSchema, string storeSchema, string clusterId, CancellationToken cancellationToken)
    {
        await using var c = new NpgsqlConnection(connectionString);
        await c.OpenAsync(cancellationToken);
        var silos = new List<(string Name, string Address, int Port, int Generation, string Host, int Status, DateTime Start, DateTime Alive)>();
        var membership = await ExistsAsync(c, $"{clusterSchema}.orleansmembershiptable", cancellationToken);
        if (membership)
        {
            await using var cmd = new NpgsqlCommand(
                $"SELECT siloname, address, port, generation, hostname, status, starttime, iamalivetime FROM {clusterSchema}.orleansmembershiptable WHERE deploymentid = $1 ORDER BY starttime DESC, generation DESC", c);
            cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = clusterId });
            await using var r = await cmd.ExecuteReaderAsync(cancellationToken);
            while (await r.ReadAsync(cancellationToken))
                silos.Add((r.GetString(0), r.GetString(1), r.GetInt32(2), r.GetInt32(3), r.GetString(4), r.GetInt32(5), r.GetDateTime(6), r.GetDateTime(7)));
        }
        var held = new Dictionary<string, int>(StringComparer.Ordinal);
        var unclaimed = 0;
        if (await ExistsAsync(c, $"{storeSchema}.runs", cancellationToken))
        {
            await using var cmd = new NpgsqlCommand(
                $"SELECT claim_owner, count(*) FROM {storeSchema}.runs WHERE status IN ('queued','running') GROUP BY claim_owner", c);
            await using var r = await cmd.ExecuteReaderAsync(cancellationToken);
            while (await r.ReadAsync(cancellationToken))
            {
                var n = (int)r.GetInt64(1);
                if (r.IsDBNull(0)) unclaimed += n;
                else held[r.GetString(0)] = n;
            }
        }
        var nodes = new List<ClusterNode>();
        var counted = new HashSet<string>(StringComparer.Ordinal);
        // The silo that gets a name's runs: its live one, else its newest (the list is newest first).
        var owner = silos.GroupBy(s => s.Name, StringComparer.Ordinal)
            .ToDictionary(g => g.Key, g => g.Any(s => s.Status != 6) ? g.First(s => s.Status != 6) : g.First(), StringComparer.Ordinal);
        foreach (var s in silos)
        {
            var runs = owner[s.Name] == s && held.TryGetValue(s.Name, out var n) ? n : 0;
            if (owner[s.Name] == s) counted.Add(s.Name);
            nodes.Add(new ClusterNode(s.Name, s.Address, s.Port, s.Generation, s.Host, StatusName(s.Status), Utc(s.Start), Utc(s.Alive), runs));
        }
        foreach (var (name, n) in held.Where(h => !counted.Contains(h.Key)).OrderBy(h => h.Key, StringComparer.Ordinal))
            nodes.Add(new ClusterNode(name, "", 0, 0, "", "unknown", default, default, n));
        return new ClusterState(clusterId, nodes, unclaimed);
    }

    private static DateTimeOffset Utc(DateTime t) => new(DateTime.SpecifyKind(t, DateTimeKind.Utc));

    private static async Task<bool> ExistsAsync(NpgsqlConnection c, string table, CancellationToken ct)
    {
        await using var cmd = new NpgsqlCommand("SELECT to_regclass($1) IS NOT NULL", c);
        cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = table });
        return (bool)(await cmd.ExecuteScalarAsync(ct))!;
    }
}
