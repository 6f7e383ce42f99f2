using Microsoft.Extensions.DependencyInjection;
using System.CommandLine;
using Bureau.Manifests;
using Bureau.Storage.Sqlite;

namespace Bureau.Cli;

/// <summary>Options and helpers several commands share.</summary>
internal static class CliShared
{
    public const string DefaultDb = "bureau.db";

    /// <summary><c>--otlp URL</c> and <c>--otlp-protocol grpc|http</c> (serve and run).</summary>
    public static (Option<string?> Endpoint, Option<string> Protocol) OtlpOptions()
    {
        var endpoint = new Option<string?>("--otlp")
        {
            Description = "Send traces, metrics and logs to this OTLP endpoint (e.g. http://localhost:4317). Default: OTEL_EXPORTER_OTLP_ENDPOINT if set, else telemetry is off.",
            HelpName = "URL",
        };
        var protocol = new Option<string>("--otlp-protocol")
        {
            Description = "grpc (port 4317) or http (HTTP/protobuf, port 4318).",
            DefaultValueFactory = _ => "grpc",
        };
        protocol.AcceptOnlyFromAmong("grpc", "http");
        return (endpoint, protocol);
    }

    /// <summary>
    /// What <c>--otlp</c> (or OTEL_EXPORTER_OTLP_ENDPOINT) asks for, as a step for the command's composition;
    /// null when telemetry stays off.
    /// </summary>
    /// <exception cref="CliUsageException">The address is not an absolute http(s) address.</exception>
    public static CliTelemetry? Telemetry(System.CommandLine.ParseResult parse, (Option<string?> Endpoint, Option<string> Protocol) options)
    {
        var telemetry = BureauOpenTelemetryExtensions.ResolveEndpoint(parse.GetValue(options.Endpoint), Environment.GetEnvironmentVariable("OTEL_EXPORTER_OTLP_ENDPOINT"));
        if (telemetry.Error is not null) throw new CliUsageException(telemetry.Error);
        if (!telemetry.Enabled) return null;
        var http = parse.GetValue(options.Protocol) == "http";
        return new CliTelemetry(
            bureau => bureau.UseOpenTelemetry(o =>
            {
                o.OtlpEndpoint = telemetry.Endpoint;
                o.OtlpProtocol = http ? OpenTelemetry.Exporter.OtlpExportProtocol.HttpProtobuf : OpenTelemetry.Exporter.OtlpExportProtocol.Grpc;
            }),
            telemetry.Endpoint?.ToString() ?? Environment.GetEnvironmentVariable("OTEL_EXPORTER_OTLP_ENDPOINT") ?? "");
    }

    public static Option<string> DbOption() => new("--db")
    {
        Description = "The database file (created if missing).",
        DefaultValueFactory = _ => DefaultDb,
        HelpName = "PATH",
    };

    /// <summary><c>--postgres CONNECTION_STRING</c>: keep runs in PostgreSQL (docs/storage.md).</summary>
    public static Option<string?> PostgresOption(string description) => new("--postgres") { Description = description, HelpName = "CONNECTION_STRING" };

    public static Option<bool> JsonOption(string what) => new("--json") { Description = what };

    public static Option<string> DurabilityOption() => new("--durability")
    {
        Description = "full: survives power loss (synchronous=FULL, default); process: survives a process crash only (synchronous=NORMAL).",
        DefaultValueFactory = _ => "full",
        HelpName = "full|process",
    };

    public static StoreDurability ParseDurability(string value) => value.ToLowerInvariant() switch
    {
        "full" => StoreDurability.Full,
        "process" => StoreDurability.Process,
        _ => throw new CliUsageException($"--durability must be 'full' or 'process', not '{value}'"),
    };

    /// <summary>Loads a manifest or prints its diagnostics (FILE:LINE:COL: error: ...) and returns null.</summary>
    public static BureauDefinitions? LoadManifest(string file, TextWriter stderr)
    {
        var result = ManifestLoader.LoadFile(file);
        if (result.Success) return result.Definitions;
        foreach (var d in result.Diagnostics) stderr.WriteLine(d.ToString());
        return null;
    }

