using System.Text.Json;
using Bureau.Tools;
using CsCheck;
using Json.Schema;
using Xunit;

namespace Bureau.Tests.Tools;

/// <summary>
/// The flat-schema shortcut of <see cref="ToolCallValidator"/> never says valid where JsonSchema.Net
/// says invalid, takes only the schemas it understands, and leaves every failing call to the full
/// evaluator (which writes the messages).
/// </summary>
public sealed class FlatSchemaTests
{
    private static readonly string[] Names = ["a", "b", "c", "d"];
    private static readonly string[] TypeNames = ["string", "integer", "number", "boolean", "null"];

    private static readonly string[] Values =
    [
        "0", "7", "-3", "1.0", "1.5", "2e0", "1e2", "1E-2", "12345678901234567890", "\"x\"", "\"\"", "\"1\"", "true", "false", "null",
        "[]", "[1]", "{}", "{\"a\":1}",
    ];

    /// <summary>A property's schema: no constraint, one type, or a list of types, with an annotation now and then.</summary>
    private static readonly Gen<string> PropertySchema = Gen.Frequency(
        (1, Gen.Const("{}")),
        (1, Gen.Const("true")),
        (4, Gen.OneOf(TypeNames).Select(t => $"{{\"type\":\"{t}\"}}")),
        (2, Gen.OneOf(TypeNames).Array[1, 3].Select(ts => $"{{\"type\":[{string.Join(",", ts.Distinct().Select(t => $"\"{t}\""))}],\"description\":\"d\"}}")));

    private static readonly Gen<string> Schema = Gen.Select(
        Gen.Select(Gen.OneOf(Names), PropertySchema).Array[0, 4],
        Gen.OneOf(Names).Array[0, 3],
        Gen.OneOf<bool?>(null, true, false),
        (props, required, additional) =>
        {
            var members = new List<string> { "\"type\":\"object\"", "\"title\":\"t\"" };
            members.Add("\"properties\":{" + string.Join(",", props.DistinctBy(p => p.Item1).Select(p => $"\"{p.Item1}\":{p.Item2}")) + "}");
            if (required.Length > 0) members.Add("\"required\":[" + string.Join(",", required.Distinct().Select(r => $"\"{r}\"")) + "]");
            if (additional is { } a) members.Add($"\"additionalProperties\":{(a ? "true" : "false")}");
            return "{" + string.Join(",", members) + "}";
        });

    private static readonly Gen<string> Arguments =
        Gen.Select(Gen.OneOf([.. Names, "e"]), Gen.OneOf(Values)).Array[0, 5]
            .Select(ms => "{" + string.Join(",", ms.DistinctBy(m => m.Item1).Select(m => $"\"{m.Item1}\":{m.Item2}")) + "}");

    [Fact]
    public void IsCertainlyValid_GeneratedSchemasAndArguments_NeverDisagreesWithJsonSchemaNet()
    {
        var shortcut = 0;
        Gen.Select(Schema, Arguments).Sample((schemaText, args) =>
        {
            using var schemaDoc = JsonDocument.Parse(schemaText);
            var flat = FlatSchema.TryCreate(schemaDoc.RootElement);
            Assert.NotNull(flat); // every generated schema has the flat shape
            using var argsDoc = JsonDocument.Parse(args);
            var full = JsonSchema.FromText(schemaText, new BuildOptions { SchemaRegistry = new SchemaRegistry() })
                .Evaluate(argsDoc.RootElement, new EvaluationOptions { OutputFormat = OutputFormat.Flag }).IsValid;
            if (flat!.IsCertainlyValid(argsDoc.RootElement))
            {
                Interlocked.Increment(ref shortcut);
                Assert.True(full, $"flat says valid, JsonSchema.Net says invalid: schema {schemaText}, arguments {args}");
            }
        }, iter: 5_000, threads: 1);
        Assert.InRange(shortcut, 200, 4_900); // the shortcut is taken, and not always
    }

    [Theory]
    [InlineData("""{"type":"object","properties":{"a":{"type":"string","minLength":1}}}""")]
    [InlineData("""{"type":"object","properties":{"a":{"enum":["x","y"]}}}""")]
    [InlineData("""{"type":"object","properties":{"a":{"type":"object"}}}""")]
    [InlineData("""{"type":"object","properties":{"a":{"type":"array","items":{"type":"string"}}}}""")]
    [InlineData("""{"type":"object","properties":{"a":{"$ref":"#/$defs/x"}},"$defs":{"x":{"type":"string"}}}""")]
    [InlineData("""{"type":"object","additionalProperties":{"type":"string"}}""")]
    [InlineData("""{"type":"object","properties":{"a":false}}""")]
    [InlineData("""{"properties":{"a":{"type":"string"}}}""")]
    [InlineData("""{"type":["object","null"]}""")]
    [InlineData("""{"$schema":"http://json-schema.org/draft-04/schema#","type":"object"}""")]
    public void TryCreate_AnyOtherKeyword_LeavesTheSchemaToTheFullEvaluator(string schema)
    {
        using var doc = JsonDocument.Parse(schema);
        Assert.Null(FlatSchema.TryCreate(doc.RootElement));
    }

    [Theory]
    [InlineData("""{"n":1}""", true)]
    [InlineData("""{"n":1.0}""", false)] // an integer to JSON Schema too, but only the full evaluator decides
    [InlineData("""{"n":"1"}""", false)]
    [InlineData("""{}""", false)]
    [InlineData("""{"n":1,"other":true}""", false)]
    [InlineData("""{"n":1,"note":null}""", true)]
    public void IsCertainlyValid_PlainCases(string args, bool expected)
    {
        using var schema = JsonDocument.Parse("""{"type":"object","properties":{"n":{"type":"integer"},"note":{"type":["string","null"]}},"required":["n"],"additionalProperties":false}""");
        using var doc = JsonDocument.Parse(args);
        Assert.Equal(expected, FlatSchema.TryCreate(schema.RootElement)!.IsCertainlyValid(doc.RootElement));
    }
}
