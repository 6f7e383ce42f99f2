using System.Text.Json;
using Npgsql;
using NpgsqlTypes;

namespace Bureau.Storage.PostgreSql;

/// <summary>
/// What the writer gathers for the second round trip of a batch: the journal rows of every op whose row change took,
/// the audit entries (chained in op order) and the journals of deleted runs.
/// </summary>
/// <param name="auditHead">The audit chain's head, when the batch took the audit lock.</param>
/// <param name="entries">The writer's reused serializer of journal entries (the writer's thread only).</param>
/// <param name="notices">The NOTIFY channel and this writer's origin, when commits are announced to other nodes; null: not.</param>
internal sealed class PgBatchContext((long Seq, string Hash)? auditHead, EntryWriter entries, (string Channel, string Origin)? notices = null)
{
    private readonly List<bool> _lifecycle = [];
    private readonly List<string> _runIds = [];
    private readonly List<long> _ns = [];
    private readonly List<string> _kinds = [];
    private readonly List<long> _ats = [];
    private readonly List<byte[]> _data = [];

    public PostgreSqlAudit.Pending? Audit { get; } = auditHead is { } h ? new PostgreSqlAudit.Pending(h) : null;

    public List<string> DeletedRuns { get; } = [];

    public void AddEntry(string runId, long n, DateTimeOffset at, JournalEntry entry)
    {
        _runIds.Add(runId);
        _ns.Add(n);
        _kinds.Add(entry.Kind);
        _ats.Add(at.ToUnixTimeMilliseconds());
        _data.Add(entries.Write(entry).ToArray());
        _lifecycle.Add(PgEventNotices.IsLifecycle(entry));
        if (AuditFormat.Of(entry) is { } a) AddAudit(at, a.Actor, a.Action, runId, n, a.Detail?.ToJsonString());
    }

    public void AddAudit(DateTimeOffset at, string? actor, string action, string? runId, long? step, string? detail) =>
        (Audit ?? throw new InvalidOperationException("an audit entry in a batch that did not take the audit lock")).Add(at, actor, action, runId, step, detail);

    /// <summary>The statements of the second round trip (none when the batch wrote no entries).</summary>
    public IEnumerable<NpgsqlBatchCommand> Commands()
    {
        if (DeletedRuns.Count > 0)
        {
            var del = new NpgsqlBatchCommand("DELETE FROM journal WHERE run_id = ANY($1)");
            del.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text, Value = DeletedRuns.ToArray() });
            yield return del;
        }
        if (_runIds.Count > 0)
        {
            var ins = new NpgsqlBatchCommand("INSERT INTO journal(run_id, n, kind, at, data) SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::bytea[])");
            ins.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text, Value = _runIds.ToArray() });
            ins.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Bigint, Value = _ns.ToArray() });
            ins.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text, Value = _kinds.ToArray() });
            ins.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Bigint, Value = _ats.ToArray() });
            ins.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Bytea, Value = _data.ToArray() });
            yield return ins;
        }
        if (Audit is { Count: > 0 } audit) yield return audit.Insert();
        if (notices is { } n && _runIds.Count > 0)
        {
            // One statement per transaction however many runs it appended to; delivered when (and only if) it commits.
            var notify = new NpgsqlBatchCommand("SELECT pg_notify($1, p) FROM unnest($2::text[]) p");
            notify.Parameters.Add(P(n.Channel));
            notify.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text, Value = PgEventNotices.Build(n.Origin, _runIds, _ns, _lifecycle).ToArray() });
            yield return notify;
        }
    }

    private static NpgsqlParameter P<T>(T value) => new NpgsqlParameter<T> { TypedValue = value };
}

/// <summary>
/// An operation for the writer; completed only after its transaction commits. A batch runs in two round trips: every
/// op's row statement (<see cref="RowCommand"/>, each returning rows), then the journal and audit rows of the ops whose
/// row statement took (<see cref="AfterRow"/>), then the commit.
/// </summary>
internal abstract class PgWriteOp
{
    /// <summary>Whether the op may write audit entries (the batch then takes the audit lock first).</summary>
    public virtual bool Audits => false;

    /// <summary>The op's row statement, or null. It returns rows: <see cref="AfterRow"/> gets the values of their first column.</summary>
    public abstract NpgsqlBatchCommand? RowCommand();

    /// <summary>Called with what the row statement returned (in the transaction, before the second round trip).</summary>
    public abstract Task AfterRow(IReadOnlyList<object> returned, PgBatchContext ctx, NpgsqlConnection c, NpgsqlTransaction tx, CancellationToken ct);

