using Bureau.Tools;
using Microsoft.Extensions.AI;
using Xunit;
using static Bureau.Tests.Tools.ToolTestSupport;

namespace Bureau.Tests.Tools;

public sealed class ToolCallValidatorTests
{
    private const string LedgerSchema = """
        {
          "type": "object",
          "properties": {
            "n": { "type": "integer" },
            "note": { "type": "string", "minLength": 3 },
            "color": { "enum": ["red", "green"] },
            "meta": { "$ref": "#/$defs/meta" }
          },
          "required": ["n"],
          "additionalProperties": false,
          "$defs": {
            "meta": { "type": "object", "properties": { "source": { "type": ["string", "null"] } }, "required": ["source"] }
          }
        }
        """;

    private readonly AgentDefinition _clerk = new() { Name = "clerk", Model = "m", Tools = ["ledger", "lookup"] };
    private readonly Dictionary<string, BureauTool> _tools;
    private int _executions;

    public ToolCallValidatorTests()
    {
        var factory = new ToolFactory();
        _tools = new Dictionary<string, BureauTool>(StringComparer.Ordinal)
        {
            ["ledger"] = factory.Create(new FunctionToolDefinition
            {
                Name = "ledger",
                Parameters = ParseJson(LedgerSchema),
                Function = AIFunctionFactory.Create((int n) => { Interlocked.Increment(ref _executions); return $"recorded {n}"; }, "ledger"),
            }),
            ["lookup"] = factory.Create(new FunctionToolDefinition
            {
                Name = "lookup",
                Function = AIFunctionFactory.Create((string customer) => customer, "lookup"),
            }),
            ["refund"] = factory.Create(new FunctionToolDefinition
            {
                Name = "refund",
                Function = AIFunctionFactory.Create(() => { Interlocked.Increment(ref _executions); return "refunded"; }, "refund"),
            }),
        };
    }

    private ToolCallCheck Check(string tool, string args) => new ToolCallValidator(_tools).Check(_clerk, tool, args);

    [Fact]
    public void Check_ValidCall_PassesWithToolAndParsedArguments()
    {
        var check = Check("ledger", """{"n":3,"color":"red","meta":{"source":null}}""");

        Assert.True(check.IsValid);
        Assert.Null(check.Error);
        Assert.Same(_tools["ledger"], check.Tool);
        Assert.Equal(3, check.Arguments.GetProperty("n").GetInt32());
    }

    [Fact]
    public void Check_UnknownTool_ListsTheAgentsToolsWithDidYouMean()
    {
        var check = Check("ledgr", """{"n":1}""");

        Assert.Equal((false, null), (check.IsValid, check.Tool));
        Assert.Equal("unknown tool 'ledgr'. Did you mean 'ledger'? Tools agent 'clerk' may call: ledger, lookup.", check.Error);
    }

    [Fact]
    public void Check_ToolTheAgentMayNotUse_IsRejected()
    {
        var check = Check("refund", "{}");

        Assert.False(check.IsValid);
        Assert.Equal("tool 'refund' is not available to agent 'clerk'. Tools agent 'clerk' may call: ledger, lookup.", check.Error);
    }

    [Fact]
    public void Check_MalformedJson_SaysWhere()
    {
        var check = Check("ledger", """{"n":1,""");

        Assert.False(check.IsValid);
        Assert.StartsWith("invalid arguments for tool 'ledger': not valid JSON at line 1, position 7: Expected start of a property name or value", check.Error);
    }

    [Theory]
    [InlineData("[1,2]", "array")]
    [InlineData("\"n\"", "string \"n\"")]
    [InlineData("42", "integer 42")]
    public void Check_NotAnObject_IsRejected(string args, string got)
    {
        Assert.Equal($"invalid arguments for tool 'ledger': expected a JSON object, got {got}", Check("ledger", args).Error);
    }

