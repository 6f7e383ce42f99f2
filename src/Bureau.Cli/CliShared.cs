using Microsoft.Extensions.DependencyInjection;
using System.CommandLine;
using Bureau.Manifests;
using Bureau.Storage.Sqlite;

namespace Bureau.Cli;

/// <summary>Options and helpers several commands share.</summary>
internal static class CliShared
{
    public const string DefaultDb = "bureau.db";

    public static Option<string> DbOption() => new("--db")
    {
        Description = "The database file (created if missing).",
        DefaultValueFactory = _ => DefaultDb,
        HelpName = "PATH",
    };

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

    public static async Task<SqliteRunStore> OpenExistingStoreAsync(string db, CancellationToken ct)
    {
        if (!File.Exists(db)) throw new CliUsageException($"no database at '{db}' (use --db to name one)");
        var store = new SqliteRunStore(new SqliteStoreOptions { Path = db });
        await store.InitializeAsync(ct);
        return store;
    }
}

/// <summary>A usage error: printed as `bureau: MESSAGE`, exit code 2.</summary>
internal sealed class CliUsageException(string message) : Exception(message);
