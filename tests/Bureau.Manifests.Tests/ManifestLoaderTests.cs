using System.Text.Json;
using Bureau.Manifests;
using Xunit;
using static Bureau.Manifests.Tests.TestSupport;

namespace Bureau.Manifests.Tests;

public sealed class ManifestLoaderTests
{
    private const string Base = """
        models:
          m:
            provider: scripted
        tools:
          t:
            kind: process
            command: [python3, t.py]
        """;

    [Fact]
    public void LoadText_WaitAndQueueKeys_ReachTheDefinitions()
    {
        var result = Load("""
            models:
              m: { provider: scripted, rules: [ { reply: ok } ] }
            tools:
              refund:
                kind: process
                command: ["true"]
                effect: write
                inDoubtTimeout: 15m
            agents:
              desk:
                model: m
                tools: [refund]
                allowEmptyInput: true
                budgets: { maxWallTime: 2m, maxQueueTime: 30s }
              strict:
                model: m
            """);
        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        var defs = result.Definitions!;
        Assert.Equal(TimeSpan.FromMinutes(15), defs.Tools["refund"].InDoubtTimeout);
        Assert.True(defs.Agents["desk"].AllowEmptyInput);
        Assert.Equal(TimeSpan.FromSeconds(30), defs.Agents["desk"].Budgets.MaxQueueTime);
        Assert.False(defs.Agents["strict"].AllowEmptyInput);
        Assert.Null(defs.Agents["strict"].Budgets.MaxQueueTime);
    }

    [Fact]
    public void LoadText_AllowEmptyInputNotABoolean_ReportsIt()
    {
        var result = Load("""
            models:
              m: { provider: scripted, rules: [ { reply: ok } ] }
            agents:
              desk: { model: m, allowEmptyInput: maybe }
            """);
        Single(result, 4, 38, "'allowEmptyInput' must be true or false, not 'maybe'");
    }

    [Fact]
    public void LoadText_IssueExample_LoadsAsWritten()
    {
        var result = Load(IssueExample, Env(("OPENAI_API_KEY", "sk-test")));

        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        Assert.Empty(result.Diagnostics);
        var d = result.Definitions!;
        var main = Assert.IsType<OpenAIModelDefinition>(d.Models["main"]);
        Assert.Equal(new Uri("http://127.0.0.1:8089/v1"), main.Endpoint);
        Assert.Equal("gpt-4.1-mini", main.Model);
        Assert.Equal("sk-test", main.ApiKey);
        Assert.Equal(TimeSpan.FromSeconds(100), main.Timeout);
        var demo = Assert.IsType<ScriptedModelDefinition>(d.Models["demo"]);
        Assert.Empty(demo.Rules);

        var ledger = Assert.IsType<ProcessToolDefinition>(d.Tools["ledger"]);
        Assert.Equal(["python3", "ledger.py"], ledger.Command);
        Assert.Equal(Path.GetFullPath(Path.GetTempPath()), ledger.WorkingDirectory);
        Assert.Equal(ToolEffect.Write, ledger.Effect);
        Assert.Equal(InDoubtAction.Wait, ledger.EffectiveInDoubtAction);
        Assert.Equal(TimeSpan.FromSeconds(10), ledger.Timeout);
        Assert.Equal("Append an entry to the ledger", ledger.Description);
        var schema = ledger.Parameters!.Value;
        Assert.Equal("object", schema.GetProperty("type").GetString());
        Assert.Equal("integer", schema.GetProperty("properties").GetProperty("n").GetProperty("type").GetString());
        Assert.Equal("n", schema.GetProperty("required")[0].GetString());

        var echo = Assert.IsType<HttpToolDefinition>(d.Tools["echo"]);
        Assert.Equal("POST", echo.Method);
        Assert.Equal(new Uri("http://127.0.0.1:8090/echo"), echo.Url);
        Assert.Equal(ToolEffect.Idempotent, echo.Effect);
        Assert.Equal(JsonValueKind.Object, echo.Parameters!.Value.GetProperty("properties").ValueKind);

        var clerk = d.Agents["clerk"];
        Assert.Equal("main", clerk.Model);
        Assert.Equal("You record things.", clerk.Instructions);
        Assert.Equal(["ledger", "echo"], clerk.Tools);
        Assert.Equal(20, clerk.Budgets.MaxSteps);
        Assert.Null(clerk.Budgets.MaxTokens);
        Assert.Equal(LoopAction.Stop, clerk.LoopDetection.Action);
    }

