using Bureau.Storage.Sqlite;
using Bureau.TestKit;
using Bureau.Tests.Support;
using Microsoft.Data.Sqlite;
using Xunit;

namespace Bureau.Tests.Storage;

public sealed class SqliteStoreTests : StoreConformanceTests, IDisposable
{
    private readonly TempDir _dir = new();

    protected override IRunStore CreateStore() => new SqliteRunStore(new SqliteStoreOptions { Path = _dir.File("bureau.db") });

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task Initialize_DefaultDurability_IsWalWithSynchronousFull()
    {
        var store = (SqliteRunStore)await OpenAsync();
        await store.SubmitAsync(new NewRun { Id = "r", Agent = "a", Input = "i", Started = new RunStarted("a", "i"), CreatedAt = DateTimeOffset.UnixEpoch });
        await using var c = new SqliteConnection($"Data Source={store.Path}");
        await c.OpenAsync(TestContext.Current.CancellationToken);
        await using var cmd = c.CreateCommand();
        cmd.CommandText = "PRAGMA journal_mode";
        Assert.Equal("wal", (string?)await cmd.ExecuteScalarAsync(TestContext.Current.CancellationToken));
        cmd.CommandText = "PRAGMA user_version";
        Assert.Equal((long)Migrations.Latest, (long)(await cmd.ExecuteScalarAsync(TestContext.Current.CancellationToken))!);
    }

    [Fact]
    public async Task Append_ConcurrentRuns_ShareTransactions()
    {
        var store = (SqliteRunStore)await OpenAsync();
        await Task.WhenAll(Enumerable.Range(0, 64).Select(i =>
            store.SubmitAsync(new NewRun { Id = "g" + i, Agent = "a", Input = "i", Started = new RunStarted("a", "i"), CreatedAt = DateTimeOffset.UnixEpoch })));
        var before = store.Stats.Transactions;
        await Task.WhenAll(Enumerable.Range(0, 64).Select(i => store.AppendAsync(new AppendRequest
        {
            RunId = "g" + i, ExpectedVersion = 1, Entries = [new RunResumed("test")], At = DateTimeOffset.UnixEpoch,
        }).AsTask()));
        // 64 appends issued together are grouped: far fewer transactions (fsyncs) than appends.
        Assert.True(store.Stats.Transactions - before < 64, $"{store.Stats.Transactions - before} transactions for 64 appends");
    }

    [Fact]
    public async Task ReadCosts_ARange_IsAnsweredFromTheCreationTimeIndex()
    {
        var store = (SqliteRunStore)await OpenAsync();
        await using var c = new SqliteConnection($"Data Source={store.Path}");
        await c.OpenAsync(TestContext.Current.CancellationToken);
        await using var cmd = c.CreateCommand();
        // The statement ReadCostsAsync runs for a range, per day.
        cmd.CommandText = """
            EXPLAIN QUERY PLAN SELECT created_at / 86400000 AS k, count(*), sum(input_tokens), sum(output_tokens), sum(cost) FROM runs
            WHERE kind <> 'team' AND created_at >= 0 AND created_at < 1 GROUP BY k ORDER BY k
            """;
        var plan = new List<string>();
        await using (var r = await cmd.ExecuteReaderAsync(TestContext.Current.CancellationToken))
            while (await r.ReadAsync(TestContext.Current.CancellationToken)) plan.Add(r.GetString(3));
        Assert.Contains(plan, p => p.Contains("USING INDEX runs_by_created", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Initialize_RunsStoredBeforeRowsHadACost_AgentRowsGetTheCostOfTheirModelAnswers()
    {
        var path = _dir.File("old.db");
        await using (var store = new SqliteRunStore(new SqliteStoreOptions { Path = path }))
        {
            await store.InitializeAsync(TestContext.Current.CancellationToken);
            await store.SubmitAsync(new NewRun { Id = "old", Agent = "a", Input = "i", Started = new RunStarted("a", "i"), CreatedAt = DateTimeOffset.UnixEpoch });
            await store.AppendAsync(new AppendRequest
            {
                RunId = "old", ExpectedVersion = 1, At = DateTimeOffset.UnixEpoch,
                Entries =
                [
                    new ModelResponded(1, "m", "p", null, [new ToolCallRecord("c", "t", "{}")], new UsageRecord(10, 5), null, 2, 1, Cost: 0.125),
                    new ModelResponded(2, "m", "p", "done", [], new UsageRecord(10, 5), null, 4, 1, Cost: 0.25),
                ],
            });
        }
        // Back to the schema before the cost step (step 7): no cost column, no index, and none of the later steps (8: the events tables,
        // 9: memory, 10: boards, 11: the A2A push configs, 12: the workforce).
        var costStep = Array.FindIndex(Migrations.Steps, step => step.Contains("ADD COLUMN cost", StringComparison.Ordinal));
        Assert.Equal(6, costStep);
        await using (var c = new SqliteConnection($"Data Source={path};Pooling=False"))
        {
            await c.OpenAsync(TestContext.Current.CancellationToken);
            await using var cmd = c.CreateCommand();
            cmd.CommandText = "DROP TABLE a2a_push_configs; DROP TABLE memory_facts; DROP TABLE memory_text; DROP TABLE memory_vectors; DROP TABLE board_tasks; DROP TABLE board_decisions; DROP TABLE board_keys; DROP TABLE workforce_tasks; "
                + $"DROP TABLE dead_letters; DROP TABLE poll_cursors; DROP INDEX runs_by_created; ALTER TABLE runs DROP COLUMN cost; PRAGMA user_version = {costStep};";
            await cmd.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }

        await using var migrated = new SqliteRunStore(new SqliteStoreOptions { Path = path });
        await migrated.InitializeAsync(TestContext.Current.CancellationToken);

        Assert.Equal(0.375, (await migrated.GetRunAsync("old", TestContext.Current.CancellationToken))!.Cost, 9);
    }

    [Fact]
    public async Task Initialize_NewerSchema_IsRefusedWithAClearError()
    {
        var path = _dir.File("future.db");
        await using (var c = new SqliteConnection($"Data Source={path};Pooling=False"))
        {
            await c.OpenAsync(TestContext.Current.CancellationToken);
            await using var cmd = c.CreateCommand();
            cmd.CommandText = "PRAGMA user_version = 99";
            await cmd.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }
        await using var store = new SqliteRunStore(new SqliteStoreOptions { Path = path });
        var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => store.InitializeAsync(TestContext.Current.CancellationToken));
        Assert.Contains("version 99", ex.Message);
    }
}
