namespace Bureau;

/// <summary>
/// One entry of the audit log: who did what, when, to which run and step. Each entry carries the hash
/// of the previous one (<see cref="Previous"/>) and its own (<see cref="Hash"/>), so any edit,
/// deletion or reordering breaks the chain at the first entry touched.
/// </summary>
/// <param name="Seq">The entry's position, from 1, without gaps.</param>
/// <param name="At">When.</param>
/// <param name="Actor">Who (an API key, a CLI user, a trigger, the timer, a child run's team).</param>
/// <param name="Action">What: <c>run.started</c>, <c>run.canceled</c>, <c>step.resolved</c>, <c>policy.applied</c>, <c>approval.asked</c>, <c>approval.escalated</c>, <c>approval.answered</c>, <c>approval.timed-out</c>, <c>key.created</c>, <c>key.revoked</c>, <c>retention.deleted</c>.</param>
/// <param name="RunId">The run concerned, if any.</param>
/// <param name="Step">The journal step concerned, if any.</param>
/// <param name="Detail">More, as JSON.</param>
/// <param name="Previous">The previous entry's hash (64 zeros for the first).</param>
/// <param name="Hash">SHA-256 of this entry's fields and <paramref name="Previous"/>, hex.</param>
public sealed record AuditRecord(long Seq, DateTimeOffset At, string? Actor, string Action, string? RunId, long? Step, string? Detail, string Previous, string Hash);

/// <summary>The result of checking the audit chain.</summary>
/// <param name="Entries">Entries read.</param>
/// <param name="FirstBad">The position of the first entry that breaks the chain, or null when it holds.</param>
/// <param name="Problem">What is wrong there (edited, deleted, reordered).</param>
public sealed record AuditVerification(long Entries, long? FirstBad, string? Problem)
{
    /// <summary>True when every entry follows from the one before.</summary>
    public bool IsIntact => FirstBad is null;
}

/// <summary>The append-only audit log a store keeps beside the journals (written in the same transactions).</summary>
public interface IAuditLog
{
    /// <summary>Entries after <paramref name="afterSeq"/>, in order, at most <paramref name="limit"/>.</summary>
    Task<IReadOnlyList<AuditRecord>> ReadAuditAsync(long afterSeq = 0, int limit = 1000, CancellationToken cancellationToken = default);

    /// <summary>Recomputes the chain from the first entry; names the first entry that does not follow.</summary>
    Task<AuditVerification> VerifyAuditAsync(CancellationToken cancellationToken = default);

    /// <summary>The latest entry with <paramref name="action"/>, or null.</summary>
    Task<AuditRecord?> LastAuditAsync(string action, CancellationToken cancellationToken = default);

    /// <summary>Appends an entry (for facts that are not journal entries, such as a notification sent or failed).</summary>
    Task AppendAuditAsync(DateTimeOffset at, string? actor, string action, string? runId, long? step, string? detail, CancellationToken cancellationToken = default);
}
