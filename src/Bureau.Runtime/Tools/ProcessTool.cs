using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace Bureau.Tools;

/// <summary>
/// Runs a program (argv, no shell): the arguments go to its stdin as JSON, its stdout is the result,
/// a non-zero exit is a tool error carrying the tail of its stderr. It runs with a minimal environment
/// (see <see cref="BuildEnvironment"/>). On timeout or cancellation the whole process tree is killed.
/// Stdout beyond <see cref="ProcessToolDefinition.MaxOutputBytes"/> is read and discarded (the program
/// is not killed for talking too much, so a write tool finishes what it started) and the result says
/// it was cut.
/// </summary>
internal sealed class ProcessTool : BureauTool
{
    private const int StderrTailBytes = 2048;

    /// <summary>How long to wait for the pipes to close once the process tree was killed.</summary>
    private static readonly TimeSpan s_pipeGrace = TimeSpan.FromSeconds(5);

    private readonly ProcessToolDefinition _definition;

    public ProcessTool(ProcessToolDefinition definition) : base(definition)
    {
        if (definition.Command.Count == 0 || string.IsNullOrWhiteSpace(definition.Command[0]))
            throw new ArgumentException($"tool '{definition.Name}': command is empty; give the program and its arguments", nameof(definition));
        if (definition.MaxOutputBytes <= 0)
            throw new ArgumentException($"tool '{definition.Name}': maxOutputBytes must be positive, was {definition.MaxOutputBytes}", nameof(definition));
        _definition = definition;
    }

    protected override async Task<ToolOutcome> InvokeCoreAsync(ToolInvocation invocation, CancellationToken cancellationToken)
    {
        var workingDirectory = Path.GetFullPath(_definition.WorkingDirectory ?? Directory.GetCurrentDirectory());
        var environment = BuildEnvironment(_definition, invocation);
        var program = ResolveProgram(_definition.Command[0], workingDirectory, environment.GetValueOrDefault("PATH"));
        if (program is null)
            return ToolOutcome.Error($"program '{_definition.Command[0]}' not found ({DescribeLookup(_definition.Command[0], workingDirectory)})");

        var psi = new ProcessStartInfo(program)
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            StandardInputEncoding = new UTF8Encoding(false),
            WorkingDirectory = workingDirectory,
            CreateNoWindow = true,
        };
        for (var i = 1; i < _definition.Command.Count; i++) psi.ArgumentList.Add(_definition.Command[i]);
        psi.Environment.Clear();
        foreach (var (name, value) in environment) psi.Environment[name] = value;

        using var process = new Process { StartInfo = psi };
        try
        {
            process.Start();
        }
        catch (Win32Exception ex)
        {
            return ToolOutcome.Error($"could not start '{program}': {ex.Message}");
        }

        // Pipes are read until they close; this token only unblocks them if a killed tree left one open.
        using var pipes = new CancellationTokenSource();
        var stdout = ToolOutput.ReadHeadAsync(process.StandardOutput.BaseStream, _definition.MaxOutputBytes, drain: true, pipes.Token);
        var stderr = ToolOutput.ReadTailAsync(process.StandardError.BaseStream, StderrTailBytes, pipes.Token);
        var stdin = WriteArgumentsAsync(process.StandardInput.BaseStream, invocation, cancellationToken);
        try
        {
            await Task.WhenAll(stdout, stderr).WaitAsync(cancellationToken);
            await process.WaitForExitAsync(cancellationToken);
        }
        catch
        {
            // Timeout, cancellation, or a failing pipe: nothing of the tree may outlive the call.
            await KillTreeAsync(process, [stdout, stderr, stdin], pipes);
            throw;
        }
        await stdin;

