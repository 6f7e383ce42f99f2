using System.Collections.Concurrent;
using Microsoft.Data.Sqlite;

namespace Bureau.Storage.Sqlite;

/// <summary>
/// Open read connections that keep the store's most frequent queries prepared (a run's row, a run's journal), so a
/// read does not parse and plan its SQL again: about 30 µs of the 40 µs a pooled connection and a fresh command took,
/// and what a team's walks up its tree and its members' wake-ups do thousands of times. At most <see cref="MaxKept"/>
/// are kept; more readers at once open more, closed when they finish. A session whose query failed is closed, not
/// kept (its state is unknown). None is kept after the store is disposed.
/// </summary>
internal sealed class ReaderSessions : IDisposable
{
    private readonly string _connectionString;
    private readonly ConcurrentBag<ReaderSession> _idle = [];
    private int _kept;
    private volatile bool _disposed;

    public ReaderSessions(string connectionString) => _connectionString = connectionString;

    /// <summary>The most sessions kept open between reads.</summary>
    public static int MaxKept { get; } = Math.Clamp(Environment.ProcessorCount * 2, 4, 16);

    public async ValueTask<ReaderSession> RentAsync(CancellationToken ct)
    {
        if (_idle.TryTake(out var session))
        {
            Interlocked.Decrement(ref _kept);
            return session;
        }
        var c = new SqliteConnection(_connectionString);
        try
        {
            await c.OpenAsync(ct);
        }
        catch
        {
            await c.DisposeAsync();
            throw;
        }
        return new ReaderSession(c);
    }

    /// <summary>Keeps a session that read without error for the next read, or closes it.</summary>
    public void Return(ReaderSession session, bool healthy)
    {
        if (healthy && !_disposed && Interlocked.Increment(ref _kept) <= MaxKept)
        {
            _idle.Add(session);
            if (!_disposed) return;
            // Disposed meanwhile: take it back out (Dispose may have drained the bag already).
            if (!_idle.TryTake(out var late)) return;
            Interlocked.Decrement(ref _kept);
            late.Dispose();
            return;
        }
        if (healthy && !_disposed) Interlocked.Decrement(ref _kept);
        session.Dispose();
    }

    public void Dispose()
    {
        _disposed = true;
        while (_idle.TryTake(out var session))
        {
            Interlocked.Decrement(ref _kept);
            session.Dispose();
        }
    }
}

/// <summary>One open read connection with its prepared queries.</summary>
internal sealed class ReaderSession : IDisposable
{
    private SqliteCommand? _run;
    private SqliteCommand? _journal;

    public ReaderSession(SqliteConnection connection) => Connection = connection;

    public SqliteConnection Connection { get; }

    /// <summary><c>SELECT</c> a run's row by id (<c>$id</c>).</summary>
    public SqliteCommand Run => _run ??= Prepare($"SELECT {SqliteRunStore.RunColumns} FROM runs WHERE id = $id", "$id");

    /// <summary><c>SELECT</c> a run's journal after a step (<c>$id</c>, <c>$after</c>), in order.</summary>
    public SqliteCommand Journal => _journal ??= Prepare("SELECT n, at, data FROM journal WHERE run_id = $id AND n > $after ORDER BY n", "$id", "$after");

    private SqliteCommand Prepare(string sql, params string[] parameters)
    {
        var cmd = Connection.CreateCommand();
        cmd.CommandText = sql;
        foreach (var p in parameters) cmd.Parameters.Add(new SqliteParameter(p, DBNull.Value));
        cmd.Prepare();
        return cmd;
    }

    public void Dispose()
    {
        _run?.Dispose();
        _journal?.Dispose();
        Connection.Dispose();
    }
}
