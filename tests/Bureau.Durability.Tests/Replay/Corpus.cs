using Bureau.Replay;

namespace Bureau.Durability.Tests.Replay;

/// <summary>Where the replay corpus lives, and its fixtures.</summary>
internal static class Corpus
{
    /// <summary>The repository's root (the folder with Bureau.slnx), found from the test's output folder.</summary>
    public static string RepoRoot { get; } = FindRoot();

    /// <summary>tests/Bureau.Durability.Tests/Replay/corpus in the source tree.</summary>
    public static string Folder => Path.Combine(RepoRoot, "tests", "Bureau.Durability.Tests", "Replay", "corpus");

    public static IEnumerable<string> Files() => Directory.GetFiles(Folder, "*.jsonl").Order(StringComparer.Ordinal);

    /// <summary>The definitions a fixture's header names (its manifest, in the corpus folder).</summary>
    public static BureauDefinitions Definitions(RecordedRun recorded)
    {
        var manifest = Path.Combine(Folder, recorded.Header["manifest"]!.GetValue<string>());
        var result = Bureau.Manifests.ManifestLoader.LoadFile(manifest);
        if (!result.Success) throw new InvalidDataException($"{manifest}: {string.Join("; ", result.Diagnostics)}");
        return result.Definitions!;
    }

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Bureau.slnx"))) return dir.FullName;
        }
        throw new InvalidOperationException($"no Bureau.slnx above {AppContext.BaseDirectory}");
    }
}
