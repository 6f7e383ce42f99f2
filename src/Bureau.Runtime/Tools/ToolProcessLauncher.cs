using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Bureau.Tools;

/// <summary>
/// Starts the program of a process tool (Linux) so that:
/// <list type="bullet">
/// <item>it cannot outlive Bureau: the process Bureau starts carries a parent-death signal (<c>setpriv
/// --pdeathsig</c>) and is <c>timeout</c> from GNU coreutils, which on that signal kills its whole process
/// group, the tool and its descendants;</item>
/// <item>it never acts on partial arguments: they are written whole to an in-memory file before anything is
/// started, and the program's stdin is that file; a launcher started after Bureau died finds no parent and
/// exits without running the program;</item>
/// <item>every call is a session of its own (<c>setsid</c>), whose leader is the process Bureau started, so
/// what the tool leaves running can be found and killed.</item>
/// </list>
/// The chain, each step an <c>exec</c> in the same process except the last:
/// <c>setsid -- setpriv --pdeathsig ALRM -- sh -c LAUNCHER bureau-tool HOSTPID ARGSFILE PWD timeout -s KILL 0 PROGRAM ARGS...</c>;
/// <c>timeout</c> forks the program and waits for it, and exits with its status.
/// </summary>
internal static class ToolProcessLauncher
{
    /// <summary>
    /// The launcher script (constant; the values come as positional parameters, never as shell text).
    /// <c>$PPID</c> is read when the shell starts, after <c>setpriv</c> armed the death signal: if it is not
    /// Bureau, Bureau died before the signal was armed and nothing may run. The shell exports <c>PWD</c> of its
    /// own accord: <c>$3</c> restores the tool's environment (empty: no <c>PWD</c>; <c>=VALUE</c>: the tool's).
    /// </summary>
    internal const string LauncherScript = """[ "$PPID" = "$1" ] || exit 125; exec <"$2" || exit 125; if [ -n "$3" ]; then PWD=${3#=}; export PWD; else unset PWD; fi; shift 3; exec "$@" """;

    /// <summary>The exit code of the launcher when Bureau was gone before the program could be started.</summary>
    internal const int OrphanedExitCode = 125;

    /// <summary>The parent-death signal: <c>timeout</c> handles SIGALRM as its deadline and kills its process group.</summary>
    private const string DeathSignal = "ALRM";

    private const int SigKill = 9;

    private static readonly Lazy<(Utilities? Found, string? Missing)> s_utilities = new(FindUtilities);

    private static readonly BlockingCollection<(ProcessStartInfo StartInfo, TaskCompletionSource<Process> Started)> s_starts = new();

    private static readonly Lazy<Thread> s_spawner = new(() =>
    {
        var thread = new Thread(SpawnLoop) { IsBackground = true, Name = "Bureau tool spawner" };
        thread.Start();
        return thread;
    });

    /// <summary>
    /// The message <c>timeout</c> writes when it cannot exec the program, which then never ran:
    /// "/usr/bin/timeout: failed to run command 'X': REASON" (exit code 126, or 127 when not found).
    /// </summary>
    public static string? CouldNotStartReason(int exitCode, string stderr)
    {
        if (exitCode is not (126 or 127) || s_utilities.Value.Found is not { } u || stderr.Contains('\n')) return null;
        var prefix = u.Timeout + ": failed to run command ";
        if (!stderr.StartsWith(prefix, StringComparison.Ordinal)) return null;
        var reason = stderr.LastIndexOf(": ", StringComparison.Ordinal);
        return reason > prefix.Length ? stderr[(reason + 2)..] : null;
    }

    private sealed record Utilities(string Setsid, string Setpriv, string Timeout, string Shell);

    /// <summary>Null when process tools can run here; otherwise what is missing, to put in an error.</summary>
    public static string? Unavailable
    {
        get
        {
            if (!OperatingSystem.IsLinux())
                return $"process tools run on Linux only (they rely on setsid, setpriv's parent-death signal and /proc); this is {RuntimeInformation.OSDescription}";
            return s_utilities.Value.Missing;
        }
    }