    [Fact]
    public void LoadText_IssueExampleWithoutApiKey_ReportsTheVariableAtItsScalar()
    {
        var d = Single(Load(IssueExample), 6, 13, "environment variable 'OPENAI_API_KEY' is not set");
        Assert.Equal("bureau.yaml:6:13: error: environment variable 'OPENAI_API_KEY' is not set (write ${OPENAI_API_KEY:-default} to give a default)", d.ToString());
        Assert.Equal("models.main.apiKey", d.Path);
    }

    [Fact]
    public void LoadText_YamlSyntaxError_ReportsItsPosition()
    {
        var result = Load("""
            models:
              m: { provider: scripted
            agents: {}
            """);
        Assert.False(result.Success);
        var d = Assert.Single(result.Diagnostics);
        Assert.StartsWith("YAML syntax error", d.Message);
        Assert.Equal((2, 16), (d.Line, d.Column));
    }

    [Fact]
    public void LoadText_BadIndentation_ReportsSyntaxErrorAtTheOffendingValue()
    {
        Single(Load("""
            models:
              m:
                provider: scripted
                latency: 5s
               rules: []
            """), 5, 4, "YAML syntax error");
    }

    [Fact]
    public void LoadText_TabIndentation_ReportedAtTheTabsLine_NotTheStartOfTheFile()
    {
        var d = Assert.Single(Load("models:\n  m: { provider: scripted }\nagents:\n  a:\n\tmodel: m\n").Diagnostics);
        Assert.Contains("invalid tab as indentation", d.Message);
        Assert.True((d.Line, d.Column) == (5, 1), d.ToString());
    }

    [Fact]
    public void LoadText_AnApplicationsYamlTag_IsRefusedAtItsPlace_PlainTagsAreNot()
    {
        Single(Load("""
            models:
              m: { provider: scripted }
            agents:
              a:
                model: !Ref m
            """), 5, 12, "YAML tag '!Ref': a manifest is plain YAML");
        Assert.Empty(Load("""
            models:
              m: { provider: !!str scripted }
            agents:
              a: { model: m, instructions: ! "plain" }
            """).Diagnostics);
    }

    [Fact]
    public void LoadText_DuplicateKey_ReportedAtTheSecondKey()
    {
        Single(Load("""
            models:
              m: { provider: scripted }
              m: { provider: scripted }
            """), 3, 3, "duplicate key 'm'");
    }

    [Fact]
    public void LoadText_UnknownKey_SuggestsTheClosest()
    {
        var d = Single(Load(Base + """

            agents:
              clerk:
                model: m
                instrutions: Be brief.
            """), 11, 5, "unknown key 'instrutions' in agent 'clerk'; did you mean 'instructions'?");
        Assert.Equal("agents.clerk.instrutions", d.Path);
    }

    [Fact]
    public void LoadText_UnknownKeyFarFromAll_ListsTheAllowedKeys()
    {
        Single(Load("""
            models:
              m: { provider: scripted, zzzzzzzz: 1 }
            """), 2, 28, "unknown key 'zzzzzzzz' in model 'm'; expected one of provider, rules, latency");
    }

    [Fact]
    public void LoadText_UnknownTopLevelKey_SuggestsTheClosest()
    {
        Single(Load("modles: {}\n"), 1, 1, "unknown top-level key 'modles'; did you mean 'models'?");
    }

