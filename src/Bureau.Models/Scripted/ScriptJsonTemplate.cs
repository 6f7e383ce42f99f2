using System.Text.Json;
using System.Text.Json.Nodes;

namespace Bureau.Models.Scripted;

/// <summary>
/// A JSON value whose string values (at any depth) are templates, compiled once. Object keys are
/// written as is; non-string values are pre-serialized.
/// </summary>
internal abstract class ScriptJsonTemplate
{
    public abstract void Write(Utf8JsonWriter writer, in ScriptContext context);

    /// <summary>Every string template in the value, depth first.</summary>
    public abstract IEnumerable<ScriptTemplate> Templates();

    public static ScriptJsonTemplate Compile(JsonNode? node) => node switch
    {
        null => new Raw(JsonDocument.Parse("null").RootElement.Clone()),
        JsonObject o => new ObjectTemplate([.. o.Select(p => new KeyValuePair<string, ScriptJsonTemplate>(p.Key, Compile(p.Value)))]),
        JsonArray a => new ArrayTemplate([.. a.Select(Compile)]),
        JsonValue v when v.GetValueKind() == JsonValueKind.String => new StringTemplate(ScriptTemplate.Parse(v.GetValue<string>())),
        _ => new Raw(JsonDocument.Parse(node.ToJsonString()).RootElement.Clone()),
    };

    private sealed class ObjectTemplate(KeyValuePair<string, ScriptJsonTemplate>[] properties) : ScriptJsonTemplate
    {
        private readonly JsonEncodedText[] _names = [.. properties.Select(p => JsonEncodedText.Encode(p.Key))];

        public override void Write(Utf8JsonWriter writer, in ScriptContext context)
        {
            writer.WriteStartObject();
            for (var i = 0; i < properties.Length; i++)
            {
                writer.WritePropertyName(_names[i]);
                properties[i].Value.Write(writer, context);
            }
            writer.WriteEndObject();
        }

        public override IEnumerable<ScriptTemplate> Templates() => properties.SelectMany(p => p.Value.Templates());
    }

    private sealed class ArrayTemplate(ScriptJsonTemplate[] items) : ScriptJsonTemplate
    {
        public override void Write(Utf8JsonWriter writer, in ScriptContext context)
        {
            writer.WriteStartArray();
            foreach (var item in items) item.Write(writer, context);
            writer.WriteEndArray();
        }

        public override IEnumerable<ScriptTemplate> Templates() => items.SelectMany(i => i.Templates());
    }

    private sealed class StringTemplate(ScriptTemplate template) : ScriptJsonTemplate
    {
        public override void Write(Utf8JsonWriter writer, in ScriptContext context) => template.WriteJson(writer, context);

        public override IEnumerable<ScriptTemplate> Templates() => [template];
    }

    private sealed class Raw(JsonElement value) : ScriptJsonTemplate
    {
        public override void Write(Utf8JsonWriter writer, in ScriptContext context) => value.WriteTo(writer);

        public override IEnumerable<ScriptTemplate> Templates() => [];
    }
}
