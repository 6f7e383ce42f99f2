using System.Diagnostics;
using System.Globalization;

namespace Bureau.Tools;

/// <summary>
/// Confines a sandboxed process tool (docs/decisions/0029): the program runs as
/// <c>bwrap [namespaces, mounts] -- [setpriv --reuid U --regid U --clear-groups --] prlimit --cpu --as --nproc -- PROGRAM ARGS</c>,
/// inside the launcher's <c>timeout</c> (so the session and death-signal guarantees of process tools still hold).
/// bubblewrap gives a read-only view of <c>/</c>, a private <c>/tmp</c>, a fresh <c>/proc</c> of a new PID namespace,
/// only the declared paths bound writable, a network namespace of its own unless the network is allowed,
/// new IPC and UTS namespaces, and <c>--die-with-parent</c>. <c>prlimit</c> (util-linux) sets the rlimits. When
/// Bureau runs as root the program runs as an unprivileged user (root ignores RLIMIT_NPROC, and a root tool could
/// undo its confinement). Whether bubblewrap works here is probed once; a sandboxed tool never runs unsandboxed.
/// </summary>
internal static class ToolSandbox
{
    private static readonly Lazy<Probe> s_probe = new(ProbeMachine);

    /// <summary>What the machine offers: the tools' paths, or why the sandbox cannot run.</summary>
    /// <param name="Bwrap">bubblewrap's path.</param>
    /// <param name="Prlimit">prlimit's path.</param>
    /// <param name="Setpriv">setpriv's path (to drop root).</param>
    /// <param name="IsRoot">Whether Bureau runs as root.</param>
    /// <param name="Unavailable">Why sandboxed tools cannot run here; null when they can.</param>
    /// <param name="SystemdRun">systemd-run, when transient cgroup v2 scopes work here (memory and process limits for the tool's whole tree).</param>
    /// <param name="NoCgroups">Why cgroup v2 limits cannot be used here (rlimits are used instead); null when they can.</param>
    internal sealed record Probe(string? Bwrap, string? Prlimit, string? Setpriv, bool IsRoot, string? Unavailable, string? SystemdRun = null, string? NoCgroups = null);

    /// <summary>The probe's result (run once).</summary>
    public static Probe Machine => s_probe.Value;

    /// <summary>Null when sandboxed tools can run here; otherwise why not.</summary>
    public static string? Unavailable => Machine.Unavailable;

    /// <summary>
    /// What of <paramref name="settings"/> this machine does not apply, one line each (empty when everything is):
    /// said when the host starts, and in the journal note of each call.
    /// </summary>
    public static IReadOnlyList<string> NotApplied(SandboxSettings settings, string workingDirectory)
    {
        var probe = Machine;
        var lines = new List<string>();
        if (probe.Unavailable is { } why)
        {
            lines.Add($"the sandbox cannot run on this machine ({why}): the tool's calls are refused, never run unsandboxed");
            return lines;
        }
        var memory = settings.MaxMemoryMB ?? SandboxSettings.DefaultMaxMemoryMB;
        if (memory == 0) lines.Add("memory is not limited (maxMemoryMB: 0)");
        if (probe.SystemdRun is null)
        {
            // rlimits instead of a cgroup: say what that loses (docs/decisions/0041).
            lines.Add($"cgroup v2 limits are not available ({probe.NoCgroups ?? "not probed"}): rlimits are used instead"
                + (memory > 0 ? ", so memory is limited per process as address space (RLIMIT_AS), not for the tool's processes together" : string.Empty));
            if (!probe.IsRoot)
                lines.Add("the process limit (RLIMIT_NPROC) is not applied: Bureau does not run as root and has no cgroup, so the tool runs as Bureau's own user, whose every process and thread (Bureau's included) the limit would count");
        }
        if (probe.IsRoot)
        {
            foreach (var path in settings.Writable.Select(p => Path.GetFullPath(p, workingDirectory)))
            {
                if (!Directory.Exists(path) && !File.Exists(path)) lines.Add($"writable path {path} does not exist: it is not bound, and the tool's calls fail until it does");
                else if (!WritableBy(path, settings.User)) lines.Add($"writable path {path} is bound writable, but the sandbox user {settings.User} has no write permission on it (chown or chmod it)");
            }
        }
        return lines;
    }

