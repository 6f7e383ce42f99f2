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
