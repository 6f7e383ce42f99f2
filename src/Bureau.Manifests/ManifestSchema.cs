using System.Reflection;

namespace Bureau.Manifests;

/// <summary>The JSON Schema (draft 2020-12) of <c>bureau.yaml</c>, for editors and tooling (also published as docs/manifest.schema.json).</summary>
public static class ManifestSchema
{
    internal const string ResourceName = "Bureau.Manifests.manifest.schema.json";

    private static readonly Lazy<string> s_json = new(() =>
    {
        using var stream = typeof(ManifestSchema).Assembly.GetManifestResourceStream(ResourceName)
            ?? throw new InvalidOperationException($"resource '{ResourceName}' is missing from {typeof(ManifestSchema).Assembly.GetName().Name}");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    });

    /// <summary>The schema's JSON text.</summary>
    public static string Json => s_json.Value;
}
