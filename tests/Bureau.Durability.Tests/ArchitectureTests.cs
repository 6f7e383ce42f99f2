using System.Reflection;
using Xunit;

namespace Bureau.Durability.Tests;

/// <summary>
/// The arrows between Bureau's projects point inward: CLI/Hosting → Runtime → Abstractions; providers
/// (stores, manifests, models) → Abstractions only; Hosting knows no store and no Orleans. Read from
/// the compiled assemblies' references, so a stray project reference fails here.
/// </summary>
public sealed class ArchitectureTests
{
    private static readonly Dictionary<string, string[]> Allowed = new(StringComparer.Ordinal)
    {
        ["Bureau.Abstractions"] = [],
        ["Bureau.Manifests"] = ["Bureau.Abstractions"],
        ["Bureau.Models"] = ["Bureau.Abstractions"],
        ["Bureau.Storage.Sqlite"] = ["Bureau.Abstractions"],
        ["Bureau.Storage.PostgreSql"] = ["Bureau.Abstractions"],
        ["Bureau.Runtime"] = ["Bureau.Abstractions", "Bureau.Manifests", "Bureau.Models"],
        ["Bureau.Orleans"] = ["Bureau.Abstractions", "Bureau.Runtime", "Bureau.Manifests", "Bureau.Models"],
        ["Bureau.Orleans.PostgreSql"] = ["Bureau.Abstractions", "Bureau.Runtime", "Bureau.Manifests", "Bureau.Models", "Bureau.Orleans", "Bureau.Storage.PostgreSql"],
        ["Bureau.Hosting"] = ["Bureau.Abstractions", "Bureau.Runtime", "Bureau.Manifests", "Bureau.Models"],
        ["bureau"] = ["Bureau.Abstractions", "Bureau.Runtime", "Bureau.Manifests", "Bureau.Models", "Bureau.Orleans", "Bureau.Hosting", "Bureau.Storage.Sqlite", "Bureau.Storage.PostgreSql", "Bureau.Orleans.PostgreSql"],
    };

    [Fact]
    public void References_EveryProject_PointOnlyInward()
    {
        var dir = Path.GetDirectoryName(BureauProcess.BureauDll)!;
        var wrong = new List<string>();
        foreach (var (name, allowed) in Allowed)
        {
            var assembly = AssemblyName.GetAssemblyName(Path.Combine(dir, name + ".dll"));
            using var context = new MetadataReaderScope(Path.Combine(dir, name + ".dll"));
            foreach (var reference in context.References)
            {
                if (!reference.StartsWith("Bureau", StringComparison.OrdinalIgnoreCase) && reference != "bureau") continue;
                if (!allowed.Contains(reference)) wrong.Add($"{assembly.Name} → {reference}");
            }
        }
        Assert.True(wrong.Count == 0, "references pointing the wrong way: " + string.Join("; ", wrong));
    }

    /// <summary>The assembly references of a file, read without loading it.</summary>
    private sealed class MetadataReaderScope : IDisposable
    {
        private readonly FileStream _file;
        private readonly System.Reflection.PortableExecutable.PEReader _pe;

        public MetadataReaderScope(string path)
        {
            _file = File.OpenRead(path);
            _pe = new System.Reflection.PortableExecutable.PEReader(_file);
            var md = System.Reflection.Metadata.PEReaderExtensions.GetMetadataReader(_pe);
            References = md.AssemblyReferences.Select(h => md.GetString(md.GetAssemblyReference(h).Name)).ToList();
        }

        public IReadOnlyList<string> References { get; }

        public void Dispose()
        {
            _pe.Dispose();
            _file.Dispose();
        }
    }
}
