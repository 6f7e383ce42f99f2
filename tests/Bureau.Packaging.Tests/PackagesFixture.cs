using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using Xunit;

namespace Bureau.Packaging.Tests;

/// <summary>
/// Packs the solution once (<c>dotnet pack Bureau.slnx --no-build</c>: test.sh built it) into a folder feed, with a
/// version of its own so that NuGet's cache never hands a test an older build; removes those packages from the cache at the end.
/// </summary>
public sealed class PackagesFixture : IAsyncLifetime
{
    public static string Root { get; } = FindRoot();
    public string Work { get; } = Path.Combine(Path.GetTempPath(), "bureau-packaging-tests", Guid.NewGuid().ToString("n"));
    public string Feed => Path.Combine(Work, "artifacts");
    public string PackageVersion { get; } = $"0.0.0-test.{DateTime.UtcNow:yyyyMMddHHmmss}.{Environment.ProcessId}";

    /// <summary>The version every project carries (Directory.Build.props): what <c>bureau --version</c> says.</summary>
    public static string ProductVersion { get; } =
        Regex.Match(File.ReadAllText(Path.Combine(Root, "Directory.Build.props")), "<Version>([^<]+)</Version>").Groups[1].Value;

    public async ValueTask InitializeAsync()
    {
        Directory.CreateDirectory(Feed);
        var (code, output) = await Dotnet.RunAsync(Root, TimeSpan.FromMinutes(10),
            "pack", "Bureau.slnx", "-c", "Release", "--no-build", "-o", Feed, $"-p:PackageVersion={PackageVersion}", "-nologo", "-v", "quiet");
        if (code != 0) throw new InvalidOperationException($"dotnet pack failed (exit {code}); build the solution first (test.sh does):\n{output}");
    }

    public ValueTask DisposeAsync()
    {
        var cache = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } p ? p : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        if (Directory.Exists(cache))
        {
            foreach (var package in Directory.EnumerateDirectories(cache, "bureau*"))
            {
                var version = Path.Combine(package, PackageVersion);
                if (Directory.Exists(version)) TryDelete(version);
            }
        }
        TryDelete(Work);
        return ValueTask.CompletedTask;
    }

    private static void TryDelete(string dir)
    {
        try { Directory.Delete(dir, recursive: true); }
        catch (IOException) { /* left for the OS's temp cleaning */ }
        catch (UnauthorizedAccessException) { }
    }

    private static string FindRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Bureau.slnx"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("Bureau.slnx not found above " + AppContext.BaseDirectory);
    }
}

/// <summary>Runs <c>dotnet</c> (or a program) as a user would, outside the test host's MSBuild environment.</summary>
public static class Dotnet
{
    public static Task<(int Code, string Output)> RunAsync(string directory, TimeSpan timeout, params string[] arguments) =>
        ProgramAsync("dotnet", directory, timeout, arguments);

    public static async Task<(int Code, string Output)> ProgramAsync(string program, string directory, TimeSpan timeout, params string[] arguments)
    {
        using var process = Start(program, directory, arguments);
        var output = new StringBuilder();
        var stdout = Pump(process.StandardOutput, output);
        var stderr = Pump(process.StandardError, output);
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{program} {string.Join(' ', arguments)} did not finish within {timeout.TotalMinutes} min:\n{output}");
        }
        await Task.WhenAll(stdout, stderr);
        lock (output) return (process.ExitCode, output.ToString());
    }

    public static Process Start(string program, string directory, params string[] arguments)
    {
        var start = new ProcessStartInfo(program)
        {
            WorkingDirectory = directory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var a in arguments) start.ArgumentList.Add(a);
        // The test host runs under MSBuild/VSTest variables that would steer a nested dotnet to the wrong SDK pieces.
        foreach (var name in new[] { "MSBuildSDKsPath", "MSBUILD_EXE_PATH", "MSBuildExtensionsPath", "MSBuildLoadMicrosoftTargetsReadOnly", "VSTEST_HOST_DEBUG" })
            start.Environment.Remove(name);
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        start.Environment["DOTNET_SKIP_FIRST_TIME_EXPERIENCE"] = "1";
        return Process.Start(start)!;
    }

    public static async Task Pump(StreamReader reader, StringBuilder sink)
    {
        while (await reader.ReadLineAsync() is { } line)
            lock (sink) sink.AppendLine(line);
    }
}