    /// <summary>
    /// The start info of the launcher chain for one call. <paramref name="argumentsPath"/> is a file holding the
    /// complete arguments; <paramref name="hostPid"/> is the process the launcher must find as its parent.
    /// </summary>
    public static ProcessStartInfo CreateStartInfo(
        string program, IEnumerable<string> arguments, string workingDirectory,
        IReadOnlyDictionary<string, string> environment, string argumentsPath, int hostPid)
    {
        var u = s_utilities.Value.Found ?? throw new InvalidOperationException(Unavailable);
        var psi = new ProcessStartInfo(u.Setsid)
        {
            UseShellExecute = false,
            RedirectStandardInput = false, // the launcher replaces stdin with the arguments file before the program starts
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = workingDirectory,
            CreateNoWindow = true,
        };
        string[] chain =
        [
            "--", u.Setpriv, "--pdeathsig", DeathSignal,
            "--", u.Shell, "-c", LauncherScript, "bureau-tool", hostPid.ToString(CultureInfo.InvariantCulture), argumentsPath,
            environment.TryGetValue("PWD", out var pwd) ? "=" + pwd : string.Empty,
            u.Timeout, "-s", "KILL", "--", "0", program,
        ];
        foreach (var a in chain) psi.ArgumentList.Add(a);
        foreach (var a in arguments) psi.ArgumentList.Add(a);
        psi.Environment.Clear();
        foreach (var (name, value) in environment) psi.Environment[name] = value;
        return psi;
    }

    /// <summary>
    /// Starts a process from one long-lived thread. The parent-death signal fires when the <em>thread</em> that
    /// forked the child exits, not the process: starting from a pool thread that later retires would kill the
    /// tool. This thread never exits before the process does.
    /// </summary>
    public static Task<Process> StartAsync(ProcessStartInfo startInfo)
    {
        _ = s_spawner.Value;
        var started = new TaskCompletionSource<Process>(TaskCreationOptions.RunContinuationsAsynchronously);
        s_starts.Add((startInfo, started));
        return started.Task;
    }

    private static void SpawnLoop()
    {
        foreach (var (startInfo, started) in s_starts.GetConsumingEnumerable())
        {
            var process = new Process { StartInfo = startInfo };
            try
            {
                process.Start();
                started.SetResult(process);
            }
            catch (Exception ex)
            {
                process.Dispose();
                started.SetException(ex);
            }
        }
    }

    /// <summary>A process of a call's session, as <c>/proc/PID/stat</c> shows it.</summary>
    internal readonly record struct Member(int Pid, int ProcessGroup, string Command);

    /// <summary>
    /// Kills every live process of session <paramref name="session"/> (its process groups, with SIGKILL) and
    /// returns them. Rescans until no new member shows up, so a process forked while the first scan ran is
    /// caught too (a fork inside a group being killed fails; one in another group is found by the rescan).
    /// Call it while the leader lives or just after it exited: the session id is the leader's pid, which the
    /// kernel keeps allocated while any process of the session remains, and reuses only after a wrap-around.
    /// </summary>
    public static IReadOnlyList<Member> KillSession(int session)
    {
        var killed = new Dictionary<int, Member>();
        for (var pass = 0; pass < 5; pass++)
        {
            var fresh = false;
            var groups = new HashSet<int>();
            foreach (var member in SessionMembers(session))
            {
                fresh |= killed.TryAdd(member.Pid, member);
                // A process group lies within one session: killing it is safe, and atomic against its forks.
                if (groups.Add(member.ProcessGroup) && (member.ProcessGroup <= 1 || Kill(-member.ProcessGroup, SigKill) != 0))
                    Kill(member.Pid, SigKill);
            }
            if (!fresh) break;
        }
        return [.. killed.Values.OrderBy(m => m.Pid)];
    }

