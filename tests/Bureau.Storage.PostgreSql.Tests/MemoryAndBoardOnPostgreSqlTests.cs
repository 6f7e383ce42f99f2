using Bureau.TestKit;
using Xunit;

namespace Bureau.Storage.PostgreSql.Tests;

/// <summary>The memory conformance suite on PostgreSQL; every store instance has its own pool (another node, as far as the store can tell).</summary>
public sealed class PostgreSqlMemoryStoreTests : MemoryStoreConformanceTests, IAsyncDisposable
{
    private readonly PostgreSqlTestDatabase _db = new();
    private readonly List<PostgreSqlMemoryStore> _stores = [];

    protected override IMemoryStore CreateStore()
    {
        var store = new PostgreSqlMemoryStore(_db.Options);
        _stores.Add(store);
        return store;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var s in _stores) await s.DisposeAsync();
        await _db.DisposeAsync();
    }

    [Theory]
    [InlineData("refund \"ASAP\" -x:y & !z", "refund | ASAP | x | y | z")]
    [InlineData("What is the plan of the customer?", "plan | customer")]
    [InlineData("who is it", "who | is | it")]
    [InlineData("  ?! ", null)]
    public void QueryExpression_KeepsOnlyWords_SoNoTextIsQuerySyntax(string text, string? expected) =>
        Assert.Equal(expected, PostgreSqlMemoryStore.QueryExpression(text));

    [Fact]
    public async Task Recall_FindsStemmedWords_AndRanksTheFactWithMoreOfThemFirst()
    {
        var store = (PostgreSqlMemoryStore)await OpenAsync();
        var at = new MemoryProvenance(null, null, "a", DateTimeOffset.UnixEpoch);
        await store.WriteAsync(new MemoryWrite { Scope = "team:desk", Key = "a", Value = "The customer was refunded twice for duplicate charges", Provenance = at });
        await store.WriteAsync(new MemoryWrite { Scope = "team:desk", Key = "b", Value = "A refund is pending", Provenance = at });
        await store.WriteAsync(new MemoryWrite { Scope = "team:desk", Key = "c", Value = "Shipping takes three days", Provenance = at });

        var hits = await store.RecallAsync(new MemoryRecall { Scopes = ["team:desk"], Query = "refunds for a duplicate charge" });

        Assert.Equal(["a", "b"], hits.Select(h => h.Fact.Key)); // 'refunded', 'charges': the same stems
        Assert.True(hits[0].Score > hits[1].Score);
    }
}

/// <summary>The board conformance suite on PostgreSQL; every store instance has its own pool.</summary>
public sealed class PostgreSqlBoardStoreTests : BoardStoreConformanceTests, IAsyncDisposable
{
    private readonly PostgreSqlTestDatabase _db = new();
    private readonly List<PostgreSqlBoardStore> _stores = [];

    protected override IBoardStore CreateStore()
    {
        var store = new PostgreSqlBoardStore(_db.Options);
        _stores.Add(store);
        return store;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var s in _stores) await s.DisposeAsync();
        await _db.DisposeAsync();
    }
}
