using Xunit;
using static Bureau.Manifests.Tests.TestSupport;

namespace Bureau.Manifests.Tests;

/// <summary>A process tool's <c>sandbox:</c>.</summary>
public sealed class SandboxManifestTests
{
    [Fact]
    public void Sandbox_Mapping_IsRead()
    {
        var yaml = """
            tools:
              convert:
                kind: process
                command: [python3, convert.py]
                effect: write
                sandbox:
                  writable: [out, /var/lib/convert]
                  network: allow
                  maxCpuTime: 10s
                  maxMemoryMB: 256
                  maxProcesses: 16
            """;
        var result = Load(yaml);

        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        Assert.Empty(ManifestSchemaTests.SchemaErrors(ManifestSchemaTests.YamlAsJson(yaml)));
        var sandbox = Assert.IsType<ProcessToolDefinition>(result.Definitions!.Tools["convert"]).Sandbox!;
        Assert.Equal(["out", "/var/lib/convert"], sandbox.Writable);
        Assert.Equal(SandboxNetwork.Allow, sandbox.Network);
        Assert.Equal(TimeSpan.FromSeconds(10), sandbox.MaxCpuTime);
        Assert.Equal((256, 16, 65534), (sandbox.MaxMemoryMB, sandbox.MaxProcesses, sandbox.User));
    }

    [Fact]
    public void Sandbox_True_UsesTheDefaults_False_IsNone_Absent_IsNone()
    {
        var on = Load("tools:\n  t: { kind: process, command: [x], sandbox: true }\n");
        var off = Load("tools:\n  t: { kind: process, command: [x], sandbox: false }\n");
        var absent = Load("tools:\n  t: { kind: process, command: [x] }\n");

        var sandbox = Assert.IsType<ProcessToolDefinition>(on.Definitions!.Tools["t"]).Sandbox!;
        Assert.Equal((SandboxNetwork.Deny, 0, null), (sandbox.Network, sandbox.Writable.Count, sandbox.MaxMemoryMB));
        Assert.Null(Assert.IsType<ProcessToolDefinition>(off.Definitions!.Tools["t"]).Sandbox);
        Assert.Null(Assert.IsType<ProcessToolDefinition>(absent.Definitions!.Tools["t"]).Sandbox);
    }

    [Fact]
    public void Version2_WriteProcessTool_IsSandboxedByDefault_ReadAndIdempotentAreNot()
    {
        var yaml = """
            version: 2
            tools:
              save: { kind: process, command: [x], effect: write }
              look: { kind: process, command: [x], effect: read }
              sync: { kind: process, command: [x], effect: idempotent }
              tight: { kind: process, command: [x], effect: write, sandbox: { maxProcesses: 8 } }
            """;
        var result = Load(yaml);

        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        Assert.Empty(ManifestSchemaTests.SchemaErrors(ManifestSchemaTests.YamlAsJson(yaml)));
        var tools = result.Definitions!.Tools.Values.OfType<ProcessToolDefinition>().ToDictionary(t => t.Name);
        var save = tools["save"].Sandbox!;
        Assert.Equal((SandboxNetwork.Deny, 0, 65534), (save.Network, save.Writable.Count, save.User));   // every default: nothing writable but /tmp
        Assert.Null(tools["look"].Sandbox);
        Assert.Null(tools["sync"].Sandbox);
        Assert.Equal(8, tools["tight"].Sandbox!.MaxProcesses);
        Assert.All(tools.Values, t => Assert.False(t.SandboxOptedOut));
    }

    [Fact]
    public void Version2_WriteToolWithSandboxFalse_OptsOutExplicitly()
    {
        var result = Load("version: 2\ntools:\n  save: { kind: process, command: [x], effect: write, sandbox: false }\n  look: { kind: process, command: [x], sandbox: false }\n");

        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        var save = Assert.IsType<ProcessToolDefinition>(result.Definitions!.Tools["save"]);
        Assert.Null(save.Sandbox);
        Assert.True(save.SandboxOptedOut);   // warned about at start
        Assert.False(Assert.IsType<ProcessToolDefinition>(result.Definitions.Tools["look"]).SandboxOptedOut);   // a read tool was not sandboxed by default: nothing to opt out of
    }

    [Fact]
    public void DocsSnippet_ToolsMd_Version2Example_SandboxesTheWriteTool_AndTheOptOutIsMarked()
    {
        // docs/tools.md, "On by default for write tools in version: 2 manifests": the YAML block as the page shows it.
        var page = File.ReadAllText(Path.Combine(RepoRoot, "docs", "tools.md"));
        var start = page.IndexOf("```yaml\nversion: 2\n", StringComparison.Ordinal);
        Assert.True(start >= 0, "docs/tools.md has no yaml block starting with version: 2");
        start += "```yaml\n".Length;
        var yaml = page[start..page.IndexOf("```", start, StringComparison.Ordinal)];

        var result = Load(yaml);

        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        Assert.Empty(ManifestSchemaTests.SchemaErrors(ManifestSchemaTests.YamlAsJson(yaml)));
        var refund = Assert.IsType<ProcessToolDefinition>(result.Definitions!.Tools["file_refund"]);
        Assert.Equal(["data"], refund.Sandbox!.Writable);
        var legacy = Assert.IsType<ProcessToolDefinition>(result.Definitions.Tools["legacy_sync"]);
        Assert.Null(legacy.Sandbox);
        Assert.True(legacy.SandboxOptedOut);
    }

    [Theory]
    [InlineData("version: 1\n")]
    [InlineData("")]
    public void Version1OrNoVersion_WriteProcessTool_StaysUnsandboxed(string version)
    {
        var result = Load(version + "tools:\n  save: { kind: process, command: [x], effect: write }\n");

        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        var save = Assert.IsType<ProcessToolDefinition>(result.Definitions!.Tools["save"]);
        Assert.Null(save.Sandbox);   // manifests written before version 2 keep their behaviour
        Assert.False(save.SandboxOptedOut);
    }

    [Fact]
    public void Sandbox_BadNetwork_IsAnErrorAtItsValue()
    {
        var result = Load("tools:\n  t:\n    kind: process\n    command: [x]\n    sandbox: { network: some }\n");
        Single(result, 5, 25, "'network' must be one of deny, allow, not 'some'");
    }

    [Fact]
    public void Sandbox_UnknownKey_IsAnError()
    {
        var result = Load("tools:\n  t:\n    kind: process\n    command: [x]\n    sandbox: { writeable: [a] }\n");
        Assert.False(result.Success);
        Assert.Contains(result.Diagnostics, d => d.Message.Contains("writeable", StringComparison.Ordinal));
    }
}
