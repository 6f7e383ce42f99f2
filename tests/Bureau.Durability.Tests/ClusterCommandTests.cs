using Xunit;

namespace Bureau.Durability.Tests;

/// <summary>Cluster mode's command line refuses what cannot work, saying what is missing, before anything starts.</summary>
public sealed class ClusterCommandTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bureau-cluster-cli", Guid.NewGuid().ToString("n"));

    public ClusterCommandTests()
    {
        Directory.CreateDirectory(_dir);
        File.WriteAllText(Path.Combine(_dir, "bureau.yaml"), """
            models:
              script: { provider: scripted, rules: [ { reply: "done" } ] }
            agents:
              clerk: { model: script }
            """);
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private async Task<(int Code, string Stderr)> RunAsync(params string[] args)
    {
        using var p = BureauProcess.Start(_dir, new Dictionary<string, string>(), args);
        var code = await p.WaitAsync(TimeSpan.FromSeconds(60));
        return (code, p.Stderr);
    }

    [Fact]
    public async Task Serve_ClusterWithoutPostgres_IsRefusedWithWhatItNeeds()
    {
        var (code, stderr) = await RunAsync("serve", "bureau.yaml", "--cluster", "--db", Path.Combine(_dir, "b.db"));
        Assert.Equal(2, code);
        Assert.Contains("--cluster needs PostgreSQL", stderr);
        Assert.False(File.Exists(Path.Combine(_dir, "b.db"))); // nothing was created
    }

    [Fact]
    public async Task Serve_ClusterOptionsWithoutCluster_AreRefused()
    {
        var (code, stderr) = await RunAsync("serve", "bureau.yaml", "--silo-port", "11111", "--db", Path.Combine(_dir, "b.db"));
        Assert.Equal(2, code);
        Assert.Contains("apply with --cluster only", stderr);
    }

    [Fact]
    public async Task ClusterStatus_WithoutPostgres_SaysItNeedsTheDatabase()
    {
        var (code, stderr) = await RunAsync("cluster", "status");
        Assert.Equal(2, code);
        Assert.Contains("needs --postgres", stderr);
    }
}
