using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using Xunit;

namespace Bureau.Storage.PostgreSql.Tests;

/// <summary>
/// What the PostgreSQL store adds to the conformance suites: group commit, and what several nodes on one database rely on
/// (two stores with their own pools stand for two nodes): one winner per version, disjoint claims, one run per
/// idempotency key, one gap-free audit chain, one migration.
/// </summary>
public sealed class PostgreSqlStoreTests : IAsyncDisposable
{
    private static readonly DateTimeOffset T0 = new(2026, 1, 2, 3, 4, 5, TimeSpan.Zero);
    private readonly PostgreSqlTestDatabase _db = new();
    private readonly List<IAsyncDisposable> _opened = [];

    private async Task<PostgreSqlRunStore> NodeAsync()
    {
        var store = new PostgreSqlRunStore(_db.Options);
        _opened.Add(store);
        await store.InitializeAsync(TestContext.Current.CancellationToken);
        return store;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var s in _opened) await s.DisposeAsync();
        await _db.DisposeAsync();
    }

    private static NewRun Run(string id, string? key = null, int minute = 0) =>
        new() { Id = id, Agent = "a", Input = "i", Started = new RunStarted("a", "i", "test"), CreatedAt = T0.AddMinutes(minute), IdempotencyKey = key, Actor = "test" };

    private static AppendRequest Append(string id, long expected, string text) => new()
    {
        RunId = id, ExpectedVersion = expected, At = T0, Entries = [new ModelResponded(1, "m", "scripted", text, [], new UsageRecord(1, 1), "stop", 1, 1)],
    };

    [Fact]
    public async Task Append_ConcurrentRuns_ShareTransactions()
    {
        var store = await NodeAsync();
        await Task.WhenAll(Enumerable.Range(0, 64).Select(i => store.SubmitAsync(Run("g" + i))));
        var before = store.Stats.Transactions;
        await Task.WhenAll(Enumerable.Range(0, 64).Select(i => store.AppendAsync(Append("g" + i, 1, "x")).AsTask()));
        // 64 appends issued together are grouped: far fewer transactions (commits) than appends.
        Assert.True(store.Stats.Transactions - before < 64, $"{store.Stats.Transactions - before} transactions for 64 appends");
        for (var i = 0; i < 64; i++) Assert.Equal(2, (await store.GetRunAsync("g" + i))!.Version);
    }

    [Fact]
    public async Task TwoNodes_RaceOnOneVersion_ExactlyOneWins()
    {
        var a = await NodeAsync();
        var b = await NodeAsync();
        await a.SubmitAsync(Run("r1"));
        using var go = new ManualResetEventSlim();
        var tasks = Enumerable.Range(0, 20).Select(i => Task.Run(async () =>
        {
            go.Wait();
            try
            {
                await (i % 2 == 0 ? a : b).AppendAsync(Append("r1", 1, "writer " + i));
                return true;
            }
            catch (JournalConflictException)
            {
                return false;
            }
        })).ToArray();
        go.Set();
        Assert.Single(await Task.WhenAll(tasks), w => w);
        Assert.Equal(2, (await b.ReadJournalAsync("r1")).Count);
        Assert.Equal(2, (await a.GetRunAsync("r1"))!.Version);
    }

    [Fact]
    public async Task TwoNodes_AppendingToTheSameRunsInTurn_KeepEveryJournalGapFree()
    {
        // Each run's appends alternate between the nodes (as a run moves between nodes) while all runs go at once: both
        // writers' batches mix runs, and whichever node writes a step, the run's journal continues where it stood.
        var a = await NodeAsync();
        var b = await NodeAsync();
        const int runs = 40, steps = 10;
        await Task.WhenAll(Enumerable.Range(0, runs).Select(i => a.SubmitAsync(Run("t" + i, minute: i))));
        await Task.WhenAll(Enumerable.Range(0, runs).Select(async i =>
        {
            for (var v = 1; v <= steps; v++)
            {
                var node = (i + v) % 2 == 0 ? a : b;
                await node.AppendAsync(new AppendRequest
                {
                    RunId = "t" + i, ExpectedVersion = v, At = T0,
                    Entries = [v == steps ? new RunCanceled("done", "key:ops", []) : new RunResumed($"{i}-{v}")], // the last one audits
                });
            }
        }));
        for (var i = 0; i < runs; i++)
        {
            var journal = await b.ReadJournalAsync("t" + i);
            Assert.Equal(Enumerable.Range(1, steps + 1).Select(n => (long)n), journal.Select(j => j.N));
        }
        Assert.Equal(new AuditVerification(2 * runs, null, null), await a.VerifyAuditAsync());
    }

    [Fact]
    public async Task TwoNodes_ClaimTogether_NeverGetTheSameRun_AndBetweenThemGetAll()
    {
        var a = await NodeAsync();
        var b = await NodeAsync();
        await Task.WhenAll(Enumerable.Range(0, 200).Select(i => a.SubmitAsync(Run("c" + i))));
        async Task<List<string>> ClaimAll(PostgreSqlRunStore store, string owner)
        {
            var mine = new List<string>();
            while (true)
            {
                var got = await store.ClaimAsync(new RunClaim(owner, T0.AddMinutes(5)), T0, 7);
                if (got.Count == 0) return mine;
                mine.AddRange(got);
            }
        }
        var claimed = await Task.WhenAll(ClaimAll(a, "node-a"), ClaimAll(b, "node-b"), ClaimAll(a, "node-a2"), ClaimAll(b, "node-b2"));
        var all = claimed.SelectMany(x => x).ToList();
        Assert.Equal(200, all.Count);
        Assert.Equal(200, all.Distinct().Count());
    }

    [Fact]
    public async Task TwoNodes_SubmitOneIdempotencyKeyTogether_CreateExactlyOneRun()
    {
        var a = await NodeAsync();
        var b = await NodeAsync();
        var results = await Task.WhenAll(Enumerable.Range(0, 20).Select(i => (i % 2 == 0 ? a : b).SubmitAsync(Run("k" + i, key: "same-key"))));
        Assert.Single(results, r => r.Created);
        Assert.Single(results.Select(r => r.Run.Id).Distinct());
        Assert.Single((await b.ListRunsAsync(new RunQuery { Limit = 100 })).Items);
    }

    [Fact]
    public async Task TwoNodes_WritingTogether_KeepOneGapFreeAuditChain()
    {
        var a = await NodeAsync();
        var b = await NodeAsync();
        await Task.WhenAll(Enumerable.Range(0, 60).Select(i => (i % 2 == 0 ? a : b).SubmitAsync(Run("s" + i, minute: i))));
        var audit = await a.ReadAuditAsync();
        Assert.Equal(Enumerable.Range(1, 60).Select(i => (long)i), audit.Select(e => e.Seq));
        Assert.Equal(new AuditVerification(60, null, null), await b.VerifyAuditAsync());
    }

    [Fact]
    public async Task Initialize_NodesStartingTogether_MigrateOnce()
    {
        var stores = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => NodeAsync()));
        await using var c = new NpgsqlConnection(_db.ConnectionString);
        await c.OpenAsync(TestContext.Current.CancellationToken);
        await using var cmd = new NpgsqlCommand($"SELECT count(*), max(version) FROM {_db.Schema}.schema_version", c);
        await using var r = await cmd.ExecuteReaderAsync(TestContext.Current.CancellationToken);
        Assert.True(await r.ReadAsync(TestContext.Current.CancellationToken));
        Assert.Equal((1L, PostgreSqlMigrations.Latest), (r.GetInt64(0), r.GetInt32(1)));
        Assert.Equal(4, stores.Length);
    }

    [Fact]
    public async Task Migration_MovesPushConfigsKeptInPollCursorRows_ToTheirTable()
    {
        var ct = TestContext.Current.CancellationToken;
        await using (var first = new PostgreSqlEventStore(_db.Options))
        {
            await first.InitializeAsync(ct);
            await first.SetCursorAsync("orders", "41", T0, ct);
        }
        // Back to the schema before the step (the tables of later steps gone too), with the rows the A2A code of that time wrote.
        var step = Array.FindIndex(PostgreSqlMigrations.Steps, s => s.Contains("CREATE TABLE a2a_push_configs", StringComparison.Ordinal));
        Assert.True(step > 0);
        await _db.ExecuteSqlAsync($$"""
            DROP TABLE a2a_push_configs;
            DROP TABLE IF EXISTS workforce_tasks;
            INSERT INTO poll_cursors(trigger, value, at) VALUES
                ('a2a-push:t1', '[{"id":"b","url":"https://b.example/","taskId":"t1"},{"id":"a","url":"https://a.example/","taskId":"t1"}]', 1000),
                ('a2a-push:t2', '[{"id":"x","url":"https://x.example/","taskId":"t2"}]', 2000),
                ('a2a-push:index', '["t1"]', 3000);
            UPDATE schema_version SET version = {{step}};
            """);

        await using var migrated = new PostgreSqlEventStore(_db.Options);
        await migrated.InitializeAsync(ct);

        var t1 = await migrated.ListPushConfigsAsync("t1", ct);
        Assert.Equal(["b", "a"], t1.Select(c => System.Text.Json.Nodes.JsonNode.Parse(c)!["id"]!.GetValue<string>()));
        Assert.Equal("https://a.example/", System.Text.Json.Nodes.JsonNode.Parse(t1[1])!["url"]!.GetValue<string>());
        Assert.Single(await migrated.ListPushConfigsAsync("t2", ct));
        Assert.Equal(["t1"], await migrated.ListWatchedPushTasksAsync(ct));
        Assert.Null(await migrated.GetCursorAsync("a2a-push:t1", ct));
        Assert.Null(await migrated.GetCursorAsync("a2a-push:index", ct));
        Assert.Equal("41", await migrated.GetCursorAsync("orders", ct));
    }

    [Fact]
    public async Task Initialize_NewerSchema_IsRefusedWithAClearError()
    {
        await NodeAsync();
        await _db.ExecuteSqlAsync("UPDATE schema_version SET version = 99");
        await using var store = new PostgreSqlRunStore(_db.Options);
        var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => store.InitializeAsync(TestContext.Current.CancellationToken));
        Assert.Contains("version 99", ex.Message);
        Assert.Contains(_db.Schema, ex.Message);
    }

    [Fact]
    public async Task Initialize_NoServerThere_IsAStorageFaultNamingTheServer()
    {
        int port;
        using (var l = new TcpListener(IPAddress.Loopback, 0)) { l.Start(); port = ((IPEndPoint)l.LocalEndpoint).Port; }
        await using var store = new PostgreSqlRunStore(new PostgreSqlStoreOptions { ConnectionString = $"Host=127.0.0.1;Port={port};Username=bureau;Timeout=5" });
        var ex = await Assert.ThrowsAsync<StorageUnavailableException>(() => store.InitializeAsync(TestContext.Current.CancellationToken));
        Assert.Equal(StorageFault.IoError, ex.Fault);
        Assert.Contains($"127.0.0.1:{port}", ex.Message);
        Assert.Contains("cannot be reached", ex.Message);
    }

    [Theory]
    [InlineData("", "Bureau:PostgreSql:ConnectionString must be set")]
    [InlineData("Host=x;Nonsense=1", "Bureau:PostgreSql:ConnectionString is not a valid connection string")]
    public void Options_ABadConnectionString_IsNamed(string connectionString, string message)
    {
        var ex = Assert.Throws<ArgumentException>(() => new PostgreSqlStoreOptions { ConnectionString = connectionString }.Validate());
        Assert.StartsWith(message, ex.Message);
    }

    [Fact]
    public void Options_ASchemaNameThatIsNotAnIdentifier_IsRefused()
    {
        var ex = Assert.Throws<ArgumentException>(() => new PostgreSqlStoreOptions { ConnectionString = "Host=x", Schema = "bureau; DROP TABLE runs" }.Validate());
        Assert.Contains("Bureau:PostgreSql:Schema", ex.Message);
    }

    [Fact]
    public async Task UsePostgreSqlStorage_FromConfiguration_TakesTheConnectionStringAndSchema()
    {
        var services = new ServiceCollection();
        services.AddSingleton<Microsoft.Extensions.Configuration.IConfiguration>(new Microsoft.Extensions.Configuration.ConfigurationBuilder()
            .AddInMemoryCollection(new Dictionary<string, string?>
            {
                ["Bureau:PostgreSql:ConnectionString"] = _db.ConnectionString,
                ["Bureau:PostgreSql:Schema"] = _db.Schema,
            }).Build());
        // docs/storage.md, "In code" (the connection string from configuration instead of in the call)
        services.AddBureau(o => o.NodeId = Environment.MachineName).UsePostgreSqlStorage();
        await using var provider = services.BuildServiceProvider();
        var runs = provider.GetRequiredService<IRunStore>();
        await runs.InitializeAsync(TestContext.Current.CancellationToken);
        await runs.SubmitAsync(new NewRun { Id = "cfg", Agent = "a", Input = "i", Started = new RunStarted("a", "i"), CreatedAt = T0 }, TestContext.Current.CancellationToken);
        await using var c = new NpgsqlConnection(_db.ConnectionString);
        await c.OpenAsync(TestContext.Current.CancellationToken);
        await using var cmd = new NpgsqlCommand($"SELECT id FROM {_db.Schema}.runs", c);
        Assert.Equal("cfg", await cmd.ExecuteScalarAsync(TestContext.Current.CancellationToken));
    }

    [Fact]
    public void UsePostgreSqlStorage_WithoutAConnectionString_FailsNamingTheKey()
    {
        var services = new ServiceCollection();
        services.AddBureau().UsePostgreSqlStorage();
        using var provider = services.BuildServiceProvider();
        var ex = Assert.Throws<Microsoft.Extensions.Options.OptionsValidationException>(() => provider.GetRequiredService<IRunStore>());
        Assert.Contains("Bureau:PostgreSql:ConnectionString must be set", ex.Message);
    }

    [Fact]
    public async Task UsePostgreSqlStorage_RegistersEveryStoreOnOnePool()
    {
        var services = new ServiceCollection();
        services.AddBureau().UsePostgreSqlStorage(o =>
        {
            o.ConnectionString = _db.ConnectionString;
            o.Schema = _db.Schema;
        });
        await using var provider = services.BuildServiceProvider();
        var runs = Assert.IsType<PostgreSqlRunStore>(provider.GetRequiredService<IRunStore>());
        Assert.IsType<PostgreSqlApiKeyStore>(provider.GetRequiredService<IApiKeyStore>());
        Assert.IsType<PostgreSqlEventStore>(provider.GetRequiredService<IEventStore>());
        Assert.Same(runs, provider.GetRequiredService<PostgreSqlRunStore>());
        var keys = provider.GetRequiredService<IApiKeyStore>();
        await runs.InitializeAsync(TestContext.Current.CancellationToken);
        await keys.InitializeAsync(TestContext.Current.CancellationToken);
        await keys.AddAsync(new ApiKeyRecord { Id = "k", Role = ApiKeyRole.Admin, Hash = new string('a', 64), CreatedAt = T0 }, TestContext.Current.CancellationToken);
        Assert.Equal("key.created", Assert.Single(await runs.ReadAuditAsync(cancellationToken: TestContext.Current.CancellationToken)).Action);
    }
}
