using System.Text.Json;
using Microsoft.Data.Sqlite;

namespace Bureau.Storage.Sqlite;

/// <summary>Prepared statements of the writer connection, reused for every operation.</summary>
internal sealed class WriterCommands : IDisposable
{
    private readonly SqliteCommand[] _all;
    private readonly RawStatement[] _raw;

    public WriterCommands(SqliteConnection c)
    {
        InsertJournal = new RawStatement(c, "INSERT INTO journal(run_id, n, kind, at, data) VALUES(?1, ?2, ?3, ?4, ?5)");
        BumpVersion = new RawStatement(c, "UPDATE runs SET version = ?1, updated_at = ?2 WHERE id = ?3 AND version = ?4");
        BumpVersionWithStatus = new RawStatement(c,
            """
            UPDATE runs SET version = ?1, updated_at = ?2, status = ?3,
                output = coalesce(?4, output), error = ?5, outcome = ?6,
                input_tokens = coalesce(?7, input_tokens), output_tokens = coalesce(?8, output_tokens), cost = coalesce(?15, cost),
                waiting_for = ?9, wait_deadline = ?10,
                claim_owner = CASE WHEN ?3 IN ('queued','running') THEN coalesce(?11, claim_owner) END,
                claim_until = CASE WHEN ?3 IN ('queued','running') THEN coalesce(?12, claim_until) END
            WHERE id = ?13 AND version = ?14
            """);
        CurrentVersion = new RawStatement(c, "SELECT version FROM runs WHERE id = ?1");
        FindByKey = Make(c, $"SELECT {SqliteRunStore.RunColumns} FROM runs WHERE idempotency_key = $key", "$key");
        InsertRun = new RawStatement(c,
            """
            INSERT INTO runs(id, agent, status, input, created_at, updated_at, version, idempotency_key, actor, kind, parent_run_id, root_run_id, claim_owner, claim_until)
            VALUES(?1, ?2, 'queued', ?3, ?4, ?4, 1, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
            """);
        MarkRunning = new RawStatement(c, "UPDATE runs SET status = 'running', updated_at = ?1 WHERE id = ?2 AND status = 'queued'");
        Audits = new AuditAppender(c);
        _all = [FindByKey];
        _raw = [InsertJournal, BumpVersion, BumpVersionWithStatus, CurrentVersion, InsertRun, MarkRunning];
    }

    public RawStatement InsertJournal { get; }
    public RawStatement BumpVersion { get; }
    public EntryBuffer Entries { get; } = new();
    public AuditAppender Audits { get; }
    public RawStatement BumpVersionWithStatus { get; }
    public RawStatement CurrentVersion { get; }
    public SqliteCommand FindByKey { get; }
    public RawStatement InsertRun { get; }
    public RawStatement MarkRunning { get; }

    public void Enlist(SqliteTransaction tx)
    {
        Transaction = tx;
        _auditHead = null;
        foreach (var cmd in _all) cmd.Transaction = tx;
    }

    private (long Seq, string Hash)? _auditHead;

    /// <summary>Appends an audit entry in the batch's transaction (the head is read once per transaction, then kept).</summary>
    public void Audit(DateTimeOffset at, string? actor, string action, string? runId, long? step, string? detail)
    {
        var c = Transaction!.Connection!;
        _auditHead = Audits.Append(_auditHead ?? AuditChain.ReadHead(c, Transaction), at, actor, action, runId, step, detail);
    }

    /// <summary>The transaction of the batch being written (for operations with statements of their own).</summary>
    public SqliteTransaction? Transaction { get; private set; }

    public void Dispose()
    {
        foreach (var cmd in _all) cmd.Dispose();
        foreach (var statement in _raw) statement.Dispose();
        Audits.Dispose();
    }

    private static SqliteCommand Make(SqliteConnection c, string sql, params string[] names)
    {
        var cmd = c.CreateCommand();
        cmd.CommandText = sql;
        foreach (var n in names) cmd.Parameters.Add(new SqliteParameter(n, null));
        return cmd;
    }
}

/// <summary>An operation for the writer; completed only after its transaction commits.</summary>
internal abstract class WriteOp
{
    public abstract void Execute(WriterCommands cmds);
    public abstract void Complete();
    public abstract void Fail(Exception ex);

    /// <summary>Forgets results of a rolled-back attempt (the op may run again in isolation).</summary>
    public virtual void Reset() { }

    protected static void Set(SqliteCommand cmd, string name, object? value) =>
        cmd.Parameters[name].Value = value ?? DBNull.Value;

    protected static void InsertEntry(WriterCommands cmds, string runId, long n, DateTimeOffset at, JournalEntry entry)
    {
        var ins = cmds.InsertJournal;
        ins.Bind(1, runId);
        ins.Bind(2, n);
        ins.Bind(3, entry.Kind);
        ins.Bind(4, SqliteRunStore.ToUnixMs(at));
        ins.Bind(5, cmds.Entries.Serialize(entry));
        ins.Execute();
        if (AuditChain.Of(entry) is { } audit) cmds.Audit(at, audit.Actor, audit.Action, runId, n, audit.Detail?.ToJsonString());
    }
}

