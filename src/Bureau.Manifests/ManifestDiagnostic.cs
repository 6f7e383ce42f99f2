namespace Bureau.Manifests;

/// <summary>One problem found in a manifest.</summary>
/// <param name="File">The file name exactly as the caller gave it.</param>
/// <param name="Line">The 1-based line of the offending key or value.</param>
/// <param name="Column">The 1-based column of the offending key or value.</param>
/// <param name="Message">What is wrong, and where possible how to fix it.</param>
/// <param name="Path">The place in the manifest, for example <c>agents.clerk.budgets.maxSteps</c>; null for the whole file.</param>
public sealed record ManifestDiagnostic(string File, int Line, int Column, string Message, string? Path)
{
    /// <summary>The compiler-style form <c>FILE:LINE:COL: error: MESSAGE</c>.</summary>
    public override string ToString() => $"{File}:{Line}:{Column}: error: {Message}";
}
