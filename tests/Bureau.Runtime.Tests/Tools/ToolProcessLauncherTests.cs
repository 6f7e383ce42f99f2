using System.Diagnostics;
using Bureau.Tests.Support;
using Bureau.Tools;
using Xunit;
using static Bureau.Tests.Tools.ToolTestSupport;

namespace Bureau.Tests.Tools;

public sealed class ToolProcessLauncherTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task CreateStartInfo_ParentIsNotTheHost_ProgramNeverRuns()
    {
        // As if the host died between the fork and the arming of the parent-death signal: the launcher's
        // parent is not the host it was told about (pid 1 here), so it must not start the program.
        using var arguments = ToolArgumentsFile.Create("""{"n":1}"""u8);
        var psi = ToolProcessLauncher.CreateStartInfo(
            "/bin/sh", ["-c", "cat > ran.json"], _dir.Path, new Dictionary<string, string> { ["PATH"] = "/usr/bin:/bin" }, arguments.Path, hostPid: 1);

        using var launcher = Process.Start(psi)!;
        await launcher.WaitForExitAsync(TestContext.Current.CancellationToken);

        Assert.Equal(ToolProcessLauncher.OrphanedExitCode, launcher.ExitCode);
        Assert.False(File.Exists(_dir.File("ran.json")), "the program ran although its launcher had lost the host");
    }

    [Fact]
    public async Task CreateStartInfo_ParentIsTheHost_ProgramReadsTheWholeArgumentsAsStdin()
    {
        using var arguments = ToolArgumentsFile.Create("""{"n":1}"""u8);
        var psi = ToolProcessLauncher.CreateStartInfo(
            "/bin/sh", ["-c", "cat > ran.json"], _dir.Path, new Dictionary<string, string> { ["PATH"] = "/usr/bin:/bin" }, arguments.Path, Environment.ProcessId);

        using var launcher = await ToolProcessLauncher.StartAsync(psi);
        await launcher.WaitForExitAsync(TestContext.Current.CancellationToken);

        Assert.Equal(0, launcher.ExitCode);
        Assert.Equal("""{"n":1}""", File.ReadAllText(_dir.File("ran.json")));
    }

    [Fact]
    public async Task KillSession_ProcessesInOtherGroupsOfTheSession_AreKilledToo()
    {
        // A job-control shell (bash with set -m) puts each job in a process group of its own, in the same session.
        using var arguments = ToolArgumentsFile.Create("{}"u8);
        var psi = ToolProcessLauncher.CreateStartInfo(
            "/bin/bash", ["-c", "set -m; sleep 60 & echo $! > job.pid; echo $$ > tool.pid; wait"], _dir.Path,
            new Dictionary<string, string> { ["PATH"] = "/usr/bin:/bin" }, arguments.Path, Environment.ProcessId);
        using var launcher = await ToolProcessLauncher.StartAsync(psi);
        await WaitUntilAsync(() => File.Exists(_dir.File("tool.pid")), "the tool to start a job in a process group of its own");
        var job = ReadPid(_dir.File("job.pid"));

        var killed = ToolProcessLauncher.KillSession(launcher.Id);

        Assert.Contains(killed, m => m.Pid == job && m.ProcessGroup == job);
        await AssertGoneAsync(job, "the tool's job 'sleep 60' in its own process group");
        await launcher.WaitForExitAsync(TestContext.Current.CancellationToken);
    }
}
