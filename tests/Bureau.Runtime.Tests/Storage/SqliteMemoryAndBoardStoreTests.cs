using Bureau.Storage.Sqlite;
using Bureau.TestKit;
using Bureau.Tests.Support;
using Xunit;

namespace Bureau.Tests.Storage;

/// <summary>The memory conformance suite on SQLite.</summary>
public sealed class SqliteMemoryStoreTests : MemoryStoreConformanceTests, IDisposable
{
    private readonly TempDir _dir = new();

    protected override IMemoryStore CreateStore() => new SqliteMemoryStore(new SqliteStoreOptions { Path = _dir.File("bureau.db") });

    public void Dispose() => _dir.Dispose();

    [Theory]
    [InlineData("refund \"ASAP\" -x:y", "\"refund\" OR \"ASAP\" OR \"x\" OR \"y\"")]
    [InlineData("What is the plan of the customer?", "\"plan\" OR \"customer\"")]
    [InlineData("who is it", "\"who\" OR \"is\" OR \"it\"")]
    [InlineData("  ?! ", null)]
    public void MatchExpression_QuotesEachWord_SoNoTextIsQuerySyntax(string text, string? expected) =>
        Assert.Equal(expected, SqliteMemoryStore.MatchExpression(text));
}

/// <summary>The board conformance suite on SQLite.</summary>
public sealed class SqliteBoardStoreTests : BoardStoreConformanceTests, IDisposable
{
    private readonly TempDir _dir = new();

    protected override IBoardStore CreateStore() => new SqliteBoardStore(new SqliteStoreOptions { Path = _dir.File("bureau.db") });

    public void Dispose() => _dir.Dispose();
}