    public abstract void Complete();
    public abstract void Fail(Exception ex);

    /// <summary>Forgets results of a rolled-back attempt (the op may run again in isolation).</summary>
    public virtual void Reset() { }

    protected static NpgsqlParameter P<T>(T value) => new NpgsqlParameter<T> { TypedValue = value };

    protected static NpgsqlParameter Text(string? value) => new() { NpgsqlDbType = NpgsqlDbType.Text, Value = (object?)value ?? DBNull.Value };

    protected static NpgsqlParameter Long(long? value) => new() { NpgsqlDbType = NpgsqlDbType.Bigint, Value = (object?)value ?? DBNull.Value };

    protected static NpgsqlParameter Double(double? value) => new() { NpgsqlDbType = NpgsqlDbType.Double, Value = (object?)value ?? DBNull.Value };
}

internal sealed class PgSubmitOp(NewRun run) : PgWriteOp
{
    private SubmitResult? _result;
    public TaskCompletionSource<SubmitResult> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public override bool Audits => true;

    public override NpgsqlBatchCommand RowCommand()
    {
        // The unique index on idempotency_key decides between two submissions with one key, on this node or another.
        var cmd = new NpgsqlBatchCommand("""
            INSERT INTO runs(id, agent, status, input, created_at, updated_at, version, idempotency_key, actor, kind, parent_run_id, root_run_id, claim_owner, claim_until)
            VALUES($1, $2, 'queued', $3, $4, $4, 1, $5, $6, $7, $8, $9, $10, $11)
            ON CONFLICT (idempotency_key) DO NOTHING RETURNING 1
            """);
        var created = run.CreatedAt.ToUnixTimeMilliseconds();
        cmd.Parameters.Add(P(run.Id));
        cmd.Parameters.Add(P(run.Agent));
        cmd.Parameters.Add(P(run.Input));
        cmd.Parameters.Add(P(created));
        cmd.Parameters.Add(Text(run.IdempotencyKey));
        cmd.Parameters.Add(Text(run.Actor));
        cmd.Parameters.Add(P(run.Kind));
        cmd.Parameters.Add(Text(run.ParentRunId));
        cmd.Parameters.Add(P(run.RootRunId ?? run.Id));
        cmd.Parameters.Add(Text(run.Claim?.Owner));
        cmd.Parameters.Add(Long(run.Claim?.Until.ToUnixTimeMilliseconds()));
        return cmd;
    }

    public override async Task AfterRow(IReadOnlyList<object> returned, PgBatchContext ctx, NpgsqlConnection c, NpgsqlTransaction tx, CancellationToken ct)
    {
        if (returned.Count == 0)
        {
            // The key names a run already (committed, or earlier in this batch).
            await using var find = new NpgsqlCommand($"SELECT {PostgreSqlRunStore.RunColumns} FROM runs WHERE idempotency_key = $1", c, tx);
            find.Parameters.Add(P(run.IdempotencyKey!));
            await using var r = await find.ExecuteReaderAsync(ct);
            if (!await r.ReadAsync(ct)) throw new InvalidOperationException($"run {run.Id}: idempotency key '{run.IdempotencyKey}' conflicted but no run has it");
            _result = new SubmitResult(PostgreSqlRunStore.ReadRun(r), Created: false);
            return;
        }
        ctx.AddEntry(run.Id, 1, run.CreatedAt, run.Started);
        var created = DateTimeOffset.FromUnixTimeMilliseconds(run.CreatedAt.ToUnixTimeMilliseconds());
        _result = new SubmitResult(new RunRecord
        {
            Id = run.Id,
            Agent = run.Agent,
            Status = RunStatus.Queued,
            Input = run.Input,
            CreatedAt = created,
            UpdatedAt = created,
            Version = 1,
            IdempotencyKey = run.IdempotencyKey,
            Actor = run.Actor,
            Kind = run.Kind,
            ParentRunId = run.ParentRunId,
            RootRunId = run.RootRunId ?? run.Id,
        }, Created: true);
    }

    public override void Reset() => _result = null;
    public override void Complete() => Completion.TrySetResult(_result!);
    public override void Fail(Exception ex) => Completion.TrySetException(ex);
}

internal sealed class PgAppendOp(AppendRequest request) : PgWriteOp
{
    private Exception? _conflict;
    public TaskCompletionSource Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public override bool Audits
    {
        get
        {
            foreach (var e in request.Entries)
            {
                if (AuditFormat.Of(e) is not null) return true;
            }
            return false;
        }
    }

