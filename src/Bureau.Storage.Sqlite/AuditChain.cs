using System.Text.Json.Nodes;
using Microsoft.Data.Sqlite;

namespace Bureau.Storage.Sqlite;

/// <summary>
/// The audit log's hash chain in SQLite (table <c>audit</c>). Entries are written in the transaction
/// of what they record: the journal entries a person or policy caused (run started, canceled,
/// resolved; policy applied; approval asked, escalated, answered, timed out) and key changes. The
/// head is read inside the write transaction, so writers on other connections (the key store) chain
/// after it correctly.
/// </summary>
internal static class AuditChain
{
    public const string Genesis = AuditFormat.Genesis;

    /// <summary>The audit entry a journal entry makes, if it makes one (<see cref="AuditFormat.Of"/>).</summary>
    public static (string? Actor, string Action, JsonObject? Detail)? Of(JournalEntry entry) => AuditFormat.Of(entry);

    /// <summary>The head (last seq and hash) as the transaction sees it.</summary>
    public static (long Seq, string Hash) ReadHead(SqliteConnection c, SqliteTransaction tx)
    {
        using var cmd = c.CreateCommand();
        cmd.Transaction = tx;
        cmd.CommandText = "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1";
        using var r = cmd.ExecuteReader();
        return r.Read() ? (r.GetInt64(0), r.GetString(1)) : (0, Genesis);
    }

    /// <summary>Appends one entry after <paramref name="head"/>; returns the new head.</summary>
    public static (long Seq, string Hash) Append(SqliteConnection c, SqliteTransaction tx, (long Seq, string Hash) head,
        DateTimeOffset at, string? actor, string action, string? runId, long? step, string? detail)
    {
        var seq = head.Seq + 1;
        var atMs = at.ToUnixTimeMilliseconds();
        var hash = Hash(head.Hash, seq, atMs, actor, action, runId, step, detail);
        using var cmd = c.CreateCommand();
        cmd.Transaction = tx;
        cmd.CommandText = "INSERT INTO audit(seq, at, actor, action, run_id, step, detail, prev, hash) VALUES($seq, $at, $actor, $action, $run, $step, $detail, $prev, $hash)";
        cmd.Parameters.AddWithValue("$seq", seq);
        cmd.Parameters.AddWithValue("$at", atMs);
        cmd.Parameters.AddWithValue("$actor", (object?)actor ?? DBNull.Value);
        cmd.Parameters.AddWithValue("$action", action);
        cmd.Parameters.AddWithValue("$run", (object?)runId ?? DBNull.Value);
        cmd.Parameters.AddWithValue("$step", (object?)step ?? DBNull.Value);
        cmd.Parameters.AddWithValue("$detail", (object?)detail ?? DBNull.Value);
        cmd.Parameters.AddWithValue("$prev", head.Hash);
        cmd.Parameters.AddWithValue("$hash", hash);
        cmd.ExecuteNonQuery();
        return (seq, hash);
    }

    public static string Hash(string previous, long seq, long atMs, string? actor, string action, string? runId, long? step, string? detail) =>
        AuditFormat.Hash(previous, seq, atMs, actor, action, runId, step, detail);

    public static async Task<IReadOnlyList<AuditRecord>> ReadAsync(SqliteConnection c, long afterSeq, int limit, CancellationToken ct)
    {
        await using var cmd = c.CreateCommand();
        cmd.CommandText = "SELECT seq, at, actor, action, run_id, step, detail, prev, hash FROM audit WHERE seq > $after ORDER BY seq LIMIT $limit";
        cmd.Parameters.AddWithValue("$after", afterSeq);
        cmd.Parameters.AddWithValue("$limit", limit);
        await using var r = await cmd.ExecuteReaderAsync(ct);
        var list = new List<AuditRecord>();
        while (await r.ReadAsync(ct))
        {
            list.Add(new AuditRecord(r.GetInt64(0), DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(1)), r.IsDBNull(2) ? null : r.GetString(2), r.GetString(3),
                r.IsDBNull(4) ? null : r.GetString(4), r.IsDBNull(5) ? null : r.GetInt64(5), r.IsDBNull(6) ? null : r.GetString(6), r.GetString(7), r.GetString(8)));
        }
        return list;
    }

    /// <summary>Walks the chain in seq order, page by page, and names the first entry that does not follow (<see cref="AuditFormat.VerifyAsync"/>).</summary>
    public static Task<AuditVerification> VerifyAsync(SqliteConnection c, CancellationToken ct) =>
        AuditFormat.VerifyAsync(after => ReadAsync(c, after, 5000, ct));
}