    [Theory]
    [InlineData("""{"n":"x"}""", "/n: expected integer, got string \"x\"")]
    [InlineData("""{"n":1.5}""", "/n: expected integer, got number 1.5")]
    [InlineData("""{}""", "required property 'n' missing")]
    [InlineData("""{"n":1,"color":"blue"}""", "/color: string \"blue\" is not one of \"red\", \"green\"")]
    [InlineData("""{"n":1,"extra":true}""", "property 'extra' is not allowed")]
    [InlineData("""{"n":1,"note":"ab"}""", "/note: value should be at least 3 characters (got string \"ab\")")]
    [InlineData("""{"n":1,"meta":{}}""", "/meta: required property 'source' missing")]
    [InlineData("""{"n":1,"meta":{"source":7}}""", "/meta/source: expected string or null, got integer 7")]
    public void Check_SchemaViolation_SaysWhatAndWhere(string args, string expected)
    {
        var check = Check("ledger", args);

        Assert.False(check.IsValid);
        Assert.Equal("invalid arguments for tool 'ledger': " + expected, check.Error);
    }

    [Fact]
    public void Check_SeveralViolations_AreAllListed()
    {
        var check = Check("ledger", """{"note":"x","color":1}""");

        Assert.StartsWith("invalid arguments for tool 'ledger': ", check.Error);
        Assert.Contains("required property 'n' missing", check.Error);
        Assert.Contains("/note: value should be at least 3 characters", check.Error);
        Assert.Contains("/color: integer 1 is not one of", check.Error);
        Assert.Equal(3, check.Error!.Split("; ").Length);
    }

    [Fact]
    public void Check_FunctionWithoutDeclaredSchema_UsesTheFunctionsSchema()
    {
        var check = Check("lookup", """{"customer":5}""");

        Assert.Equal("invalid arguments for tool 'lookup': /customer: expected string, got integer 5", check.Error);
    }

    [Fact]
    public void Check_EmptyArguments_AreNotValidJson()
    {
        // The engine records arguments it could not parse as "".
        Assert.Equal(
            "invalid arguments for tool 'ledger': not valid JSON: the arguments were empty or could not be parsed; send a JSON object",
            Check("ledger", "").Error);
    }

    [Fact]
    public async Task Check_InvalidCalls_NeverRunTheTool()
    {
        var validator = new ToolCallValidator(_tools);
        string[][] calls = [["ledger", """{"n":"x"}"""], ["ledger", "{"], ["ledger", "[]"], ["refund", "{}"], ["ledgr", """{"n":1}"""], ["ledger", """{"n":2}"""]];

        var results = new List<string>();
        foreach (var call in calls)
        {
            // What the engine does: run only what passed.
            var check = validator.Check(_clerk, call[0], call[1]);
            if (check.IsValid)
                results.Add((await check.Tool!.InvokeAsync(Invocation(call[0], call[1]), TestContext.Current.CancellationToken)).Content);
        }

        Assert.Equal(["recorded 2"], results);
        Assert.Equal(1, _executions);
    }

    [Fact]
    public void Constructor_InvalidSchema_ThrowsNamingTheTool()
    {
        var tools = new Dictionary<string, BureauTool>
        {
            ["bad"] = new ToolFactory().Create(new FunctionToolDefinition
            {
                Name = "bad",
                Parameters = ParseJson("""{"type":"nope"}"""),
                Function = AIFunctionFactory.Create(() => "x", "bad"),
            }),
        };

        var ex = Assert.Throws<ArgumentException>(() => new ToolCallValidator(tools));

        Assert.Contains("tool 'bad': parameters are not a valid JSON Schema", ex.Message);
    }

    [Fact]
    public void Constructor_SameSchemaIdTwice_DoesNotCollide()
    {
        const string schema = """{"$id":"https://example.com/args","type":"object","properties":{"a":{"type":"integer"}}}""";
        var factory = new ToolFactory();
        var tools = new Dictionary<string, BureauTool>
        {
            ["one"] = factory.Create(new FunctionToolDefinition { Name = "one", Parameters = ParseJson(schema), Function = AIFunctionFactory.Create(() => "1", "one") }),
            ["two"] = factory.Create(new FunctionToolDefinition { Name = "two", Parameters = ParseJson(schema), Function = AIFunctionFactory.Create(() => "2", "two") }),
        };
        var agent = new AgentDefinition { Name = "a", Model = "m", Tools = ["one", "two"] };

        var validator = new ToolCallValidator(tools);

        Assert.Equal("invalid arguments for tool 'two': /a: expected integer, got boolean true", validator.Check(agent, "two", """{"a":true}""").Error);
    }
}
