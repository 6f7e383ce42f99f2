using Xunit;
using static Bureau.Manifests.Tests.TestSupport;

namespace Bureau.Manifests.Tests;

/// <summary>
/// Manifests the docs show as complete, read from the pages as written: a reader who copies one gets what the page
/// says (a valid manifest, or exactly the diagnostics the page lists).
/// </summary>
public sealed class DocsManifestSnippetTests
{
    [Fact]
    public void ManifestMd_ScriptedRulesExample_Loads()
    {
        // docs/manifest.md, "Scripted model rules": every placeholder must be a capture group of its own rule's regexes.
        var yaml = YamlBlock("manifest.md", "models:\n  demo:\n    provider: scripted\n");

        var result = Load(yaml);

        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        Assert.Empty(ManifestSchemaTests.SchemaErrors(ManifestSchemaTests.YamlAsJson(yaml)));
        var demo = Assert.IsType<ScriptedModelDefinition>(result.Definitions!.Models["demo"]);
        Assert.Equal(4, demo.Rules.Count);
    }

    [Fact]
    public void ManifestMd_DiagnosticsExample_GivesTheListedErrors()
    {
        // docs/manifest.md, "Diagnostics": the example manifest, then the lines `bureau validate bureau.yaml` prints.
        var yaml = YamlBlock("manifest.md", "models:\n  main:\n    provider: openai\n    endpoint: http://127.0.0.1:8089/v1\n");
        var page = Page("manifest.md");
        var gives = page.IndexOf("gives (`bureau validate bureau.yaml`, exit code 2):\n\n```\n", StringComparison.Ordinal);
        Assert.True(gives >= 0, "docs/manifest.md has no 'gives (`bureau validate bureau.yaml`...' block");
        gives = page.IndexOf("```\n", gives, StringComparison.Ordinal) + 4;
        var expected = page[gives..page.IndexOf("```", gives, StringComparison.Ordinal)]
            .Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Where(l => l.StartsWith("bureau.yaml:", StringComparison.Ordinal))
            .ToArray();

        var result = Load(yaml);

        Assert.False(result.Success);
        Assert.Equal(expected, result.Diagnostics.Select(d => d.ToString()).ToArray());
    }

    [Fact]
    public void GettingStarted_WriteYourOwn_Loads()
    {
        // docs/getting-started.md, "5. Write your own": the timekeeper manifest.
        var yaml = YamlBlock("getting-started.md", "# yaml-language-server: $schema=../docs/manifest.schema.json\nmodels:\n  demo:\n");

        var result = Load(yaml);

        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        Assert.Empty(ManifestSchemaTests.SchemaErrors(ManifestSchemaTests.YamlAsJson(yaml)));
        Assert.Equal(["clock"], result.Definitions!.Agents["timekeeper"].Tools);
    }

    /// <summary>Scripted models named <c>main</c> and <c>small</c>, for the pages' fragments that use models defined elsewhere.</summary>
    private const string ScriptedMainAndSmall = "models:\n  main: { provider: scripted }\n  small: { provider: scripted }\n";

    [Fact]
    public void ModelsMd_OpenAiExample_LoadsWithTheDefaultsItNames()
    {
        // docs/models.md, "openai": apiKey comes from ${OPENAI_API_KEY}.
        var yaml = YamlBlock("models.md", "models:\n  main:\n    provider: openai\n");

        var result = Load(yaml, Env(("OPENAI_API_KEY", "sk-test")));

        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        Assert.Empty(ManifestSchemaTests.SchemaErrors(ManifestSchemaTests.YamlAsJson(yaml)));
        var main = Assert.IsType<OpenAIModelDefinition>(result.Definitions!.Models["main"]);
        Assert.Equal("sk-test", main.ApiKey);
        Assert.Equal(0.2f, main.Temperature);
        Assert.Equal(1024, main.MaxOutputTokens);
        Assert.Equal(TimeSpan.FromSeconds(100), main.Timeout);
        Assert.Equal(OpenAIModelDefinition.DefaultTimeout, main.Timeout);       // the page's 100s is the default
        Assert.Equal(OpenAIModelDefinition.DefaultMaxRetries, main.MaxRetries); // and its maxRetries: 5
    }

    [Fact]
    public void ModelsMd_ScriptedExample_Loads()
    {
        // docs/models.md, "scripted: the deterministic model": the complete example.
        var yaml = YamlBlock("models.md", "models:\n  demo:\n    provider: scripted\n");

        var result = Load(yaml);

        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        Assert.Empty(ManifestSchemaTests.SchemaErrors(ManifestSchemaTests.YamlAsJson(yaml)));
        var demo = Assert.IsType<ScriptedModelDefinition>(result.Definitions!.Models["demo"]);
        Assert.Equal(TimeSpan.FromMilliseconds(50), demo.Latency);
        Assert.Equal(4, demo.Rules.Count);
    }

