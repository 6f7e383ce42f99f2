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

        Assert.Equal(ToolOutcome.Error("tool 'hang' timed out after 2s"), outcome);
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

        Assert.Equal(ToolOutcome.Error("program 'no-such-program-bureau' not found (looked on PATH)"), onPath);
        Assert.Equal(ToolOutcome.Error($"program './missing.sh' not found (looked in the working directory {Path.GetFullPath(_dir.Path)})"), relative);
    }

    [Fact]
    public async Task InvokeAsync_ProgramIgnoresStdin_StillSucceeds()
    {
        var big = "{\"text\":\"" + new string('z', 300_000) + "\"}";

        var outcome = await Tool("ignore", ["sh", "-c", "echo ok"]).InvokeAsync(Invocation("ignore", big), TestContext.Current.CancellationToken);

        Assert.Equal(ToolOutcome.Success("ok"), outcome);
    }

    [Fact]
    public void Create_EmptyCommand_Throws()
    {
        var ex = Assert.Throws<ArgumentException>(() => Tool("empty", []));

        Assert.Contains("tool 'empty': command is empty", ex.Message);
    }
}
