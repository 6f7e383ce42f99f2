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
    internal sealed record Probe(string? Bwrap, string? Prlimit, string? Setpriv, bool IsRoot, string? Unavailable);

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
        if ((settings.MaxMemoryMB ?? SandboxSettings.DefaultMaxMemoryMB) == 0) lines.Add("memory is not limited (maxMemoryMB: 0)");
        if (!probe.IsRoot)
            lines.Add("the process limit (RLIMIT_NPROC) is not applied: Bureau does not run as root, so the tool runs as Bureau's own user, whose every process and thread (Bureau's included) the limit would count");
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

    /// <summary>Logs, for every sandboxed process tool, how it is confined and what of its sandbox this machine does not apply (a warning each).</summary>
    public static void ReportAtStart(BureauDefinitions definitions, Microsoft.Extensions.Logging.ILogger logger)
    {
        foreach (var tool in definitions.Tools.Values.OfType<ProcessToolDefinition>())
        {
            if (tool.SandboxOptedOut)
                Microsoft.Extensions.Logging.LoggerExtensions.LogWarning(logger,
                    "tool '{Tool}': a write tool that runs unsandboxed (sandbox: false): it may write anywhere, and reach anything, that Bureau's user can", tool.Name);
            if (tool.Sandbox is not { } sandbox) continue;
            var directory = Path.GetFullPath(tool.WorkingDirectory ?? Directory.GetCurrentDirectory());
            Microsoft.Extensions.Logging.LoggerExtensions.LogInformation(logger, "tool '{Tool}': {Sandbox}", tool.Name, Describe(sandbox, directory));
            foreach (var line in NotApplied(sandbox, directory))
                Microsoft.Extensions.Logging.LoggerExtensions.LogWarning(logger, "tool '{Tool}': sandbox: {NotApplied}", tool.Name, line);
        }
    }

    /// <summary>The command line that runs <paramref name="program"/> with <paramref name="arguments"/> confined by <paramref name="settings"/>.</summary>
    /// <exception cref="InvalidOperationException">The sandbox cannot run here, or a writable path does not exist (the message says which).</exception>
    public static (string Program, List<string> Arguments) Wrap(SandboxSettings settings, string program, IEnumerable<string> arguments, string workingDirectory)
    {
        var probe = Machine;
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
        // SIGXCPU at the soft limit (the tool may say why), SIGKILL at the hard one a second later.
        args.AddRange([probe.Prlimit!, $"--cpu={Math.Max(1, cpu)}:{Math.Max(1, cpu) + 1}"]);
        var memory = settings.MaxMemoryMB ?? SandboxSettings.DefaultMaxMemoryMB;
        if (memory > 0) args.Add($"--as={(long)memory * 1024 * 1024}");
        if (probe.IsRoot) args.Add($"--nproc={settings.MaxProcesses ?? SandboxSettings.DefaultMaxProcesses}");
        args.AddRange(["--", program]);
        args.AddRange(arguments);
        return (probe.Bwrap!, args);
    }

    /// <summary>A one-line description of the confinement, for the journal's note.</summary>
    public static string Describe(SandboxSettings settings, string workingDirectory)
    {
        var writable = settings.Writable.Count == 0 ? "nothing writable but a private /tmp" : "writable: " + string.Join(", ", settings.Writable.Select(p => Path.GetFullPath(p, workingDirectory)));
        var memory = settings.MaxMemoryMB ?? SandboxSettings.DefaultMaxMemoryMB;
        var limits = $"cpu {(settings.MaxCpuTime ?? SandboxSettings.DefaultMaxCpuTime).TotalSeconds:0}s, memory {(memory == 0 ? "unlimited" : memory + " MiB")}"
            + (Machine.IsRoot ? $", {settings.MaxProcesses ?? SandboxSettings.DefaultMaxProcesses} processes, as uid {settings.User}" : ", processes not limited");
        return $"sandboxed (bubblewrap): {writable}; network {(settings.Network == SandboxNetwork.Allow ? "allowed" : "denied")}; {limits}";
    }

    /// <summary>What a sandboxed program's exit means, when it says more than its stderr: a limit the sandbox enforced.</summary>
    public static string? ExitReason(int exitCode, SandboxSettings settings) => exitCode switch
    {
        128 + 24 => $"the sandbox's CPU time limit ({(settings.MaxCpuTime ?? SandboxSettings.DefaultMaxCpuTime).TotalSeconds:0}s) was reached (SIGXCPU)",
        128 + 9 => $"killed (SIGKILL): the sandbox's CPU time hard limit ({(settings.MaxCpuTime ?? SandboxSettings.DefaultMaxCpuTime).TotalSeconds:0}s + 1s) may have been reached",
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
        return new Probe(bwrap, prlimit, setpriv, isRoot, null);
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
