using System.Text;
using Bureau.Manifests;
using Xunit;
using static Bureau.Manifests.Tests.TestSupport;

namespace Bureau.Manifests.Tests;

/// <summary>
/// Hostile manifests (alias bombs, deep nesting, oversized files, substitution growth) end in one diagnostic,
/// never in an exception, a crash or gigabytes of memory. The inputs are generated here.
/// </summary>
public sealed class ManifestLimitsTests
{
    private const string Models = """
        models:
          m:
            provider: scripted

        """;

    private const string Tool = """
        tools:
          t:
            kind: process
            command: [python3, t.py]

        """;

    /// <summary>
    /// "Billion laughs": ten levels, each a list of ten aliases of the level before, 10^10 nodes once expanded.
    /// Each level is one line: <c>{indent}lN: &amp;lN [*lM, *lM, ...]</c>.
    /// </summary>
    private static string Laughs(string indent)
    {
        var sb = new StringBuilder();
        sb.Append(indent).Append("l0: &l0 [").AppendJoin(", ", Enumerable.Repeat("lol", 10)).Append("]\n");
        for (var level = 1; level < 10; level++)
            sb.Append(indent).Append($"l{level}: &l{level} [").AppendJoin(", ", Enumerable.Repeat($"*l{level - 1}", 10)).Append("]\n");
        return sb.ToString();
    }

    [Fact]
    public void LoadText_AliasBombInToolParameters_ReportsTheAliasThatCrossesTheNodeBudget()
    {
        var yaml = Models + Tool + "    parameters:\n      type: object\n" + Laughs("      ");

        var result = Load(yaml);

        // Line 14 is l4; its aliases cost 11,111 nodes each and the 8th crosses 100,000 (column 16 + 7 * 5).
        var d = Single(result, 14, 51, "alias '*l3' expands the manifest past 100000 nodes");
        Assert.Equal("bureau.yaml:14:51: error: " + d.Message, d.ToString());
    }

    [Fact]
    public void LoadText_AliasBombInScriptedCallArgs_ReportsTheAliasThatCrossesTheNodeBudget()
    {
        var yaml = """
            models:
              m:
                provider: scripted
                rules:
                  - calls:
                      - tool: t
                        args:

            """ + Laughs("              ") + Tool;

        var result = Load(yaml);

        // Line 12 is l4 (indent 14, first alias at column 24); the 8th alias crosses the budget.
        Single(result, 12, 59, "alias '*l3' expands the manifest past 100000 nodes");
    }

    [Fact]
    public void LoadText_100kNestedFlowSequences_ReportsTheFirstTooDeepBracketWithoutOverflowingTheStack()
    {
        const int n = 100_000;
        var yaml = Models + Tool + "    parameters:\n      type: object\n      default: " + new string('[', n) + new string(']', n) + "\n";

        var result = Load(yaml);

        // The root mapping is level 1, tools 2, t 3, parameters 4: the first '[' (column 16) is level 5,
        // the 61st (column 76) is level 65, one past the limit of 64.
        Single(result, 10, 76, "nesting deeper than 64 levels");
    }

    [Fact]
    public void LoadText_20kNestedFlowMappingsInScriptedArgs_ReportsTheFirstTooDeepMapping()
    {
        const int n = 20_000;
        var sb = new StringBuilder();
        sb.Append("""
            models:
              m:
                provider: scripted
                rules:
                  - calls:
                      - tool: t

            """).Append("            args: ");
        for (var i = 0; i < n; i++) sb.Append("{a: ");
        sb.Append('1').Append('}', n).Append('\n').Append(Tool);

        var result = Load(sb.ToString());

        // Root 1, models 2, m 3, rules 4, the rule 5, calls 6, the call 7: args (column 19) is level 8,
        // and level 65 is the 58th '{', at column 19 + 57 * 4.
        Single(result, 7, 247, "nesting deeper than 64 levels");
    }

