using System.Diagnostics;
using System.Text;

namespace Bureau.Durability.Tests;

/// <summary>A real `bureau` process (the CLI built beside these tests), killable with SIGKILL.</summary>
public sealed class BureauProcess : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _stdout = new();
    private readonly StringBuilder _stderr = new();

    private BureauProcess(Process process)
    {
        _process = process;
    }

    /// <summary>
    /// The CLI as built in its own output folder (src/Bureau.Cli/bin/CONFIG/TFM), so it runs with its own
    /// runtimeconfig and deps; the copy in this test's folder would resolve framework assemblies differently.
    /// </summary>
    public static string BureauDll { get; } = FindBureauDll();

    /// <summary>The CLI with crash points armed by <c>BUREAU_CRASH_AT</c> (tests/Bureau.TestHost): the bureau executable has none.</summary>
    public static string CrashHostDll { get; } = FindBuilt(Path.Combine("tests", "Bureau.TestHost"), "Bureau.TestHost.dll");

    private static string FindBureauDll() => FindBuilt(Path.Combine("src", "Bureau.Cli"), "bureau.dll");

    private static string FindBuilt(string project, string dll)
    {
        var baseDir = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        var tfm = baseDir.Name;
        var config = baseDir.Parent!.Name;
        for (var dir = baseDir; dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, project, "bin", config, tfm, dll);
            if (File.Exists(candidate)) return candidate;
        }
        return Path.Combine(AppContext.BaseDirectory, dll);
    }

    public static BureauProcess Start(string workingDirectory, IDictionary<string, string> env, params string[] args) =>
        StartVia([], workingDirectory, env, args);

    /// <summary>Runs bureau to its end in <paramref name="workingDirectory"/> (at most <paramref name="timeout"/>): its exit code and output.</summary>
    public static async Task<(int Code, string Stdout, string Stderr)> RunAsync(string workingDirectory, TimeSpan timeout, params string[] args)
    {
        using var process = Start(workingDirectory, new Dictionary<string, string>(), args);
        var code = await process.WaitAsync(timeout);
        return (code, process.Stdout, process.Stderr);
    }

    /// <summary>Starts bureau through <paramref name="prefix"/> (for example <c>setpriv --reuid=65534 ...</c> to run it as another user).</summary>
    public static BureauProcess StartVia(string[] prefix, string workingDirectory, IDictionary<string, string> env, params string[] args)
    {
        var psi = new ProcessStartInfo(prefix.Length > 0 ? prefix[0] : "dotnet")
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        if (prefix.Length > 0)
        {
            foreach (var a in prefix.Skip(1)) psi.ArgumentList.Add(a);
            psi.ArgumentList.Add("dotnet");
        }
        psi.ArgumentList.Add(env.TryGetValue("BUREAU_CRASH_AT", out var crashAt) && crashAt.Length > 0 ? CrashHostDll : BureauDll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        foreach (var (k, v) in env) psi.Environment[k] = v;
        psi.Environment["DOTNET_TieredPGO"] = "0";
        var p = new BureauProcess(Process.Start(psi)!);
        p._process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (p._stdout) p._stdout.AppendLine(e.Data); };
        p._process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (p._stderr) p._stderr.AppendLine(e.Data); };
        p._process.BeginOutputReadLine();
        p._process.BeginErrorReadLine();
        p._process.StandardInput.Close();
        return p;
    }

    /// <summary>The process id (through fiu-run or setpriv: the same process, they exec).</summary>
    public int Id => _process.Id;

    /// <summary>True once the process has exited.</summary>
    public bool HasExited => _process.HasExited;

    public string Stdout { get { lock (_stdout) return _stdout.ToString(); } }
    public string Stderr { get { lock (_stderr) return _stderr.ToString(); } }

    /// <summary>Waits for the process to exit and returns its exit code; fails the test with its output on timeout.</summary>
    public async Task<int> WaitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            Kill();
            throw new TimeoutException($"bureau did not exit within {timeout.TotalSeconds}s.\nstdout:\n{Stdout}\nstderr:\n{Stderr}");
        }
        _process.WaitForExit(); // drain the output readers
        return _process.ExitCode;
    }

    /// <summary>SIGTERM: asks for a graceful stop (the process is expected to exit on its own).</summary>
    public void Terminate()
    {
        using var kill = Process.Start(new ProcessStartInfo("kill") { ArgumentList = { "-TERM", _process.Id.ToString() }, UseShellExecute = false })!;
        kill.WaitForExit();
    }

    /// <summary>SIGKILL: no cleanup, no flush, like a power cut for the process.</summary>
    public void Kill()
    {
        try { _process.Kill(entireProcessTree: false); } catch (InvalidOperationException) { }
        _process.WaitForExit();
    }

    public void Dispose()
    {
        if (!_process.HasExited) Kill();
        _process.Dispose();
    }
}
