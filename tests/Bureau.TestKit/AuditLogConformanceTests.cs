using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Xunit;

namespace Bureau.TestKit;

/// <summary>
/// The contract of a store's audit log (<see cref="IAuditLog"/>): entries written in the transaction of what they record,
/// numbered without gaps, chained by SHA-256 in one format every store shares (so <c>bureau audit verify</c> means the
/// same on each), and a verification that names the first entry an edit or a deletion touched.
/// </summary>
public abstract class AuditLogConformanceTests(IStoreTestDatabase database) : StoreSuite(database)
{
    /// <summary>The chain's hash, written out independently of any store: length-prefixed fields, SHA-256, lower-case hex.</summary>
    private static string ReferenceHash(AuditRecord e)
    {
        var sb = new StringBuilder();
        string?[] fields = [e.Previous, e.Seq.ToString(CultureInfo.InvariantCulture), e.At.ToUnixTimeMilliseconds().ToString(CultureInfo.InvariantCulture),
            e.Actor, e.Action, e.RunId, e.Step?.ToString(CultureInfo.InvariantCulture), e.Detail];
        foreach (var f in fields) sb.Append(f is null ? "-1:" : f.Length.ToString(CultureInfo.InvariantCulture) + ":" + f).Append('|');
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(sb.ToString())));
    }

    private async Task<IAuditLog> RecordSomeHistoryAsync()
    {
        var store = await OpenRunsAsync();
        await store.SubmitAsync(Run("r1"));
        await store.AppendAsync(new AppendRequest
        {
            RunId = "r1", ExpectedVersion = 1, At = T0.AddSeconds(2),
            Entries = [new RunCanceled("no longer needed", "key:ops", [])],
            Update = new RunUpdate { Status = RunStatus.Canceled, Error = "no longer needed" },
        });
        var audit = (IAuditLog)store;
        await audit.AppendAuditAsync(T0.AddSeconds(3), "bureau:notify", "notification.sent", "r1", null, """{"channel":"ops"}""");
        var keys = await OpenKeysAsync();
        await keys.AddAsync(new ApiKeyRecord { Id = "abc", Name = "lea's key", Role = ApiKeyRole.Approver, Hash = new string('0', 64), CreatedAt = T0.AddSeconds(4) });
        await keys.RevokeAsync("abc", T0.AddSeconds(5));
        return audit;
    }

    [Fact]
    public async Task History_IsRecordedInOrder_ChainedInTheSharedFormat_AndVerifies()
    {
        var audit = await RecordSomeHistoryAsync();
        var entries = await audit.ReadAuditAsync();
        Assert.Equal(["run.started", "run.canceled", "notification.sent", "key.created", "key.revoked"], entries.Select(e => e.Action));
        Assert.Equal([1L, 2, 3, 4, 5], entries.Select(e => e.Seq));
        Assert.Equal(("test", "r1", 1L), (entries[0].Actor, entries[0].RunId, entries[0].Step));
        Assert.Equal(("key:ops", "r1", 2L, T0.AddSeconds(2)), (entries[1].Actor, entries[1].RunId, entries[1].Step, entries[1].At));
        Assert.Equal("""{"channel":"ops"}""", entries[2].Detail);
        Assert.Equal(new string('0', 64), entries[0].Previous);
        Assert.All(entries.Skip(1).Zip(entries), p => Assert.Equal(p.Second.Hash, p.First.Previous));
        Assert.All(entries, e => Assert.Equal(ReferenceHash(e), e.Hash));
        Assert.Equal(new AuditVerification(5, null, null), await audit.VerifyAuditAsync());

        Assert.Equal([4L, 5], (await audit.ReadAuditAsync(afterSeq: 3)).Select(e => e.Seq));
        Assert.Equal([2L], (await audit.ReadAuditAsync(afterSeq: 1, limit: 1)).Select(e => e.Seq));
        Assert.Equal(4, (await audit.LastAuditAsync("key.created"))!.Seq);
        Assert.Null(await audit.LastAuditAsync("no.such.action"));
    }

    [Fact]
    public async Task Tamper_AnEditedEntry_IsNamed()
    {
        var audit = await RecordSomeHistoryAsync();
        await ExecuteSqlAsync("UPDATE audit SET actor = 'someone-else' WHERE seq = 4");
        var result = await audit.VerifyAuditAsync();
        Assert.Equal(4, result.FirstBad);
        Assert.Contains("was changed after it was written", result.Problem);
    }

    [Fact]
    public async Task Tamper_ADeletedEntry_IsNamed()
    {
        var audit = await RecordSomeHistoryAsync();
        await ExecuteSqlAsync("DELETE FROM audit WHERE seq = 3");
        var result = await audit.VerifyAuditAsync();
        Assert.Equal(3, result.FirstBad);
        Assert.Contains("missing", result.Problem);
    }

    [Fact]
    public async Task ConcurrentWriters_RunsKeysAndAppends_KeepOneGapFreeChain()
    {
        var store = await OpenRunsAsync();
        var audit = (IAuditLog)store;
        var keys = await OpenKeysAsync();
        await Task.WhenAll(
            Task.WhenAll(Enumerable.Range(0, 30).Select(i => store.SubmitAsync(Run("c" + i, minute: i)))),
            Task.WhenAll(Enumerable.Range(0, 10).Select(i => keys.AddAsync(new ApiKeyRecord
                { Id = "k" + i, Role = ApiKeyRole.Viewer, Hash = new string('1', 64), CreatedAt = T0.AddSeconds(i) }))),
            Task.WhenAll(Enumerable.Range(0, 10).Select(i => audit.AppendAuditAsync(T0, "test", "notification.sent", null, null, null))));
        var entries = await audit.ReadAuditAsync();
        Assert.Equal(50, entries.Count);
        Assert.Equal(Enumerable.Range(1, 50).Select(i => (long)i), entries.Select(e => e.Seq));
        Assert.Equal((30, 10, 10), (entries.Count(e => e.Action == "run.started"), entries.Count(e => e.Action == "key.created"), entries.Count(e => e.Action == "notification.sent")));
        Assert.True((await audit.VerifyAuditAsync()).IsIntact);
    }
}
