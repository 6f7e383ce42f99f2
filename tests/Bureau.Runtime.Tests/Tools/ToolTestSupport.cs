using System.Text.Json;
using Bureau.Tools;
using Xunit;

namespace Bureau.Tests.Tools;

internal static class ToolTestSupport
{
    public static ToolInvocation Invocation(string tool, string argumentsJson = "{}", string runId = "run1", long step = 7) =>
        new(runId, step, $"{runId}:{step}", tool, JsonDocument.Parse(argumentsJson).RootElement.Clone());

    public static JsonElement ParseJson(string text) => JsonDocument.Parse(text).RootElement.Clone();

    /// <summary>Waits for a condition the test cannot await directly (a file a child process writes), bounded.</summary>
    public static async Task WaitUntilAsync(Func<bool> condition, string what, int seconds = 10)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"gave up after {seconds}s waiting for {what}");
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }
    }

    /// <summary>True when the process no longer runs: gone from /proc, or a zombie waiting to be reaped.</summary>
    public static bool IsGone(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            var state = stat[(stat.LastIndexOf(')') + 2)..][0];
            return state is 'Z' or 'X';
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException or IOException)
        {
            return true;
        }
    }

    /// <summary>
    /// The tool returns once the killed tree closed its pipes; the kernel marks a process dead just
    /// after it closes its files, so allow that last moment before asserting.
    /// </summary>
    public static Task AssertGoneAsync(int pid, string what) => WaitUntilAsync(() => IsGone(pid), $"{what} (pid {pid}) to be killed", 5);

    public static int ReadPid(string file) => int.Parse(File.ReadAllText(file).Trim(), System.Globalization.CultureInfo.InvariantCulture);
}
