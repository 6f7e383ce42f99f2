using System.Text;
using Bureau.Tools;
using Microsoft.Extensions.AI;
using Xunit;
using static Bureau.Tests.Tools.ToolTestSupport;

namespace Bureau.Tests.Tools;

/// <summary>
/// Arguments a model may send that JSON parsers disagree on or choke on: each is rejected with an error
/// for the model, nothing throws, and the tool never runs.
/// </summary>
public sealed class ToolCallValidatorEdgeTests
{
    internal const string Schema = """
        {
          "type": "object",
          "properties": {
            "n": { "type": "integer" },
            "x": { "type": "number" },
            "note": { "type": "string", "minLength": 1, "pattern": "^[^!]*$" },
            "tags": { "type": "array", "items": { "type": "string" } },
            "meta": { "type": "object", "properties": { "source": { "type": "string" } }, "additionalProperties": false }
          },
          "required": ["n"],
          "additionalProperties": false
        }
        """;

    private readonly AgentDefinition _agent = new() { Name = "clerk", Model = "m", Tools = ["ledger"] };
    private readonly ToolCallValidator _validator;
    private int _executions;

    public ToolCallValidatorEdgeTests()
    {
        _validator = new ToolCallValidator(new Dictionary<string, BureauTool>(StringComparer.Ordinal)
        {
            ["ledger"] = new ToolFactory().Create(new FunctionToolDefinition
            {
                Name = "ledger",
                Parameters = ParseJson(Schema),
                Function = AIFunctionFactory.Create((int n) => { Interlocked.Increment(ref _executions); return $"recorded {n}"; }, "ledger"),
            }),
        });
    }

    public static TheoryData<string, string> Rejected() => new()
    {
        // A name twice: parsers differ on which value wins, so the schema may check one and the tool read the other.
        { """{"n":1,"n":"drop table"}""", "property 'n' is given twice" },
        { """{"n":1,"\u006e":2}""", "property 'n' is given twice" },
        { """{"n":1,"meta":{"source":"a","source":"b"}}""", "/meta: property 'source' is given twice" },
        // Numbers beyond a 64-bit float.
        { """{"n":1e400}""", "/n: the number 1e400 is out of range" },
        { """{"n":1,"x":-1e400}""", "/x: the number -1e400 is out of range" },
        { """{"n":1,"x":""" + new string('9', 400) + "}", "/x: the number 9999999999" },
        // Not JSON numbers.
        { """{"n":NaN}""", "not valid JSON" },
        { """{"n":Infinity}""", "not valid JSON" },
        { """{"n":-Infinity}""", "not valid JSON" },
        { """{"n":1,"x":nan}""", "not valid JSON" },
        // Text that is not text.
        { """{"n":1,"note":"\ud800"}""", "/note: the string has a \\uD800-\\uDFFF escape without its pair" },
        { """{"n":1,"note":"a\udc00b"}""", "/note: the string has a \\uD800-\\uDFFF escape without its pair" },
        { """{"n":1,"tags":["ok","\ud83d"]}""", "/tags/1: the string has a \\uD800-\\uDFFF escape without its pair" },
        { """{"n":1,"\ud800":1}""", "a property name has a \\uD800-\\uDFFF escape without its pair" },
        // Truncated.
        { """{"n":1""", "not valid JSON" },
        { """{"n":""", "not valid JSON" },
        { """{"n":1,"note":"abc""", "not valid JSON" },
        { "{", "not valid JSON" },
        { """{"n":1}}""", "not valid JSON" },
        { """{"n":1} {"n":2}""", "not valid JSON" },
        // Wrong types.
        { """{"n":"1"}""", "/n: expected integer, got string \"1\"" },
        { """{"n":true}""", "/n: expected integer, got boolean true" },
        { """{"n":null}""", "/n: expected integer, got null" },
        { """{"n":1,"x":"1.5"}""", "/x: expected number, got string \"1.5\"" },
        { """{"n":1,"tags":"a"}""", "/tags: expected array, got string \"a\"" },
        { """{"n":1,"tags":[1]}""", "/tags/0: expected string, got integer 1" },
        { """{"n":1,"note":""}""", "/note: value should be at least 1 characters" },
        { """{"n":1,"note":"hey!"}""", "/note: " },
        // Extra properties.
        { """{"n":1,"extra":true}""", "property 'extra' is not allowed" },
        { """{"n":1,"meta":{"source":"a","by":"b"}}""", "/meta: property 'by' is not allowed" },
        // Comments and trailing commas are not JSON either.
        { """{"n":1,}""", "not valid JSON" },
        { """{"n":1 /* c */}""", "not valid JSON" },
    };