    /// <summary>The live (not zombie) processes whose session is <paramref name="session"/>.</summary>
    internal static List<Member> SessionMembers(int session)
    {
        var members = new List<Member>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out var pid)) continue;
            string stat;
            try
            {
                stat = File.ReadAllText(dir + "/stat");
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                continue; // exited meanwhile
            }
            // "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses.
            var close = stat.LastIndexOf(')');
            var open = stat.IndexOf('(');
            if (close < 0 || open < 0) continue;
            var fields = stat[(close + 2)..].Split(' ', 5);
            if (fields.Length < 4 || fields[0] is "Z" or "X") continue;
            if (!int.TryParse(fields[3], NumberStyles.None, CultureInfo.InvariantCulture, out var sid) || sid != session) continue;
            var group = int.Parse(fields[2], NumberStyles.None, CultureInfo.InvariantCulture);
            members.Add(new Member(pid, group, stat[(open + 1)..close]));
        }
        return members;
    }

    private static (Utilities?, string?) FindUtilities()
    {
        if (!OperatingSystem.IsLinux()) return (null, null);
        var dirs = (Environment.GetEnvironmentVariable("PATH") ?? string.Empty)
            .Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Where(Path.IsPathRooted)
            .Concat(["/usr/bin", "/bin", "/usr/sbin", "/sbin"])
            .Distinct(StringComparer.Ordinal)
            .ToArray();
        var setsid = Find("setsid");
        var setpriv = Find("setpriv");
        var timeout = Find("timeout");
        var shell = File.Exists("/bin/sh") ? "/bin/sh" : null;

        var missing = new List<string>();
        if (setsid is null) missing.Add("setsid (util-linux)");
        if (setpriv is null) missing.Add("setpriv (util-linux)");
        if (timeout is null) missing.Add("timeout (GNU coreutils)");
        else if (IsBusyBox(timeout)) missing.Add($"timeout from GNU coreutils ({timeout} is BusyBox's, which does not kill the tool's process group; install GNU coreutils)");
        if (shell is null) missing.Add("/bin/sh");
        if (missing.Count > 0)
        {
            return (null, "process tools need " + string.Join(", ", missing) + $" to tie the tool's processes to Bureau's life; not found on PATH or in /usr/bin, /bin");
        }
        return (new Utilities(setsid!, setpriv!, timeout!, shell!), null);

        string? Find(string name) => dirs.Select(d => Path.Combine(d, name)).FirstOrDefault(IsExecutableFile);
    }

    private static bool IsExecutableFile(string file)
    {
        if (!File.Exists(file) || OperatingSystem.IsWindows()) return false;
        const UnixFileMode anyExecute = UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute;
        return (File.GetUnixFileMode(file) & anyExecute) != 0;
    }

    private static bool IsBusyBox(string file)
    {
        var target = new FileInfo(file).ResolveLinkTarget(returnFinalTarget: true);
        return target is not null && Path.GetFileName(target.FullName).StartsWith("busybox", StringComparison.Ordinal);
    }

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);
}

/// <summary>
/// The arguments of one call, whole, in an in-memory file (<c>memfd_create</c>): never on disk, gone when
/// Bureau closes it or dies. A child opens it as <see cref="Path"/>, which exists only while Bureau lives.
/// </summary>
internal sealed class ToolArgumentsFile : IDisposable
{
    private const uint MfdCloexec = 1;

    private readonly SafeFileHandle _handle;

    private ToolArgumentsFile(SafeFileHandle handle) => _handle = handle;

    /// <summary>The path a child of this process opens to read the arguments.</summary>
    public string Path => $"/proc/{Environment.ProcessId}/fd/{_handle.DangerousGetHandle()}";

    /// <summary>Creates the file holding <paramref name="content"/>, written completely.</summary>
    public static ToolArgumentsFile Create(ReadOnlySpan<byte> content)
    {
        var fd = MemfdCreate("bureau-tool-arguments", MfdCloexec);
        if (fd < 0) throw new IOException($"could not create the in-memory file for the tool's arguments (memfd_create): {Marshal.GetLastPInvokeErrorMessage()}");
        var handle = new SafeFileHandle(fd, ownsHandle: true);
        try
        {
            RandomAccess.Write(handle, content, fileOffset: 0);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
        return new ToolArgumentsFile(handle);
    }

    public void Dispose() => _handle.Dispose();

    [DllImport("libc", EntryPoint = "memfd_create", SetLastError = true)]
    private static extern int MemfdCreate([MarshalAs(UnmanagedType.LPUTF8Str)] string name, uint flags);
}
