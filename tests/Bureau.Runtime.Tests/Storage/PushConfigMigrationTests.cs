using Bureau.Storage.Sqlite;
using Bureau.Tests.Support;
using Microsoft.Data.Sqlite;
using Xunit;

namespace Bureau.Tests.Storage;

/// <summary>
/// The migration that gives A2A push configs their own table moves the configs an older Bureau kept in
/// <c>poll_cursors</c> rows (<c>a2a-push:TASK</c>, and the index <c>a2a-push:index</c>) there, in order, and
/// deletes those rows; other cursors stay.
/// </summary>
public sealed class PushConfigMigrationTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task ConfigsKeptInPollCursorRows_MoveToTheirTable_TheIndexBecomesTheWatchedTasks()
    {
        var ct = TestContext.Current.CancellationToken;
        var path = _dir.File("bureau.db");
        var created = new SqliteEventStore(new SqliteStoreOptions { Path = path });
        await created.InitializeAsync(ct);
        await created.SetCursorAsync("orders", "41", DateTimeOffset.UnixEpoch, ct);
        // Back to the schema before the step (the later steps' tables dropped too), with the rows the A2A code of that time wrote.
        var step = Array.FindIndex(Migrations.Steps, s => s.Contains("CREATE TABLE a2a_push_configs", StringComparison.Ordinal));
        Assert.True(step > 0);
        await using (var c = new SqliteConnection($"Data Source={path};Pooling=False"))
        {
            await c.OpenAsync(ct);
            await using var cmd = c.CreateCommand();
            cmd.CommandText = $$"""
                DROP TABLE a2a_push_configs;
                DROP TABLE workforce_tasks;
                INSERT INTO poll_cursors(trigger, value, at) VALUES
                    ('a2a-push:t1', '[{"id":"b","url":"https://b.example/","taskId":"t1"},{"id":"a","url":"https://a.example/","taskId":"t1","token":"s3cret"}]', 1000),
                    ('a2a-push:t2', '[{"id":"x","url":"https://x.example/","taskId":"t2"}]', 2000),
                    ('a2a-push:index', '["t1"]', 3000);
                PRAGMA user_version = {{step}};
                """;
            await cmd.ExecuteNonQueryAsync(ct);
        }

        var migrated = new SqliteEventStore(new SqliteStoreOptions { Path = path });
        await migrated.InitializeAsync(ct);

        Assert.Equal(["""{"id":"b","url":"https://b.example/","taskId":"t1"}""", """{"id":"a","url":"https://a.example/","taskId":"t1","token":"s3cret"}"""],
            await migrated.ListPushConfigsAsync("t1", ct));
        Assert.Equal(["""{"id":"x","url":"https://x.example/","taskId":"t2"}"""], await migrated.ListPushConfigsAsync("t2", ct));
        Assert.Equal(["t1"], await migrated.ListWatchedPushTasksAsync(ct)); // t2 had been finished with
        Assert.Null(await migrated.GetCursorAsync("a2a-push:t1", ct));
        Assert.Null(await migrated.GetCursorAsync("a2a-push:index", ct));
        Assert.Equal("41", await migrated.GetCursorAsync("orders", ct));
        // The moved configs behave as new ones: replaced by id, deleted.
        Assert.True(await migrated.PutPushConfigAsync("t1", "b", """{"id":"b","url":"https://b2.example/"}""", 10, DateTimeOffset.UnixEpoch, ct));
        Assert.True(await migrated.DeletePushConfigAsync("t1", "a", ct));
        Assert.Equal(["""{"id":"b","url":"https://b2.example/"}"""], await migrated.ListPushConfigsAsync("t1", ct));
    }
}
