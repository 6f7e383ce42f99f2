using System.Globalization;
using System.Text;
using System.Text.Json;
using Bureau.Tools;
using CsCheck;
using Microsoft.Extensions.AI;
using Xunit;
using static Bureau.Tests.Tools.ToolTestSupport;

namespace Bureau.Tests.Tools;

/// <summary>
/// Generated arguments (valid, invalid, mutated, garbage) through <see cref="ToolCallValidator"/>: nothing
/// escapes it, and it says valid exactly when an independent, plain reading of the schema says so.
/// </summary>
public sealed class ToolCallValidatorPropertyTests
{
    private static readonly string[] Keys = ["n", "x", "note", "tags", "meta", "source", "extra", "\\u006e", "N", "", "\\ud800"];

    private static readonly string[] NumberTokens =
    [
        "0", "1", "-1", "-0", "7", "1.0", "1.5", "2e0", "1e2", "1E+2", "1e-2", "0.1e1", "1e400", "-1e400", "1e-400",
        "123456789012345678901234567890", "9007199254740993", "1e308", "1.7976931348623157e308", "1.8e308",
        "NaN", "Infinity", "-Infinity", "01", "1.", "+1", ".5", "0x10", "1e", "--1",
    ];

    private static readonly string[] StringTokens =
    [
        "\"\"", "\"a\"", "\"hey!\"", "\"hello\"", "\"\\ud800\"", "\"\\udc00x\"", "\"\\ud83d\\ude00\"", "\"caf\u00e9\"", "\"\\u0000\"",
        "\"\\n\"", "\"\\q\"", "\"" + (char)0xD800 + "\"", "\"tab\there\"", "\"abc", "\"\\u12\"", "\"\\/\"", "'single'",
    ];

    private static readonly string[] Literals = ["true", "false", "null", "nul", "True", "undefined"];

    private static readonly Gen<string> Scalar = Gen.Frequency(
        (3, Gen.OneOf(NumberTokens)),
        (3, Gen.OneOf(StringTokens)),
        (1, Gen.OneOf(Literals)),
        (2, Gen.Int[-1000, 1000].Select(i => i.ToString(CultureInfo.InvariantCulture))),
        (2, Gen.String.AlphaNumeric.Select(s => "\"" + s + "\"")));

    private static readonly Gen<string> AnyValue = Gen.Recursive<string>((depth, value) => depth >= 4
        ? Scalar
        : Gen.Frequency(
            (5, Scalar),
            (1, value.Array[0, 4].Select(items => "[" + string.Join(",", items) + "]")),
            (2, Gen.Select(Gen.OneOf(Keys), value, (k, v) => $"\"{k}\":{v}").Array[0, 5].Select(m => "{" + string.Join(",", m) + "}"))));

    /// <summary>Objects whose members are the schema's, with values of any kind, sometimes a name twice.</summary>
    private static readonly Gen<string> AnyObject =
        Gen.Select(Gen.OneOf(Keys), AnyValue, (k, v) => $"\"{k}\":{v}").Array[0, 6].Select(m => "{" + string.Join(",", m) + "}");

    /// <summary>Objects that satisfy the schema, in any member order.</summary>
    private static readonly Gen<string> ValidObject = Gen.Select(
        Gen.OneOf("0", "1", "-7", "1.0", "2e0", "1e2", "42"),
        Gen.OneOf<string?>(null, "0", "1.5", "-2.25e3", "1e308", "1e-400"),
        Gen.OneOf<string?>(null, "\"a\"", "\"hello\"", "\"caf\u00e9\"", "\"\\ud83d\\ude00\"", "\"\\u0000\""),
        Gen.OneOf<string?>(null, "[]", "[\"a\"]", "[\"a\",\"\"]"),
        Gen.OneOf<string?>(null, "{}", "{\"source\":\"s\"}"),
        Gen.Int,
        (n, x, note, tags, meta, order) =>
        {
            var members = new List<string> { $"\"n\":{n}" };
            if (x is not null) members.Add($"\"x\":{x}");
            if (note is not null) members.Add($"\"note\":{note}");
            if (tags is not null) members.Add($"\"tags\":{tags}");
            if (meta is not null) members.Add($"\"meta\":{meta}");
            var rotate = (int)((uint)order % (uint)members.Count);
            return "{" + string.Join(" , ", members.Skip(rotate).Concat(members.Take(rotate))) + "}";
        });

    private static readonly Gen<char> JsonChar = Gen.Frequency(
        (4, Gen.Char["{}[]\",:\\ -+.0123456789eEnt"]),
        (1, Gen.Char['\0', '\u007f']),
        (1, Gen.Char['\uD800', '\uDFFF']),
        (1, Gen.Char));

    /// <summary>A string with one edit: cut short, a character dropped, inserted or replaced, or a slice repeated.</summary>
    private static Gen<string> Mutated(Gen<string> source) =>
        Gen.Select(source, Gen.Int[0, 4], Gen.Int[0, int.MaxValue], JsonChar, (text, kind, at, c) =>
        {
            if (text.Length == 0) return c.ToString();
            var i = at % text.Length;
            return kind switch
            {
                0 => text[..i],
                1 => text.Remove(i, 1),
                2 => text.Insert(i, c.ToString()),
                3 => text[..i] + c + text[(i + 1)..],
                _ => text[..i] + text[(at / 7 % text.Length)..],
            };
        });

