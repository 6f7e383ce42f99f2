using System.Text;
using Bureau.Governance;
using Bureau.Storage.Sqlite;
using Bureau.Tests.Support;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace Bureau.Tests.Governance;

/// <summary>
/// Signed checkpoints of the audit head: a tail cut after a checkpoint is found (naming the first
/// missing entry), so is a log rebuilt under a checkpoint, and so is a checkpoint that was changed or
/// signed with another key. The host writes them every N entries and at a clean stop.
/// </summary>
public sealed class AuditCheckpointTests : IAsyncDisposable
{
    private static readonly byte[] Key = Encoding.UTF8.GetBytes("0123456789abcdef-test-key");
    private readonly TempDir _dir = new();
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 6, 12, 0, 0, TimeSpan.Zero));
    private SqliteRunStore? _store;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;
    private string Db => _dir.File("bureau.db");
    private string File => _dir.File("bureau.db.checkpoints");

    public async ValueTask DisposeAsync()
    {
        if (_store is not null) await _store.DisposeAsync();
        _dir.Dispose();
    }

    private async Task<SqliteRunStore> StoreWithEntriesAsync(int count)
    {
        _store = new SqliteRunStore(new SqliteStoreOptions { Path = Db });
        await _store.InitializeAsync(Ct);
        await AppendAsync(count);
        return _store;
    }

    private async Task AppendAsync(int count, string actor = "ops")
    {
        for (var i = 0; i < count; i++)
            await _store!.AppendAuditAsync(_time.GetUtcNow(), actor, "key.created", null, null, $$"""{"n":{{i}}}""", Ct);
    }

    private async Task CheckpointAsync(IAuditLog audit, byte[]? key = null)
    {
        var head = await AuditCheckpoints.HeadAsync(audit, 0, Ct);
        AuditCheckpoints.Append(File, AuditCheckpoints.Sign(key ?? Key, head.Seq, head.Hash, _time.GetUtcNow()));
    }

    private Task<AuditCheckpointVerification> VerifyAsync(IAuditLog audit, byte[]? key = null) =>
        AuditCheckpoints.VerifyAsync(audit, AuditCheckpoints.Read(File), key ?? Key, File, Ct);

    private void Sql(string sql)
    {
        using var c = new SqliteConnection($"Data Source={Db};Pooling=False");
        c.Open();
        using var cmd = c.CreateCommand();
        cmd.CommandText = sql;
        cmd.ExecuteNonQuery();
    }

    [Fact]
    public async Task Checkpoint_LaterEntries_Intact()
    {
        var store = await StoreWithEntriesAsync(5);
        await CheckpointAsync(store);
        await AppendAsync(3); // the log goes on after a checkpoint
        var result = await VerifyAsync(store);
        Assert.True(result.IsIntact, result.Problem);
        Assert.Equal((1, 5L), (result.Checkpoints, result.Latest!.Seq));
        Assert.True((await store.VerifyAuditAsync(Ct)).IsIntact);
    }

    [Fact]
    public async Task TailTruncatedAfterACheckpoint_ChainStillHolds_CheckpointNamesTheFirstMissingEntry()
    {
        var store = await StoreWithEntriesAsync(4);
        await CheckpointAsync(store);
        await AppendAsync(4);
        await CheckpointAsync(store); // vouches for #8
        Sql("DELETE FROM audit WHERE seq > 6");

        Assert.True((await store.VerifyAuditAsync(Ct)).IsIntact); // what the chain alone cannot see
        var result = await VerifyAsync(store);
        Assert.False(result.IsIntact);
        Assert.Equal(7, result.FirstMissing);
        Assert.StartsWith("entries after #6 were removed", result.Problem);
        Assert.Contains("vouches for #8; the first missing is #7", result.Problem);
    }

    [Fact]
    public async Task LogRebuiltUnderACheckpoint_SameLengthNewHashes_Found()
    {
        var store = await StoreWithEntriesAsync(5);
        await CheckpointAsync(store);
        Sql("DELETE FROM audit WHERE seq > 2");
        await AppendAsync(3, actor: "mallory"); // a valid chain again, as long as before, with other entries

        Assert.True((await store.VerifyAuditAsync(Ct)).IsIntact);
        var result = await VerifyAsync(store);
        Assert.False(result.IsIntact);
        Assert.Null(result.FirstMissing);
        Assert.StartsWith("entry #5 differs from its checkpoint", result.Problem);
    }

    [Fact]
    public async Task TamperedCheckpoint_OrAnotherKey_Found()
    {
        var store = await StoreWithEntriesAsync(5);
        await CheckpointAsync(store);
        Sql("DELETE FROM audit WHERE seq > 3");

        // Lower the checkpoint's position so that it would cover the cut log: the signature no longer matches.
        var text = System.IO.File.ReadAllText(File);
        System.IO.File.WriteAllText(File, text.Replace("\"seq\":5", "\"seq\":3"));
        var tampered = await VerifyAsync(store);
        Assert.False(tampered.IsIntact);
        Assert.Equal($"checkpoint 1 in {File} (entry #3) does not match its signature: it was changed after it was signed", tampered.Problem);

        // A checkpoint made with another key (a forger without the key) is not taken either.
        System.IO.File.Delete(File);
        var head = await AuditCheckpoints.HeadAsync(store, 0, Ct);
        AuditCheckpoints.Append(File, AuditCheckpoints.Sign(Encoding.UTF8.GetBytes("a-key-of-the-forger"), head.Seq, head.Hash, _time.GetUtcNow()));
        var forged = await VerifyAsync(store);
        Assert.False(forged.IsIntact);
        Assert.Contains($"this key is {AuditCheckpoints.KeyId(Key)}: signed with another key", forged.Problem);

        System.IO.File.WriteAllText(File, "{\"seq\":\"three\"}\n");
        var garbage = Assert.Throws<FormatException>(() => AuditCheckpoints.Read(File));
        Assert.StartsWith($"{File}:1: not an audit checkpoint", garbage.Message);
    }

    [Fact]
    public async Task Service_ChecksPointsEveryNEntries_AndAtACleanStop()
    {
        var store = await StoreWithEntriesAsync(5);
        var options = new AuditCheckpointOptions { Key = Key, File = File, EveryEntries = 3, PollInterval = TimeSpan.FromHours(1) };
        var service = new AuditCheckpointService(store, _time, NullLoggerFactory.Instance, options);
        await service.StartAsync(Ct); // the first look at the head: 5 entries, 3 or more since the last checkpoint (none)
        for (var i = 0; i < 800 && !(System.IO.File.Exists(File) && System.IO.File.ReadAllText(File).EndsWith('\n')); i++) await Task.Delay(25, Ct);
        Assert.Equal([5L], AuditCheckpoints.Read(File).Select(c => c.Seq));

        await AppendAsync(2); // fewer than 3 since: no checkpoint until the stop
        await service.StopAsync(Ct);
        Assert.Equal([5L, 7L], AuditCheckpoints.Read(File).Select(c => c.Seq));
        Assert.True((await VerifyAsync(store)).IsIntact);

        var again = new AuditCheckpointService(store, _time, NullLoggerFactory.Instance, options);
        await again.StartAsync(Ct);
        await again.StopAsync(Ct); // nothing new: nothing written
        Assert.Equal(2, AuditCheckpoints.Read(File).Count);
    }

    [Fact]
    public void ReadKey_FromFileOrVariable_TooShortIsAnErrorNamingWhere()
    {
        var keyFile = _dir.File("audit.key");
        System.IO.File.WriteAllText(keyFile, "  a-key-of-twenty-chars \n");
        Assert.Equal("a-key-of-twenty-chars", Encoding.UTF8.GetString(AuditCheckpointOptions.ReadKey(null, n => n == AuditCheckpointOptions.KeyFileVariable ? keyFile : null)!));
        Assert.Equal("from-the-variable-1234", Encoding.UTF8.GetString(AuditCheckpointOptions.ReadKey(null, n => n == AuditCheckpointOptions.KeyVariable ? "from-the-variable-1234" : null)!));
        Assert.Null(AuditCheckpointOptions.ReadKey(null, _ => null));
        var shortKey = Assert.Throws<InvalidOperationException>(() => AuditCheckpointOptions.ReadKey(null, n => n == AuditCheckpointOptions.KeyVariable ? "short" : null));
        Assert.Contains("BUREAU_AUDIT_KEY has 5 characters", shortKey.Message);
        var missing = Assert.Throws<InvalidOperationException>(() => AuditCheckpointOptions.ReadKey(_dir.File("nope.key"), _ => null));
        Assert.Contains("--key-file", missing.Message);
        Assert.Equal(_dir.File("x.db") + ".checkpoints", AuditCheckpointOptions.DefaultFile(_dir.File("x.db"), _ => null));
    }
}