    [Fact]
    public void LoadFile_FileOverFourMiB_ReportsItsSizeAtTheStartWithoutReadingIt()
    {
        var path = Path.Combine(Path.GetTempPath(), $"bureau-limits-{Guid.NewGuid():N}.yaml");
        try
        {
            const int size = 4 * 1024 * 1024 + 1;
            var text = new StringBuilder(Models + Tool, size);
            while (text.Length < size)
            {
                var room = size - text.Length;
                text.Append('#').Append(' ', Math.Min(room, 100) - 1);
                if (room > 100) text.Append('\n');
            }
            File.WriteAllText(path, text.ToString());
            Assert.Equal(size, new FileInfo(path).Length);

            var result = ManifestLoader.LoadFile(path, NoEnvironment);

            var d = Single(result, 1, 1, "the manifest is 4194305 bytes, more than the limit of 4194304 bytes (4 MiB)");
            Assert.Equal(path, d.File);
            Assert.Null(d.Path);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void LoadText_MoreAliasesThanTheLimit_ReportsTheFirstAliasOverIt()
    {
        var yaml = Models + Tool + "    parameters:\n      type: object\n      x: &x a\n      y: ["
            + string.Join(", ", Enumerable.Repeat("*x", 1001)) + "]\n";

        // The 1001st alias: column 11 + 1000 * 4.
        Single(Load(yaml), 11, 4011, "more than 1000 aliases");
    }

    [Fact]
    public void LoadText_AliasInsideItsOwnAnchor_ReportsTheAliasInsteadOfBuildingACycle()
    {
        var yaml = Models + Tool + "    parameters: &p {type: object, x: *p}\n";

        Single(Load(yaml), 8, 38, "alias '*p' refers to '&p', which contains it");
    }

    [Fact]
    public void LoadText_AliasBeforeItsAnchor_ReportsTheAlias()
    {
        // YamlDotNet resolves such an alias at the end of the document, which would also let it close a cycle.
        var yaml = Models + Tool + "    parameters:\n      type: object\n      x: *later\n      later: &later a\n";

        Single(Load(yaml), 10, 10, "alias '*later' refers to no anchor '&later' before it");
    }

    [Fact]
    public void LoadText_AliasThatNestsPastTheDepthLimit_ReportsTheAlias()
    {
        // 'deep' holds 60 levels from level 5 (64 in all, allowed); copied under 'more.a' it would reach level 66.
        var yaml = Models + Tool + "    parameters:\n      type: object\n      deep: &deep " + new string('[', 60) + new string(']', 60)
            + "\n      more: {a: *deep}\n";

        Single(Load(yaml), 11, 17, "alias '*deep' nests deeper than 64 levels");
    }

    [Fact]
    public void LoadText_EnvironmentVariableRepeatedThroughAliases_ReportsTheGrowthAtTheScalar()
    {
        var big = new string('x', 64 * 1024);
        var yaml = """
            models:
              m:
                provider: scripted
                rules:
                  - calls:
                      - tool: t
                        args:
                          x: &x "${BIG}"
                          y: [
            """ + string.Join(", ", Enumerable.Repeat("*x", 100)) + "]\n" + Tool;

        // 101 copies of 64 KiB: written, the manifest is small; substituted, it would hold 6.4 MB.
        var d = Single(Load(yaml, Env(("BIG", big))), 8, 18, "environment substitution grows the manifest's keys and values past 4194304 characters");
        Assert.Equal("models.m.rules[0].calls[0].args", d.Path);
    }

    [Fact]
    public void LoadText_TextOverACustomLimit_ReportsItsSizeAtTheStart()
    {
        var yaml = Models + Tool + "# " + new string('-', 1000) + "\n";
        var limits = new ManifestLimits { MaxFileBytes = 1000 };

        var result = ManifestLoader.LoadText(yaml, "bureau.yaml", Path.GetTempPath(), NoEnvironment, limits);

        Single(result, 1, 1, $"the manifest is {yaml.Length} bytes in UTF-8, more than the limit of 1000 bytes");
    }

    [Fact]
    public void LoadText_SchemaSharedThroughAnAlias_LoadsWithinTheLimits()
    {
        var yaml = """
            models:
              m:
                provider: scripted
            tools:
              a:
                kind: process
                command: [python3, a.py]
                parameters: &args
                  type: object
                  properties: { n: { type: integer }, tags: { type: array, items: &text { type: string } } }
              b:
                kind: process
                command: [python3, b.py]
                parameters: *args
              c:
                kind: process
                command: [python3, c.py]
                parameters: { type: object, properties: { note: *text } }
            """;

        var result = Load(yaml);

        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        var b = Assert.IsType<ProcessToolDefinition>(result.Definitions!.Tools["b"]);
        Assert.Equal("integer", b.Parameters!.Value.GetProperty("properties").GetProperty("n").GetProperty("type").GetString());
        var c = Assert.IsType<ProcessToolDefinition>(result.Definitions.Tools["c"]);
        Assert.Equal("string", c.Parameters!.Value.GetProperty("properties").GetProperty("note").GetProperty("type").GetString());
    }

    [Fact]
    public void LoadText_SchemaNestedToTheHighestDepthAllowed_LoadsFromAThreadWithASmallStack()
    {
        // 126 nested object schemas from level 4 (parameters) reach level 256 with the innermost {type: string};
        // with 127, the 'properties' of the last (column 17 + 126 * 31 + 27) is level 257.
        static string Yaml(int objects)
        {
            var sb = new StringBuilder(Models + Tool + "    parameters: ");
            for (var i = 0; i < objects; i++) sb.Append("{type: object, properties: {a: ");
            sb.Append("{type: string}").Append('}', 2 * objects).Append('\n');
            return sb.ToString();
        }
        var limits = new ManifestLimits { MaxDepth = ManifestLimits.MaxDepthCeiling };
        ManifestLoadResult? deepest = null, deeper = null;

        // JsonSchema.Net checks the schema recursively, several KiB of stack a level: the loader must not depend
        // on the stack of the thread that calls it.
        var thread = new Thread(() =>
        {
            deepest = ManifestLoader.LoadText(Yaml(126), "bureau.yaml", Path.GetTempPath(), NoEnvironment, limits);
            deeper = ManifestLoader.LoadText(Yaml(127), "bureau.yaml", Path.GetTempPath(), NoEnvironment, limits);
        }, 256 * 1024);
        thread.Start();
        thread.Join();

        Assert.True(deepest!.Success, string.Join("\n", deepest.Diagnostics));
        Single(deeper!, 8, 3950, "nesting deeper than 256 levels");
    }

    [Fact]
    public void LoadText_ThousandsOfUndefinedToolReferences_ListsTwentyNamesAndCountsTheRest()
    {
        var sb = new StringBuilder(Models + "tools:\n");
        for (var i = 0; i < 500; i++) sb.Append($"  t{i}: {{kind: process, command: [a]}}\n");
        sb.Append("agents:\n  clerk:\n    model: m\n    tools: [").AppendJoin(", ", Enumerable.Range(0, 500).Select(i => $"nope-{i}")).Append("]\n");

        var result = Load(sb.ToString());

        Assert.Equal(500, result.Diagnostics.Count);
        Assert.All(result.Diagnostics, d => Assert.EndsWith(", t18, t19 and 480 more)", d.Message));
        Assert.Equal("agent 'clerk' uses tool 'nope-0', which is not defined under 'tools' (defined: t0, t1, t2, t3, t4, t5, t6, t7, t8, t9, t10, t11, t12, t13, t14, t15, t16, t17, t18, t19 and 480 more)",
            result.Diagnostics[0].Message);
    }

    [Fact]
    public void LoadFile_LimitsOfTheDocsExample_RefuseAnyAlias()
    {
        var path = Path.Combine(Path.GetTempPath(), $"bureau-limits-{Guid.NewGuid():N}.yaml");
        try
        {
            File.WriteAllText(path, Models + Tool + "    parameters: &p {type: object}\n  u:\n    kind: process\n    command: [a]\n    parameters: *p\n");

            // As in docs/manifest.md, "Limits".
            var limits = new ManifestLimits { MaxFileBytes = 256 * 1024, MaxExpandedNodes = 10_000, MaxAliases = 0 };
            var result = ManifestLoader.LoadFile(path, environment: null, limits);

            Single(result, 12, 17, "alias '*p': aliases are not allowed (the limit is 0)");
            Assert.True(ManifestLoader.LoadFile(path, NoEnvironment).Success);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Theory]
    [InlineData(nameof(ManifestLimits.MaxFileBytes))]
    [InlineData(nameof(ManifestLimits.MaxDepth))]
    [InlineData(nameof(ManifestLimits.MaxAliases))]
    [InlineData(nameof(ManifestLimits.MaxExpandedNodes))]
    public void LoadText_LimitOutOfRange_ThrowsNamingIt(string name)
    {
        var limits = name switch
        {
            nameof(ManifestLimits.MaxFileBytes) => new ManifestLimits { MaxFileBytes = 0 },
            nameof(ManifestLimits.MaxDepth) => new ManifestLimits { MaxDepth = ManifestLimits.MaxDepthCeiling + 1 },
            nameof(ManifestLimits.MaxAliases) => new ManifestLimits { MaxAliases = -1 },
            _ => new ManifestLimits { MaxExpandedNodes = 0 },
        };

        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => ManifestLoader.LoadText(Models, "bureau.yaml", Path.GetTempPath(), NoEnvironment, limits));

        Assert.Equal(name, ex.ParamName);
        Assert.Contains("ManifestLimits." + name, ex.Message);
    }
}
