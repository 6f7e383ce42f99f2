using Npgsql;
using NpgsqlTypes;

namespace Bureau.Storage.PostgreSql;

/// <summary>
/// The audit log's hash chain in PostgreSQL (table <c>audit</c>), in <see cref="AuditFormat"/>. A transaction that appends
/// takes the advisory lock <see cref="Lock"/> first, then reads the head: every writer (the run store's writer of any node,
/// the key store, a CLI command) chains after the last committed entry, one at a time, gap-free.
/// </summary>
internal static class PostgreSqlAudit
{
    /// <summary>The advisory lock key of the chain's head ('bureau_a').</summary>
    public const long Lock = 0x6275726561755f61;

    public const string LockSql = /* Lock */ "SELECT pg_advisory_xact_lock(7094702567744429921)";
    public const string HeadSql = "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1";

    /// <summary>Takes the chain's lock in <paramref name="tx"/> and returns the head.</summary>
    public static async Task<(long Seq, string Hash)> LockHeadAsync(NpgsqlConnection c, NpgsqlTransaction tx, CancellationToken ct)
    {
        await using (var l = new NpgsqlCommand(LockSql, c, tx)) await l.ExecuteNonQueryAsync(ct);
        await using var cmd = new NpgsqlCommand(HeadSql, c, tx);
        await using var r = await cmd.ExecuteReaderAsync(ct);
        return await r.ReadAsync(ct) ? (r.GetInt64(0), r.GetString(1)) : (0, AuditFormat.Genesis);
    }

    /// <summary>Entries to insert, chained in order after a head.</summary>
    public sealed class Pending
    {
        private readonly List<long> _seq = [];
        private readonly List<long> _at = [];
        private readonly List<string?> _actor = [];
        private readonly List<string> _action = [];
        private readonly List<string?> _run = [];
        private readonly List<long?> _step = [];
        private readonly List<string?> _detail = [];
        private readonly List<string> _prev = [];
        private readonly List<string> _hash = [];

        public Pending((long Seq, string Hash) head) => Head = head;

        public (long Seq, string Hash) Head { get; private set; }

        public int Count => _seq.Count;

        public void Add(DateTimeOffset at, string? actor, string action, string? runId, long? step, string? detail)
        {
            var seq = Head.Seq + 1;
            var atMs = at.ToUnixTimeMilliseconds();
            var hash = AuditFormat.Hash(Head.Hash, seq, atMs, actor, action, runId, step, detail);
            _seq.Add(seq); _at.Add(atMs); _actor.Add(actor); _action.Add(action); _run.Add(runId); _step.Add(step); _detail.Add(detail);
            _prev.Add(Head.Hash); _hash.Add(hash);
            Head = (seq, hash);
        }

        /// <summary>One statement inserting every pending entry.</summary>
        public NpgsqlBatchCommand Insert()
        {
            var cmd = new NpgsqlBatchCommand("""
                INSERT INTO audit(seq, at, actor, action, run_id, step, detail, prev, hash)
                SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[], $8::text[], $9::text[])
                """);
            cmd.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Bigint, Value = _seq.ToArray() });
            cmd.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Bigint, Value = _at.ToArray() });
            cmd.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text, Value = _actor.ToArray() });
            cmd.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text, Value = _action.ToArray() });
            cmd.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text, Value = _run.ToArray() });
            cmd.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Bigint, Value = _step.ToArray() });
            cmd.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text, Value = _detail.ToArray() });
            cmd.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text, Value = _prev.ToArray() });
            cmd.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text, Value = _hash.ToArray() });
            return cmd;
        }
    }

    /// <summary>Appends one entry in <paramref name="tx"/> (lock, head, insert).</summary>
    public static async Task AppendAsync(NpgsqlConnection c, NpgsqlTransaction tx, DateTimeOffset at, string? actor, string action, string? runId, long? step, string? detail, CancellationToken ct)
    {
        var pending = new Pending(await LockHeadAsync(c, tx, ct));
        pending.Add(at, actor, action, runId, step, detail);
        await using var batch = new NpgsqlBatch(c, tx);
        batch.BatchCommands.Add(pending.Insert());
        await batch.ExecuteNonQueryAsync(ct);
    }

    public static async Task<IReadOnlyList<AuditRecord>> ReadAsync(NpgsqlConnection c, long afterSeq, int limit, CancellationToken ct)
    {
        await using var cmd = new NpgsqlCommand("SELECT seq, at, actor, action, run_id, step, detail, prev, hash FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2", c);
        cmd.Parameters.Add(new NpgsqlParameter<long> { TypedValue = afterSeq });
        cmd.Parameters.Add(new NpgsqlParameter<int> { TypedValue = limit });
        await using var r = await cmd.ExecuteReaderAsync(ct);
        var list = new List<AuditRecord>();
        while (await r.ReadAsync(ct))
        {
            list.Add(new AuditRecord(r.GetInt64(0), DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(1)), r.IsDBNull(2) ? null : r.GetString(2), r.GetString(3),
                r.IsDBNull(4) ? null : r.GetString(4), r.IsDBNull(5) ? null : r.GetInt64(5), r.IsDBNull(6) ? null : r.GetString(6), r.GetString(7), r.GetString(8)));
        }
        return list;
    }
}
