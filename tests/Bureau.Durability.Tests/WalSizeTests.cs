using Bureau.Storage.Sqlite;
using Microsoft.Data.Sqlite;
using Xunit;

namespace Bureau.Durability.Tests;

/// <summary>
/// The SQLite store's WAL does not stay at its high-water mark: when a long reader (a backup, a report) keeps SQLite
/// from checkpointing, the WAL grows with every commit, and once the reader lets go the store cuts it back to its
/// limit (<c>journal_size_limit</c>, 16 MB) at the next reset, so a burst does not leave the disk full for good.
/// </summary>
public sealed class WalSizeTests : IDisposable
{
    private const long Limit = 16L * 1024 * 1024;
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bureau-wal-size", Guid.NewGuid().ToString("n"));

    public WalSizeTests() => Directory.CreateDirectory(_dir);

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    [Fact]
    public async Task Wal_GrownPastItsLimitBehindALongReader_IsCutBackOnceTheReaderLetsGo()
    {
        var ct = TestContext.Current.CancellationToken;
        var db = Path.Combine(_dir, "wal.db");
        var wal = db + "-wal";
        await using var store = new SqliteRunStore(new SqliteStoreOptions { Path = db });
        await store.InitializeAsync(ct);
        var at = DateTimeOffset.UtcNow;
        await store.SubmitAsync(new NewRun { Id = "big", Agent = "writer", Input = "i", Started = new RunStarted("writer", "i"), CreatedAt = at }, ct);
        long version = 1;
        var page = new string('x', 256 * 1024);

        using (var reader = new SqliteConnection($"Data Source={db};Mode=ReadOnly;Pooling=False"))
        {
            // A read transaction that has read something holds its snapshot: no checkpoint can pass it.
            reader.Open();
            using var tx = reader.BeginTransaction(deferred: true);
            using (var read = reader.CreateCommand())
            {
                read.Transaction = tx;
                read.CommandText = "SELECT count(*) FROM runs";
                Assert.Equal(1L, (long)read.ExecuteScalar()!);
            }
            for (var i = 0; i < 96; i++)
            {
                await store.AppendAsync(new AppendRequest
                {
                    RunId = "big", ExpectedVersion = version, At = at,
                    Entries = [new ToolCompleted("c" + i, "lookup", page, false, 1)],
                }, ct);
                version++;
            }
            Assert.True(new FileInfo(wal).Length > Limit + 4 * 1024 * 1024, $"the WAL grew behind the reader ({new FileInfo(wal).Length} bytes)");
            tx.Commit();
        }

        // The next commits checkpoint what the reader held back, and the one after restarts the WAL, cut back to the limit.
        for (var i = 0; i < 20 && new FileInfo(wal).Length > Limit; i++)
        {
            await store.AppendAsync(new AppendRequest
            {
                RunId = "big", ExpectedVersion = version, At = at,
                Entries = [new ToolCompleted("small" + i, "lookup", "ok", false, 1)],
            }, ct);
            version++;
        }
        Assert.True(new FileInfo(wal).Length <= Limit, $"the WAL is back within its limit ({new FileInfo(wal).Length} bytes)");

        // Nothing was lost on the way: every entry is there, in order.
        var journal = await store.ReadJournalAsync("big", 0, ct);
        Assert.Equal(version, journal.Count);
        Assert.Equal(page, ((ToolCompleted)journal[96].Entry).Content);
    }
}
