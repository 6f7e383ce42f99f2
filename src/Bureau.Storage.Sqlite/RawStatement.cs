using System.Buffers;
using System.Text.Json;
using Microsoft.Data.Sqlite;
using SQLitePCL;

namespace Bureau.Storage.Sqlite;

/// <summary>
/// A prepared statement driven through SQLitePCL directly, for the writer's hottest statements:
/// Microsoft.Data.Sqlite allocates a binder per bound parameter and an enumerator per execution,
/// which showed as a leading allocation source in the agent-loop profile (docs/performance.md).
/// It runs on the writer's connection, inside the writer's transaction. Single-threaded, like the writer.
/// </summary>
internal sealed class RawStatement : IDisposable
{
    private readonly sqlite3 _db;
    private readonly sqlite3_stmt _stmt;

    public RawStatement(SqliteConnection connection, string sql)
    {
        _db = connection.Handle ?? throw new InvalidOperationException("the connection is not open");
        SqliteException.ThrowExceptionForRC(raw.sqlite3_prepare_v2(_db, sql, out _stmt), _db);
    }

    public void Bind(int index, string? value) => Check(value is null ? raw.sqlite3_bind_null(_stmt, index) : raw.sqlite3_bind_text(_stmt, index, value));

    public void Bind(int index, long value) => Check(raw.sqlite3_bind_int64(_stmt, index, value));

    public void Bind(int index, long? value) => Check(value is { } v ? raw.sqlite3_bind_int64(_stmt, index, v) : raw.sqlite3_bind_null(_stmt, index));

    public void Bind(int index, double? value) => Check(value is { } v ? raw.sqlite3_bind_double(_stmt, index, v) : raw.sqlite3_bind_null(_stmt, index));

    public void Bind(int index, ReadOnlySpan<byte> value) => Check(raw.sqlite3_bind_blob(_stmt, index, value));

    /// <summary>Runs the statement to completion and returns the number of rows it changed.</summary>
    public int Execute()
    {
        var rc = raw.sqlite3_step(_stmt);
        raw.sqlite3_reset(_stmt);
        if (rc != raw.SQLITE_DONE) SqliteException.ThrowExceptionForRC(rc, _db);
        return raw.sqlite3_changes(_db);
    }

    /// <summary>Runs a query for one integer: the first column of the first row, or null when there is no row.</summary>
    public long? QueryInt64()
    {
        try
        {
            var rc = raw.sqlite3_step(_stmt);
            if (rc == raw.SQLITE_ROW) return raw.sqlite3_column_type(_stmt, 0) == raw.SQLITE_NULL ? null : raw.sqlite3_column_int64(_stmt, 0);
            if (rc != raw.SQLITE_DONE) SqliteException.ThrowExceptionForRC(rc, _db);
            return null;
        }
        finally
        {
            raw.sqlite3_reset(_stmt);
        }
    }

    private void Check(int rc) => SqliteException.ThrowExceptionForRC(rc, _db);

    public void Dispose() => _stmt.Dispose();
}

/// <summary>Serializes journal entries into one reused buffer (the writer is single-threaded).</summary>
internal sealed class EntryBuffer
{
    private readonly EntryWriter _writer = new();

    public ReadOnlySpan<byte> Serialize(JournalEntry entry) => _writer.Write(entry);
}