    private static readonly Gen<string> Nested = Gen.Select(Gen.Int[1, 200], Gen.Bool, (depth, closed) =>
        "{\"n\":1,\"meta\":{\"source\":" + new string('[', depth) + (closed ? new string(']', depth) + "}}" : string.Empty));

    private static readonly Gen<string> Arguments = Gen.Frequency(
        (3, ValidObject),
        (3, AnyObject),
        (4, Mutated(Gen.OneOf(ValidObject, AnyObject))),
        (1, Mutated(Mutated(ValidObject))),
        (1, Nested),
        (1, Gen.String[JsonChar, 0, 40]),
        (1, AnyValue));

    [Fact]
    public void Check_GeneratedArguments_NeverThrowsAndIsValidExactlyWhenTheSchemaHolds()
    {
        var executions = 0;
        var validator = new ToolCallValidator(new Dictionary<string, BureauTool>(StringComparer.Ordinal)
        {
            ["ledger"] = new ToolFactory().Create(new FunctionToolDefinition
            {
                Name = "ledger",
                Parameters = ParseJson(ToolCallValidatorEdgeTests.Schema),
                Function = AIFunctionFactory.Create((int n) => { Interlocked.Increment(ref executions); return "ran"; }, "ledger"),
            }),
        });
        var agent = new AgentDefinition { Name = "clerk", Model = "m", Tools = ["ledger"] };
        var valid = 0;

        Arguments.Sample(args =>
        {
            var check = validator.Check(agent, "ledger", args); // any exception fails the sample
            var expected = Oracle.Satisfies(args);
            Assert.True(expected == check.IsValid, $"validator says {(check.IsValid ? "valid" : check.Error)}; a plain reading of the schema says {(expected ? "valid" : "invalid")}");
            if (check.IsValid)
            {
                Interlocked.Increment(ref valid);
                Assert.Null(check.Error);
                Assert.Equal(JsonValueKind.Object, check.Arguments.ValueKind);
            }
            else
            {
                Assert.StartsWith("invalid arguments for tool 'ledger': ", check.Error);
                Assert.Equal(default, check.Arguments);
            }
        }, iter: 10_000, threads: 1);

        Assert.Equal(0, executions);
        Assert.InRange(valid, 500, 9_500); // both verdicts are exercised
    }

    /// <summary>The schema of <see cref="ToolCallValidatorEdgeTests.Schema"/>, written out by hand over a strict parse.</summary>
    private static class Oracle
    {
        public static bool Satisfies(string args)
        {
            JsonDocument doc;
            try
            {
                doc = JsonDocument.Parse(args, new JsonDocumentOptions { AllowDuplicateProperties = false, MaxDepth = 64 });
            }
            catch (Exception ex) when (ex is JsonException or ArgumentException or InvalidOperationException)
            {
                return false; // not JSON, a name twice, too deep, not UTF-16, or a name that is not text
            }
            using (doc)
            {
                if (!Readable(doc.RootElement)) return false;
                var root = doc.RootElement;
                if (root.ValueKind != JsonValueKind.Object) return false;
                if (!root.TryGetProperty("n", out var n) || !IsInteger(n)) return false;
                foreach (var p in root.EnumerateObject())
                {
                    var ok = p.Name switch
                    {
                        "n" => true,
                        "x" => p.Value.ValueKind == JsonValueKind.Number,
                        "note" => p.Value.ValueKind == JsonValueKind.String && p.Value.GetString() is { Length: > 0 } s && !s.Contains('!'),
                        "tags" => p.Value.ValueKind == JsonValueKind.Array && p.Value.EnumerateArray().All(t => t.ValueKind == JsonValueKind.String),
                        "meta" => p.Value.ValueKind == JsonValueKind.Object
                                  && p.Value.EnumerateObject().All(m => m.Name == "source" && m.Value.ValueKind == JsonValueKind.String),
                        _ => false,
                    };
                    if (!ok) return false;
                }
                return true;
            }
        }

        private static bool IsInteger(JsonElement e) =>
            e.ValueKind == JsonValueKind.Number && e.TryGetDouble(out var d) && Math.Floor(d) == d;

        /// <summary>Every name and string is text, every number a finite double.</summary>
        private static bool Readable(JsonElement e)
        {
            try
            {
                switch (e.ValueKind)
                {
                    case JsonValueKind.Object:
                        foreach (var p in e.EnumerateObject())
                        {
                            _ = p.Name;
                            if (!Readable(p.Value)) return false;
                        }
                        return true;
                    case JsonValueKind.Array:
                        return e.EnumerateArray().All(Readable);
                    case JsonValueKind.String:
                        _ = e.GetString();
                        return true;
                    case JsonValueKind.Number:
                        return e.TryGetDouble(out var d) && double.IsFinite(d);
                    default:
                        return true;
                }
            }
            catch (InvalidOperationException)
            {
                return false;
            }
        }
    }
}
