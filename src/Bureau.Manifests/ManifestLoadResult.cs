namespace Bureau.Manifests;

/// <summary>The outcome of loading a manifest: the definitions, or every problem found.</summary>
public sealed class ManifestLoadResult
{
    internal ManifestLoadResult(BureauDefinitions? definitions, IReadOnlyList<ManifestDiagnostic> diagnostics)
    {
        Definitions = diagnostics.Count == 0 ? definitions : null;
        Diagnostics = diagnostics;
    }

    /// <summary>True when the manifest has no problems; then <see cref="Definitions"/> is set.</summary>
    public bool Success => Diagnostics.Count == 0 && Definitions is not null;

    /// <summary>The definitions, when the manifest is valid; otherwise null.</summary>
    public BureauDefinitions? Definitions { get; }

    /// <summary>Every problem found, in file order; empty when the manifest is valid.</summary>
    public IReadOnlyList<ManifestDiagnostic> Diagnostics { get; }
}
