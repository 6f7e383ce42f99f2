using System.Text.Json;
using System.Text.Json.Nodes;
using Bureau.Manifests;
using Json.Schema;
using Xunit;
using YamlDotNet.RepresentationModel;
using static Bureau.Manifests.Tests.TestSupport;

namespace Bureau.Manifests.Tests;

public sealed class ManifestSchemaTests
{
    private static readonly JsonSchema s_schema = JsonSchema.FromText(ManifestSchema.Json, new BuildOptions { SchemaRegistry = new SchemaRegistry() });

    /// <summary>The YAML as written (no environment substitution), as JSON: what an editor checks.</summary>
    internal static JsonElement YamlAsJson(string yaml)
    {
        var stream = new YamlStream();
        stream.Load(new StringReader(yaml));
        var ok = true;
        var node = YamlJson.Convert(stream.Documents[0].RootNode, s => s.Value, ref ok);
        Assert.True(ok);
        using var doc = JsonDocument.Parse(node!.ToJsonString());
        return doc.RootElement.Clone();
    }

    internal static IReadOnlyList<string> SchemaErrors(JsonElement instance)
    {
        var results = s_schema.Evaluate(instance, new EvaluationOptions { OutputFormat = OutputFormat.List });
        if (results.IsValid) return [];
        return [.. (results.Details ?? []).Where(d => !d.IsValid && d.Errors is not null)
            .SelectMany(d => d.Errors!.Select(e => $"{d.InstanceLocation}: {e.Value}"))];
    }

    [Fact]
    public void Json_IsTheFilePublishedInDocs()
    {
        Assert.Equal(File.ReadAllText(Path.Combine(RepoRoot, "docs", "manifest.schema.json")), ManifestSchema.Json);
    }

    [Fact]
    public void Json_IsAValidDraft202012Schema()
    {
        using var doc = JsonDocument.Parse(ManifestSchema.Json);
        Assert.True(MetaSchemas.Draft202012.Evaluate(doc.RootElement).IsValid);
        Assert.Equal("https://json-schema.org/draft/2020-12/schema", doc.RootElement.GetProperty("$schema").GetString());
    }

    [Fact]
    public void Json_AcceptsTheIssueExample()
    {
        Assert.Empty(SchemaErrors(YamlAsJson(IssueExample)));
    }

    [Theory]
    [InlineData("agents:\n  a: { modle: m }\n")]
    [InlineData("tools:\n  t: { kind: process, command: [a], effect: sometimes }\n")]
    [InlineData("tools:\n  t: { kind: http }\n")]
    [InlineData("models:\n  m: { provider: scripted, endpoint: 'http://x' }\n")]
    [InlineData("agents:\n  a: { model: m, budgets: { maxSteps: lots } }\n")]
    [InlineData("models:\n  m: { provider: scripted, latency: 10 seconds }\n")]
    [InlineData("agents:\n  a: { model: m }\ntriggers:\n  t: { kind: webhook, agent: a }\n")]
    [InlineData("agents:\n  a: { model: m }\ntriggers:\n  t: { kind: schedule, agent: a, cron: '* * * * *', catchUp: sometimes }\n")]
    [InlineData("agents:\n  a: { model: m }\nteams:\n  t: { pattern: router, members: [a] }\n")]
    [InlineData("agents:\n  a: { model: m }\nteams:\n  t: { pattern: pipeline, members: [a] }\n")]
    public void Json_RejectsWhatTheLoaderRejects(string yaml)
    {
        Assert.NotEmpty(SchemaErrors(YamlAsJson(yaml)));
        Assert.False(Load(yaml).Success);
    }

    [Fact]
    public void Json_AcceptsEnvironmentReferencesInTypedValues()
    {
        Assert.Empty(SchemaErrors(YamlAsJson("models:\n  m: { provider: scripted, latency: '${LAT:-5ms}' }\nagents:\n  a: { model: m, budgets: { maxSteps: '${STEPS}' } }\n")));
    }

    public static TheoryData<string> SampleManifests()
    {
        var data = new TheoryData<string>();
        foreach (var file in SampleFiles()) data.Add(file);
        return data;
    }

    private static IEnumerable<string> SampleFiles() =>
        Directory.EnumerateFiles(Path.Combine(RepoRoot, "samples"), "bureau.yaml", SearchOption.AllDirectories)
            .Select(f => Path.GetRelativePath(RepoRoot, f))
            .Order(StringComparer.Ordinal);

    [Theory]
    [MemberData(nameof(SampleManifests))]
    public void Sample_PassesTheSchemaAndLoadsWithoutDiagnostics(string relativePath)
    {
        var path = Path.Combine(RepoRoot, relativePath);
        Assert.Empty(SchemaErrors(YamlAsJson(File.ReadAllText(path))));
        var result = ManifestLoader.LoadFile(path, NoEnvironment);
        Assert.Empty(result.Diagnostics);
        Assert.True(result.Success);
    }

    [Fact]
    public void SampleManifests_IncludeTheSupportDesk()
    {
        Assert.Contains(Path.Combine("samples", "support-desk", "bureau.yaml"), SampleFiles());
    }
}
