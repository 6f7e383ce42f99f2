using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace Bureau.Tools;

/// <summary>
/// Runs a program (argv, no shell): the arguments are its stdin (JSON), its stdout is the result,
/// a non-zero exit is a tool error carrying the tail of its stderr. It runs with a minimal environment
/// (see <see cref="BuildEnvironment"/>), in a session of its own started by <see cref="ToolProcessLauncher"/>:
/// its stdin is a file holding the complete arguments, and it dies when Bureau dies. When the program exits,
/// whatever it left running in its session is killed and the outcome's <see cref="ToolOutcome.Note"/> says
/// so; the result is the program's own exit and output. On timeout or cancellation the whole session (and
/// process tree) is killed. Stdout beyond <see cref="ProcessToolDefinition.MaxOutputBytes"/> is read and
/// discarded (the program is not killed for talking too much, so a write tool finishes what it started) and
/// the result says it was cut.
/// </summary>
internal sealed class ProcessTool : BureauTool
{
    private const int StderrTailBytes = 2048;

    /// <summary>
    /// How long to keep reading stdout and stderr once the program exited and its session was killed (or the
    /// tree was killed on timeout): only a process that left the session can still hold them open.
    /// </summary>
    internal static readonly TimeSpan PipeGrace = TimeSpan.FromSeconds(2);

    private readonly ProcessToolDefinition _definition;

    public ProcessTool(ProcessToolDefinition definition) : base(definition)
    {
        if (definition.Command.Count == 0 || string.IsNullOrWhiteSpace(definition.Command[0]))
            throw new ArgumentException($"tool '{definition.Name}': command is empty; give the program and its arguments", nameof(definition));
        if (definition.MaxOutputBytes <= 0)
            throw new ArgumentException($"tool '{definition.Name}': maxOutputBytes must be positive, was {definition.MaxOutputBytes}", nameof(definition));
        if (ToolProcessLauncher.Unavailable is { } unavailable)
            throw new PlatformNotSupportedException($"tool '{definition.Name}': {unavailable}");
        _definition = definition;
    }

    /// <inheritdoc />
    protected override bool HonoursCancellation => true;

