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
        // The flag format only answers valid or not, at about half the cost of the detailed one (which collects a
        // result for every keyword at every location): pay for the details only when there are errors to place.
        var valid = MetaSchemas.Draft202012.Evaluate(schema, new EvaluationOptions { OutputFormat = OutputFormat.Flag }).IsValid;
        var results = valid ? null : MetaSchemas.Draft202012.Evaluate(schema, new EvaluationOptions { OutputFormat = OutputFormat.Hierarchical });
        string? buildError = null;
        try
        {
            JsonSchema.Build(schema, new BuildOptions { SchemaRegistry = new SchemaRegistry() });
        }
        catch (Exception ex) when (ex is JsonSchemaException or JsonException or ArgumentException or InvalidOperationException or FormatException)
        {
            buildError = ex.Message;
        }
        if (results is null && buildError is null) return true;

        var found = new List<(string Pointer, string Message)>();
        if (results is not null) Collect(results, found);
        // Keep the deepest locations: an error at /properties/n/type explains the ones reported for /properties and /.
        // Linear in the number of errors: a schema may hold tens of thousands of them.
        var messages = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        foreach (var (pointer, message) in found)
        {
            if (!messages.TryGetValue(pointer, out var list)) messages[pointer] = list = [];
            if (!list.Contains(message)) list.Add(message);
        }
        var ancestors = new HashSet<string>(StringComparer.Ordinal);
        foreach (var pointer in messages.Keys)
            for (var i = pointer.IndexOf('/'); i >= 0; i = pointer.IndexOf('/', i + 1))
                ancestors.Add(pointer[..i]);
        var first = true;
        foreach (var (pointer, list) in messages)
        {
            if (ancestors.Contains(pointer)) continue;
            problems.Add((pointer, first && buildError is not null ? buildError : string.Join("; ", list)));
            first = false;
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
