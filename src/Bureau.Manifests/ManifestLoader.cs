using System.Collections;
using System.Runtime.ExceptionServices;
using System.Text;

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
    /// <param name="limits">Bounds on size, nesting and aliases; null uses <see cref="ManifestLimits.Default"/>.</param>
    /// <exception cref="ArgumentOutOfRangeException">A limit in <paramref name="limits"/> is out of its range.</exception>
    public static ManifestLoadResult LoadFile(string path, IReadOnlyDictionary<string, string?>? environment = null, ManifestLimits? limits = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        limits ??= ManifestLimits.Default;
        limits.Validate();
        string text;
        if (Directory.Exists(path)) return Failed(path, "is a directory, not a manifest file; name the manifest in it (for example bureau.yaml)");
        try
        {
            if (ReadBounded(path, limits.MaxFileBytes, out var size) is { } read)
                text = read;
            else
                return Failed(path, size is { } n
                    ? $"the manifest is {n} bytes, more than the limit of {ManifestLimits.Bytes(limits.MaxFileBytes)}"
                    : $"the manifest is more than the limit of {ManifestLimits.Bytes(limits.MaxFileBytes)}");
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            var reason = ex is FileNotFoundException or DirectoryNotFoundException ? "no such file" : "cannot read the file: " + ex.Message;
            return Failed(path, reason);
        }
        var fullPath = Path.GetFullPath(path);
        return Load(text, path, Path.GetDirectoryName(fullPath) ?? Directory.GetCurrentDirectory(), fullPath, environment, limits);
    }

    /// <summary>Loads a manifest from text.</summary>
    /// <param name="yaml">The manifest's YAML.</param>
    /// <param name="sourceName">The name diagnostics and scripted rule sources use, for example <c>bureau.yaml</c>.</param>
    /// <param name="baseDirectory">The folder process tools run in (the manifest's folder).</param>
    /// <param name="environment">Variables for <c>${VAR}</c> substitution; null uses the process environment.</param>
    /// <param name="limits">Bounds on size (of <paramref name="yaml"/> in UTF-8), nesting and aliases; null uses <see cref="ManifestLimits.Default"/>.</param>
    /// <exception cref="ArgumentOutOfRangeException">A limit in <paramref name="limits"/> is out of its range.</exception>
    public static ManifestLoadResult LoadText(string yaml, string sourceName, string baseDirectory, IReadOnlyDictionary<string, string?>? environment = null, ManifestLimits? limits = null)
    {
        ArgumentNullException.ThrowIfNull(yaml);
        ArgumentNullException.ThrowIfNull(sourceName);
        ArgumentNullException.ThrowIfNull(baseDirectory);
        limits ??= ManifestLimits.Default;
        limits.Validate();
        var fullBase = Path.GetFullPath(baseDirectory);
        return Load(yaml, sourceName, fullBase, Path.Combine(fullBase, sourceName), environment, limits);
    }

    private static ManifestLoadResult Load(string yaml, string sourceName, string baseDirectory, string sourcePath, IReadOnlyDictionary<string, string?>? environment, ManifestLimits limits)
    {
        var bytes = Encoding.UTF8.GetByteCount(yaml);
        if (bytes > limits.MaxFileBytes)
            return Failed(sourceName, $"the manifest is {bytes} bytes in UTF-8, more than the limit of {ManifestLimits.Bytes(limits.MaxFileBytes)}");
        var reader = new ManifestReader(sourceName, baseDirectory, sourcePath, environment ?? ProcessEnvironment(), limits);
        var definitions = OnReaderThread(() => reader.Read(yaml));
        return new ManifestLoadResult(definitions, reader.Diagnostics);
    }

    /// <summary>
    /// The stack of the thread that reads: YamlDotNet builds nodes, the reader converts them and JsonSchema.Net checks
    /// <c>parameters</c> recursively, a few KiB per level (about 6 KiB in JsonSchema.Net before tiered compilation
    /// optimizes it). <see cref="ManifestLimits.MaxDepth"/> bounds the levels; this bounds the bytes, whatever the
    /// stack of the calling thread (512 KiB on some platforms' secondary threads). Reserved, committed only as used.
    /// </summary>
    internal const int ReaderStackBytes = 16 * 1024 * 1024;

    /// <summary>Runs <paramref name="read"/> on a thread of its own with a <see cref="ReaderStackBytes"/> stack and waits for it.</summary>
    private static T OnReaderThread<T>(Func<T> read)
    {
        T result = default!;
        ExceptionDispatchInfo? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                result = read();
            }
            catch (Exception ex)
            {
                failure = ExceptionDispatchInfo.Capture(ex);
            }
        }, ReaderStackBytes)
        {
            IsBackground = true,
            Name = "Bureau manifest reader",
        };
        thread.Start();
        thread.Join();
        failure?.Throw();
        return result;
    }

    private static ManifestLoadResult Failed(string file, string message) =>
        new(null, [new ManifestDiagnostic(file, 1, 1, message, null)]);

    /// <summary>
    /// The file's text, or null when it holds more than <paramref name="maxBytes"/> bytes; then <paramref name="size"/>
    /// is its length when known. Never reads more than <paramref name="maxBytes"/> + 1 bytes (a pipe has no length).
    /// </summary>
    private static string? ReadBounded(string path, long maxBytes, out long? size)
    {
        size = null;
        using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 0);
        if (file.CanSeek && file.Length > maxBytes)
        {
            size = file.Length;
            return null;
        }
        var buffer = new byte[file.CanSeek ? file.Length + 1 : Math.Min(maxBytes + 1, 64 * 1024)];
        var count = 0;
        while (true)
        {
            if (count == buffer.Length)
            {
                if (count > maxBytes) return null;
                Array.Resize(ref buffer, (int)Math.Min(maxBytes + 1, (long)buffer.Length * 2));
            }
            var read = file.Read(buffer, count, buffer.Length - count);
            if (read == 0) break;
            count += read;
        }
        if (count > maxBytes) return null;
        // As File.ReadAllText: UTF-8 unless a byte order mark says otherwise.
        using var reader = new StreamReader(new MemoryStream(buffer, 0, count), Encoding.UTF8, detectEncodingFromByteOrderMarks: true);
        return reader.ReadToEnd();
    }

    private static Dictionary<string, string?> ProcessEnvironment()
    {
        var env = new Dictionary<string, string?>(StringComparer.Ordinal);
        foreach (DictionaryEntry e in Environment.GetEnvironmentVariables())
            env[(string)e.Key] = e.Value as string;
        return env;
    }
}
