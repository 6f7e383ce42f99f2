using Bureau.Manifests;
using Bureau.Models;
using Bureau.Storage.Sqlite;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Options;

namespace Bureau.Hosting;

/// <summary>What the application added in code through <see cref="BureauBuilder"/>.</summary>
internal sealed class CodeDefinitions
{
    public BureauDefinitions Definitions { get; } = new();
}

/// <summary>What this host deploys: the manifests' definitions, then those added in code.</summary>
internal sealed class BureauDeployment
{
    public BureauDeployment(IOptions<BureauHostOptions> options, CodeDefinitions code)
    {
        var all = new BureauDefinitions();
        foreach (var path in options.Value.Manifests) all.Merge(ManifestSource.Load(path));
        lock (code) all.Merge(code.Definitions);
        Definitions = all;
    }

    public BureauDefinitions Definitions { get; }
}

/// <summary>The stores of this host, opened by <see cref="BureauHostService"/> before the silo starts.</summary>
internal sealed class BureauStorage
{
    public BureauStorage(IOptions<BureauHostOptions> options)
    {
        Options = options.Value.Sqlite;
        Runs = new SqliteRunStore(Options);
        Keys = new SqliteApiKeyStore(Options);
    }

    public SqliteStoreOptions Options { get; }
    public SqliteRunStore Runs { get; }
    public SqliteApiKeyStore Keys { get; }
    public bool IsOpen { get; set; }
}

/// <summary>Chat clients for model definitions: OpenAI-compatible, scripted, or the client given in C#.</summary>
internal static class ModelClients
{
    private static readonly ModelClientFactory Factory = new();

    public static IChatClient Create(ModelDefinition model) => Factory.Create(model);
}

/// <summary>Loads manifests; a manifest with problems stops the host's start, listing every problem.</summary>
internal static class ManifestSource
{
    public static BureauDefinitions Load(string path)
    {
        if (!File.Exists(path)) throw new InvalidOperationException($"Bureau:Manifests: no manifest at '{path}' (full path {Path.GetFullPath(path)})");
        var result = ManifestLoader.LoadFile(path);
        if (result.Success) return result.Definitions!;
        throw new InvalidOperationException($"the manifest {path} is not valid:{Environment.NewLine}{string.Join(Environment.NewLine, result.Diagnostics)}");
    }
}
