using System.Security.Cryptography;
using System.Text;
using Bureau.Tests.Support;
using Bureau.Tools;
using Xunit;
using static Bureau.Tests.Tools.ToolTestSupport;

namespace Bureau.Tests.Tools;

public sealed class ProcessToolTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private BureauTool Tool(string name, string[] command, TimeSpan? timeout = null, int maxOutputBytes = 1024 * 1024, Dictionary<string, string?>? env = null) =>
        new ToolFactory().Create(new ProcessToolDefinition
        {
            Name = name,
            Command = command,
            WorkingDirectory = _dir.Path,
            Timeout = timeout,
            MaxOutputBytes = maxOutputBytes,
            Environment = env ?? [],
        });

    [Fact]
    public async Task InvokeAsync_ReadsStdin_StdoutIsTheResult()
    {
        var tool = Tool("echo", ["sh", "-c", "printf 'got: '; cat"]);

        var outcome = await tool.InvokeAsync(Invocation("echo", """{"n":1,"text":"héllo"}"""), TestContext.Current.CancellationToken);

        Assert.Equal(ToolOutcome.Success("""got: {"n":1,"text":"héllo"}"""), outcome);
    }

    [Fact]
    public async Task InvokeAsync_NonZeroExit_IsAnErrorWithTheTailOfStderr()
    {
        // 10 000 bytes of noise, then the line that matters: only the last ~2 KB comes back.
        var tool = Tool("fail", ["sh", "-c", "echo partial; head -c 10000 /dev/zero | tr '\\0' x >&2; echo >&2; echo 'ledger is locked' >&2; exit 3"]);

        var outcome = await tool.InvokeAsync(Invocation("fail"), TestContext.Current.CancellationToken);

        Assert.True(outcome.IsError);
        Assert.StartsWith("exit code 3: ", outcome.Content);
        Assert.EndsWith("ledger is locked", outcome.Content);
        Assert.InRange(outcome.Content.Length, 100, 2100);
    }

    [Fact]
    public async Task InvokeAsync_NonZeroExitWithoutStderr_SaysSo()
    {
        var outcome = await Tool("quiet", ["sh", "-c", "exit 2"]).InvokeAsync(Invocation("quiet"), TestContext.Current.CancellationToken);

        Assert.Equal(ToolOutcome.Error("exit code 2 (nothing on stderr)"), outcome);
    }

    [Fact]
    public async Task InvokeAsync_Timeout_KillsTheWholeProcessTree()
    {
        var tool = Tool("hang", ["sh", "-c", "sleep 30 & echo $! > grandchild.pid; echo $$ > child.pid; wait"], timeout: TimeSpan.FromSeconds(2));

        var outcome = await tool.InvokeAsync(Invocation("hang"), TestContext.Current.CancellationToken);

        Assert.Equal(ToolOutcome.Error("tool 'hang' timed out after 2s", ToolFailure.Timeout), outcome);
        await AssertGoneAsync(ReadPid(_dir.File("child.pid")), "the tool's process");
        await AssertGoneAsync(ReadPid(_dir.File("grandchild.pid")), "the tool's grandchild 'sleep 30'");
    }

    [Fact]
    public async Task InvokeAsync_Canceled_KillsTheWholeProcessTreeAndThrows()
    {
        var tool = Tool("hang", ["sh", "-c", "sleep 30 & echo $! > grandchild.pid.tmp; mv grandchild.pid.tmp grandchild.pid; wait"]);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);

        var call = tool.InvokeAsync(Invocation("hang"), cts.Token);
        await WaitUntilAsync(() => File.Exists(_dir.File("grandchild.pid")), "the tool to start its grandchild");
        var grandchild = ReadPid(_dir.File("grandchild.pid"));
        Assert.False(IsGone(grandchild));
        cts.Cancel();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => call);
        await AssertGoneAsync(grandchild, "the tool's grandchild 'sleep 30'");
    }

    [Fact]
    public async Task InvokeAsync_OversizeOutput_IsCutAndSaysSo()
    {
        var tool = Tool("chatty", ["sh", "-c", "head -c 200000 /dev/zero | tr '\\0' a; echo finished > done.txt"], maxOutputBytes: 1000);

        var outcome = await tool.InvokeAsync(Invocation("chatty"), TestContext.Current.CancellationToken);

        Assert.False(outcome.IsError);
        Assert.Equal(new string('a', 1000) + "\n[output truncated at 1000 bytes]", outcome.Content);
        // The rest was drained, not refused: the program ran to its end.
        Assert.Equal("finished\n", File.ReadAllText(_dir.File("done.txt")));
    }

    [Fact]
    public async Task InvokeAsync_OversizeOutput_DoesNotSplitAUtf8Character()
    {
        // "é" is two bytes; a 3-byte limit falls inside the second one.
        var tool = Tool("utf8", ["sh", "-c", "printf 'éééé'"], maxOutputBytes: 3);

        var outcome = await tool.InvokeAsync(Invocation("utf8"), TestContext.Current.CancellationToken);

        Assert.Equal("é\n[output truncated at 3 bytes]", outcome.Content);
    }

    [Fact]
    public async Task InvokeAsync_PassesRunIdIdempotencyKeyToolAndStep()
    {
        var tool = Tool("ids", ["sh", "-c", "printf '%s|%s|%s|%s' \"$BUREAU_RUN_ID\" \"$BUREAU_IDEMPOTENCY_KEY\" \"$BUREAU_TOOL\" \"$BUREAU_STEP\""]);

        var outcome = await tool.InvokeAsync(Invocation("ids", runId: "01kbwq2x0c7m9d4hzt", step: 5), TestContext.Current.CancellationToken);

        Assert.Equal(ToolOutcome.Success("01kbwq2x0c7m9d4hzt|01kbwq2x0c7m9d4hzt:5|ids|5"), outcome);
    }

    [Fact]
    public async Task InvokeAsync_MinimalEnvironment_HostSecretsAreNotPassedUnlessListed()
    {
        var suffix = Guid.NewGuid().ToString("n")[..8].ToUpperInvariant();
        var secret = "BUREAU_TEST_SECRET_" + suffix;
        var passed = "BUREAU_TEST_PASSED_" + suffix;
        Environment.SetEnvironmentVariable(secret, "s3cret");
        Environment.SetEnvironmentVariable(passed, "from-host");
        try
        {
            var tool = Tool("env", ["env"], env: new() { [passed] = null, ["REGION"] = "eu-1", ["NOT_ON_HOST_" + suffix] = null });

            var outcome = await tool.InvokeAsync(Invocation("env"), TestContext.Current.CancellationToken);

            var vars = outcome.Content.Split('\n', StringSplitOptions.RemoveEmptyEntries)
                .Select(l => l.Split('=', 2)).ToDictionary(p => p[0], p => p[1]);
            Assert.DoesNotContain(secret, vars.Keys);
            Assert.DoesNotContain("s3cret", outcome.Content);
            Assert.Equal("from-host", vars[passed]);
            Assert.Equal("eu-1", vars["REGION"]);
            string[] expected = ["BUREAU_IDEMPOTENCY_KEY", "BUREAU_RUN_ID", "BUREAU_STEP", "BUREAU_TOOL", "HOME", "LANG", "PATH", "REGION", passed];
            Assert.Equal(expected.Order(StringComparer.Ordinal), vars.Keys.Order(StringComparer.Ordinal));
        }
        finally
        {
            Environment.SetEnvironmentVariable(secret, null);
            Environment.SetEnvironmentVariable(passed, null);
        }
    }

    [Fact]
    public async Task InvokeAsync_ToolEnvironment_CannotOverrideBureauVariables()
    {
        var tool = Tool("ids", ["sh", "-c", "printf %s \"$BUREAU_IDEMPOTENCY_KEY\""], env: new() { ["BUREAU_IDEMPOTENCY_KEY"] = "forged" });

        var outcome = await tool.InvokeAsync(Invocation("ids"), TestContext.Current.CancellationToken);

        Assert.Equal("run1:7", outcome.Content);
    }

    [Fact]
    public async Task InvokeAsync_RelativeProgramPath_ResolvesFromTheWorkingDirectoryAndRunsThere()
    {
        Assert.SkipWhen(OperatingSystem.IsWindows(), "POSIX script");
        Directory.CreateDirectory(_dir.File("bin"));
        var script = _dir.File("bin/where.sh");
        File.WriteAllText(script, "#!/bin/sh\npwd\n");
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(script, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);

        var outcome = await Tool("where", ["bin/where.sh"]).InvokeAsync(Invocation("where"), TestContext.Current.CancellationToken);

        Assert.Equal(ToolOutcome.Success(Path.GetFullPath(_dir.Path)), outcome); // trailing line break dropped
    }

    [Fact]
    public async Task InvokeAsync_ProgramNotFound_IsAnErrorNamingIt()
    {
        var onPath = await Tool("x", ["no-such-program-bureau"]).InvokeAsync(Invocation("x"), TestContext.Current.CancellationToken);
        var relative = await Tool("y", ["./missing.sh"]).InvokeAsync(Invocation("y"), TestContext.Current.CancellationToken);

        Assert.Equal(ToolOutcome.Error("program 'no-such-program-bureau' not found (looked on PATH)", ToolFailure.NotSent), onPath);   // nothing ran
        Assert.Equal(ToolOutcome.Error($"program './missing.sh' not found (looked in the working directory {Path.GetFullPath(_dir.Path)})", ToolFailure.NotSent), relative);
    }

    [Fact]
    public async Task InvokeAsync_ProgramIgnoresStdin_StillSucceeds()
    {
        var big = "{\"text\":\"" + new string('z', 300_000) + "\"}";

        var outcome = await Tool("ignore", ["sh", "-c", "echo ok"]).InvokeAsync(Invocation("ignore", big), TestContext.Current.CancellationToken);

        Assert.Equal(ToolOutcome.Success("ok"), outcome);
    }

    [Fact]
    public async Task InvokeAsync_Arguments_AreWholeInAFileBeforeTheProgramStarts()
    {
        // 1 MiB of arguments. Before reading a byte, the program finds its stdin complete: a regular file of
        // the full size (a pipe fed by Bureau could end early if Bureau died while writing it).
        var json = "{\"text\":\"" + new string('z', 1024 * 1024) + "\"}";
        var bytes = Encoding.UTF8.GetBytes(json);
        var tool = Tool("args", ["sh", "-c", "test -f /dev/stdin && stat -L -c %s /dev/stdin; sha256sum | cut -d ' ' -f 1"]);

        var outcome = await tool.InvokeAsync(Invocation("args", json), TestContext.Current.CancellationToken);

        Assert.Equal(ToolOutcome.Success($"{bytes.Length}\n{Convert.ToHexStringLower(SHA256.HashData(bytes))}"), outcome);
    }

    [Fact]
    public async Task InvokeAsync_ToolExitsLeavingABackgroundChild_ResultIsItsOwnExitAndTheChildIsKilled()
    {
        // The child holds stdout open: waiting for the end of stdout would wait for the child (and time out).
        var tool = Tool("bg", ["sh", "-c", "sleep 60 & echo $! > stray.pid; echo ok"], timeout: TimeSpan.FromSeconds(30));

        var outcome = await tool.InvokeAsync(Invocation("bg"), TestContext.Current.CancellationToken);

        Assert.Equal(ToolOutcome.Success("ok"), outcome with { Note = null });
        AssertStraysKilled(1, outcome.Note);
        await AssertGoneAsync(ReadPid(_dir.File("stray.pid")), "the tool's stray child 'sleep 60'");
    }

    [Fact]
    public async Task InvokeAsync_ToolExitsWithErrorLeavingChildren_ErrorCarriesTheNote()
    {
        var tool = Tool("bg", ["sh", "-c", "sleep 60 & sleep 61 & echo broken >&2; exit 4"], timeout: TimeSpan.FromSeconds(30));

        var outcome = await tool.InvokeAsync(Invocation("bg"), TestContext.Current.CancellationToken);

        Assert.Equal(ToolOutcome.Error("exit code 4: broken"), outcome with { Note = null });
        AssertStraysKilled(2, outcome.Note);
    }

    /// <summary>
    /// The note names how many strays were killed and what they ran: `sleep`, or still `sh` for a child that had
    /// not reached its exec when the tool exited (the shell does not wait for that).
    /// </summary>
    private static void AssertStraysKilled(int count, string? note) =>
        Assert.Matches($@"^killed {count} stray descendant process(es)? left running by the tool: (sleep|sh)(, (sleep|sh))?$", note);

    [Fact]
    public async Task InvokeAsync_DescendantInASessionOfItsOwnHoldsStdout_ResultAfterTheGraceAndSaysSo()
    {
        // setsid takes the child out of the call's session: Bureau cannot tell it from any other process, so it
        // stops reading after the grace instead of waiting for it (before: the call timed out, output lost).
        var tool = Tool("escape", ["sh", "-c", "setsid sh -c 'echo $$ > escaped.tmp; mv escaped.tmp escaped.pid; exec sleep 60' & while [ ! -e escaped.pid ]; do sleep 0.01; done; echo ok"],
            timeout: TimeSpan.FromSeconds(30));
        try
        {
            var outcome = await tool.InvokeAsync(Invocation("escape"), TestContext.Current.CancellationToken);

            Assert.Equal(ToolOutcome.Success("ok") with
            {
                Note = "stopped reading the tool's output 2s after it exited: a process outside its session (setsid, a daemon) still held stdout or stderr open",
            }, outcome);
        }
        finally
        {
            if (File.Exists(_dir.File("escaped.pid")) && ReadPid(_dir.File("escaped.pid")) is var escaped && !IsGone(escaped))
                System.Diagnostics.Process.GetProcessById(escaped).Kill();
        }
    }

    [Fact]
    public async Task InvokeAsync_StartedFromAThreadThatThenExits_ToolKeepsRunning()
    {
        // The parent-death signal fires when the *thread* that forked the child exits. The tool must survive
        // the exit of the thread that called InvokeAsync (a pool thread retires whenever it likes).
        var tool = Tool("waiter", ["sh", "-c", "echo $$ > tool.tmp; mv tool.tmp tool.pid; while [ ! -e go ]; do sleep 0.01; done; echo alive"],
            timeout: TimeSpan.FromSeconds(30));
        Task<ToolOutcome>? call = null;
        string? threadTask = null;
        var thread = new Thread(() =>
        {
            threadTask = new FileInfo("/proc/thread-self").LinkTarget; // "PID/task/TID"
            call = tool.InvokeAsync(Invocation("waiter"), TestContext.Current.CancellationToken);
            SpinWait.SpinUntil(() => File.Exists(_dir.File("tool.pid")), TimeSpan.FromSeconds(20));
        });
        thread.Start();
        thread.Join();
        Assert.True(File.Exists(_dir.File("tool.pid")), "the tool 'waiter' should have started before its calling thread exited");
        await WaitUntilAsync(() => !Directory.Exists("/proc/" + threadTask), $"the calling thread ({threadTask}) to be gone from /proc");

        File.WriteAllText(_dir.File("go"), "");
        var outcome = await call!;

        Assert.Equal(ToolOutcome.Success("alive"), outcome);
    }

    [Fact]
    public async Task InvokeAsync_ProgramNotExecutable_CouldNotStartWithTheReason()
    {
        var script = _dir.File("plain.sh");
        File.WriteAllText(script, "#!/bin/sh\necho hi\n");

        var outcome = await Tool("plain", [script]).InvokeAsync(Invocation("plain"), TestContext.Current.CancellationToken);

        Assert.Equal(ToolOutcome.Error($"could not start '{script}': Permission denied", ToolFailure.NotSent), outcome);
    }

    [Fact]
    public void Create_EmptyCommand_Throws()
    {
        var ex = Assert.Throws<ArgumentException>(() => Tool("empty", []));

        Assert.Contains("tool 'empty': command is empty", ex.Message);
    }
}
