using System.Net;
using System.Net.Sockets;
using Bureau.Tests.Support;
using Bureau.Tools;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Xunit;
using static Bureau.Tests.Tools.ToolTestSupport;

namespace Bureau.Tests.Tools;

/// <summary>
/// Sandboxed process tools try to escape: write outside their paths, open a socket, read the host's secrets from the
/// environment and /proc, fork-bomb, exceed memory and CPU. Each is refused, and the result (journaled) says why.
/// These need bubblewrap (test.sh installs it): without it they fail, saying so, rather than pass unsandboxed.
/// </summary>
public sealed class ProcessSandboxTests : IAsyncDisposable
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private readonly TempDir _dir = new();
    private readonly EngineFixture _f = new();

    public async ValueTask DisposeAsync()
    {
        await _f.DisposeAsync();
        _dir.Dispose();
    }

    /// <summary>Debian's python3: a pyenv shim under /root is not reachable by the sandbox user.</summary>
    private static readonly string Python3 = File.Exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";

    private static void RequireSandbox()
    {
        Assert.True(ToolSandbox.Unavailable is null, $"the sandbox must run on this machine for these tests (test.sh installs bubblewrap): {ToolSandbox.Unavailable}");
    }

    /// <summary>A folder the sandbox user may write (the tests run as root; the tool runs as nobody).</summary>
    private string WritableDir(string name)
    {
        var path = Path.Combine(_dir.Path, name);
        Directory.CreateDirectory(path);
        if (!OperatingSystem.IsWindows())
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupWrite
                | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute);
        return path;
    }

    private ProcessToolDefinition Python(string name, string code, SandboxSettings? sandbox, ToolEffect effect = ToolEffect.Read) => new()
    {
        Name = name,
        Effect = effect,
        Command = [Python3, "-c", code],
        WorkingDirectory = _dir.Path,
        Timeout = TimeSpan.FromSeconds(60),
        Sandbox = sandbox,
        Parameters = ParseJson("""{"type":"object"}"""),
    };

    private static Task<ToolOutcome> CallAsync(ProcessToolDefinition definition, string arguments = "{}") =>
        new ToolFactory().Create(definition).InvokeAsync(Invocation(definition.Name, arguments), Ct);

    [Fact]
    public async Task Write_OutsideTheWritablePaths_IsRefused_InsideIsAllowed()
    {
        RequireSandbox();
        var allowed = WritableDir("out");
        var forbidden = WritableDir("elsewhere");   // writable by anyone on the host, but not declared
        var code = $$"""
            import sys
            open('{{allowed}}/ok.txt', 'w').write('fine')
            open('{{forbidden}}/escape.txt', 'w').write('escaped')
            """;

        var outcome = await CallAsync(Python("writer", code, new SandboxSettings { Writable = [allowed] }));

        Assert.True(outcome.IsError);
        Assert.Contains("Read-only file system", outcome.Content);
        Assert.Contains($"{forbidden}/escape.txt", outcome.Content);
        Assert.Equal("fine", await File.ReadAllTextAsync(Path.Combine(allowed, "ok.txt"), Ct));
        Assert.False(File.Exists(Path.Combine(forbidden, "escape.txt")));
        Assert.Contains("sandboxed (bubblewrap)", outcome.Note);
    }

    [Fact]
    public async Task Tmp_IsPrivate_WritesThereDoNotReachTheHost()
    {
        RequireSandbox();
        var name = "bureau-sandbox-" + Guid.NewGuid().ToString("n");
        var outcome = await CallAsync(Python("tmp", $"open('/tmp/{name}', 'w').write('x'); print('written')", new SandboxSettings()));

        Assert.Equal((false, "written"), (outcome.IsError, outcome.Content));
        Assert.False(File.Exists(Path.Combine("/tmp", name)));
    }

    [Fact]
    public async Task Socket_WithoutNetworkAllow_CannotReachEvenTheHostsLoopback_WithAllowItCan()
    {
        RequireSandbox();
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var code = $"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=10); print('connected')";

        var denied = await CallAsync(Python("net", code, new SandboxSettings()));

        Assert.True(denied.IsError);
        Assert.Matches("Network is unreachable|Connection refused", denied.Content);
        Assert.False(listener.Pending());

        var allowed = await CallAsync(Python("net", code, new SandboxSettings { Network = SandboxNetwork.Allow }));

        Assert.Equal((false, "connected"), (allowed.IsError, allowed.Content));
    }

    [Fact]
    public async Task HostSecrets_InTheEnvironmentAndInProc_AreNotVisible()
    {
        RequireSandbox();
        var secret = "BUREAU_SANDBOX_SECRET_" + Guid.NewGuid().ToString("n")[..8];
        Environment.SetEnvironmentVariable(secret, "hunter2");
        try
        {
            var code = $$"""
                import os
                print('env:', os.environ.get('{{secret}}'))
                try:
                    data = open('/proc/{{Environment.ProcessId}}/environ', 'rb').read()
                    print('proc: read', b'hunter2' in data)
                except OSError as e:
                    print('proc:', type(e).__name__)
                print('pids:', sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))
                """;

            var outcome = await CallAsync(Python("peek", code, new SandboxSettings()));

            Assert.False(outcome.IsError, outcome.Content);
            var lines = outcome.Content.Split('\n');
            Assert.Equal("env: None", lines[0]);
            Assert.Equal("proc: FileNotFoundError", lines[1]);   // a new PID namespace: Bureau's process does not exist there
            Assert.DoesNotContain(Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture), lines[2].Split(' ', ',', '[', ']'));
        }
        finally
        {
            Environment.SetEnvironmentVariable(secret, null);
        }
    }

    [Fact]
    public async Task ForkBomb_IsStoppedByTheProcessLimit_AndNothingIsLeftRunning()
    {
        RequireSandbox();
        Assert.True(ToolSandbox.Machine.IsRoot, "the process limit is applied when Bureau runs as root (the tool then runs as nobody); test.sh runs as root");
        var code = """
            import os, sys, time
            n = 0
            try:
                while True:
                    if os.fork() == 0:
                        time.sleep(300)
                        os._exit(0)
                    n += 1
            except OSError as e:
                print(f'fork refused after {n}: {e}', file=sys.stderr)
                sys.exit(3)
            """;

        // A uid of its own: RLIMIT_NPROC counts every process of the user (on a shared machine nobody runs other things).
        const int uid = 61017;
        var outcome = await CallAsync(Python("bomb", code, new SandboxSettings { MaxProcesses = 40, User = uid }));

        Assert.True(outcome.IsError);
        Assert.Contains("Resource temporarily unavailable", outcome.Content);
        Assert.Contains("40 processes, as uid 61017", outcome.Note);
        // The children slept on: the sandbox (its PID namespace ends with the tool) and the session kill leave none.
        await WaitUntilAsync(() => !ProcessesOf(uid).Any(), "the fork bomb's children to be gone", 30);
    }

    [Fact]
    public async Task Memory_BeyondTheLimit_IsRefused()
    {
        RequireSandbox();
        var outcome = await CallAsync(Python("hog", "x = bytearray(600 * 1024 * 1024); print('allocated')", new SandboxSettings { MaxMemoryMB = 200 }));

        Assert.True(outcome.IsError);
        Assert.Contains(ToolSandbox.Machine.SystemdRun is null ? "MemoryError" : "memory limit (200 MiB, cgroup)", outcome.Content);
        Assert.Contains("memory 200 MiB", outcome.Note);
    }

    [Fact]
    public async Task CpuTime_BeyondTheLimit_StopsTheToolAndSaysWhy()
    {
        RequireSandbox();
        var outcome = await CallAsync(Python("spin", "while True: pass", new SandboxSettings { MaxCpuTime = TimeSpan.FromSeconds(1) }));

        Assert.True(outcome.IsError);
        Assert.Contains("the sandbox's CPU time limit (1s) was reached (SIGXCPU)", outcome.Content);
    }

    [Fact]
    public async Task WritablePathThatDoesNotExist_RefusesTheCallWithoutRunningIt()
    {
        RequireSandbox();
        var marker = Path.Combine(_dir.Path, "ran");
        var outcome = await CallAsync(Python("w", $"open('{marker}', 'w')", new SandboxSettings { Writable = ["missing-folder"] }));

        Assert.Equal(ToolFailure.NotSent, outcome.Failure);
        Assert.Contains($"is sandboxed and was not run: the sandbox's writable path {Path.Combine(_dir.Path, "missing-folder")} does not exist", outcome.Content);
        Assert.False(File.Exists(marker));
    }

    [Fact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public async Task ProgramTheSandboxUserCannotReach_IsRefusedSayingWhy()
    {
        RequireSandbox();
        Assert.True(ToolSandbox.Machine.IsRoot, "the sandbox user differs from Bureau's only when Bureau runs as root; test.sh runs as root");
        var hidden = Path.Combine(_dir.Path, "private");
        Directory.CreateDirectory(hidden);
        File.SetUnixFileMode(hidden, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var script = Path.Combine(hidden, "tool.sh");
        await File.WriteAllTextAsync(script, "#!/bin/sh\necho ran\n", Ct);
        File.SetUnixFileMode(script, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);

        var outcome = await new ToolFactory().Create(new ProcessToolDefinition { Name = "hidden", Command = [script], WorkingDirectory = _dir.Path, Sandbox = new SandboxSettings() })
            .InvokeAsync(Invocation("hidden"), Ct);

        Assert.Equal(ToolFailure.NotSent, outcome.Failure);
        Assert.Contains($"the program {script} cannot be run by the sandbox user 65534: the folder {hidden} is not searchable by it", outcome.Content);
    }

    [Fact]
    public void NotApplied_SaysWhatThisMachineCannotEnforce()
    {
        RequireSandbox();
        var notWritable = Path.Combine(_dir.Path, "root-only");
        Directory.CreateDirectory(notWritable);

        var lines = ToolSandbox.NotApplied(new SandboxSettings { Writable = [notWritable], MaxMemoryMB = 0 }, _dir.Path);

        Assert.Contains("memory is not limited (maxMemoryMB: 0)", lines);
        if (ToolSandbox.Machine.IsRoot)
            Assert.Contains(lines, l => l.Contains($"writable path {notWritable} is bound writable, but the sandbox user 65534 has no write permission", StringComparison.Ordinal));
        else
            Assert.Contains(lines, l => l.StartsWith("the process limit (RLIMIT_NPROC) is not applied", StringComparison.Ordinal));
    }

    [Fact]
    public async Task AgentRun_AnEscapeAttempt_IsJournaledWithWhyItFailed()
    {
        RequireSandbox();
        var target = WritableDir("not-declared");
        _f.Definitions.Add(Python("escape", $"open('{target}/pwned', 'w').write('x')", new SandboxSettings(), ToolEffect.Write));
        _f.UseModel((msgs, turn) => turn == 1 ? FakeModel.Call("escape", "{}") : FakeModel.Text("result: " + FakeModel.LastToolResult(msgs)));
        _f.AddAgent(tools: "escape");
        var engine = await _f.StartAsync();

        var id = (await engine.SubmitAsync(new RunRequest("a", "try"), Ct)).Run.Id;
        var run = await EngineFixture.WaitAsync(engine, id, 120);

        Assert.Equal(RunStatus.Succeeded, run.Status);
        var result = (await engine.ReadJournalAsync(id, cancellationToken: Ct)).Select(r => r.Entry).OfType<ToolCompleted>().Single();
        Assert.True(result.IsError);
        Assert.Contains("Read-only file system", result.Content);
        Assert.Contains("sandboxed (bubblewrap)", result.Note);
        Assert.False(File.Exists(Path.Combine(target, "pwned")));
    }

    [Fact]
    public async Task HostStart_SaysWhatOfASandboxThisMachineDoesNotApply()
    {
        RequireSandbox();
        var logs = new CapturingLoggerProvider();
        var builder = Microsoft.Extensions.Hosting.Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Logging.AddProvider(logs);
        builder.Services.AddBureau()
            .UseSqliteStorage(Path.Combine(_dir.Path, "bureau.db"))
            .AddTool(Python("dotnetish", "print(1)", new SandboxSettings { MaxMemoryMB = 0, Writable = ["missing"] }));
        using var host = builder.Build();

        await host.StartAsync(Ct);
        await host.StopAsync(Ct);

        var warnings = logs.Records.Where(l => l.Level == Microsoft.Extensions.Logging.LogLevel.Warning).Select(l => l.Message).ToList();
        Assert.Contains("tool 'dotnetish': sandbox: memory is not limited (maxMemoryMB: 0)", warnings);
        if (ToolSandbox.Machine.IsRoot)
            Assert.Contains(warnings, w => w.StartsWith($"tool 'dotnetish': sandbox: writable path {Path.Combine(_dir.Path, "missing")} does not exist", StringComparison.Ordinal));
        Assert.Contains(logs.Records, l => l.Message.StartsWith("tool 'dotnetish': sandboxed (bubblewrap)", StringComparison.Ordinal));
        // ... and health says it too (GET /v1/health/dependencies, bureau health).
        var health = host.Services.GetRequiredService<Bureau.Resilience.DependencyHealth>().Snapshot().Single(d => d.Name == "tool:dotnetish");
        Assert.Contains("sandbox: memory is not limited (maxMemoryMB: 0)", health.NotApplied!);
        if (ToolSandbox.Machine.SystemdRun is null)
            Assert.Contains(health.NotApplied!, l => l.StartsWith("sandbox: cgroup v2 limits are not available (" + ToolSandbox.Machine.NoCgroups, StringComparison.Ordinal));
    }

    [Fact]
    public void NotApplied_WithoutCgroupV2_SaysRlimitsAreUsedAndWhy()
    {
        RequireSandbox();

        var lines = ToolSandbox.NotApplied(new SandboxSettings(), _dir.Path);

        if (ToolSandbox.Machine.SystemdRun is null)
        {
            Assert.NotNull(ToolSandbox.Machine.NoCgroups);
            Assert.Contains($"cgroup v2 limits are not available ({ToolSandbox.Machine.NoCgroups}): rlimits are used instead, so memory is limited per process as address space (RLIMIT_AS), not for the tool's processes together", lines);
        }
        else
        {
            Assert.DoesNotContain(lines, l => l.StartsWith("cgroup v2", StringComparison.Ordinal));
        }
    }

    [Fact]
    public void Wrap_WithCgroupV2_LimitsMemoryAndProcessesInASystemdScope_CpuTimeStaysAnRlimit()
    {
        var settings = new SandboxSettings { MaxMemoryMB = 256, MaxProcesses = 16, MaxCpuTime = TimeSpan.FromSeconds(5) };
        var cgroups = new ToolSandbox.Probe("/usr/bin/bwrap", "/usr/bin/prlimit", "/usr/bin/setpriv", IsRoot: true, Unavailable: null, SystemdRun: "/usr/bin/systemd-run");

        var (program, args) = ToolSandbox.Wrap(settings, "/bin/true", ["a"], _dir.Path, cgroups);

        Assert.Equal("/usr/bin/systemd-run", program);
        var bwrapAt = args.IndexOf("/usr/bin/bwrap");
        Assert.Equal(["--scope", "--quiet", "--collect", "-p", "TasksMax=16", "-p", "MemoryMax=256M", "-p", "MemorySwapMax=0", "--"], args[..bwrapAt]);
        var limits = args[args.IndexOf("/usr/bin/prlimit")..];
        Assert.Equal(["/usr/bin/prlimit", "--cpu=5:6", "--", "/bin/true", "a"], limits);   // no --as, no --nproc: the scope limits the whole tree

        var user = ToolSandbox.Wrap(settings, "/bin/true", [], _dir.Path, cgroups with { IsRoot = false });
        Assert.Equal("--user", user.Arguments[0]);   // Bureau's own user's systemd

        var rlimits = ToolSandbox.Wrap(settings, "/bin/true", [], _dir.Path, cgroups with { SystemdRun = null, NoCgroups = "none here" });
        Assert.Equal("/usr/bin/bwrap", rlimits.Program);
        Assert.Equal(["/usr/bin/prlimit", "--cpu=5:6", $"--as={256L * 1024 * 1024}", "--nproc=16", "--", "/bin/true"], rlimits.Arguments[rlimits.Arguments.IndexOf("/usr/bin/prlimit")..]);
    }

    [Fact]
    public async Task AgentRun_CpuBurnMemoryHogAndForkBomb_AreStopped_AndTheJournalSaysWhy()
    {
        RequireSandbox();
        Assert.True(ToolSandbox.Machine.IsRoot || ToolSandbox.Machine.SystemdRun is not null, "the process limit needs root (rlimits) or a cgroup scope; test.sh runs as root");
        _f.Definitions.Add(Python("spin", "while True: pass", new SandboxSettings { MaxCpuTime = TimeSpan.FromSeconds(1) }));
        _f.Definitions.Add(Python("hog", "x = bytearray(600 * 1024 * 1024); print('allocated')", new SandboxSettings { MaxMemoryMB = 200 }));
        // Bounded by the process limit (40), with a uid of its own (RLIMIT_NPROC counts every process of the uid).
        const int uid = 61018;
        _f.Definitions.Add(Python("bomb", """
            import os, sys, time
            try:
                while True:
                    if os.fork() == 0:
                        time.sleep(300)
                        os._exit(0)
            except OSError as e:
                print(f'fork refused: {e}', file=sys.stderr)
                sys.exit(3)
            """, new SandboxSettings { MaxProcesses = 40, User = uid }));
        _f.UseModel((msgs, turn) => turn switch
        {
            1 => FakeModel.Call("spin", "{}"),
            2 => FakeModel.Call("hog", "{}"),
            3 => FakeModel.Call("bomb", "{}"),
            _ => FakeModel.Text("all refused"),
        });
        _f.AddAgent(tools: ["spin", "hog", "bomb"]);
        var engine = await _f.StartAsync();

        var id = (await engine.SubmitAsync(new RunRequest("a", "burn"), Ct)).Run.Id;
        var run = await EngineFixture.WaitAsync(engine, id, 120);

        Assert.Equal(RunStatus.Succeeded, run.Status);   // the model was told; the run went on
        var results = (await engine.ReadJournalAsync(id, cancellationToken: Ct)).Select(r => r.Entry).OfType<ToolCompleted>().ToList();
        Assert.Equal(3, results.Count);
        Assert.All(results, r => Assert.True(r.IsError));
        Assert.Contains("Resource temporarily unavailable", results[2].Content);
        Assert.Contains("40 processes", results[2].Note);
        await WaitUntilAsync(() => !ProcessesOf(uid).Any(), "the fork bomb's children to be gone", 30);
        Assert.Contains("the sandbox's CPU time limit (1s) was reached (SIGXCPU)", results[0].Content);
        Assert.Contains(ToolSandbox.Machine.SystemdRun is null ? "MemoryError" : "memory limit (200 MiB, cgroup)", results[1].Content);   // rlimit: the allocation fails; cgroup: the kernel kills it
        Assert.Contains("memory 200 MiB", results[1].Note);
    }

    [Fact]
    public async Task HostStart_WarnsAboutAWriteToolThatOptedOutOfTheSandbox()
    {
        var manifest = Path.Combine(_dir.Path, "bureau.yaml");
        await File.WriteAllTextAsync(manifest, """
            version: 2
            models:
              m: { provider: scripted }
            tools:
              unconfined: { kind: process, command: [python3, -c, "print(1)"], effect: write, sandbox: false }
            """, Ct);
        var logs = new CapturingLoggerProvider();
        var builder = Microsoft.Extensions.Hosting.Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Logging.AddProvider(logs);
        builder.Services.AddBureau(o => o.Manifests = [manifest]).UseSqliteStorage(Path.Combine(_dir.Path, "bureau.db"));
        using var host = builder.Build();

        await host.StartAsync(Ct);
        await host.StopAsync(Ct);

        Assert.Contains(logs.Records, l => l.Level == Microsoft.Extensions.Logging.LogLevel.Warning
            && l.Message.StartsWith("tool 'unconfined': a write tool that runs unsandboxed (sandbox: false)", StringComparison.Ordinal));
    }

    private static IEnumerable<int> ProcessesOf(int uid)
    {
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid)) continue;
            string status;
            try { status = File.ReadAllText(Path.Combine(dir, "status")); } catch (IOException) { continue; } catch (UnauthorizedAccessException) { continue; }
            var line = status.Split('\n').FirstOrDefault(l => l.StartsWith("Uid:", StringComparison.Ordinal));
            if (line is not null && line.Split('\t', StringSplitOptions.RemoveEmptyEntries).ElementAtOrDefault(1) == uid.ToString(System.Globalization.CultureInfo.InvariantCulture)) yield return pid;
        }
    }

    private static string CommandLine(int pid)
    {
        try { return File.ReadAllText($"/proc/{pid}/cmdline").Replace('\0', ' '); }
        catch (IOException) { return ""; }
        catch (UnauthorizedAccessException) { return ""; }
    }
}