    [Theory]
    [InlineData("memory")]
    public void LoadText_ReservedTopLevelKey_IsNotSupportedYet(string key)
    {
        Single(Load($"version: 1\n{key}: {{}}\n"), 2, 1, $"'{key}' is not supported yet in this version of Bureau");
    }

    [Fact]
    public void LoadText_UnsupportedVersion_IsAnError()
    {
        Single(Load("version: 3\n"), 1, 10, "unsupported manifest version 3; this Bureau reads versions 1 and 2");
    }

    [Fact]
    public void LoadText_KeyOfAnotherProvider_SaysWhereItBelongs()
    {
        Single(Load("""
            models:
              m:
                provider: scripted
                endpoint: http://x/v1
            """), 4, 5, "key 'endpoint' does not apply to model 'm' (it belongs to provider 'openai')");
    }

    [Fact]
    public void LoadText_WrongIntegerType_IsReportedAtTheValue()
    {
        Single(Load(Base + """

            agents:
              a:
                model: m
                budgets: { maxSteps: lots }
            """), 11, 26, "'maxSteps' must be a whole number, not 'lots'");
    }

    [Fact]
    public void LoadText_MappingWhereTextExpected_IsReported()
    {
        Single(Load(Base + """

            agents:
              a:
                model: { name: m }
            """), 10, 12, "'model' must be a text value, not a mapping");
    }

    [Fact]
    public void LoadText_CommandNotAList_IsReported()
    {
        Single(Load("""
            tools:
              t:
                kind: process
                command: python3 t.py
            """), 4, 14, "'command' must be a list (argv, no shell)");
    }

    [Theory]
    [InlineData("effect: wrte", 5, 13, "'effect' must be one of read, idempotent, write, not 'wrte'; did you mean 'write'?")]
    [InlineData("onInDoubt: retyr", 5, 16, "'onInDoubt' must be one of wait, retry, fail, not 'retyr'; did you mean 'retry'?")]
    [InlineData("timeout: 10sec", 5, 14, "'timeout' must be a duration such as 500ms, 10s, 2m or 1h, not '10sec'")]
    [InlineData("timeout: 0s", 5, 14, "'timeout' must be longer than zero")]
    [InlineData("maxOutputBytes: -1", 5, 21, "'maxOutputBytes' must be at least 1, not -1")]
    public void LoadText_BadToolValue_IsReportedAtTheValue(string line, int row, int column, string message)
    {
        Single(Load($"""
            tools:
              t:
                kind: process
                command: [a]
                {line}
            """), row, column, message);
    }

    [Fact]
    public void LoadText_BadProvider_SuggestsTheClosest()
    {
        Single(Load("""
            models:
              m:
                provider: opnai
            """), 3, 15, "'provider' must be one of openai, scripted, not 'opnai'; did you mean 'openai'?");
    }

    [Fact]
    public void LoadText_BadKind_SuggestsTheClosest()
    {
        Single(Load("""
            tools:
              t: { kind: proces, command: [a] }
            """), 2, 14, "'kind' must be one of process, http, emit, mcp, a2a, not 'proces'; did you mean 'process'?");
    }

    [Fact]
    public void LoadText_FunctionKind_ExplainsItIsForCSharp()
    {
        Single(Load("tools:\n  t: { kind: function }\n"), 2, 14, "kind 'function' is for tools defined in C#");
    }

    [Fact]
    public void LoadText_BadLoopAction_IsReported()
    {
        Single(Load(Base + """

            agents:
              a:
                model: m
                loop: { action: halt }
            """), 11, 21, "'action' must be one of stop, warn, not 'halt'");
    }

    [Theory]
    [InlineData("500ms", 500)]
    [InlineData("10s", 10_000)]
    [InlineData("2m", 120_000)]
    [InlineData("1h", 3_600_000)]
    public void LoadText_Durations_AreParsed(string text, int milliseconds)
    {
        var result = Load($"models:\n  m: {{ provider: scripted, latency: {text} }}\n");
        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        Assert.Equal(TimeSpan.FromMilliseconds(milliseconds), ((ScriptedModelDefinition)result.Definitions!.Models["m"]).Latency);
    }

