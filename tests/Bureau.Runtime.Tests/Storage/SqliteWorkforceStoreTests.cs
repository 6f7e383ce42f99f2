using Bureau.Storage.Sqlite;
using Bureau.TestKit;
using Bureau.Tests.Support;

namespace Bureau.Tests.Storage;

/// <summary>The workforce store conformance suite on SQLite; every store instance opens its own connections to one file.</summary>
public sealed class SqliteWorkforceStoreTests : WorkforceStoreConformanceTests, IDisposable
{
    private readonly TempDir _dir = new();

    protected override IWorkforceStore CreateStore() => new SqliteWorkforceStore(new SqliteStoreOptions { Path = _dir.File("bureau.db") });

    public void Dispose() => _dir.Dispose();
}