    public override NpgsqlBatchCommand RowCommand()
    {
        var req = request;
        var newVersion = req.ExpectedVersion + req.Entries.Count;
        var at = req.At.ToUnixTimeMilliseconds();
        // The version check is the row's lock: a second writer of the run (another node) waits for this
        // transaction, then finds the version moved and updates nothing (a conflict).
        if (req.Update is not { } u)
        {
            var plain = new NpgsqlBatchCommand("UPDATE runs SET version = $1, updated_at = $2 WHERE id = $3 AND version = $4 RETURNING 1");
            plain.Parameters.Add(P(newVersion));
            plain.Parameters.Add(P(at));
            plain.Parameters.Add(P(req.RunId));
            plain.Parameters.Add(P(req.ExpectedVersion));
            return plain;
        }
        var cmd = new NpgsqlBatchCommand("""
            UPDATE runs SET version = $1, updated_at = $2, status = $3,
                output = coalesce($4, output), error = $5, outcome = $6,
                input_tokens = coalesce($7, input_tokens), output_tokens = coalesce($8, output_tokens), cost = coalesce($15, cost),
                waiting_for = $9, wait_deadline = $10,
                claim_owner = CASE WHEN $3 IN ('queued','running') THEN coalesce($11, claim_owner) END,
                claim_until = CASE WHEN $3 IN ('queued','running') THEN coalesce($12, claim_until) END
            WHERE id = $13 AND version = $14
            RETURNING 1
            """);
        cmd.Parameters.Add(P(newVersion));
        cmd.Parameters.Add(P(at));
        cmd.Parameters.Add(P(u.Status.ToWireName()));
        cmd.Parameters.Add(Text(u.Output));
        cmd.Parameters.Add(Text(u.Error));
        cmd.Parameters.Add(Text(u.Outcome));
        cmd.Parameters.Add(Long(u.Usage?.InputTokens));
        cmd.Parameters.Add(Long(u.Usage?.OutputTokens));
        cmd.Parameters.Add(Text(u.WaitingFor is null ? null : JsonSerializer.Serialize(u.WaitingFor, BureauJsonContext.Default.WaitingFor)));
        cmd.Parameters.Add(Long(u.WaitingFor?.Deadline?.ToUnixTimeMilliseconds()));
        cmd.Parameters.Add(Text(u.Claim?.Owner));
        cmd.Parameters.Add(Long(u.Claim?.Until.ToUnixTimeMilliseconds()));
        cmd.Parameters.Add(P(req.RunId));
        cmd.Parameters.Add(P(req.ExpectedVersion));
        cmd.Parameters.Add(Double(u.Cost));
        return cmd;
    }

    public override async Task AfterRow(IReadOnlyList<object> returned, PgBatchContext ctx, NpgsqlConnection c, NpgsqlTransaction tx, CancellationToken ct)
    {
        var req = request;
        if (returned.Count != 1)
        {
            await using var cur = new NpgsqlCommand("SELECT version FROM runs WHERE id = $1", c, tx);
            cur.Parameters.Add(P(req.RunId));
            var version = await cur.ExecuteScalarAsync(ct) is long v ? v : (long?)null;
            _conflict = new JournalConflictException(req.RunId, req.ExpectedVersion, version);
            return;
        }
        var n = req.ExpectedVersion;
        foreach (var entry in req.Entries) ctx.AddEntry(req.RunId, ++n, req.At, entry);
    }

    public override void Reset() => _conflict = null;

    public override void Complete()
    {
        if (_conflict is not null) Completion.TrySetException(_conflict);
        else Completion.TrySetResult();
    }

    public override void Fail(Exception ex) => Completion.TrySetException(ex);
}

internal sealed class PgMarkRunningOp(string runId, DateTimeOffset at) : PgWriteOp
{
    public TaskCompletionSource Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public override NpgsqlBatchCommand RowCommand()
    {
        var cmd = new NpgsqlBatchCommand("UPDATE runs SET status = 'running', updated_at = $1 WHERE id = $2 AND status = 'queued' RETURNING 1");
        cmd.Parameters.Add(P(at.ToUnixTimeMilliseconds()));
        cmd.Parameters.Add(P(runId));
        return cmd;
    }

    public override Task AfterRow(IReadOnlyList<object> returned, PgBatchContext ctx, NpgsqlConnection c, NpgsqlTransaction tx, CancellationToken ct) => Task.CompletedTask;
    public override void Complete() => Completion.TrySetResult();
    public override void Fail(Exception ex) => Completion.TrySetException(ex);
}