    /// <summary>
    /// Logs, for every sandboxed process tool, how it is confined and what of its sandbox this machine does not apply (a
    /// warning each), and puts the latter in <paramref name="health"/> (the tool's <c>notApplied</c>).
    /// </summary>
    public static void ReportAtStart(BureauDefinitions definitions, Microsoft.Extensions.Logging.ILogger logger, Resilience.DependencyHealth? health = null)
    {
        foreach (var tool in definitions.Tools.Values.OfType<ProcessToolDefinition>())
        {
            if (tool.SandboxOptedOut)
                Microsoft.Extensions.Logging.LoggerExtensions.LogWarning(logger,
                    "tool '{Tool}': a write tool that runs unsandboxed (sandbox: false): it may write anywhere, and reach anything, that Bureau's user can", tool.Name);
            if (tool.Sandbox is not { } sandbox) continue;
            var directory = Path.GetFullPath(tool.WorkingDirectory ?? Directory.GetCurrentDirectory());
            Microsoft.Extensions.Logging.LoggerExtensions.LogInformation(logger, "tool '{Tool}': {Sandbox}", tool.Name, Describe(sandbox, directory));
            var notApplied = NotApplied(sandbox, directory);
            foreach (var line in notApplied)
                Microsoft.Extensions.Logging.LoggerExtensions.LogWarning(logger, "tool '{Tool}': sandbox: {NotApplied}", tool.Name, line);
            if (notApplied.Count > 0) health?.SetNotApplied("tool:" + tool.Name, [.. notApplied.Select(l => "sandbox: " + l)]);
        }
    }

    /// <summary>The command line that runs <paramref name="program"/> with <paramref name="arguments"/> confined by <paramref name="settings"/>.</summary>
    /// <exception cref="InvalidOperationException">The sandbox cannot run here, or a writable path does not exist (the message says which).</exception>
    public static (string Program, List<string> Arguments) Wrap(SandboxSettings settings, string program, IEnumerable<string> arguments, string workingDirectory) =>
        Wrap(settings, program, arguments, workingDirectory, Machine);

    /// <summary><see cref="Wrap(SandboxSettings, string, IEnumerable{string}, string)"/> on a machine described by <paramref name="probe"/>.</summary>
    internal static (string Program, List<string> Arguments) Wrap(SandboxSettings settings, string program, IEnumerable<string> arguments, string workingDirectory, Probe probe)
    {
        if (probe.Unavailable is { } why) throw new InvalidOperationException($"the sandbox cannot run on this machine: {why}");
        var args = new List<string>
        {
            "--ro-bind", "/", "/",
            "--dev", "/dev",
            "--proc", "/proc",
            "--perms", "1777", "--tmpfs", "/tmp",
            "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent",
        };
        if (settings.Network == SandboxNetwork.Deny) args.Add("--unshare-net");
        // The working directory (read-only) and the program stay visible even under the private /tmp; the folders
        // bubblewrap makes there to mount them on are made searchable (it would make them root's alone).
        var made = new HashSet<string>(StringComparer.Ordinal);
        void Bind(string option, string path)
        {
            if (path.StartsWith("/tmp/", StringComparison.Ordinal))
            {
                var parents = new List<string>();
                for (var dir = Path.GetDirectoryName(path); dir is { Length: > 4 } && dir != "/tmp"; dir = Path.GetDirectoryName(dir)) parents.Add(dir);
                parents.Reverse();
                foreach (var dir in parents.Where(made.Add)) args.AddRange(["--perms", "0755", "--dir", dir]);
            }
            args.AddRange([option, path, path]);
        }
        Bind("--ro-bind", workingDirectory);
        if (Path.GetDirectoryName(program) is { Length: > 1 } programDirectory && programDirectory.StartsWith("/tmp/", StringComparison.Ordinal)
            && !program.StartsWith(workingDirectory + "/", StringComparison.Ordinal))
            Bind("--ro-bind", program);
        foreach (var path in settings.Writable.Select(p => Path.GetFullPath(p, workingDirectory)).Distinct(StringComparer.Ordinal))
        {
            if (!Directory.Exists(path) && !File.Exists(path))
                throw new InvalidOperationException($"the sandbox's writable path {path} does not exist");
            Bind("--bind", path);
        }
        args.AddRange(["--chdir", workingDirectory, "--"]);
        if (probe.IsRoot)
        {
            if (Unreachable(program, settings.User) is { } blocked)
                throw new InvalidOperationException($"the program {program} cannot be run by the sandbox user {settings.User}: {blocked} (install it where every user may run it, or give its full path)");
            var id = settings.User.ToString(CultureInfo.InvariantCulture);
            args.AddRange([probe.Setpriv!, "--reuid", id, "--regid", id, "--clear-groups", "--"]);
        }
        var cpu = (long)Math.Ceiling((settings.MaxCpuTime ?? SandboxSettings.DefaultMaxCpuTime).TotalSeconds);
        // SIGXCPU at the soft limit (the tool may say why), SIGKILL at the hard one a second later. A cgroup has no
        // CPU-time budget (only a rate), so CPU time is an rlimit either way.
        args.AddRange([probe.Prlimit!, $"--cpu={Math.Max(1, cpu)}:{Math.Max(1, cpu) + 1}"]);
        var memory = settings.MaxMemoryMB ?? SandboxSettings.DefaultMaxMemoryMB;
        var processes = settings.MaxProcesses ?? SandboxSettings.DefaultMaxProcesses;
        if (probe.SystemdRun is null)
        {
            if (memory > 0) args.Add($"--as={(long)memory * 1024 * 1024}");
            if (probe.IsRoot) args.Add($"--nproc={processes}");
        }
        args.AddRange(["--", program]);
        args.AddRange(arguments);
        if (probe.SystemdRun is not { } systemdRun) return (probe.Bwrap!, args);

        // cgroup v2 through a transient scope: memory (resident, swap off) and tasks for the tool's whole tree, whatever
        // its uid. systemd-run registers the scope and execs bwrap in place, so the launcher's process is still the tool's.
        var scope = new List<string>();
        if (!probe.IsRoot) scope.Add("--user");
        scope.AddRange(["--scope", "--quiet", "--collect", "-p", $"TasksMax={processes}"]);
        if (memory > 0) scope.AddRange(["-p", $"MemoryMax={memory}M", "-p", "MemorySwapMax=0"]);
        scope.AddRange(["--", probe.Bwrap!]);
        scope.AddRange(args);
        return (systemdRun, scope);
    }

