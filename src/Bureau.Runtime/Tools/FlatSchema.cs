using System.Text.Json;

namespace Bureau.Tools;

/// <summary>
/// The common shape of a tool's parameters, checked without a general JSON Schema evaluator: an
/// object whose properties have one or more primitive types (or no constraint), some required, and
/// additional properties allowed or not. Most tools' schemas have exactly this shape, and evaluating
/// them with JsonSchema.Net was the largest single cost of a tool call in the agent-loop profile
/// (docs/performance.md). It only ever says "certainly valid": anything else (a failing call, a
/// number whose integer-ness it cannot read from its text) goes to the full evaluator, which also
/// writes the error messages. A schema with any other keyword is not flat and is always evaluated
/// in full.
/// </summary>
internal sealed class FlatSchema
{
    [Flags]
    private enum Types
    {
        None = 0,
        String = 1,
        Integer = 2,
        Number = 4,
        Boolean = 8,
        Null = 16,
        Any = String | Integer | Number | Boolean | Null | 32,
    }

    // Keywords that annotate and never change the verdict.
    private static readonly HashSet<string> s_annotations = new(StringComparer.Ordinal) { "description", "title", "$comment", "default", "examples" };

    // Names as UTF-8, compared with the arguments' raw property names: a call's check allocates nothing.
    private readonly byte[][] _names;
    private readonly Types[] _types;
    private readonly byte[][] _required;
    private readonly bool _additional;

    private FlatSchema(Dictionary<string, Types> properties, string[] required, bool additional)
    {
        _names = [.. properties.Keys.Select(System.Text.Encoding.UTF8.GetBytes)];
        _types = [.. properties.Values];
        _required = [.. required.Select(System.Text.Encoding.UTF8.GetBytes)];
        _additional = additional;
    }

    /// <summary>The flat form of <paramref name="schema"/>, or null when it has any keyword outside the flat shape.</summary>
    public static FlatSchema? TryCreate(JsonElement schema)
    {
        if (schema.ValueKind != JsonValueKind.Object) return null;
        var properties = new Dictionary<string, Types>(StringComparer.Ordinal);
        string[] required = [];
        var additional = true;
        var isObject = false;
        foreach (var keyword in schema.EnumerateObject())
        {
            switch (keyword.Name)
            {
                case "type":
                    if (keyword.Value.ValueKind != JsonValueKind.String || keyword.Value.GetString() != "object") return null;
                    isObject = true;
                    break;
                case "properties":
                    if (keyword.Value.ValueKind != JsonValueKind.Object) return null;
                    foreach (var property in keyword.Value.EnumerateObject())
                    {
                        if (PropertyTypes(property.Value) is not { } types) return null;
                        properties[property.Name] = types;
                    }
                    break;
                case "required":
                    if (keyword.Value.ValueKind != JsonValueKind.Array) return null;
                    var names = new List<string>();
                    foreach (var name in keyword.Value.EnumerateArray())
                    {
                        if (name.ValueKind != JsonValueKind.String) return null;
                        names.Add(name.GetString()!);
                    }
                    required = [.. names];
                    break;
                case "additionalProperties":
                    if (keyword.Value.ValueKind is not (JsonValueKind.True or JsonValueKind.False)) return null;
                    additional = keyword.Value.ValueKind == JsonValueKind.True;
                    break;
                default:
                    if (!s_annotations.Contains(keyword.Name)) return null;
                    break;
            }
        }
        return isObject ? new FlatSchema(properties, required, additional) : null;
    }

    private static Types? PropertyTypes(JsonElement schema)
    {
        if (schema.ValueKind == JsonValueKind.True) return Types.Any;
        if (schema.ValueKind != JsonValueKind.Object) return null;
        var types = Types.Any;
        foreach (var keyword in schema.EnumerateObject())
        {
            if (keyword.Name == "type")
            {
                if (keyword.Value.ValueKind == JsonValueKind.String)
                {
                    if (TypeOf(keyword.Value.GetString()) is not { } one) return null;
                    types = one;
                }
                else if (keyword.Value.ValueKind == JsonValueKind.Array)
                {
                    types = Types.None;
                    foreach (var item in keyword.Value.EnumerateArray())
                    {
                        if (item.ValueKind != JsonValueKind.String || TypeOf(item.GetString()) is not { } one) return null;
                        types |= one;
                    }
                    if (types == Types.None) return null;
                }
                else return null;
            }
            else if (!s_annotations.Contains(keyword.Name)) return null;
        }
        return types;
    }

    private static Types? TypeOf(string? name) => name switch
    {
        "string" => Types.String,
        "integer" => Types.Integer,
        "number" => Types.Number | Types.Integer,
        "boolean" => Types.Boolean,
        "null" => Types.Null,
        _ => null,
    };

    /// <summary>True when <paramref name="arguments"/> (an object) certainly satisfies the schema; false when it may not.</summary>
    public bool IsCertainlyValid(JsonElement arguments)
    {
        if (arguments.ValueKind != JsonValueKind.Object) return false;
        foreach (var name in _required)
        {
            if (!arguments.TryGetProperty(name, out _)) return false;
        }
        foreach (var member in arguments.EnumerateObject())
        {
            var index = IndexOf(member);
            if (index < 0)
            {
                if (!_additional) return false;
                continue;
            }
            if (!Satisfies(member.Value, _types[index])) return false;
        }
        return true;
    }

    /// <summary>The declared property <paramref name="member"/> is, or -1 (a linear scan: tools declare a handful).</summary>
    private int IndexOf(JsonProperty member)
    {
        for (var i = 0; i < _names.Length; i++)
        {
            if (member.NameEquals(_names[i])) return i;
        }
        return -1;
    }

    private static bool Satisfies(JsonElement value, Types types)
    {
        if (types == Types.Any) return true;
        return value.ValueKind switch
        {
            JsonValueKind.String => (types & Types.String) != 0,
            JsonValueKind.True or JsonValueKind.False => (types & Types.Boolean) != 0,
            JsonValueKind.Null => (types & Types.Null) != 0,
            // "number" admits every number; "integer" only one written without a fraction or exponent
            // here (1.0 and 1e2 are integers too: the full evaluator decides those).
            JsonValueKind.Number => (types & Types.Number) != 0 || ((types & Types.Integer) != 0 && IsPlainInteger(value)),
            _ => false,
        };
    }

    private static bool IsPlainInteger(JsonElement value)
    {
        var text = System.Runtime.InteropServices.JsonMarshal.GetRawUtf8Value(value);
        return text.IndexOfAny((byte)'.', (byte)'e', (byte)'E') < 0;
    }
}