    [Fact]
    public void LoadText_MissingRequiredKeys_PointAtTheParentKey()
    {
        var result = Load("""
            models:
              main:
                provider: openai
            tools:
              t:
                kind: http
            """);
        Assert.Equal(
        [
            "bureau.yaml:2:3: error: model 'main' is missing required key 'endpoint'",
            "bureau.yaml:2:3: error: model 'main' is missing required key 'model'",
            "bureau.yaml:5:3: error: tool 't' is missing required key 'url'",
        ], result.Diagnostics.Select(d => d.ToString()));
    }

    [Fact]
    public void LoadText_EmptyDefinition_ReportsMissingKeyAtItsName()
    {
        Single(Load("agents:\n  a:\n"), 2, 3, "agent 'a' is missing required key 'model'");
    }

    [Fact]
    public void LoadText_UndefinedModel_SuggestsTheClosest()
    {
        Single(Load(Base + """

            agents:
              a:
                model: n
            """), 10, 12, "agent 'a' uses model 'n', which is not defined under 'models'; did you mean 'm'?");
    }

    [Fact]
    public void LoadText_UndefinedTool_IsReportedAtTheListItem()
    {
        Single(Load(Base + """

            agents:
              a:
                model: m
                tools: [t, lookup]
            """), 11, 16, "agent 'a' uses tool 'lookup', which is not defined under 'tools' (defined: t)");
    }

    [Fact]
    public void LoadText_InvalidEndpoint_IsReported()
    {
        Single(Load("""
            models:
              main: { provider: openai, endpoint: localhost:8080, model: x }
            """), 2, 39, "'endpoint' must be an absolute http:// or https:// address, not 'localhost:8080'");
    }

    [Fact]
    public void LoadText_InvalidJsonSchema_IsReportedAtTheOffendingValue()
    {
        var d = Single(Load("""
            tools:
              t:
                kind: process
                command: [a]
                parameters:
                  type: object
                  properties:
                    n: { type: integr }
            """), 8, 20, "invalid JSON Schema in 'parameters' of tool 't' at /properties/n/type");
        Assert.Contains("integr", d.Message);
    }

    [Fact]
    public void LoadText_SchemaKeywordWithWrongType_IsReported()
    {
        Single(Load("""
            tools:
              t:
                kind: process
                command: [a]
                parameters: { type: object, required: n }
            """), 5, 43, "invalid JSON Schema in 'parameters' of tool 't' at /required");
    }

    [Fact]
    public void LoadText_NonObjectParameters_IsReported()
    {
        Single(Load("""
            tools:
              t:
                kind: process
                command: [a]
                parameters: { type: string }
            """), 5, 25, "must describe an object (type: object)");
    }

    [Fact]
    public void LoadText_InvalidRegexInRule_IsReportedAtTheRegex()
    {
        Single(Load("""
            models:
              m:
                provider: scripted
                rules:
                  - when: { input: "order (\\d+" }
                    reply: hi
            """), 5, 24, "invalid regular expression in 'input'");
    }

    [Fact]
    public void LoadText_UnknownPlaceholder_SuggestsTheCaptureGroup()
    {
        Single(Load("""
            models:
              m:
                provider: scripted
                rules:
                  - when: { input: 'order (?<order>\d+)' }
                    reply: "Order {{ordr}}"
            """), 6, 16, "unknown placeholder '{{ordr}}'");
    }

    [Fact]
    public void LoadText_BuiltInPlaceholders_AreAccepted()
    {
        var result = Load("""
            models:
              m:
                provider: scripted
                rules:
                  - calls: [ { tool: t, args: { key: "{{input}}-{{turnIndex}}", n: "{{turn}}" } } ]
                    reply: "{{last}}"
            """);
        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
    }

