using Bureau.Governance;
using Bureau.Storage.Sqlite;
using Bureau.Tests.Support;
using Microsoft.Data.Sqlite;
using Xunit;

namespace Bureau.Tests.Governance;

/// <summary>The audit log: written with what it records, chained by hashes; an edit, a deletion or a swap is found at the first entry touched.</summary>
public sealed class AuditTests : IAsyncDisposable
{
    private readonly EngineFixture _f = new();

    public ValueTask DisposeAsync() => _f.DisposeAsync();

    /// <summary>A run that asks for an approval, is approved and finishes; and an API key created and revoked.</summary>
    private async Task<string> RecordSomeHistoryAsync()
    {
        _f.AddTool("refund", ToolEffect.Write);
        _f.AddAgent(tools: "refund");
        _f.UseModel((msgs, turn) => turn == 1 ? FakeModel.Call("refund", """{"key":"k"}""", "c1") : FakeModel.Text("done"));
        _f.Definitions.Policies = new PolicySet { Defaults = new Dictionary<ToolEffect, PolicyAction> { [ToolEffect.Write] = PolicyAction.RequireApproval } };
        var engine = await _f.StartAsync();
        var id = (await engine.SubmitAsync(new RunRequest("a", "x", Actor: "key:ops"))).Run.Id;
        var waiting = await EngineFixture.WaitAsync(engine, id);
        await engine.DecideApprovalAsync(id, waiting.WaitingFor!.Step, new ApprovalDecision(true, "fine"), "lea");
        await EngineFixture.WaitAsync(engine, id);
        var keys = new SqliteApiKeyStore(new SqliteStoreOptions { Path = _f.DbPath });
        await keys.InitializeAsync();
        var (record, _) = ApiKeys.Create(ApiKeyRole.Approver, "lea's key", DateTimeOffset.UtcNow);
        await keys.AddAsync(record);
        await keys.RevokeAsync(record.Id, DateTimeOffset.UtcNow);
        await _f.DisposeEnginesAsync();
        return id;
    }

    private async Task<AuditVerification> VerifyAsync()
    {
        await using var store = new SqliteRunStore(new SqliteStoreOptions { Path = _f.DbPath });
        await store.InitializeAsync();
        return await store.VerifyAuditAsync();
    }

    private void Sql(string sql)
    {
        using var c = new SqliteConnection($"Data Source={_f.DbPath};Pooling=False");
        c.Open();
        using var cmd = c.CreateCommand();
        cmd.CommandText = sql;
        cmd.ExecuteNonQuery();
    }

    [Fact]
    public async Task History_IsRecordedInOrder_WithActors_AndTheChainHolds()
    {
        var id = await RecordSomeHistoryAsync();
        await using var store = new SqliteRunStore(new SqliteStoreOptions { Path = _f.DbPath });
        await store.InitializeAsync();
        var audit = await store.ReadAuditAsync();
        Assert.Equal(["run.started", "policy.applied", "approval.asked", "approval.answered", "key.created", "key.revoked"], audit.Select(a => a.Action));
        Assert.Equal(("key:ops", id), (audit[0].Actor, audit[0].RunId));
        Assert.Equal("lea", audit[3].Actor);
        Assert.Contains("\"decision\":\"approve\"", audit[3].Detail);
        Assert.Equal(AuditChain.Genesis, audit[0].Previous);
        Assert.All(audit.Skip(1).Zip(audit), p => Assert.Equal(p.Second.Hash, p.First.Previous));
        Assert.True((await store.VerifyAuditAsync()).IsIntact);
    }

    [Fact]
    public async Task Tamper_AnEditedEntry_IsNamed()
    {
        await RecordSomeHistoryAsync();
        Sql("UPDATE audit SET actor = 'someone-else' WHERE seq = 4");
        var result = await VerifyAsync();
        Assert.Equal(4, result.FirstBad);
        Assert.Contains("was changed after it was written", result.Problem);
    }

    [Fact]
    public async Task Tamper_ADeletedEntry_IsNamed()
    {
        await RecordSomeHistoryAsync();
        Sql("DELETE FROM audit WHERE seq = 3");
        var result = await VerifyAsync();
        Assert.Equal(3, result.FirstBad);
        Assert.Contains("missing", result.Problem);
    }

    [Fact]
    public async Task Tamper_TwoEntriesSwapped_IsFoundAtTheFirst()
    {
        await RecordSomeHistoryAsync();
        Sql("UPDATE audit SET seq = -2 WHERE seq = 2; UPDATE audit SET seq = 2 WHERE seq = 3; UPDATE audit SET seq = 3 WHERE seq = -2;");
        var result = await VerifyAsync();
        Assert.Equal(2, result.FirstBad);
    }

    [Fact]
    public async Task Tamper_ARewrittenChainFromTheMiddle_StillBreaksAtTheEdit()
    {
        await RecordSomeHistoryAsync();
        // Change entry 2 and recompute its own hash (as a forger would): entry 3 no longer follows.
        await using (var store = new SqliteRunStore(new SqliteStoreOptions { Path = _f.DbPath }))
        {
            await store.InitializeAsync();
            var e = (await store.ReadAuditAsync())[1];
            var forged = AuditChain.Hash(e.Previous, e.Seq, e.At.ToUnixTimeMilliseconds(), "forger", e.Action, e.RunId, e.Step, e.Detail);
            Sql($"UPDATE audit SET actor = 'forger', hash = '{forged}' WHERE seq = 2");
        }
        var result = await VerifyAsync();
        Assert.Equal(3, result.FirstBad);
        Assert.Contains("does not follow entry 2", result.Problem);
    }

    [Fact]
    public async Task PolicyChanges_AreAudited_OnlyWhenThePolicyDiffers()
    {
        await using var store = new SqliteRunStore(new SqliteStoreOptions { Path = _f.DbPath });
        await store.InitializeAsync();
        var v1 = new PolicySet { Defaults = new Dictionary<ToolEffect, PolicyAction> { [ToolEffect.Write] = PolicyAction.RequireApproval } };
        var v2 = new PolicySet { Defaults = new Dictionary<ToolEffect, PolicyAction> { [ToolEffect.Write] = PolicyAction.Deny } };
        var now = DateTimeOffset.UtcNow;

        await PolicyAudit.RecordAsync(v1, store, "bureau.yaml", now, TestContext.Current.CancellationToken);
        await PolicyAudit.RecordAsync(v1, store, "bureau.yaml", now, TestContext.Current.CancellationToken); // a restart with the same policy
        await PolicyAudit.RecordAsync(v2, store, "bureau.yaml", now, TestContext.Current.CancellationToken);

        var audit = await store.ReadAuditAsync();
        Assert.Equal(["policy.loaded", "policy.changed"], audit.Select(a => a.Action));
        var changed = System.Text.Json.Nodes.JsonNode.Parse(audit[1].Detail!)!;
        Assert.Equal((string?)System.Text.Json.Nodes.JsonNode.Parse(audit[0].Detail!)!["fingerprint"], (string?)changed["previous"]);
        Assert.Equal("deny", (string?)changed["defaults"]!["write"]);
    }
}
