using Bureau.Storage.PostgreSql;
using Bureau.TestKit;
using Npgsql;
using Xunit;

namespace Bureau.Storage.PostgreSql.Tests;

/// <summary>
/// A schema of its own on the test server (BUREAU_TEST_POSTGRES), for one test: created empty by the store's
/// migrations, dropped at the end. Tests skip, saying why, when the variable is not set (test.sh always sets it:
/// docs/decisions/0030).
/// </summary>
public sealed class PostgreSqlTestDatabase : IStoreTestDatabase
{
    /// <summary>The environment variable with the test server's connection string.</summary>
    public const string Variable = "BUREAU_TEST_POSTGRES";

    public PostgreSqlTestDatabase()
    {
        ConnectionString = Server();
        Schema = "t_" + Guid.NewGuid().ToString("n");
        Options = new PostgreSqlStoreOptions { ConnectionString = ConnectionString, Schema = Schema };
    }

    /// <summary>The server's connection string; skips the test (with the reason) when there is none.</summary>
    public static string Server()
    {
        var cs = Environment.GetEnvironmentVariable(Variable);
        if (string.IsNullOrWhiteSpace(cs))
            Assert.Skip($"PostgreSQL tests need a server: set {Variable} to a connection string, or run them under tests/pg.sh (which installs and starts a throwaway one)");
        return cs;
    }

    public string ConnectionString { get; }

    public string Schema { get; }

    public PostgreSqlStoreOptions Options { get; }

    public IRunStore CreateRunStore() => new PostgreSqlRunStore(Options);

    public IApiKeyStore CreateKeyStore() => new PostgreSqlApiKeyStore(Options);

    public IEventStore CreateEventStore() => new PostgreSqlEventStore(Options);

    public async Task ExecuteSqlAsync(string sql)
    {
        await using var c = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(ConnectionString) { SearchPath = Schema, Pooling = false }.ConnectionString);
        await c.OpenAsync();
        await using var cmd = new NpgsqlCommand(sql, c);
        await cmd.ExecuteNonQueryAsync();
    }

    public async ValueTask DisposeAsync()
    {
        await using var c = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(ConnectionString) { Pooling = false }.ConnectionString);
        await c.OpenAsync();
        await using var cmd = new NpgsqlCommand($"DROP SCHEMA IF EXISTS {Schema} CASCADE", c);
        await cmd.ExecuteNonQueryAsync();
    }
}

public sealed class PostgreSqlStoreConformanceTests : StoreConformanceTests
{
    private readonly PostgreSqlTestDatabase _db = new();

    protected override IRunStore CreateStore() => _db.CreateRunStore();

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        await _db.DisposeAsync();
    }
}

public sealed class PostgreSqlRetentionConformanceTests() : RetentionConformanceTests(new PostgreSqlTestDatabase());

public sealed class PostgreSqlAuditLogConformanceTests() : AuditLogConformanceTests(new PostgreSqlTestDatabase());

public sealed class PostgreSqlApiKeyStoreConformanceTests() : ApiKeyStoreConformanceTests(new PostgreSqlTestDatabase());

public sealed class PostgreSqlEventStoreConformanceTests() : EventStoreConformanceTests(new PostgreSqlTestDatabase());
