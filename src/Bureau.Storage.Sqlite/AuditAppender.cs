using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Data.Sqlite;

namespace Bureau.Storage.Sqlite;

/// <summary>
/// The writer's way to chain audit entries: the same rows and hashes as <see cref="AuditChain.Append"/>,
/// through one prepared statement and one reused hasher and buffer (an audit entry is written with
/// every submitted run, so it is on the hot path). Single-threaded, like the writer.
/// </summary>
internal sealed class AuditAppender : IDisposable
{
    private readonly RawStatement _insert;
    private readonly IncrementalHash _sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
    private byte[] _buffer = new byte[512];
    private int _length;

    public AuditAppender(SqliteConnection connection) =>
        _insert = new RawStatement(connection, "INSERT INTO audit(seq, at, actor, action, run_id, step, detail, prev, hash) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");

    /// <summary>Appends one entry after <paramref name="head"/>; returns the new head.</summary>
    public (long Seq, string Hash) Append((long Seq, string Hash) head, DateTimeOffset at, string? actor, string action, string? runId, long? step, string? detail)
    {
        var seq = head.Seq + 1;
        var atMs = at.ToUnixTimeMilliseconds();
        var hash = Hash(head.Hash, seq, atMs, actor, action, runId, step, detail);
        _insert.Bind(1, seq);
        _insert.Bind(2, atMs);
        _insert.Bind(3, actor);
        _insert.Bind(4, action);
        _insert.Bind(5, runId);
        _insert.Bind(6, step);
        _insert.Bind(7, detail);
        _insert.Bind(8, head.Hash);
        _insert.Bind(9, hash);
        _insert.Execute();
        return (seq, hash);
    }

    /// <summary><see cref="AuditChain.Hash"/>, written into a reused buffer.</summary>
    public string Hash(string previous, long seq, long atMs, string? actor, string action, string? runId, long? step, string? detail)
    {
        _length = 0;
        Field(previous);
        Field(seq);
        Field(atMs);
        Field(actor);
        Field(action);
        Field(runId);
        if (step is { } s) Field(s);
        else Field((string?)null);
        Field(detail);
        _sha.AppendData(_buffer, 0, _length);
        Span<byte> digest = stackalloc byte[32];
        _sha.GetHashAndReset(digest);
        return Convert.ToHexStringLower(digest);
    }

    // Length-prefixed fields, as AuditChain.Hash writes them: "{length}:{text}|" or "-1:|" for null.
    private void Field(string? text)
    {
        if (text is null)
        {
            Ascii("-1:|");
            return;
        }
        Number(text.Length);
        Ascii(":");
        Ensure(Encoding.UTF8.GetMaxByteCount(text.Length));
        _length += Encoding.UTF8.GetBytes(text, _buffer.AsSpan(_length));
        Ascii("|");
    }

    private void Field(long value)
    {
        Span<char> digits = stackalloc char[20];
        value.TryFormat(digits, out var count, default, CultureInfo.InvariantCulture);
        Number(count);
        Ascii(":");
        Ensure(count);
        for (var i = 0; i < count; i++) _buffer[_length++] = (byte)digits[i];
        Ascii("|");
    }

    private void Number(long value)
    {
        Ensure(20);
        value.TryFormat(_buffer.AsSpan(_length), out var written, default, CultureInfo.InvariantCulture);
        _length += written;
    }

    private void Ascii(string text)
    {
        Ensure(text.Length);
        foreach (var c in text) _buffer[_length++] = (byte)c;
    }

    private void Ensure(int more)
    {
        if (_length + more <= _buffer.Length) return;
        var bigger = new byte[Math.Max(_buffer.Length * 2, _length + more)];
        _buffer.AsSpan(0, _length).CopyTo(bigger);
        _buffer = bigger;
    }

    public void Dispose()
    {
        _insert.Dispose();
        _sha.Dispose();
    }
}