    [Fact]
    public void LoadText_RuleWithoutAnswer_IsReported()
    {
        Single(Load("""
            models:
              m:
                provider: scripted
                rules:
                  - when: { turn: 1 }
            """), 5, 9, "rule 1 needs 'reply' or 'calls'");
    }

    [Fact]
    public void LoadText_BadTurn_IsReported()
    {
        Single(Load("""
            models:
              m:
                provider: scripted
                rules:
                  - when: { turn: "4-2" }
                    reply: x
            """), 5, 23, "'turn' must be a turn number from 1");
    }

    [Fact]
    public void LoadText_ScriptedRules_MapToDefinitions()
    {
        var result = Load("""
            models:
              demo:
                provider: scripted
                latency: 50ms
                rules:
                  - when: { turn: 1, input: 'refund.*order (?<order>\d+)' }
                    calls:
                      - tool: lookup_customer
                        args: { order: "{{order}}", n: 3, flags: [true, null], nested: { text: "{{1}}" } }
                  - when: { tool: lookup_customer, match: '"vip":\s*true' }
                    reply: "VIP customer, escalating."
                  - when: { turn: "2-4", user: 'x' }
                    calls: [ { tool: file_refund } ]
                  - when: { turn: "3+" }
                    reply: "late"
                  - reply: "Done: {{last}} ({{turn}}, {{input}})"
            """);
        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        var model = Assert.IsType<ScriptedModelDefinition>(result.Definitions!.Models["demo"]);
        Assert.Equal(TimeSpan.FromMilliseconds(50), model.Latency);
        Assert.Equal(5, model.Rules.Count);

        var r1 = model.Rules[0];
        Assert.Equal((1, 1), (r1.When!.TurnFrom, r1.When.TurnTo));
        Assert.Equal(@"refund.*order (?<order>\d+)", r1.When.Input);
        Assert.Equal("bureau.yaml:6:9", r1.Source);
        var call = Assert.Single(r1.Calls);
        Assert.Equal("lookup_customer", call.Tool);
        Assert.Equal("""{"order":"{{order}}","n":3,"flags":[true,null],"nested":{"text":"{{1}}"}}""", call.Arguments.ToJsonString());

        Assert.Equal("lookup_customer", model.Rules[1].When!.Tool);
        Assert.Equal("\"vip\":\\s*true", model.Rules[1].When!.Match);
        Assert.Equal("VIP customer, escalating.", model.Rules[1].Reply);
        Assert.Equal((2, 4), (model.Rules[2].When!.TurnFrom, model.Rules[2].When!.TurnTo));
        Assert.Equal("x", model.Rules[2].When!.User);
        Assert.Equal("file_refund", model.Rules[2].Calls[0].Tool);
        Assert.Empty(model.Rules[2].Calls[0].Arguments);
        Assert.Equal((3, (int?)null), (model.Rules[3].When!.TurnFrom, model.Rules[3].When!.TurnTo));
        Assert.Null(model.Rules[4].When);
        Assert.Equal("bureau.yaml:16:9", model.Rules[4].Source);
    }