    [Fact]
    public void ToolsMd_Examples_Load()
    {
        // docs/tools.md: the process, HTTP and sandbox examples, and the version 2 manifest.
        var process = YamlBlock("tools.md", "tools:\n  ledger:\n");
        var http = YamlBlock("tools.md", "tools:\n  echo:\n");
        var sandbox = YamlBlock("tools.md", "tools:\n  convert:\n");
        var version2 = YamlBlock("tools.md", "version: 2\ntools:\n");

        foreach (var yaml in new[] { process, http, sandbox, version2 })
        {
            var loaded = Load(yaml);
            Assert.True(loaded.Success, string.Join("\n", loaded.Diagnostics));
            Assert.Empty(ManifestSchemaTests.SchemaErrors(ManifestSchemaTests.YamlAsJson(yaml)));
        }

        var ledger = Assert.IsType<ProcessToolDefinition>(Load(process).Definitions!.Tools["ledger"]);
        Assert.Equal(ToolEffect.Write, ledger.Effect);
        Assert.Equal(TimeSpan.FromSeconds(10), ledger.Timeout);
        Assert.Equal(ToolEffect.Idempotent, Assert.IsType<HttpToolDefinition>(Load(http).Definitions!.Tools["echo"]).Effect);
        var convert = Assert.IsType<ProcessToolDefinition>(Load(sandbox).Definitions!.Tools["convert"]);
        Assert.Equal(256, convert.Sandbox!.MaxMemoryMB);
        Assert.Equal(32, convert.Sandbox.MaxProcesses);
        Assert.NotNull(Assert.IsType<ProcessToolDefinition>(Load(sandbox).Definitions!.Tools["lint"]).Sandbox);
        var v2 = Load(version2).Definitions!.Tools;
        Assert.NotNull(Assert.IsType<ProcessToolDefinition>(v2["file_refund"]).Sandbox);
        Assert.True(Assert.IsType<ProcessToolDefinition>(v2["legacy_sync"]).SandboxOptedOut);
    }

    [Fact]
    public void McpMd_Example_Loads()
    {
        // docs/mcp.md, "Tools from MCP servers": a stdio and an HTTP server, and an agent that lists both.
        var yaml = ScriptedMainAndSmall + YamlBlock("mcp.md", "tools:\n  files:");

        var result = Load(yaml);

        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        Assert.Empty(ManifestSchemaTests.SchemaErrors(ManifestSchemaTests.YamlAsJson(yaml)));
        var files = Assert.IsType<McpServerToolDefinition>(result.Definitions!.Tools["files"]);
        Assert.Equal("files_", files.EffectivePrefix);
        Assert.Equal(["move_file"], files.Exclude);
        Assert.Equal(ToolEffect.Idempotent, files.Effects["create_directory"]);
        var crm = Assert.IsType<McpServerToolDefinition>(result.Definitions.Tools["crm"]);
        Assert.Equal("CRM_MCP_TOKEN", crm.BearerTokenVariable);
        Assert.Equal("crm_", crm.EffectivePrefix);
        Assert.Equal(["files", "crm"], result.Definitions.Agents["clerk"].Tools);
    }

    [Fact]
    public void MemoryMd_Example_Loads()
    {
        // docs/memory.md, "The manifest".
        var yaml = ScriptedMainAndSmall + YamlBlock("memory.md", "agents:\n  billing:\n");

        var result = Load(yaml);

        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        Assert.Empty(ManifestSchemaTests.SchemaErrors(ManifestSchemaTests.YamlAsJson(yaml)));
        var memory = result.Definitions!.Agents["billing"].Memory!;
        Assert.Equal(["team", "user"], memory.Scopes);
        Assert.Equal(["remember", "recall"], memory.Tools);
        Assert.Equal("support-desk", memory.Team);
        Assert.Equal("acme", memory.Tenant);
        Assert.Equal(8000, memory.Window!.MaxTokens);
        Assert.Equal(WindowOverflow.Summarize, memory.Window.Overflow);
        Assert.Equal("small", memory.Window.SummaryModel);
    }

    [Fact]
    public void WorkforceMd_Examples_Load()
    {
        // docs/workforce.md: "The manifest", then "Tasks from a trigger" (whose skills are the first one's members').
        var members = ScriptedMainAndSmall + YamlBlock("workforce.md", "agents:\n  desk-triage:");
        var triggers = YamlBlock("workforce.md", "triggers:\n  invoices:");

        var result = Load(members);
        var both = Load(members + triggers, Env(("INVOICES_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), ("TICKETS_SECRET", "s2")));

        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        Assert.Empty(ManifestSchemaTests.SchemaErrors(ManifestSchemaTests.YamlAsJson(members)));
        Assert.Equal("desk", result.Definitions!.Workforce.Board);
        Assert.True(result.Definitions.Workforce.Members["desk-triage"].CanDelegate);
        Assert.Equal(2, result.Definitions.Workforce.Members["desk-technical"].Concurrency);
        Assert.True(both.Success, string.Join("\n", both.Diagnostics));
        Assert.Equal("billing", both.Definitions!.Triggers["invoices"].Workforce!.Skill);
    }

    private static string Page(string page) =>
        File.ReadAllText(Path.Combine(RepoRoot, "docs", page)).ReplaceLineEndings("\n");

    /// <summary>The body of the page's first <c>```yaml</c> block that starts with <paramref name="start"/>.</summary>
    private static string YamlBlock(string page, string start)
    {
        var text = Page(page);
        var at = text.IndexOf("```yaml\n" + start, StringComparison.Ordinal);
        Assert.True(at >= 0, $"docs/{page} has no yaml block starting with {start.Split('\n')[0]}");
        at += "```yaml\n".Length;
        return text[at..text.IndexOf("```", at, StringComparison.Ordinal)];
    }
}
