using Bureau.Storage.Sqlite;
using Bureau.TestKit;
using Bureau.Tests.Support;
using Microsoft.Data.Sqlite;
using Xunit;

namespace Bureau.Tests.Storage;

/// <summary>The workforce store conformance suite on SQLite; every store instance opens its own connections to one file.</summary>
public sealed class SqliteWorkforceStoreTests : WorkforceStoreConformanceTests, IDisposable
{
    private readonly TempDir _dir = new();

    protected override IWorkforceStore CreateStore() => new SqliteWorkforceStore(new SqliteStoreOptions { Path = _dir.File("bureau.db") });

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task InboxLimit_ASkillsQueuedTasks_AreCountedFromTheirOwnIndex()
    {
        var ct = TestContext.Current.CancellationToken;
        await OpenAsync();
        await using var c = new SqliteConnection($"Data Source={_dir.File("bureau.db")};Mode=ReadOnly;Pooling=False");
        await c.OpenAsync(ct);
        await using var cmd = c.CreateCommand();
        // The statement the per-skill limit runs (SqliteWorkforceStore.CountQueuedAsync).
        cmd.CommandText = "EXPLAIN QUERY PLAN SELECT count(*) FROM (SELECT 1 FROM workforce_tasks WHERE status = 'queued' AND skill = 'billing' LIMIT 10000)";
        var plan = new List<string>();
        await using (var r = await cmd.ExecuteReaderAsync(ct))
            while (await r.ReadAsync(ct)) plan.Add(r.GetString(3));
        Assert.Contains(plan, step => step.Contains("workforce_queued_by_skill", StringComparison.Ordinal));
    }
}