    /// <summary>A one-line description of the confinement, for the journal's note.</summary>
    public static string Describe(SandboxSettings settings, string workingDirectory)
    {
        var writable = settings.Writable.Count == 0 ? "nothing writable but a private /tmp" : "writable: " + string.Join(", ", settings.Writable.Select(p => Path.GetFullPath(p, workingDirectory)));
        var memory = settings.MaxMemoryMB ?? SandboxSettings.DefaultMaxMemoryMB;
        var cgroup = Machine.SystemdRun is not null;
        var limits = $"cpu {(settings.MaxCpuTime ?? SandboxSettings.DefaultMaxCpuTime).TotalSeconds:0}s, memory {(memory == 0 ? "unlimited" : memory + " MiB")}"
            + (cgroup || Machine.IsRoot ? $", {settings.MaxProcesses ?? SandboxSettings.DefaultMaxProcesses} processes" : ", processes not limited")
            + (Machine.IsRoot ? $", as uid {settings.User}" : string.Empty)
            + (cgroup ? " (memory and processes: cgroup v2 scope)" : " (rlimits)");
        return $"sandboxed (bubblewrap): {writable}; network {(settings.Network == SandboxNetwork.Allow ? "allowed" : "denied")}; {limits}";
    }

    /// <summary>What a sandboxed program's exit means, when it says more than its stderr: a limit the sandbox enforced.</summary>
    public static string? ExitReason(int exitCode, SandboxSettings settings) => exitCode switch
    {
        128 + 24 => $"the sandbox's CPU time limit ({(settings.MaxCpuTime ?? SandboxSettings.DefaultMaxCpuTime).TotalSeconds:0}s) was reached (SIGXCPU)",
        128 + 9 => $"killed (SIGKILL): the sandbox's CPU time hard limit ({(settings.MaxCpuTime ?? SandboxSettings.DefaultMaxCpuTime).TotalSeconds:0}s + 1s)"
            + (Machine.SystemdRun is not null ? $" or its memory limit ({settings.MaxMemoryMB ?? SandboxSettings.DefaultMaxMemoryMB} MiB, cgroup)" : string.Empty) + " may have been reached",
        _ => null,
    };

    /// <summary>Why <paramref name="uid"/> cannot execute <paramref name="file"/> (a folder on the way it may not enter, the file itself), or null when it can.</summary>
    private static string? Unreachable(string file, int uid)
    {
        if (OperatingSystem.IsWindows()) return null;
        try
        {
            for (var dir = Path.GetDirectoryName(file); !string.IsNullOrEmpty(dir); dir = Path.GetDirectoryName(dir))
            {
                if (!Allows(dir, uid, UnixFileMode.OtherExecute, UnixFileMode.UserExecute)) return $"the folder {dir} is not searchable by it";
                if (dir == "/") break;
            }
            return Allows(file, uid, UnixFileMode.OtherExecute, UnixFileMode.UserExecute) ? null : "the file is not executable by it";
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return ex.Message;
        }

        static bool Allows(string path, int uid, UnixFileMode other, UnixFileMode owner)
        {
            var mode = File.GetUnixFileMode(path);
            return (mode & other) != 0 || (mode & owner) != 0 && OwnerOf(path) == uid;
        }
    }

