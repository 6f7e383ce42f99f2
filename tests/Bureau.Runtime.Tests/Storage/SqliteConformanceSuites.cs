using Bureau.Storage.Sqlite;
using Bureau.TestKit;
using Bureau.Tests.Support;
using Microsoft.Data.Sqlite;

namespace Bureau.Tests.Storage;

/// <summary>A SQLite file in a temp folder of its own, for one test of the TestKit's suites.</summary>
public sealed class SqliteTestDatabase : IStoreTestDatabase
{
    private readonly TempDir _dir = new();

    public string Path => _dir.File("bureau.db");

    public IRunStore CreateRunStore() => new SqliteRunStore(new SqliteStoreOptions { Path = Path });

    public IApiKeyStore CreateKeyStore() => new SqliteApiKeyStore(new SqliteStoreOptions { Path = Path });

    public IEventStore CreateEventStore() => new SqliteEventStore(new SqliteStoreOptions { Path = Path });

    public async Task ExecuteSqlAsync(string sql)
    {
        await using var c = new SqliteConnection($"Data Source={Path};Pooling=False");
        await c.OpenAsync();
        await using var cmd = c.CreateCommand();
        cmd.CommandText = sql;
        await cmd.ExecuteNonQueryAsync();
    }

    public ValueTask DisposeAsync()
    {
        SqliteConnection.ClearAllPools();
        _dir.Dispose();
        return ValueTask.CompletedTask;
    }
}

public sealed class SqliteRetentionConformanceTests() : RetentionConformanceTests(new SqliteTestDatabase());

public sealed class SqliteAuditLogConformanceTests() : AuditLogConformanceTests(new SqliteTestDatabase());

public sealed class SqliteApiKeyStoreConformanceTests() : ApiKeyStoreConformanceTests(new SqliteTestDatabase());

public sealed class SqliteEventStoreConformanceTests() : EventStoreConformanceTests(new SqliteTestDatabase());
