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
    public async Task Initialize_AnotherApplicationsDatabase_IsRefusedNamingItsTables_AndLeftAsItWas()
    {
        var ct = TestContext.Current.CancellationToken;
        var path = _dir.File("crm.db");
        await using (var c = new SqliteConnection($"Data Source={path};Pooling=False"))
        {
            await c.OpenAsync(ct);
            await using var create = c.CreateCommand();
            create.CommandText = "PRAGMA journal_mode=DELETE; CREATE TABLE customers (id INTEGER); CREATE TABLE orders (id INTEGER); INSERT INTO customers VALUES (1);";
            await create.ExecuteNonQueryAsync(ct);
        }

        var store = new SqliteRunStore(new SqliteStoreOptions { Path = path });
        var refused = await Assert.ThrowsAsync<InvalidOperationException>(() => store.InitializeAsync(ct));
        await store.DisposeAsync();

        Assert.Contains($"{path} is not a Bureau database: it has tables of its own (customers, orders)", refused.Message);
        await using var check = new SqliteConnection($"Data Source={path};Mode=ReadOnly;Pooling=False");
        await check.OpenAsync(ct);
        await using var cmd = check.CreateCommand();
        cmd.CommandText = "SELECT group_concat(name) FROM (SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name)";
        Assert.Equal("customers,orders", await cmd.ExecuteScalarAsync(ct)); // no Bureau table was added
        cmd.CommandText = "PRAGMA journal_mode";
        Assert.Equal("delete", await cmd.ExecuteScalarAsync(ct)); // nor its journal mode changed
    }

    [Fact]
    public async Task Reads_OnKeptSessions_SeeEachCommitAndSurviveAnUnreadableEntry()
    {
        var ct = TestContext.Current.CancellationToken;
        var store = (SqliteRunStore)await OpenAsync();
        var at = DateTimeOffset.UnixEpoch;
        await Task.WhenAll(Enumerable.Range(0, 40).Select(i =>
            store.SubmitAsync(new NewRun { Id = "k" + i, Agent = "a", Input = "i", Started = new RunStarted("a", "i"), CreatedAt = at }, ct)));

        // More readers at once than sessions are kept: every one gets its own run, whole.
        for (var round = 0; round < 3; round++)
        {
            var runs = await Task.WhenAll(Enumerable.Range(0, 40).Select(i => Task.Run(() => store.GetRunAsync("k" + i, ct), ct)));
            Assert.Equal(Enumerable.Range(0, 40).Select(i => "k" + i), runs.Select(r => r!.Id));
            var journals = await Task.WhenAll(Enumerable.Range(0, 40).Select(i => Task.Run(() => store.ReadJournalAsync("k" + i, 0, ct), ct)));
            Assert.All(journals, j => Assert.IsType<RunStarted>(Assert.Single(j).Entry));
        }

        // A kept session holds no snapshot: the next read sees the commit made since.
        Assert.Equal(1, (await store.GetRunAsync("k0", ct))!.Version);
        await store.AppendAsync(new AppendRequest
        {
            RunId = "k0", ExpectedVersion = 1, At = at, Entries = [new RunResumed("test")], Update = new RunUpdate { Status = RunStatus.Running },
        }, ct);
        var after = await store.GetRunAsync("k0", ct);
        Assert.Equal((2L, RunStatus.Running), (after!.Version, after.Status));
        Assert.Equal(2, (await store.ReadJournalAsync("k0", 0, ct)).Count);

        // An entry that cannot be read fails its read with the run and step named; the reads after it still work.
        await using (var c = new SqliteConnection($"Data Source={store.Path}"))
        {
            await c.OpenAsync(ct);
            await using var cmd = c.CreateCommand();
            cmd.CommandText = "UPDATE journal SET data = x'7b6e6f74' WHERE run_id = 'k1' AND n = 1";
            Assert.Equal(1, await cmd.ExecuteNonQueryAsync(ct));
        }
        var bad = await Assert.ThrowsAsync<InvalidDataException>(() => store.ReadJournalAsync("k1", 0, ct));
        Assert.Contains("run k1, step 1", bad.Message);
        for (var i = 0; i < 20; i++) Assert.Single(await store.ReadJournalAsync("k2", 0, ct));
        Assert.Equal("k3", (await store.GetRunAsync("k3", ct))!.Id);
        Assert.Null(await store.GetRunAsync("nope", ct));
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
    public async Task Initialize_JournalKeyedByRun_IsRewrittenInCommitOrder_EntriesKeptAndAppendsGoOn()
    {
        var ct = TestContext.Current.CancellationToken;
        var path = _dir.File("keyed.db");
        await using (var store = new SqliteRunStore(new SqliteStoreOptions { Path = path }))
        {
            await store.InitializeAsync(ct);
            foreach (var id in new[] { "r2", "r1" })
            {
                await store.SubmitAsync(new NewRun { Id = id, Agent = "a", Input = id, Started = new RunStarted("a", id), CreatedAt = DateTimeOffset.UnixEpoch }, ct);
                await store.AppendAsync(new AppendRequest
                {
                    RunId = id, ExpectedVersion = 1, At = DateTimeOffset.UnixEpoch,
                    Entries = [new ModelResponded(1, "m", "p", "answer of " + id, [], new UsageRecord(1, 1), null, 2, 1)],
                }, ct);
            }
        }
        // Back to the layout before the step: the journal keyed by (run_id, n), each entry inline.
        var step = Array.FindIndex(Migrations.Steps, s => s.Contains("CREATE TABLE journal_by_commit", StringComparison.Ordinal));
        Assert.Equal(12, step); // step 13: later steps are applied after it as well
        await using (var c = new SqliteConnection($"Data Source={path};Pooling=False"))
        {
            await c.OpenAsync(ct);
            await using var cmd = c.CreateCommand();
            cmd.CommandText = $"""
                CREATE TABLE keyed(run_id TEXT NOT NULL, n INTEGER NOT NULL, kind TEXT NOT NULL, at INTEGER NOT NULL, data BLOB NOT NULL,
                    PRIMARY KEY(run_id, n)) WITHOUT ROWID;
                INSERT INTO keyed SELECT run_id, n, kind, at, data FROM journal;
                DROP TABLE journal;
                ALTER TABLE keyed RENAME TO journal;
                PRAGMA user_version = {step};
                """;
            await cmd.ExecuteNonQueryAsync(ct);
        }

        await using var migrated = new SqliteRunStore(new SqliteStoreOptions { Path = path });
        await migrated.InitializeAsync(ct);
        foreach (var id in new[] { "r1", "r2" })
        {
            var journal = await migrated.ReadJournalAsync(id, 0, ct);
            Assert.Equal([1L, 2L], journal.Select(r => r.N));
            Assert.Equal("answer of " + id, Assert.IsType<ModelResponded>(journal[1].Entry).Text);
        }
        await migrated.AppendAsync(new AppendRequest
        {
            RunId = "r1", ExpectedVersion = 2, At = DateTimeOffset.UnixEpoch,
            Entries = [new ModelResponded(2, "m", "p", "again", [], new UsageRecord(1, 1), null, 2, 1)],
        }, ct);
        Assert.Equal(3, (await migrated.ReadJournalAsync("r1", 0, ct)).Count);
        await using (var c = new SqliteConnection($"Data Source={path};Mode=ReadOnly;Pooling=False"))
        {
            await c.OpenAsync(ct);
            await using var cmd = c.CreateCommand();
            cmd.CommandText = "SELECT count(*) FROM pragma_table_info('journal') WHERE name = 'seq'";
            Assert.Equal(1L, (long)(await cmd.ExecuteScalarAsync(ct))!);
            cmd.CommandText = "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'journal_by_run'";
            Assert.Equal(1L, (long)(await cmd.ExecuteScalarAsync(ct))!);
            // The (run_id, n) key still refuses a second entry at a step.
            await using var dup = new SqliteConnection($"Data Source={path};Pooling=False");
            await dup.OpenAsync(ct);
            await using var insert = dup.CreateCommand();
            insert.CommandText = "INSERT INTO journal(run_id, n, kind, at, data) VALUES('r1', 3, 'x', 0, x'00')";
            var refused = await Assert.ThrowsAsync<SqliteException>(() => insert.ExecuteNonQueryAsync(ct));
            Assert.Equal(19, refused.SqliteErrorCode);   // SQLITE_CONSTRAINT
        }
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