    /// <summary>Opens the store of an existing database without starting the engine.</summary>
    /// <summary>
    /// The engine's commands (resolve, decide an approval) on a database, executing nothing here: a host
    /// serving the database (node "local") picks the run up once this command's claim lapses.
    /// </summary>
    public static async Task<T> WithEngineCommandsAsync<T>(string dbPath, Func<BureauEngine, Task<T>> command, CancellationToken ct)
    {
        await using var store = await OpenExistingStoreAsync(dbPath, ct);
        var services = new ServiceCollection();
        services.AddBureau(o => o.NodeId = "cli");
        services.AddSingleton<IRunStore>(store);
        await using var provider = services.BuildServiceProvider();
        return await command(provider.GetRequiredService<BureauEngine>());
    }

    /// <summary>
    /// Refuses a <c>--db</c> that names a directory (SQLite would report it as a database it cannot write,
    /// "read-only for this process", which sends the user after permissions instead of the path), or another
    /// application's SQLite database (opening the store would add Bureau's tables to it, even for a read such as runs list).
    /// </summary>
    /// <exception cref="CliUsageException">The path is a directory or another application's database.</exception>
    public static void CheckDbPath(string db)
    {
        if (Directory.Exists(db))
            throw new CliUsageException($"--db '{db}' is a directory; name the database file (for example {Path.Combine(db, DefaultDb)})");
        if (File.Exists(db) && ForeignTables(db) is { } tables)
        {
            throw new CliUsageException($"--db '{db}' is the SQLite database of something else (tables {tables}), not Bureau's; "
                + "Bureau would add its own tables to it. Name Bureau's database file (a new path is created)");
        }
    }

    /// <summary>
    /// The tables of <paramref name="db"/> when it is a SQLite database Bureau did not create, or null. Decided from the
    /// file's header first: Bureau's databases are in WAL mode, and a WAL-mode file is never opened here (a read-only
    /// connection could create the -wal that Bureau's start checks for, after a crash that lost it). A rollback-journal
    /// file with schema version 0 (<c>PRAGMA user_version</c>, offset 60) and a schema (schema cookie, offset 40) is
    /// another application's; only then is it opened, read-only, to name its tables.
    /// </summary>
    private static string? ForeignTables(string db)
    {
        var header = new byte[100];
        try
        {
            using var file = new FileStream(db, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            if (file.ReadAtLeast(header, header.Length, throwOnEndOfStream: false) < header.Length) return null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null; // missing or unreadable: opening the store reports it
        }
        if (!header.AsSpan(0, 16).SequenceEqual("SQLite format 3\0"u8)) return null; // not SQLite: the store reports it
        if (header[18] == 2 || header[19] == 2) return null; // WAL mode
        if (System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(60)) != 0) return null; // versioned: Bureau's (or a newer schema)
        if (System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(40)) == 0) return null; // no schema yet: an empty database
        try
        {
            using var connection = new Microsoft.Data.Sqlite.SqliteConnection(new Microsoft.Data.Sqlite.SqliteConnectionStringBuilder
            {
                DataSource = db,
                Mode = Microsoft.Data.Sqlite.SqliteOpenMode.ReadOnly,
                Pooling = false,
            }.ToString());
            connection.Open();
            using var names = connection.CreateCommand();
            names.CommandText = "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name LIMIT 6";
            var tables = new List<string>();
            using (var reader = names.ExecuteReader())
                while (reader.Read()) tables.Add(reader.GetString(0));
            return tables.Count == 0 ? null : string.Join(", ", tables.Take(5)) + (tables.Count > 5 ? ", ..." : "");
        }
        catch (Microsoft.Data.Sqlite.SqliteException)
        {
            return null; // damaged or locked: opening the store reports it
        }
    }

    public static async Task<SqliteRunStore> OpenExistingStoreAsync(string db, CancellationToken ct)
    {
        CheckDbPath(db);
        if (!File.Exists(db)) throw new CliUsageException($"no database at '{db}' (use --db to name one)");
        var store = new SqliteRunStore(new SqliteStoreOptions { Path = db });
        await store.InitializeAsync(ct);
        return store;
    }
}

/// <summary>A usage error: printed as `bureau: MESSAGE`, exit code 2.</summary>
internal sealed class CliUsageException(string message) : Exception(message);

/// <summary>Telemetry a command was asked for: the composition step, and where it goes (for the start line).</summary>
internal sealed record CliTelemetry(Action<BureauBuilder> Apply, string Endpoint);