internal sealed class SubmitOp(NewRun run) : WriteOp
{
    private SubmitResult? _result;
    public TaskCompletionSource<SubmitResult> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public override void Execute(WriterCommands cmds)
    {
        if (run.IdempotencyKey is not null)
        {
            var find = cmds.FindByKey;
            Set(find, "$key", run.IdempotencyKey);
            using var r = find.ExecuteReader();
            if (r.Read())
            {
                _result = new SubmitResult(SqliteRunStore.ReadRun(r), Created: false);
                return;
            }
        }
        var ins = cmds.InsertRun;
        ins.Bind(1, run.Id);
        ins.Bind(2, run.Agent);
        ins.Bind(3, run.Input);
        ins.Bind(4, SqliteRunStore.ToUnixMs(run.CreatedAt));
        ins.Bind(5, run.IdempotencyKey);
        ins.Bind(6, run.Actor);
        ins.Bind(7, run.Kind);
        ins.Bind(8, run.ParentRunId);
        ins.Bind(9, run.RootRunId ?? run.Id);
        ins.Bind(10, run.Claim?.Owner);
        ins.Bind(11, run.Claim is { } claim ? SqliteRunStore.ToUnixMs(claim.Until) : null);
        ins.Execute();
        InsertEntry(cmds, run.Id, 1, run.CreatedAt, run.Started);
        _result = new SubmitResult(new RunRecord
        {
            Id = run.Id,
            Agent = run.Agent,
            Status = RunStatus.Queued,
            Input = run.Input,
            CreatedAt = DateTimeOffset.FromUnixTimeMilliseconds(SqliteRunStore.ToUnixMs(run.CreatedAt)),
            UpdatedAt = DateTimeOffset.FromUnixTimeMilliseconds(SqliteRunStore.ToUnixMs(run.CreatedAt)),
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

internal sealed class AppendOp(AppendRequest request) : WriteOp
{
    private Exception? _conflict;
    public TaskCompletionSource Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public override void Execute(WriterCommands cmds)
    {
        var req = request;
        var newVersion = req.ExpectedVersion + req.Entries.Count;
        var at = SqliteRunStore.ToUnixMs(req.At);
        int changed;
        if (req.Update is { } u)
        {
            var bump = cmds.BumpVersionWithStatus;
            bump.Bind(1, newVersion);
            bump.Bind(2, at);
            bump.Bind(3, u.Status.ToWireName());
            bump.Bind(4, u.Output);
            bump.Bind(5, u.Error);
            bump.Bind(6, u.Outcome);
            bump.Bind(7, u.Usage?.InputTokens);
            bump.Bind(8, u.Usage?.OutputTokens);
            bump.Bind(9, u.WaitingFor is null ? null : JsonSerializer.Serialize(u.WaitingFor, BureauJsonContext.Default.WaitingFor));
            bump.Bind(10, u.WaitingFor?.Deadline is { } deadline ? SqliteRunStore.ToUnixMs(deadline) : null);
            bump.Bind(11, u.Claim?.Owner);
            bump.Bind(12, u.Claim is { } claim ? SqliteRunStore.ToUnixMs(claim.Until) : null);
            bump.Bind(13, req.RunId);
            bump.Bind(14, req.ExpectedVersion);
            bump.Bind(15, u.Cost);
            changed = bump.Execute();
        }
        else
        {
            var bump = cmds.BumpVersion;
            bump.Bind(1, newVersion);
            bump.Bind(2, at);
            bump.Bind(3, req.RunId);
            bump.Bind(4, req.ExpectedVersion);
            changed = bump.Execute();
        }
        if (changed != 1)
        {
            var cur = cmds.CurrentVersion;
            cur.Bind(1, req.RunId);
            _conflict = new JournalConflictException(req.RunId, req.ExpectedVersion, cur.QueryInt64());
            return;
        }
        var n = req.ExpectedVersion;
        foreach (var entry in req.Entries) InsertEntry(cmds, req.RunId, ++n, req.At, entry);
    }

    public override void Reset() => _conflict = null;

    public override void Complete()
    {
        if (_conflict is not null) Completion.TrySetException(_conflict);
        else Completion.TrySetResult();
    }

    public override void Fail(Exception ex) => Completion.TrySetException(ex);
}

internal sealed class MarkRunningOp(string runId, DateTimeOffset at) : WriteOp
{
    public TaskCompletionSource Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public override void Execute(WriterCommands cmds)
    {
        var cmd = cmds.MarkRunning;
        cmd.Bind(1, SqliteRunStore.ToUnixMs(at));
        cmd.Bind(2, runId);
        cmd.Execute();
    }

    public override void Complete() => Completion.TrySetResult();
    public override void Fail(Exception ex) => Completion.TrySetException(ex);
}

/// <summary>An operation with statements of its own, run on the writer connection inside the batch's transaction.</summary>
internal sealed class StatementOp<T>(Func<SqliteConnection, SqliteTransaction, T> execute) : WriteOp
{
    private T? _result;
    public TaskCompletionSource<T> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public override void Execute(WriterCommands cmds) => _result = execute(cmds.Transaction!.Connection!, cmds.Transaction);
    public override void Reset() => _result = default;
    public override void Complete() => Completion.TrySetResult(_result!);
    public override void Fail(Exception ex) => Completion.TrySetException(ex);
}

/// <summary>
/// A write that changes no run: the engine's check that the store can write (at start, and while
/// writes fail). It rewrites one row with a 16 KiB blob, so it needs free pages like a real append.
/// </summary>
internal sealed class ProbeOp(DateTimeOffset at) : WriteOp
{
    public TaskCompletionSource Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public override void Execute(WriterCommands cmds) => Write(cmds.Transaction!.Connection!, cmds.Transaction, at);

    public static void Write(SqliteConnection c, SqliteTransaction tx, DateTimeOffset at)
    {
        using var cmd = c.CreateCommand();
        cmd.Transaction = tx;
        cmd.CommandText = "INSERT OR REPLACE INTO store_probe(id, at, pad) VALUES(1, $at, zeroblob(16384))";
        cmd.Parameters.AddWithValue("$at", SqliteRunStore.ToUnixMs(at));
        cmd.ExecuteNonQuery();
    }

    public override void Complete() => Completion.TrySetResult();
    public override void Fail(Exception ex) => Completion.TrySetException(ex);
}

/// <summary>An audit entry that is not a journal entry (a notification sent or failed), chained in the writer's transaction.</summary>
internal sealed class AuditOp(DateTimeOffset at, string? actor, string action, string? runId, long? step, string? detail) : WriteOp
{
    public TaskCompletionSource Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    public override void Execute(WriterCommands cmds) => cmds.Audit(at, actor, action, runId, step, detail);
    public override void Complete() => Completion.TrySetResult();
    public override void Fail(Exception ex) => Completion.TrySetException(ex);
}

/// <summary>
/// Deletes finished runs and their journals, with one <c>retention.deleted</c> audit entry for those that went,
/// in the writer's transaction (so never between a run's read of its version and its append).
/// </summary>
internal sealed class DeleteRunsOp(RunDeletion deletion) : WriteOp
{
    private const string Finished = "('succeeded','failed','canceled')";
    private readonly List<string> _deleted = [];
    public TaskCompletionSource<IReadOnlyList<string>> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public override void Execute(WriterCommands cmds)
    {
        var tx = cmds.Transaction!;
        using var run = tx.Connection!.CreateCommand();
        run.Transaction = tx;
        run.CommandText = $"""
            DELETE FROM runs WHERE id = $id AND status IN {Finished}
              AND NOT EXISTS (SELECT 1 FROM runs root WHERE root.id = runs.root_run_id AND root.id <> runs.id AND root.status NOT IN {Finished})
              AND NOT EXISTS (SELECT 1 FROM runs c WHERE c.root_run_id = runs.id AND c.id <> runs.id AND c.status NOT IN {Finished})
              AND NOT EXISTS (SELECT 1 FROM runs c WHERE c.parent_run_id = runs.id AND c.status NOT IN {Finished})
            """;
        var id = run.Parameters.Add("$id", SqliteType.Text);
        using var journal = tx.Connection.CreateCommand();
        journal.Transaction = tx;
        journal.CommandText = "DELETE FROM journal WHERE run_id = $id";
        var journalId = journal.Parameters.Add("$id", SqliteType.Text);
        foreach (var runId in deletion.RunIds.Distinct(StringComparer.Ordinal))
        {
            id.Value = runId;
            if (run.ExecuteNonQuery() != 1) continue;
            journalId.Value = runId;
            journal.ExecuteNonQuery();
            _deleted.Add(runId);
        }
        if (_deleted.Count == 0) return;
        var detail = new System.Text.Json.Nodes.JsonObject { ["count"] = _deleted.Count };
        if (deletion.Reason is not null) detail["reason"] = deletion.Reason;
        detail["runs"] = new System.Text.Json.Nodes.JsonArray([.. _deleted.Select(d => (System.Text.Json.Nodes.JsonNode?)d)]);
        cmds.Audit(deletion.At, deletion.Actor, "retention.deleted", null, null, detail.ToJsonString());
    }

    public override void Reset() => _deleted.Clear();
    public override void Complete() => Completion.TrySetResult([.. _deleted]);
    public override void Fail(Exception ex) => Completion.TrySetException(ex);
}
