using Bureau.Storage.Sqlite;
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