    private static bool WritableBy(string path, int uid)
    {
        if (OperatingSystem.IsWindows()) return false;
        try
        {
            var mode = File.GetUnixFileMode(path);
            if ((mode & UnixFileMode.OtherWrite) != 0) return true;
            return OwnerOf(path) == uid && (mode & UnixFileMode.UserWrite) != 0;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    private static int? OwnerOf(string path)
    {
        // stat -c %u: the owner's uid (no P/Invoke needed).
        try
        {
            using var p = Process.Start(new ProcessStartInfo("stat", ["-c", "%u", path]) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false });
            if (p is null) return null;
            var text = p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            return int.TryParse(text.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var uid) ? uid : null;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return null;
        }
    }

    private static Probe ProbeMachine()
    {
        if (!OperatingSystem.IsLinux()) return new Probe(null, null, null, false, "bubblewrap sandboxes run on Linux only");
        var bwrap = Find("bwrap");
        var prlimit = Find("prlimit");
        var setpriv = Find("setpriv");
        var isRoot = Environment.UserName == "root" || RunQuiet("id", ["-u"]).Output.Trim() == "0";
        if (bwrap is null) return new Probe(null, prlimit, setpriv, isRoot, "bwrap (Debian package bubblewrap) is not installed");
        if (prlimit is null) return new Probe(bwrap, null, setpriv, isRoot, "prlimit (Debian package util-linux) is not installed");
        if (isRoot && setpriv is null) return new Probe(bwrap, prlimit, null, isRoot, "setpriv (Debian package util-linux) is not installed");
        var (code, output) = RunQuiet(bwrap, ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--die-with-parent", "--", "true"]);
        if (code != 0)
            return new Probe(bwrap, prlimit, setpriv, isRoot,
                $"bubblewrap could not create its namespaces here (exit {code}: {output.Trim()}); user namespaces may be disabled (sysctl kernel.unprivileged_userns_clone, user.max_user_namespaces) or the container forbids them");
        var (systemdRun, noCgroups) = ProbeCgroups(isRoot);
        return new Probe(bwrap, prlimit, setpriv, isRoot, null, systemdRun, noCgroups);
    }

    /// <summary>Whether transient cgroup v2 scopes with memory and task limits can be made here (systemd-run --scope actually run once).</summary>
    private static (string? SystemdRun, string? Why) ProbeCgroups(bool isRoot)
    {
        if (!File.Exists("/sys/fs/cgroup/cgroup.controllers")) return (null, "the cgroup v2 hierarchy is not mounted at /sys/fs/cgroup (cgroup v1 or none)");
        var systemdRun = Find("systemd-run");
        if (systemdRun is null) return (null, "systemd-run (Debian package systemd) is not installed");
        string[] scope = [.. isRoot ? Array.Empty<string>() : ["--user"], "--scope", "--quiet", "--collect", "-p", "MemoryMax=64M", "-p", "TasksMax=16", "--", "true"];
        var (code, output) = RunQuiet(systemdRun, scope);
        if (code != 0)
            return (null, $"systemd-run --scope{(isRoot ? "" : " --user")} failed (exit {code}: {output.Trim().Split('\n')[0]}); systemd is not running, or it does not delegate the memory and pids controllers");
        return (systemdRun, null);
    }

    private static string? Find(string name)
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "/usr/local/bin:/usr/bin:/bin").Split(':', StringSplitOptions.RemoveEmptyEntries).Append("/usr/bin").Append("/bin"))
        {
            var candidate = Path.Combine(dir, name);
            if (File.Exists(candidate)) return candidate;
        }
        return null;
    }

    private static (int Code, string Output) RunQuiet(string program, string[] arguments)
    {
        try
        {
            using var p = Process.Start(new ProcessStartInfo(program, arguments) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false });
            if (p is null) return (-1, "could not start");
            var stdout = p.StandardOutput.ReadToEndAsync();
            var stderr = p.StandardError.ReadToEndAsync();
            if (!p.WaitForExit(30_000))
            {
                p.Kill(entireProcessTree: true);
                return (-1, "no answer within 30 s");
            }
            return (p.ExitCode, stdout.Result + stderr.Result);
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            return (-1, ex.Message);
        }
    }
}