/// <summary>A write that changes no run: the engine's check that the store can write.</summary>
internal sealed class PgProbeOp(DateTimeOffset at) : PgWriteOp
{
    public TaskCompletionSource Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public override NpgsqlBatchCommand RowCommand()
    {
        var cmd = new NpgsqlBatchCommand("INSERT INTO store_probe(id, at) VALUES(1, $1) ON CONFLICT (id) DO UPDATE SET at = excluded.at RETURNING 1");
        cmd.Parameters.Add(P(at.ToUnixTimeMilliseconds()));
        return cmd;
    }

    public override Task AfterRow(IReadOnlyList<object> returned, PgBatchContext ctx, NpgsqlConnection c, NpgsqlTransaction tx, CancellationToken ct) => Task.CompletedTask;
    public override void Complete() => Completion.TrySetResult();
    public override void Fail(Exception ex) => Completion.TrySetException(ex);
}

/// <summary>An audit entry that is not a journal entry (a notification sent or failed), chained in the writer's transaction.</summary>
internal sealed class PgAuditOp(DateTimeOffset at, string? actor, string action, string? runId, long? step, string? detail) : PgWriteOp
{
    public TaskCompletionSource Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    public override bool Audits => true;
    public override NpgsqlBatchCommand? RowCommand() => null;

    public override Task AfterRow(IReadOnlyList<object> returned, PgBatchContext ctx, NpgsqlConnection c, NpgsqlTransaction tx, CancellationToken ct)
    {
        ctx.AddAudit(at, actor, action, runId, step, detail);
        return Task.CompletedTask;
    }

    public override void Complete() => Completion.TrySetResult();
    public override void Fail(Exception ex) => Completion.TrySetException(ex);
}

/// <summary>
/// Deletes finished runs and their journals, with one <c>retention.deleted</c> audit entry for those that went, in the
/// writer's transaction. The run rows are deleted (and so locked) by one statement that checks, in the transaction, that
/// neither the run nor its tree is live; an append racing with it finds no row and is a conflict.
/// </summary>
internal sealed class PgDeleteRunsOp(RunDeletion deletion) : PgWriteOp
{
    private const string Finished = "('succeeded','failed','canceled')";
    private readonly List<string> _deleted = [];
    public TaskCompletionSource<IReadOnlyList<string>> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public override bool Audits => true;

    public override NpgsqlBatchCommand RowCommand()
    {
        var cmd = new NpgsqlBatchCommand($"""
            DELETE FROM runs WHERE id = ANY($1) AND status IN {Finished}
              AND NOT EXISTS (SELECT 1 FROM runs root WHERE root.id = runs.root_run_id AND root.id <> runs.id AND root.status NOT IN {Finished})
              AND NOT EXISTS (SELECT 1 FROM runs c WHERE c.root_run_id = runs.id AND c.id <> runs.id AND c.status NOT IN {Finished})
              AND NOT EXISTS (SELECT 1 FROM runs c WHERE c.parent_run_id = runs.id AND c.status NOT IN {Finished})
            RETURNING id
            """);
        cmd.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text, Value = deletion.RunIds.Distinct(StringComparer.Ordinal).ToArray() });
        return cmd;
    }

    public override Task AfterRow(IReadOnlyList<object> returned, PgBatchContext ctx, NpgsqlConnection c, NpgsqlTransaction tx, CancellationToken ct)
    {
        var gone = returned.Select(o => (string)o).ToHashSet(StringComparer.Ordinal);
        _deleted.AddRange(deletion.RunIds.Distinct(StringComparer.Ordinal).Where(gone.Contains)); // in the order asked
        if (_deleted.Count == 0) return Task.CompletedTask;
        ctx.DeletedRuns.AddRange(_deleted);
        var detail = new System.Text.Json.Nodes.JsonObject { ["count"] = _deleted.Count };
        if (deletion.Reason is not null) detail["reason"] = deletion.Reason;
        detail["runs"] = new System.Text.Json.Nodes.JsonArray([.. _deleted.Select(d => (System.Text.Json.Nodes.JsonNode?)d)]);
        ctx.AddAudit(deletion.At, deletion.Actor, "retention.deleted", null, null, detail.ToJsonString());
        return Task.CompletedTask;
    }

    public override void Reset() => _deleted.Clear();
    public override void Complete() => Completion.TrySetResult([.. _deleted]);
    public override void Fail(Exception ex) => Completion.TrySetException(ex);
}