    protected override async Task<ToolOutcome> InvokeCoreAsync(ToolInvocation invocation, CancellationToken cancellationToken)
    {
        var workingDirectory = Path.GetFullPath(_definition.WorkingDirectory ?? Directory.GetCurrentDirectory());
        var environment = BuildEnvironment(_definition, invocation);
        var program = ResolveProgram(_definition.Command[0], workingDirectory, environment.GetValueOrDefault("PATH"));
        if (program is null)
            return ToolOutcome.Error($"program '{_definition.Command[0]}' not found ({DescribeLookup(_definition.Command[0], workingDirectory)})", ToolFailure.NotSent);

        // A sandboxed tool runs inside bubblewrap, or not at all (docs/decisions/0029).
        var launched = program;
        IEnumerable<string> launchArguments = _definition.Command.Skip(1);
        string? sandboxNote = null;
        if (_definition.Sandbox is { } sandbox)
        {
            try
            {
                (launched, var wrapped) = ToolSandbox.Wrap(sandbox, program, launchArguments, workingDirectory);
                launchArguments = wrapped;
            }
            catch (InvalidOperationException ex)
            {
                return ToolOutcome.Error($"tool '{Name}' is sandboxed and was not run: {ex.Message}", ToolFailure.NotSent);
            }
            var notApplied = ToolSandbox.NotApplied(sandbox, workingDirectory);
            sandboxNote = ToolSandbox.Describe(sandbox, workingDirectory) + (notApplied.Count == 0 ? string.Empty : "; not applied: " + string.Join("; ", notApplied));
        }

        // All or nothing: the arguments are complete before anything starts.
        using var arguments = ToolArgumentsFile.Create(Encoding.UTF8.GetBytes(invocation.Arguments.GetRawText()));
        var psi = ToolProcessLauncher.CreateStartInfo(
            launched, launchArguments, workingDirectory, environment, arguments.Path, Environment.ProcessId);

        Process process;
        try
        {
            process = await ToolProcessLauncher.StartAsync(psi);
        }
        catch (Win32Exception ex)
        {
            return ToolOutcome.Error($"could not start '{program}': {ex.Message}", ToolFailure.NotSent);
        }
        using var _ = process;
        // setsid made the started process the leader of a new session and process group: its pid is their id.
        var session = process.Id;

        // Reading stops at the end of the pipes, or when `stop` fires (what was read so far is kept).
        using var stop = new CancellationTokenSource();
        var stdout = ToolOutput.ReadHeadAsync(new StoppableReadStream(process.StandardOutput.BaseStream, stop.Token), _definition.MaxOutputBytes, drain: true, CancellationToken.None);
        var stderr = ToolOutput.ReadTailAsync(new StoppableReadStream(process.StandardError.BaseStream, stop.Token), StderrTailBytes, CancellationToken.None);
        try
        {
            // The session leader is `timeout`, which exits when the program does, with its status.
            await process.WaitForExitAsync(cancellationToken);
        }
        catch
        {
            // Timeout, cancellation: nothing of the call may outlive it.
            ToolProcessLauncher.KillSession(session);
            KillTree(process);
            await process.WaitForExitAsync(CancellationToken.None);
            ToolProcessLauncher.KillSession(session); // what a dying tree forked meanwhile
            await PipesClosedAsync([stdout, stderr], stop);
            throw;
        }

        // The program exited: what it left running in its session is stray.
        var notes = new List<string>();
        if (sandboxNote is not null) notes.Add(sandboxNote);
        var strays = ToolProcessLauncher.KillSession(session);
        if (strays.Count > 0) notes.Add(StrayNote(strays));
        if (!await PipesClosedAsync([stdout, stderr], stop))
            notes.Add($"stopped reading the tool's output {PipeGrace.TotalSeconds:0}s after it exited: a process outside its session (setsid, a daemon) still held stdout or stderr open");
        var note = notes.Count == 0 ? null : string.Join("; ", notes);

        var output = ToolOutput.Text(await stdout, _definition.MaxOutputBytes);
        var exitCode = process.ExitCode;
        var tail = ToolOutput.TailText(await stderr);
        if (exitCode != 0)
        {
            if (ToolProcessLauncher.CouldNotStartReason(exitCode, tail) is { } reason)
                return ToolOutcome.Error($"could not start '{program}': {reason}", ToolFailure.NotSent) with { Note = note };
            // 128+N: killed by signal N (the session leader reports it so): a crash, not an answer.
            var failure = exitCode > 128 ? ToolFailure.Crash : ToolFailure.Error;
            var limit = _definition.Sandbox is { } s ? ToolSandbox.ExitReason(exitCode, s) : null;
            var code = limit is null ? $"exit code {exitCode}" : $"exit code {exitCode}, {limit}";
            return ToolOutcome.Error(tail.Length == 0 ? $"{code} (nothing on stderr)" : $"{code}: {tail}", failure) with { Note = note };
        }
        // Trailing line breaks are dropped, as a shell's $(...) does: `echo`/`print` end with one.
        return ToolOutcome.Success(output.TrimEnd('\r', '\n')) with { Note = note };
    }

    /// <summary>"killed 2 stray descendant processes left running by the tool: sleep, python3".</summary>
    internal static string StrayNote(IReadOnlyList<ToolProcessLauncher.Member> strays)
    {
        var names = strays.Select(s => s.Command).Distinct(StringComparer.Ordinal).ToList();
        var shown = string.Join(", ", names.Take(5)) + (names.Count > 5 ? ", …" : string.Empty);
        var noun = strays.Count == 1 ? "process" : "processes";
        return $"killed {strays.Count} stray descendant {noun} left running by the tool: {shown}";
    }

    private static void KillTree(Process process)
    {
        try
        {
            // A descendant that made a session of its own is outside the call's session, but may still be in the tree.
            process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
            // Already exited.
        }
    }

    /// <summary>
    /// Waits for stdout and stderr to close, at most <see cref="PipeGrace"/>; then stops reading, keeping what was
    /// read. True when they closed.
    /// </summary>
    private static async Task<bool> PipesClosedAsync(Task[] reads, CancellationTokenSource stop)
    {
        try
        {
            await Task.WhenAll(reads).WaitAsync(PipeGrace);
            return true;
        }
        catch (TimeoutException)
        {
            stop.Cancel();
            try
            {
                await Task.WhenAll(reads);
            }
            catch (IOException)
            {
                // Reading a pipe of a killed process.
            }
            return false;
        }
        catch (IOException)
        {
            return true;
        }
    }

    /// <summary>A read-only view of a pipe whose reads end (return 0, as at the end) once a token fires.</summary>
    private sealed class StoppableReadStream(Stream inner, CancellationToken stop) : Stream
    {
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            using var linked = cancellationToken.CanBeCanceled ? CancellationTokenSource.CreateLinkedTokenSource(stop, cancellationToken) : null;
            try
            {
                return await inner.ReadAsync(buffer, linked?.Token ?? stop);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return 0;
            }
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
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
