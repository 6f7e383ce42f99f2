using System.Text.Json;
using Xunit;

namespace Bureau.Durability.Tests.Bench;

/// <summary><c>bureau bench approvals</c> reports what it promises (no timing asserted; figures in docs/performance.md).</summary>
public sealed class ApprovalsBenchTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bureau-approvals-bench", Guid.NewGuid().ToString("n"));

    public ApprovalsBenchTests() => Directory.CreateDirectory(_dir);

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    [Fact]
    public async Task Approvals_SmallRun_EveryRunWaitsWithoutAnActivation_AndEachResumeIsTimed()
    {
        using var p = BureauProcess.Start(_dir, new Dictionary<string, string>(), "bench", "approvals", "--runs", "30", "--resumes", "7", "--db", Path.Combine(_dir, "a.db"));
        Assert.True(await p.WaitAsync(TimeSpan.FromSeconds(90)) == 0, p.Stderr);
        using var doc = JsonDocument.Parse(p.Stdout.Trim());
        var r = doc.RootElement;
        Assert.Equal(30, r.GetProperty("runs_waiting").GetInt32());
        Assert.Equal(0, r.GetProperty("active_executions_while_waiting").GetInt32()); // a waiting run holds no activation
        Assert.Equal(7, r.GetProperty("resumes").GetInt32());
        Assert.True(r.GetProperty("resume_p99_ms").GetDouble() >= r.GetProperty("resume_p50_ms").GetDouble());
        Assert.True(r.GetProperty("rss_mb_while_waiting").GetDouble() > 0);
    }
}
