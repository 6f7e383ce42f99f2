using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using Bureau.Orleans.PostgreSql;

namespace Bureau.Cli.Commands;

/// <summary><c>bureau cluster status --postgres CONNECTION_STRING [--cluster-id ID] [--json]</c>: the nodes of a cluster and the runs each holds.</summary>
internal static class ClusterCommand
{
    public static Command Create()
    {
        var postgres = CliShared.PostgresOption("The cluster's database (as given to bureau serve --postgres). Required.");
        var clusterId = new Option<string>("--cluster-id") { Description = "The cluster's id (Bureau:Cluster:ClusterId).", DefaultValueFactory = _ => "bureau", HelpName = "ID" };
        var schema = new Option<string>("--schema") { Description = "Bureau's schema (Bureau:PostgreSql:Schema).", DefaultValueFactory = _ => "bureau", HelpName = "NAME" };
        var clusterSchema = new Option<string>("--cluster-schema") { Description = "Orleans' schema (Bureau:Cluster:Schema).", DefaultValueFactory = _ => "bureau_orleans", HelpName = "NAME" };
        var json = CliShared.JsonOption("Print {\"clusterId\",\"nodes\":[{node,address,port,generation,host,status,started,lastHeartbeat,runs}],\"unclaimedRuns\"} on stdout.");
        var status = new Command("status", "The cluster's nodes from Orleans' membership table (address, status, started, last heartbeat; dead ones until Orleans prunes them) and how many unfinished runs each holds (its claims).")
        {
            postgres, clusterId, schema, clusterSchema, json,
        };
        status.SetAction(async (parse, ct) =>
        {
            var cs = parse.GetValue(postgres);
            if (string.IsNullOrWhiteSpace(cs)) throw new CliUsageException("cluster status needs --postgres CONNECTION_STRING (the cluster's database)");
            var options = new PostgreSqlClusterOptions { ConnectionString = cs, ClusterId = parse.GetValue(clusterId)!, Schema = parse.GetValue(clusterSchema)! };
            try
            {
                options.Validate();
                new Bureau.Storage.PostgreSql.PostgreSqlStoreOptions { ConnectionString = cs, Schema = parse.GetValue(schema)! }.Validate();
            }
            catch (ArgumentException ex)
            {
                throw new CliUsageException(ex.Message.Split(" (Parameter")[0].Replace("Bureau:Cluster:Schema", "--cluster-schema", StringComparison.Ordinal).Replace("Bureau:PostgreSql:Schema", "--schema", StringComparison.Ordinal));
            }
            ClusterState state;
            try
            {
                state = await ClusterStatus.ReadAsync(cs, options.Schema, parse.GetValue(schema)!, options.ClusterId, ct);
            }
            catch (Exception ex) when (ex is Npgsql.NpgsqlException or System.Net.Sockets.SocketException or TimeoutException)
            {
                Console.Error.WriteLine($"bureau: cannot read the cluster's state from PostgreSQL: {ex.Message}");
                return 1;
            }
            if (parse.GetValue(json))
            {
                Console.Out.WriteLine(RunDocuments.ToJson(ToJson(state), indented: true));
                return 0;
            }
            Print(state, Console.Out);
            return 0;
        });
        return new Command("cluster", "Cluster mode (docs/cluster.md).") { status };
    }

    internal static JsonObject ToJson(ClusterState state)
    {
        var nodes = new JsonArray();
        foreach (var n in state.Nodes)
        {
            nodes.Add(new JsonObject
            {
                ["node"] = n.Node,
                ["address"] = n.Address,
                ["port"] = n.Port,
                ["generation"] = n.Generation,
                ["host"] = n.Host,
                ["status"] = n.Status,
                ["started"] = n.Started == default ? null : n.Started,
                ["lastHeartbeat"] = n.LastHeartbeat == default ? null : n.LastHeartbeat,
                ["runs"] = n.Runs,
            });
        }
        return new JsonObject { ["clusterId"] = state.ClusterId, ["nodes"] = nodes, ["unclaimedRuns"] = state.Unclaimed };
    }

    private static void Print(ClusterState state, TextWriter o)
    {
        if (state.Nodes.Count == 0) o.WriteLine($"cluster {state.ClusterId}: no node has joined yet");
        else o.WriteLine($"cluster {state.ClusterId}: {state.Nodes.Count(n => n.Status == "active")} active node(s)");
        o.WriteLine($"{"NODE",-24} {"ADDRESS",-22} {"STATUS",-14} {"STARTED",-20} {"LAST HEARTBEAT",-20} {"RUNS",6}");
        foreach (var n in state.Nodes)
        {
            var address = n.Port == 0 ? "-" : $"{n.Address}:{n.Port}";
            o.WriteLine($"{n.Node,-24} {address,-22} {n.Status,-14} {Time(n.Started),-20} {Time(n.LastHeartbeat),-20} {n.Runs,6}");
        }
        o.WriteLine($"unfinished runs no node holds: {state.Unclaimed}");
    }

    private static string Time(DateTimeOffset t) => t == default ? "-" : t.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture);
}
