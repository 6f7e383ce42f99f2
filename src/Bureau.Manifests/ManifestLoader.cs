using System.Collections;

namespace Bureau.Manifests;

/// <summary>
/// Reads a <c>bureau.yaml</c> manifest into <see cref="BureauDefinitions"/>, reporting every problem at once
/// as <see cref="ManifestDiagnostic"/>s (file, line, column, message).
/// </summary>
public static class ManifestLoader
{
    /// <summary>Loads a manifest file.</summary>
    /// <param name="path">The file; diagnostics name it exactly as given here.</param>
    /// <param name="environment">Variables for <c>${VAR}</c> substitution; null uses the process environment.</param>
    public static ManifestLoadResult LoadFile(string path, IReadOnlyDictionary<string, string?>? environment = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            var reason = ex is FileNotFoundException or DirectoryNotFoundException ? "no such file" : "cannot read the file: " + ex.Message;
            return new ManifestLoadResult(null, [new ManifestDiagnostic(path, 1, 1, reason, null)]);
        }
        var fullPath = Path.GetFullPath(path);
        return Load(text, path, Path.GetDirectoryName(fullPath) ?? Directory.GetCurrentDirectory(), fullPath, environment);
    }

    /// <summary>Loads a manifest from text.</summary>
    /// <param name="yaml">The manifest's YAML.</param>
    /// <param name="sourceName">The name diagnostics and scripted rule sources use, for example <c>bureau.yaml</c>.</param>
    /// <param name="baseDirectory">The folder process tools run in (the manifest's folder).</param>
    /// <param name="environment">Variables for <c>${VAR}</c> substitution; null uses the process environment.</param>
    public static ManifestLoadResult LoadText(string yaml, string sourceName, string baseDirectory, IReadOnlyDictionary<string, string?>? environment = null)
    {
        ArgumentNullException.ThrowIfNull(yaml);
        ArgumentNullException.ThrowIfNull(sourceName);
        ArgumentNullException.ThrowIfNull(baseDirectory);
        var fullBase = Path.GetFullPath(baseDirectory);
        return Load(yaml, sourceName, fullBase, Path.Combine(fullBase, sourceName), environment);
    }

    private static ManifestLoadResult Load(string yaml, string sourceName, string baseDirectory, string sourcePath, IReadOnlyDictionary<string, string?>? environment)
    {
        var reader = new ManifestReader(sourceName, baseDirectory, sourcePath, environment ?? ProcessEnvironment());
        var definitions = reader.Read(yaml);
        return new ManifestLoadResult(definitions, reader.Diagnostics);
    }

    private static Dictionary<string, string?> ProcessEnvironment()
    {
        var env = new Dictionary<string, string?>(StringComparer.Ordinal);
        foreach (DictionaryEntry e in Environment.GetEnvironmentVariables())
            env[(string)e.Key] = e.Value as string;
        return env;
    }
}
