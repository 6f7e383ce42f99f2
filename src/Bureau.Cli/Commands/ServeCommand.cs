using System.CommandLine;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Bureau.Cli.Commands;

/// <summary><c>bureau serve FILE [--db PATH | --postgres CONNECTION_STRING [--cluster ...]] [--urls URL] [--otlp URL]</c>: the REST API until stopped.</summary>
internal static class ServeCommand
{
    public const string DefaultUrls = "http://127.0.0.1:5080";

    public static Command Create()
    {
        var file = new Argument<string>("file") { Description = "The manifest whose agents are served." };
        return Create("serve", "Serve the REST API (/v1, live events, /healthz, /readyz, /openapi/v1.json) until Ctrl+C or SIGTERM; unfinished runs resume at start.",
            [file], parse => parse.GetValue(file)!, (manifest, _) => CliShared.LoadManifest(manifest, Console.Error), stopAtEndOfInput: false);
    }

    /// <summary>
    /// A command that serves like <c>serve</c> with every serve option, its definitions from <paramref name="load"/>
    /// (given what <paramref name="source"/> names, for the start line): <c>bureau bench cluster</c> starts its nodes this way
    /// with the agent-loop workload's definitions, which hold a C# function tool no manifest can name.
    /// </summary>
    /// <remarks><paramref name="stopAtEndOfInput"/>: also stop when standard input ends, so a node started by a driver stops when the driver goes, however it goes.</remarks>
    internal static Command Create(string name, string description, Symbol[] own, Func<ParseResult, string> source,
        Func<string, ParseResult, BureauDefinitions?> load, bool stopAtEndOfInput)
    {
        var db = CliShared.DbOption();
        var urls = new Option<string>("--urls")
        {
            Description = "Where to listen, ';'-separated. Anything beyond loopback needs API keys (bureau keys create).",
            DefaultValueFactory = _ => DefaultUrls,
            HelpName = "URL",
        };
        var durability = CliShared.DurabilityOption();
        var otlp = CliShared.OtlpOptions();
        var postgres = CliShared.PostgresOption("Keep runs in PostgreSQL instead of the SQLite file (as Bureau:Storage=postgres with Bureau:PostgreSql:ConnectionString); --db and --durability then do not apply.");
        var cluster = new Option<bool>("--cluster") { Description = "Join the cluster on the PostgreSQL database (needs --postgres): runs execute in Orleans grains on the node that claimed them; a dead node's runs resume on the others (docs/cluster.md)." };
        var nodeId = new Option<string?>("--node-id") { Description = "This node's name in the cluster and in the runs' claims (Bureau:NodeId); unique per node. Default: the machine's name and a random suffix.", HelpName = "NAME" };
        var clusterId = new Option<string?>("--cluster-id") { Description = "The cluster to join (Bureau:Cluster:ClusterId, default bureau).", HelpName = "ID" };
        var siloPort = new Option<int?>("--silo-port") { Description = "The port nodes talk to each other on (Bureau:Cluster:SiloPort); default a free one.", HelpName = "PORT" };
        var gatewayPort = new Option<int?>("--gateway-port") { Description = "Orleans' client gateway port (Bureau:Cluster:GatewayPort); default a free one.", HelpName = "PORT" };
        var advertise = new Option<string?>("--advertise") { Description = "The address the other nodes reach this one at (Bureau:Cluster:AdvertisedAddress, default 127.0.0.1).", HelpName = "ADDRESS" };
        var cmd = new Command(name, description)
        {
            db, urls, durability, otlp.Endpoint, otlp.Protocol, postgres, cluster, nodeId, clusterId, siloPort, gatewayPort, advertise,
        };
        foreach (var symbol in own)
        {
            if (symbol is Argument a) cmd.Arguments.Insert(0, a);
            else if (symbol is Option o) cmd.Options.Add(o);
        }
        cmd.SetAction(async (parse, ct) =>
        {
            var manifest = source(parse);
            var definitions = load(manifest, parse);
            if (definitions is null) return 2;
            var dbPath = parse.GetValue(db)!;
            var storeDurability = CliShared.ParseDurability(parse.GetValue(durability)!);

            var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = [], ContentRootPath = Directory.GetCurrentDirectory() });
            // Checked before Kestrel binds: a malformed or IPv4-mapped address must be an error, not an abort.
            var bind = Bureau.Hosting.BindAddresses.Parse(parse.GetValue(urls));
            if (!bind.IsValid) throw new CliUsageException("--urls: " + bind.Error);
            builder.WebHost.UseUrls(bind.Urls);
            builder.Logging.ClearProviders();
            builder.Logging.AddSimpleConsole(o => { o.SingleLine = true; o.IncludeScopes = false; });
            builder.Logging.Services.Configure<Microsoft.Extensions.Logging.Console.ConsoleLoggerOptions>(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
            builder.Logging.AddFilter("Orleans", LogLevel.Error);
            builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
            builder.Logging.AddFilter("Microsoft.Extensions.Hosting.Internal.Host", LogLevel.None); // a failed start is printed as one line
            builder.Logging.AddFilter("Polly", LogLevel.Warning);
            builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(30));
            var telemetry = CliShared.Telemetry(parse, otlp);
            var pg = Storage(builder.Configuration, parse.GetValue(postgres));
            var inCluster = parse.GetValue(cluster);
            if (!inCluster && (parse.GetValue(clusterId) ?? parse.GetValue(advertise)) is not null || !inCluster && (parse.GetValue(siloPort) ?? parse.GetValue(gatewayPort)) is not null)
                throw new CliUsageException("--cluster-id, --silo-port, --gateway-port and --advertise apply with --cluster only");
            if (parse.GetValue(nodeId) is { } node)
            {
                if (string.IsNullOrWhiteSpace(node)) throw new CliUsageException("--node-id must not be empty");
                builder.Services.Configure<BureauOptions>(o => o.NodeId = node);
            }
            var bureau = CliComposition.Add(builder.Services, definitions, dbPath, storeDurability, maxConcurrentRuns: null, // Bureau:MaxConcurrentRuns from configuration
                postgres: pg is null ? null : o => { if (pg.Length > 0) o.ConnectionString = pg; },
                cluster: !inCluster ? null : o =>
                {
                    if (pg is { Length: > 0 }) o.ConnectionString = pg;
                    if (parse.GetValue(clusterId) is { } id) o.ClusterId = id;
                    if (parse.GetValue(siloPort) is { } sp) o.SiloPort = sp;
                    if (parse.GetValue(gatewayPort) is { } gp) o.GatewayPort = gp;
                    if (parse.GetValue(advertise) is { } a) o.AdvertisedAddress = a;
                }).AddHttpApi();
            telemetry?.Apply(bureau);
            await using var app = builder.Build();
            try
            {
                // Mapping reads the API's options: an invalid one (Bureau:MaxRequestBodyBytes=10) is a clear error, not a crash.
                app.MapBureau();
                app.MapBureauDashboard(); // the Dashboard at / (docs/observability.md#dashboard)
                await app.StartAsync(ct);
            }
            catch (Exception ex) when (ex is InvalidOperationException or OptionsValidationException or IOException or ArgumentException or System.Net.Sockets.SocketException)
            {
                // Kestrel's "Failed to bind to address ...: address already in use." says what, not what to do.
                var inUse = ex is IOException { InnerException: Microsoft.AspNetCore.Connections.AddressInUseException };
                Console.Error.WriteLine("bureau: " + ex.Message
                    + (inUse ? " Another process listens there: stop it, or serve on another port with --urls http://127.0.0.1:PORT (./run.sh passes it on)." : ""));
                return 2;
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                // Ctrl+C or SIGTERM before the host was up: what had started stops; nothing was accepted yet.
                Console.Error.WriteLine("bureau: stopped while starting");
                await app.StopAsync(CancellationToken.None);
                return 0;
            }
            var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses ?? [];
            Console.Error.WriteLine($"bureau: serving {definitions.Agents.Count} agent(s){(definitions.Teams.Count > 0 ? $" and {definitions.Teams.Count} team(s)" : "")} from {manifest} on {string.Join(", ", addresses)} ({(pg is null ? "db " + dbPath : app.Services.GetRequiredService<Bureau.Storage.PostgreSql.PostgreSqlDatabase>().Name)}; Dashboard at /); Ctrl+C stops");
            if (telemetry is not null) Console.Error.WriteLine($"bureau: telemetry to {telemetry.Endpoint} (OTLP)");
            if (inCluster)
            {
                var clusterOptions = app.Services.GetRequiredService<IOptions<Bureau.Orleans.PostgreSql.PostgreSqlClusterOptions>>().Value;
                var silo = app.Services.GetRequiredService<global::Orleans.Runtime.ILocalSiloDetails>();
                Console.Error.WriteLine($"bureau: node {app.Services.GetRequiredService<IOptions<BureauOptions>>().Value.NodeId} joined cluster {clusterOptions.ClusterId} as silo {silo.SiloAddress} (bureau cluster status --postgres ... lists the nodes)");
            }
            try
            {
                var stop = Task.Delay(Timeout.Infinite, ct);
                if (stopAtEndOfInput) stop = Task.WhenAny(stop, Task.Run(() => { while (Console.In.ReadLine() is not null) { } }, CancellationToken.None)).Unwrap();
                await stop.WaitAsync(app.Lifetime.ApplicationStopping);
            }
            catch (OperationCanceledException)
            {
            }
            Console.Error.WriteLine("bureau: stopping: no new requests; in-flight steps reach the journal, the rest resumes at the next start");
            await app.StopAsync(CancellationToken.None);
            return 0;
        });
        return cmd;
    }

    /// <summary>
    /// The store serve uses: null for the SQLite file; for PostgreSQL (<c>--postgres</c>, or <c>Bureau:Storage</c> =
    /// <c>postgres</c>) the connection string given, or "" to take <c>Bureau:PostgreSql:ConnectionString</c> from configuration.
    /// </summary>
    internal static string? Storage(Microsoft.Extensions.Configuration.IConfiguration configuration, string? postgresOption)
    {
        if (postgresOption is not null)
        {
            if (string.IsNullOrWhiteSpace(postgresOption)) throw new CliUsageException("--postgres needs a connection string (Host=...;Database=...;Username=...)");
            return postgresOption;
        }
        return configuration["Bureau:Storage"]?.Trim().ToLowerInvariant() switch
        {
            null or "" or "sqlite" => null,
            "postgres" or "postgresql" => "",
            var other => throw new CliUsageException($"Bureau:Storage must be sqlite or postgres, not '{other}'"),
        };
    }
}
