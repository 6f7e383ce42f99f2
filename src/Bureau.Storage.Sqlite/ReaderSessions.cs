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
    private readonly Stack<ReaderSession> _idle = new();
    private bool _disposed;

    public ReaderSessions(string connectionString) => _connectionString = connectionString;

    /// <summary>The most sessions kept open between reads.</summary>
    public static int MaxKept { get; } = Math.Clamp(Environment.ProcessorCount * 2, 4, 16);

    /// <summary>
    /// Runs <paramref name="read"/> on a kept session (or a new one), then keeps the session for the next read, or closes
    /// it when the read failed, enough are kept already, or the store was disposed meanwhile.
    /// </summary>
    public async ValueTask<T> ReadAsync<TState, T>(TState state, Func<ReaderSession, TState, T> read, CancellationToken ct)
    {
        var session = TakeIdle() ?? await OpenAsync(ct);
        T value;
        try
        {
            value = read(session, state);
        }
        catch
        {
            session.Dispose();
            throw;
        }
        lock (_idle)
        {
            if (!_disposed && _idle.Count < MaxKept)
            {
                _idle.Push(session);
                return value;
            }
        }
        session.Dispose();
        return value;
    }

    private ReaderSession? TakeIdle()
    {
        lock (_idle) return _idle.TryPop(out var session) ? session : null;
    }

    private async Task<ReaderSession> OpenAsync(CancellationToken ct)
    {
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

    public void Dispose()
    {
        ReaderSession[] idle;
        lock (_idle)
        {
            _disposed = true;
            idle = [.. _idle];
            _idle.Clear();
        }
        foreach (var session in idle) session.Dispose();
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
