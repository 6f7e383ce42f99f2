using System.Text.Json;
using Bureau.Storage.PostgreSql;
using Xunit;

namespace Bureau.Durability.Tests;

/// <summary>`bureau workforce status --postgres` reads the inbox a PostgreSQL host keeps, in the schema it is told.</summary>
public sealed class WorkforcePostgresCommandTests : IAsyncDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bureau-workforce-pg-cli", Guid.NewGuid().ToString("n"));
    private readonly string _schema = "t_" + Guid.NewGuid().ToString("n");
    private readonly string _server;

    public WorkforcePostgresCommandTests()
    {
        _server = TestPostgres.ServerOrSkip();
        Directory.CreateDirectory(_dir);
        File.WriteAllText(Path.Combine(_dir, "bureau.yaml"), """
            models:
              script: { provider: scripted, rules: [ { reply: "done" } ] }
            agents:
              ann: { model: script }
              bob: { model: script }
            workforce:
              members:
                ann: { skills: [desk], concurrency: 2 }
                bob: { skills: [desk, billing], concurrency: 1 }
            """);
    }

    public async ValueTask DisposeAsync()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
        await TestPostgres.DropSchemasAsync(_server, _schema);
    }

    [Fact]
    public async Task Status_OnPostgres_ShowsTheInboxAndEachMembersLoad()
    {
        var ct = TestContext.Current.CancellationToken;
        await using (var store = new PostgreSqlWorkforceStore(new PostgreSqlStoreOptions { ConnectionString = _server, Schema = _schema }))
        {
            await store.InitializeAsync(ct);
            var now = DateTimeOffset.UtcNow;
            await store.EnqueueAsync("t1", "billing", "refund 1042", "api", null, now, ct);
            await store.EnqueueAsync("t2", "desk", "password reset", "api", null, now, ct);
            await store.EnqueueAsync("t3", "desk", "printer", "api", null, now, ct);
            Assert.NotNull(await store.AssignAsync("t3", "ann", 2, now, ct));
        }

        using var p = BureauProcess.Start(_dir, new Dictionary<string, string>(), "workforce", "status", "bureau.yaml", "--postgres", _server, "--schema", _schema, "--json");
        Assert.Equal(0, await p.WaitAsync(TimeSpan.FromSeconds(60)));
        using var doc = JsonDocument.Parse(p.Stdout);
        var agents = doc.RootElement.GetProperty("agents").EnumerateArray().ToDictionary(a => a.GetProperty("name").GetString()!);
        Assert.Equal(1, agents["ann"].GetProperty("inProgress").GetInt32());
        Assert.Equal(0, agents["bob"].GetProperty("inProgress").GetInt32());
        Assert.Equal(2, doc.RootElement.GetProperty("queued").GetInt32());
        Assert.Equal(1, doc.RootElement.GetProperty("queuedBySkill").GetProperty("billing").GetInt32());
        Assert.Equal(2, agents["bob"].GetProperty("inbox").GetInt32()); // queued tasks that need one of bob's skills

        using var wrong = BureauProcess.Start(_dir, new Dictionary<string, string>(), "workforce", "status", "bureau.yaml", "--postgres", _server, "--schema", "Not-A-Schema");
        Assert.Equal(2, await wrong.WaitAsync(TimeSpan.FromSeconds(60)));
        Assert.Contains("--schema", wrong.Stderr);
    }
}