    [Theory]
    [MemberData(nameof(Rejected))]
    public void Check_EdgeCaseArguments_AreRejectedWithAnErrorForTheModel(string args, string expected)
    {
        var check = _validator.Check(_agent, "ledger", args);

        Assert.False(check.IsValid, $"accepted {args}");
        Assert.StartsWith("invalid arguments for tool 'ledger': ", check.Error);
        Assert.Contains(expected, check.Error);
        Assert.Equal(default, check.Arguments);
        Assert.Equal(0, _executions);
    }

    [Fact]
    public void Check_UnpairedSurrogateCharacter_IsRejected()
    {
        // The character itself, not an escape (built here: theory data would be re-encoded on the way to the test).
        var args = "{\"n\":1,\"note\":\"ab" + (char)0xD800 + "\"}";

        var check = _validator.Check(_agent, "ledger", args);

        Assert.Equal("invalid arguments for tool 'ledger': the arguments contain an unpaired UTF-16 surrogate (character 18), which is not text", check.Error);
        Assert.Equal(0, _executions);
    }

    [Theory]
    [InlineData(64)]
    [InlineData(10_000)]
    [InlineData(400_000)]
    public void Check_DeepNesting_IsRejectedWithoutRecursingIntoIt(int depth)
    {
        var args = new StringBuilder("{\"n\":1,\"meta\":");
        args.Append('[', depth).Append(']', depth).Append('}');

        var check = _validator.Check(_agent, "ledger", args.ToString());

        Assert.False(check.IsValid);
        Assert.Contains("nested deeper than 64 levels", check.Error);
    }

    [Theory]
    [InlineData(3)]
    [InlineData(ArgumentsJsonDepth)] // exactly the limit: the root object, meta, and 62 arrays
    public void Check_NestingWithinTheLimit_IsCheckedByTheSchema(int levels)
    {
        var arrays = levels - 2;
        var args = "{\"n\":1,\"meta\":{\"source\":" + new string('[', arrays) + new string(']', arrays) + "}}";

        var check = _validator.Check(_agent, "ledger", args);

        Assert.Equal("invalid arguments for tool 'ledger': /meta/source: expected string, got array", check.Error);
    }

    [Fact]
    public void Check_OneLevelPastTheLimit_SaysWhere()
    {
        var arrays = ArgumentsJsonDepth - 1;
        var args = "{\"n\":1,\"meta\":{\"source\":" + new string('[', arrays) + new string(']', arrays) + "}}";

        var check = _validator.Check(_agent, "ledger", args);

        Assert.Equal($"invalid arguments for tool 'ledger': the arguments are nested deeper than 64 levels (at /meta/source{string.Concat(Enumerable.Repeat("/0", arrays - 1))}); flatten them", check.Error);
    }

    private const int ArgumentsJsonDepth = 64;

    [Theory]
    [InlineData("""{"n":1}""")]
    [InlineData("""{"n":1.0e0,"x":1e308}""")]
    [InlineData("""{"n":-0,"x":1e-400}""")] // underflows to zero: a finite number
    [InlineData("""{"n":1,"note":"\ud83d\ude00 caf\u00e9","tags":["\u0000"]}""")]
    [InlineData("""{ "n" : 1 , "meta" : { "source" : "a" } }""")]
    public void Check_ValidEdges_Pass(string args)
    {
        var check = _validator.Check(_agent, "ledger", args);

        Assert.True(check.IsValid, check.Error);
        Assert.Equal(System.Text.Json.JsonValueKind.Object, check.Arguments.ValueKind);
    }

    [Fact]
    public void Check_HugeArguments_AreRejectedByLengthBeforeParsing()
    {
        var args = "{\"n\":1,\"note\":\"" + new string('a', ToolCallValidator.MaxArgumentsLength) + "\"}";

        var check = _validator.Check(_agent, "ledger", args);

        Assert.False(check.IsValid);
        Assert.Contains($"longer than {ToolCallValidator.MaxArgumentsLength} characters", check.Error);
    }
}
