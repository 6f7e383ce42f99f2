using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace Bureau.Manifests;

/// <summary>YAML nodes to JSON (YAML 1.2 core schema for plain scalars; quoted scalars are always strings).</summary>
internal static partial class YamlJson
{
    [GeneratedRegex(@"^[-+]?[0-9]+$", RegexOptions.CultureInvariant)]
    private static partial Regex IntegerPattern();

    [GeneratedRegex(@"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$", RegexOptions.CultureInvariant)]
    private static partial Regex FloatPattern();

    /// <summary>True for a plain scalar that YAML reads as null (<c>~</c>, <c>null</c> or nothing).</summary>
    public static bool IsNull(YamlNode node) =>
        node is YamlScalarNode { Style: ScalarStyle.Plain or ScalarStyle.Any } s
        && (string.IsNullOrEmpty(s.Value) || s.Value is "~" or "null" or "Null" or "NULL");

    /// <summary>
    /// Converts a node. <paramref name="scalarText"/> gives each scalar's text (after environment substitution)
    /// or null when it is in error (already reported); <paramref name="ok"/> turns false then.
    /// </summary>
    /// <remarks>
    /// Recursive, and an alias is walked once per occurrence: the parser has bounded both the depth and the nodes
    /// of the manifest as expanded (<see cref="ManifestLimits"/>), and the loader reads on a thread with a large stack.
    /// </remarks>
    public static JsonNode? Convert(YamlNode node, Func<YamlScalarNode, string?> scalarText, ref bool ok)
    {
        switch (node)
        {
            case YamlMappingNode map:
            {
                var obj = new JsonObject();
                foreach (var (key, value) in map.Children)
                {
                    var name = (key as YamlScalarNode)?.Value ?? "";
                    obj[name] = Convert(value, scalarText, ref ok);
                }
                return obj;
            }
            case YamlSequenceNode seq:
            {
                var array = new JsonArray();
                foreach (var item in seq.Children) array.Add(Convert(item, scalarText, ref ok));
                return array;
            }
            case YamlScalarNode scalar:
            {
                if (IsNull(scalar)) return null;
                var text = scalarText(scalar);
                if (text is null)
                {
                    ok = false;
                    return null;
                }
                return scalar.Style is ScalarStyle.Plain or ScalarStyle.Any ? Plain(text) : JsonValue.Create(text);
            }
            default:
                return null;
        }
    }

    private static JsonNode? Plain(string text)
    {
        switch (text)
        {
            case "true" or "True" or "TRUE": return JsonValue.Create(true);
            case "false" or "False" or "FALSE": return JsonValue.Create(false);
            case "" or "~" or "null" or "Null" or "NULL": return null;
        }
        if (IntegerPattern().IsMatch(text) && long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var l))
            return JsonValue.Create(l);
        if (FloatPattern().IsMatch(text) && double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) && double.IsFinite(d))
            return JsonValue.Create(d);
        return JsonValue.Create(text);
    }
}