    [Fact]
    public void LoadText_ProcessAndHttpTools_MapEveryKey()
    {
        var result = Load("""
            tools:
              p:
                kind: process
                command: ["./bin/tool", "--flag"]
                env: [API_TOKEN, HOME2]
                maxOutputBytes: 2048
                onInDoubt: fail
              q:
                kind: process
                command: [x]
                env: { MODE: fast, PASS: }
              h:
                kind: http
                url: https://api.example.com/v1/things
                headers: { Authorization: "Bearer ${TOKEN}", X-Count: 3 }
                maxResponseBytes: 100
                timeout: 2m
              g:
                kind: http
                method: get
                url: http://127.0.0.1:9/q
            """, Env(("TOKEN", "abc")));
        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        var tools = result.Definitions!.Tools;
        var p = (ProcessToolDefinition)tools["p"];
        Assert.Equal(["./bin/tool", "--flag"], p.Command);
        Assert.Equal(new Dictionary<string, string?> { ["API_TOKEN"] = null, ["HOME2"] = null }, p.Environment);
        Assert.Equal(2048, p.MaxOutputBytes);
        Assert.Equal(InDoubtAction.Fail, p.EffectiveInDoubtAction);
        Assert.Equal(ToolEffect.Read, p.Effect);
        Assert.Null(p.Timeout);
        Assert.Null(p.Parameters);
        var q = (ProcessToolDefinition)tools["q"];
        Assert.Equal(new Dictionary<string, string?> { ["MODE"] = "fast", ["PASS"] = null }, q.Environment);
        var h = (HttpToolDefinition)tools["h"];
        Assert.Equal("POST", h.Method);
        Assert.Equal("Bearer abc", h.Headers["Authorization"]);
        Assert.Equal("3", h.Headers["X-Count"]);
        Assert.Equal(100, h.MaxResponseBytes);
        Assert.Equal(TimeSpan.FromMinutes(2), h.Timeout);
        Assert.Equal("GET", ((HttpToolDefinition)tools["g"]).Method);
    }

    [Fact]
    public void LoadText_AgentSettings_MapEveryKey()
    {
        var result = Load(Base + """

            agents:
              a:
                model: m
                description: Does things.
                instructions: |
                  Line one.
                  Line two.
                tools: [t]
                budgets: { maxSteps: 5, maxTokens: 10000000000, maxWallTime: 90s }
                loop: { maxRepeatedCalls: 0, maxTurnsWithoutProgress: 7, action: warn }
            """);
        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        var a = result.Definitions!.Agents["a"];
        Assert.Equal("Does things.", a.Description);
        Assert.Equal("Line one.\nLine two.\n", a.Instructions);
        Assert.Equal(["t"], a.Tools);
        Assert.Equal(5, a.Budgets.MaxSteps);
        Assert.Equal(10_000_000_000L, a.Budgets.MaxTokens);
        Assert.Equal(TimeSpan.FromSeconds(90), a.Budgets.MaxWallTime);
        Assert.Equal(0, a.LoopDetection.MaxRepeatedCalls);
        Assert.Equal(7, a.LoopDetection.MaxTurnsWithoutProgress);
        Assert.Equal(LoopAction.Warn, a.LoopDetection.Action);
    }

    [Fact]
    public void LoadText_ManyProblems_AreAllReportedInFileOrder()
    {
        var result = Load("""
            models:
              main:
                provider: openai
                endpoint: http://127.0.0.1:8089/v1
                model: gpt-4.1-mini
                apiKey: ${MISSING_KEY}
                temprature: 0.2
            tools:
              t:
                kind: process
                command: [a]
                effect: sometimes
                timeout: soon
                parameters: { type: object, properties: { n: { type: 7 } } }
            agents:
              clerk:
                modle: main
                tools: [t, nope]
                budgets: { maxSteps: lots }
            memory: {}
            """);
        Assert.False(result.Success);
        (int Line, int Column, string Start)[] expected =
        [
            (6, 13, "environment variable 'MISSING_KEY' is not set"),
            (7, 5, "unknown key 'temprature' in model 'main'; did you mean 'temperature'?"),
            (12, 13, "'effect' must be one of read, idempotent, write, not 'sometimes'"),
            (13, 14, "'timeout' must be a duration"),
            (14, 58, "invalid JSON Schema in 'parameters' of tool 't' at /properties/n/type"),
            (16, 3, "agent 'clerk' is missing required key 'model'"),
            (17, 5, "unknown key 'modle' in agent 'clerk'; did you mean 'model'?"),
            (18, 16, "agent 'clerk' uses tool 'nope', which is not defined under 'tools'"),
            (19, 26, "'maxSteps' must be a whole number, not 'lots'"),
            (20, 1, "'memory' is not supported yet in this version of Bureau"),
        ];
        Assert.Equal(expected.Select(e => (e.Line, e.Column)), result.Diagnostics.Select(d => (d.Line, d.Column)));
        foreach (var (e, d) in expected.Zip(result.Diagnostics))
            Assert.StartsWith(e.Start, d.Message);
    }

