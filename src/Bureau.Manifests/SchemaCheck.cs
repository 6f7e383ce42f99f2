using System.Text.Json;
using Json.Schema;

namespace Bureau.Manifests;

/// <summary>Checks that a tool's <c>parameters</c> is a valid JSON Schema, with JsonSchema.Net (meta-schema draft 2020-12).</summary>
internal static class SchemaCheck
{
    /// <summary>
    /// True when <paramref name="schema"/> is a valid schema. Otherwise the problems, each with the JSON pointer
    /// of the offending value inside the schema.
    /// </summary>
    public static bool Check(JsonElement schema, out List<(string Pointer, string Message)> problems)
    {
        problems = [];
        var results = MetaSchemas.Draft202012.Evaluate(schema, new EvaluationOptions { OutputFormat = OutputFormat.Hierarchical });
        string? buildError = null;
        try
        {
            JsonSchema.Build(schema, new BuildOptions { SchemaRegistry = new SchemaRegistry() });
        }
        catch (Exception ex) when (ex is JsonSchemaException or JsonException or ArgumentException or InvalidOperationException or FormatException)
        {
            buildError = ex.Message;
        }
        if (results.IsValid && buildError is null) return true;

        var found = new List<(string Pointer, string Message)>();
        Collect(results, found);
        // Keep the deepest locations: an error at /properties/n/type explains the ones reported for /properties and /.
        var pointers = found.Select(f => f.Pointer).Distinct().ToList();
        var deepest = pointers.Where(p => !pointers.Any(q => q != p && q.StartsWith(p.Length == 0 ? "/" : p + "/", StringComparison.Ordinal))).ToList();
        for (var i = 0; i < deepest.Count; i++)
        {
            var pointer = deepest[i];
            var message = i == 0 && buildError is not null
                ? buildError
                : string.Join("; ", found.Where(f => f.Pointer == pointer).Select(f => f.Message).Distinct());
            problems.Add((pointer, message));
        }
        if (problems.Count == 0) problems.Add(("", buildError ?? "the schema does not satisfy the JSON Schema 2020-12 meta-schema"));
        return false;
    }

    private static void Collect(EvaluationResults results, List<(string Pointer, string Message)> found)
    {
        if (results.IsValid) return;
        if (results.Errors is { Count: > 0 } errors)
            foreach (var (_, message) in errors)
                found.Add((results.InstanceLocation.ToString(), message));
        if (results.Details is { } details)
            foreach (var d in details) Collect(d, found);
    }
}
