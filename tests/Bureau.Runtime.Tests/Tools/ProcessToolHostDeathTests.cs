using System.Diagnostics;
using System.Globalization;
using System.Text;
using Bureau.Tests.Support;
using Bureau.Tools;
using Xunit;
using static Bureau.Tests.Tools.ToolTestSupport;

namespace Bureau.Tests.Tools;

/// <summary>
/// A process tool must not outlive its host. The host here is real: this test assembly is an executable
/// (xunit v3), started again to run only <see cref="Host_RunsAToolUntilKilled"/>, an explicit test that
/// calls a <see cref="ProcessTool"/> and never returns; the test SIGKILLs that process while its tool runs.
/// </summary>
public sealed class ProcessToolHostDeathTests : IDisposable
{
    private const string HostDirectoryVariable = "BUREAU_TEST_TOOL_HOST_DIR";

    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task InvokeAsync_HostSigkilled_ToolAndItsDescendantsDie()
    {
        using var host = StartHost(out var hostOutput);
        int? tool = null, grandchild = null;
        try
        {
            await WaitUntilAsync(
                () => File.Exists(_dir.File("tool.pid")) || host.HasExited,
                $"the host process (pid {host.Id}) to call the tool 'sleeper' and the tool to write tool.pid", seconds: 60);
            Assert.False(host.HasExited, $"the host exited (code {(host.HasExited ? host.ExitCode : 0)}) before its tool started:\n{hostOutput}");
            tool = ReadPid(_dir.File("tool.pid"));
            grandchild = ReadPid(_dir.File("grandchild.pid"));
            Assert.True(IsAncestor(host.Id, tool.Value), $"the tool (pid {tool}) should run under the host (pid {host.Id})");

            host.Kill(); // SIGKILL: no managed code of the host runs again
            await host.WaitForExitAsync(TestContext.Current.CancellationToken);

            await AssertGoneAsync(tool.Value, "the tool 'sleeper' of the SIGKILLed host");
            await AssertGoneAsync(grandchild.Value, "the tool's grandchild 'sleep 120' of the SIGKILLed host");
        }
        finally
        {
            if (!host.HasExited) host.Kill();
            foreach (var pid in new[] { tool, grandchild })
                if (pid is { } p && !IsGone(p)) Process.GetProcessById(p).Kill();
        }
    }

    /// <summary>The host side of <see cref="InvokeAsync_HostSigkilled_ToolAndItsDescendantsDie"/>: runs only in the process that test starts.</summary>
    [Fact(Explicit = true)]
    public async Task Host_RunsAToolUntilKilled()
    {
        var dir = Environment.GetEnvironmentVariable(HostDirectoryVariable);
        Assert.SkipWhen(dir is null, $"runs only as the host process of {nameof(InvokeAsync_HostSigkilled_ToolAndItsDescendantsDie)}");
        var tool = new ToolFactory().Create(new ProcessToolDefinition
        {
            Name = "sleeper",
            Command = ["sh", "-c", "sleep 120 & echo $! > grandchild.pid; echo $$ > tool.tmp; mv tool.tmp tool.pid; wait"],
            WorkingDirectory = dir,
            Timeout = TimeSpan.FromMinutes(5),
        });

        var outcome = await tool.InvokeAsync(Invocation("sleeper"), TestContext.Current.CancellationToken);

        Assert.Fail($"the host should have been killed while its tool ran; the tool returned {outcome}");
    }

    private Process StartHost(out StringBuilder output)
    {
        var assembly = typeof(ProcessToolHostDeathTests).Assembly.Location;
        var appHost = Path.ChangeExtension(assembly, null);
        var psi = File.Exists(appHost) ? new ProcessStartInfo(appHost) : new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet") { ArgumentList = { assembly } };
        foreach (var a in new[] { "-method", $"{typeof(ProcessToolHostDeathTests).FullName}.{nameof(Host_RunsAToolUntilKilled)}", "-explicit", "only", "-noColor" })
            psi.ArgumentList.Add(a);
        psi.UseShellExecute = false;
        // Redirected: when the test runs under `dotnet test`, this process's stdout is the runner's protocol.
        psi.RedirectStandardOutput = true;
        psi.RedirectStandardError = true;
        psi.Environment[HostDirectoryVariable] = _dir.Path;
        var host = Process.Start(psi)!;
        var log = new StringBuilder();
        host.OutputDataReceived += (_, e) => { lock (log) log.AppendLine(e.Data); };
        host.ErrorDataReceived += (_, e) => { lock (log) log.AppendLine(e.Data); };
        host.BeginOutputReadLine();
        host.BeginErrorReadLine();
        output = log;
        return host;
    }

    private static bool IsAncestor(int ancestor, int pid)
    {
        while (pid > 1)
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            pid = int.Parse(stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[1], CultureInfo.InvariantCulture);
            if (pid == ancestor) return true;
        }
        return false;
    }
}