    [Fact]
    public void LoadText_EmptyManifest_IsAnError()
    {
        Single(Load("# nothing here\n"), 1, 1, "the manifest is empty");
    }

    [Fact]
    public void LoadText_NotAMapping_IsAnError()
    {
        Single(Load("- models\n"), 1, 1, "the manifest must be a mapping");
    }

    [Fact]
    public void LoadText_EmptySections_AreValid()
    {
        var result = Load("version: 1\nmodels:\ntools: {}\nagents:\n");
        Assert.True(result.Success);
        Assert.Empty(result.Definitions!.Agents);
    }

    [Fact]
    public void LoadFile_RelativePath_KeepsTheNameAsGivenAndRunsToolsInTheManifestFolder()
    {
        var dir = Directory.CreateTempSubdirectory("bureau-manifest-");
        try
        {
            File.WriteAllText(Path.Combine(dir.FullName, "bureau.yaml"), "tools:\n  t: { kind: process, command: [a], effect: maybe }\n");
            var relative = Path.GetRelativePath(Directory.GetCurrentDirectory(), Path.Combine(dir.FullName, "bureau.yaml"));
            var bad = ManifestLoader.LoadFile(relative, NoEnvironment);
            Assert.Equal($"{relative}:2:45: error: 'effect' must be one of read, idempotent, write, not 'maybe'", Assert.Single(bad.Diagnostics).ToString());

            File.WriteAllText(Path.Combine(dir.FullName, "bureau.yaml"), "tools:\n  t: { kind: process, command: [a] }\n");
            var good = ManifestLoader.LoadFile(relative, NoEnvironment);
            Assert.True(good.Success);
            Assert.Equal(dir.FullName, ((ProcessToolDefinition)good.Definitions!.Tools["t"]).WorkingDirectory);
            Assert.Equal(Path.Combine(dir.FullName, "bureau.yaml"), good.Definitions.SourcePath);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public void LoadFile_MissingFile_IsADiagnostic()
    {
        var result = ManifestLoader.LoadFile("no/such/bureau.yaml", NoEnvironment);
        Assert.Equal("no/such/bureau.yaml:1:1: error: no such file", Assert.Single(result.Diagnostics).ToString());
    }

    [Fact]
    public void LoadFile_ADirectory_IsADiagnosticSayingSo()
    {
        var dir = Directory.CreateTempSubdirectory("bureau-manifest-dir");
        try
        {
            var result = ManifestLoader.LoadFile(dir.FullName, NoEnvironment);
            Assert.Equal($"{dir.FullName}:1:1: error: is a directory, not a manifest file; name the manifest in it (for example bureau.yaml)",
                Assert.Single(result.Diagnostics).ToString());
        }
        finally
        {
            dir.Delete();
        }
    }

    [Fact]
    public void LoadFile_NullEnvironment_UsesTheProcessEnvironment()
    {
        var name = "BUREAU_MANIFEST_TEST_" + Guid.NewGuid().ToString("N");
        Environment.SetEnvironmentVariable(name, "from-process");
        try
        {
            var result = ManifestLoader.LoadText($"models:\n  m: {{ provider: openai, endpoint: 'http://h/v1', model: '${{{name}}}' }}\n", "x.yaml", ".");
            Assert.True(result.Success, string.Join("\n", result.Diagnostics));
            Assert.Equal("from-process", ((OpenAIModelDefinition)result.Definitions!.Models["m"]).Model);
        }
        finally
        {
            Environment.SetEnvironmentVariable(name, null);
        }
    }
}
