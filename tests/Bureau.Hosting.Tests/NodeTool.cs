using System.Diagnostics;
using Xunit;

namespace Bureau.Hosting.Tests;

/// <summary>
/// Runs the Node.js programs the tests use (clients and tools nobody here wrote, pinned in package-lock.json files
/// that test.sh installs with npm ci), bounded in time, with their output for the assertion messages.
/// </summary>
internal static class NodeTool
{
    /// <summary>The repository's root (where Bureau.slnx is).</summary>
    public static string RepoRoot { get; } = FindRoot();

    /// <summary>Fails the test, saying how to install it, when <paramref name="path"/> (an npm package or a tool) is missing.</summary>
    public static void Require(string path, string folder)
    {
        Assert.True(File.Exists(path) || Directory.Exists(path),
            $"{path} is missing: run `npm ci` in {folder} (test.sh does) with Node.js installed");
    }

    /// <summary>Runs <paramref name="program"/> in <paramref name="directory"/>; kills it after <paramref name="timeout"/>.</summary>
    public static async Task<(int Code, string Stdout, string Stderr)> RunAsync(string program, IEnumerable<string> arguments, string directory,
        TimeSpan timeout, IReadOnlyDictionary<string, string>? environment = null)
    {
        var start = new ProcessStartInfo(program)
        {
            WorkingDirectory = directory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var a in arguments) start.ArgumentList.Add(a);
        start.Environment["NO_COLOR"] = "1";
        foreach (var (k, v) in environment ?? new Dictionary<string, string>()) start.Environment[k] = v;
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        limit.CancelAfter(timeout);
        try
        {
            await process.WaitForExitAsync(limit.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{Path.GetFileName(program)} {string.Join(' ', start.ArgumentList)} did not finish within {timeout.TotalSeconds:0} s: {await stdout}{await stderr}");
        }
        return (process.ExitCode, await stdout, await stderr);
    }

    private static string FindRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Bureau.slnx"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("Bureau.slnx not found above " + AppContext.BaseDirectory);
    }
}
