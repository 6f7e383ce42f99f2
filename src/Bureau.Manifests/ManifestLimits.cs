namespace Bureau.Manifests;

/// <summary>
/// Bounds on what loading a manifest may cost, so that a hostile or broken file (an alias bomb, nesting
/// thousands of levels deep, a huge file) ends in one diagnostic instead of gigabytes of memory, minutes of
/// work or a stack overflow. The checks run while the YAML is parsed, before anything is expanded.
/// The defaults are far above what a hand-written manifest needs; see docs/manifest.md, "Limits".
/// </summary>
public sealed class ManifestLimits
{
    /// <summary>The default <see cref="MaxFileBytes"/>: 4 MiB.</summary>
    public const long DefaultMaxFileBytes = 4 * 1024 * 1024;

    /// <summary>The default <see cref="MaxDepth"/>: 64 levels.</summary>
    public const int DefaultMaxDepth = 64;

    /// <summary>The default <see cref="MaxAliases"/>: 1,000 aliases.</summary>
    public const int DefaultMaxAliases = 1_000;

    /// <summary>The default <see cref="MaxExpandedNodes"/>: 100,000 nodes.</summary>
    public const int DefaultMaxExpandedNodes = 100_000;

    /// <summary>The highest <see cref="MaxDepth"/> accepted: deeper nesting could exhaust a thread's stack in the recursive steps.</summary>
    public const int MaxDepthCeiling = 256;

    /// <summary>The highest <see cref="MaxFileBytes"/> accepted (256 MiB).</summary>
    public const long MaxFileBytesCeiling = 256L * 1024 * 1024;

    /// <summary>The default limits.</summary>
    public static ManifestLimits Default { get; } = new();

    /// <summary>
    /// The largest manifest, in bytes (UTF-8 for text given as a string). The same number bounds the text of the
    /// manifest once expanded: the characters of every key and value, counting each alias as a copy of its
    /// anchor and each value after <c>${VAR}</c> substitution. 1 to <see cref="MaxFileBytesCeiling"/>.
    /// </summary>
    public long MaxFileBytes { get; init; } = DefaultMaxFileBytes;

    /// <summary>
    /// The deepest nesting of mappings and lists, the top-level mapping being level 1, counted in the manifest
    /// as expanded (an alias nests its anchor's levels where it stands). 1 to <see cref="MaxDepthCeiling"/>.
    /// </summary>
    public int MaxDepth { get; init; } = DefaultMaxDepth;

    /// <summary>The most aliases (<c>*name</c>) a manifest may use. 0 refuses every alias.</summary>
    public int MaxAliases { get; init; } = DefaultMaxAliases;

    /// <summary>
    /// The most nodes (mappings, lists, keys and values) of the manifest once every alias is expanded to a copy of
    /// its anchor. At least 1.
    /// </summary>
    public int MaxExpandedNodes { get; init; } = DefaultMaxExpandedNodes;

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/>, naming the property, when a limit is out of its range.</summary>
    public void Validate()
    {
        if (MaxFileBytes is < 1 or > MaxFileBytesCeiling)
            throw new ArgumentOutOfRangeException(nameof(MaxFileBytes), MaxFileBytes, $"{nameof(ManifestLimits)}.{nameof(MaxFileBytes)} must be between 1 and {MaxFileBytesCeiling}");
        if (MaxDepth is < 1 or > MaxDepthCeiling)
            throw new ArgumentOutOfRangeException(nameof(MaxDepth), MaxDepth, $"{nameof(ManifestLimits)}.{nameof(MaxDepth)} must be between 1 and {MaxDepthCeiling}");
        if (MaxAliases < 0)
            throw new ArgumentOutOfRangeException(nameof(MaxAliases), MaxAliases, $"{nameof(ManifestLimits)}.{nameof(MaxAliases)} must be 0 or more");
        if (MaxExpandedNodes < 1)
            throw new ArgumentOutOfRangeException(nameof(MaxExpandedNodes), MaxExpandedNodes, $"{nameof(ManifestLimits)}.{nameof(MaxExpandedNodes)} must be at least 1");
    }

    /// <summary>A byte count for messages: "4194304 bytes (4 MiB)", "1000 bytes".</summary>
    internal static string Bytes(long bytes) => bytes switch
    {
        >= 1024 * 1024 when bytes % (1024 * 1024) == 0 => $"{bytes} bytes ({bytes / (1024 * 1024)} MiB)",
        >= 1024 when bytes % 1024 == 0 => $"{bytes} bytes ({bytes / 1024} KiB)",
        _ => $"{bytes} bytes",
    };
}