        var output = ToolOutput.Text(await stdout, _definition.MaxOutputBytes);
        if (process.ExitCode != 0)
        {
            var tail = ToolOutput.TailText(await stderr);
            return ToolOutcome.Error(tail.Length == 0 ? $"exit code {process.ExitCode} (nothing on stderr)" : $"exit code {process.ExitCode}: {tail}");
        }
        // Trailing line breaks are dropped, as a shell's $(...) does: `echo`/`print` end with one.
        return ToolOutcome.Success(output.TrimEnd('\r', '\n'));
    }

    /// <summary>Kills the process and its descendants, then waits for it to exit and for its pipes to close.</summary>
    private static async Task KillTreeAsync(Process process, Task[] pending, CancellationTokenSource pipes)
    {
        try
        {
            process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
            // Already exited.
        }
        await process.WaitForExitAsync(CancellationToken.None);
        // The pipes close once every process holding them is gone, killed descendants included.
        // A descendant that left the tree (setsid, double fork) could hold them open: stop waiting then.
        try
        {
            await Task.WhenAll(pending).WaitAsync(s_pipeGrace);
        }
        catch (TimeoutException)
        {
            pipes.Cancel();
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException)
        {
            // Reading or writing a pipe of a killed process.
        }
    }

    private static async Task WriteArgumentsAsync(Stream stdin, ToolInvocation invocation, CancellationToken cancellationToken)
    {
        try
        {
            await stdin.WriteAsync(Encoding.UTF8.GetBytes(invocation.Arguments.GetRawText()), cancellationToken);
            await stdin.FlushAsync(cancellationToken);
        }
        catch (IOException)
        {
            // The program closed its stdin without reading it all (or exited): not an error.
        }
        catch (OperationCanceledException)
        {
            // Killed while writing; the caller reports the timeout or cancellation.
        }
        finally
        {
            try { stdin.Dispose(); } catch (IOException) { }
        }
    }

    /// <summary>
    /// The child's whole environment: <c>PATH</c>, <c>HOME</c> and <c>LANG</c> from the host (with defaults),
    /// then the tool's <c>env</c> entries (a null value passes the host's variable through when set), then
    /// the <c>BUREAU_*</c> variables, which a tool cannot override. Nothing else of the host is passed on.
    /// </summary>
    internal static Dictionary<string, string> BuildEnvironment(ProcessToolDefinition definition, ToolInvocation invocation)
    {
        var env = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["PATH"] = Host("PATH") ?? "/usr/local/bin:/usr/bin:/bin",
            ["HOME"] = Host("HOME") ?? Path.GetTempPath(),
            ["LANG"] = Host("LANG") ?? "C.UTF-8",
        };
        if (OperatingSystem.IsWindows())
        {
            foreach (var name in new[] { "SystemRoot", "windir", "PATHEXT", "TEMP", "TMP" })
                if (Host(name) is { } v) env[name] = v;
        }
        foreach (var (name, value) in definition.Environment)
        {
            if (value is not null) env[name] = value;
            else if (Host(name) is { } hostValue) env[name] = hostValue;
        }
        env["BUREAU_RUN_ID"] = invocation.RunId;
        env["BUREAU_IDEMPOTENCY_KEY"] = invocation.IdempotencyKey;
        env["BUREAU_TOOL"] = invocation.ToolName;
        env["BUREAU_STEP"] = invocation.Step.ToString(CultureInfo.InvariantCulture);
        return env;

        static string? Host(string name) => Environment.GetEnvironmentVariable(name) is { Length: > 0 } v ? v : null;
    }

    /// <summary>
    /// An absolute path is used as is; a relative path with a directory separator resolves against the
    /// working directory; a bare name is looked up on <paramref name="path"/> (the child's PATH).
    /// </summary>
    internal static string? ResolveProgram(string program, string workingDirectory, string? path)
    {
        if (Path.IsPathRooted(program)) return File.Exists(program) ? program : null;
        if (program.Contains('/') || program.Contains(Path.DirectorySeparatorChar))
        {
            var full = Path.GetFullPath(Path.Combine(workingDirectory, program));
            return File.Exists(full) ? full : null;
        }
        foreach (var dir in (path ?? string.Empty).Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            var candidate = Path.Combine(Path.IsPathRooted(dir) ? dir : Path.Combine(workingDirectory, dir), program);
            if (IsExecutable(candidate)) return candidate;
            if (OperatingSystem.IsWindows() && IsExecutable(candidate + ".exe")) return candidate + ".exe";
        }
        return null;
    }

    private static bool IsExecutable(string file)
    {
        if (!File.Exists(file)) return false;
        if (OperatingSystem.IsWindows()) return true;
        const UnixFileMode anyExecute = UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute;
        return (File.GetUnixFileMode(file) & anyExecute) != 0;
    }

    private static string DescribeLookup(string program, string workingDirectory) =>
        Path.IsPathRooted(program) ? "no such file"
        : program.Contains('/') || program.Contains(Path.DirectorySeparatorChar) ? $"looked in the working directory {workingDirectory}"
        : "looked on PATH";
}
