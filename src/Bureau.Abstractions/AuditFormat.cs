using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;

namespace Bureau;

/// <summary>
/// The audit log's format, shared by every store (so a chain means the same and verifies the same on SQLite and
/// PostgreSQL): which journal entries make an audit entry, and the hash that chains entries.
/// </summary>
public static class AuditFormat
{
    /// <summary>The previous hash of the first entry: 64 zeros.</summary>
    public const string Genesis = "0000000000000000000000000000000000000000000000000000000000000000";

    /// <summary>The audit entry a journal entry makes, if it makes one: (actor, action, detail).</summary>
    public static (string? Actor, string Action, JsonObject? Detail)? Of(JournalEntry entry) => entry switch
    {
        RunStarted s => (s.Actor, "run.started", new JsonObject { ["agent"] = s.Agent, ["kind"] = s.RunKind, ["parentRunId"] = s.ParentRunId }),
        RunCanceled c => (c.Actor, "run.canceled", new JsonObject { ["reason"] = c.Reason }),
        StepResolved r => (r.Actor, "step.resolved", new JsonObject { ["step"] = r.Step, ["as"] = WireNames.Of(r.Resolution) }),
        PolicyApplied p => ("policy", "policy.applied", new JsonObject { ["tool"] = p.Tool, ["action"] = WireNames.Of(p.Action), ["rule"] = p.Rule, ["reason"] = p.Reason }),
        RunWaiting { WaitingFor: ApprovalWait a } => ("policy", a.Level == 0 ? "approval.asked" : "approval.escalated",
            new JsonObject { ["approval"] = a.Step, ["tool"] = a.Tool, ["level"] = a.Level, ["approvers"] = new JsonArray([.. a.Approvers.Select(x => (JsonNode?)x)]), ["deadline"] = a.Deadline }),
        WaitAnswered { Reason: ApprovalWait.ReasonName } w => (w.Actor, "approval.answered", new JsonObject { ["approval"] = w.Step, ["answer"] = w.Answer is null ? null : JsonNode.Parse(w.Answer) }),
        WaitExpired { Reason: ApprovalWait.ReasonName } e => ("bureau:timer", "approval.timed-out", new JsonObject { ["approval"] = e.Step, ["deadline"] = e.Deadline }),
        _ => null,
    };

    /// <summary>SHA-256 (lower-case hex) of an entry's fields, length-prefixed (<c>{length}:{text}|</c>, <c>-1:|</c> for null) so no two entries serialize alike.</summary>
    public static string Hash(string previous, long seq, long atMs, string? actor, string action, string? runId, long? step, string? detail)
    {
        var sb = new StringBuilder();
        foreach (var field in new[] { previous, seq.ToString(CultureInfo.InvariantCulture), atMs.ToString(CultureInfo.InvariantCulture), actor, action, runId,
                     step?.ToString(CultureInfo.InvariantCulture), detail })
        {
            if (field is null) sb.Append("-1:");
            else sb.Append(field.Length.ToString(CultureInfo.InvariantCulture)).Append(':').Append(field);
            sb.Append('|');
        }
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(sb.ToString())));
    }

    /// <summary>
    /// Walks a chain read page by page (<paramref name="readPage"/>: entries after a seq, in order) and names the first
    /// entry that does not follow: missing, edited, or not chained to the one before.
    /// </summary>
    public static async Task<AuditVerification> VerifyAsync(Func<long, Task<IReadOnlyList<AuditRecord>>> readPage)
    {
        ArgumentNullException.ThrowIfNull(readPage);
        var expectedSeq = 1L;
        var previous = Genesis;
        long count = 0;
        while (true)
        {
            var page = await readPage(expectedSeq - 1);
            if (page.Count == 0) break;
            foreach (var e in page)
            {
                count++;
                if (e.Seq != expectedSeq)
                    return new AuditVerification(count, expectedSeq, $"entry {expectedSeq} is missing (the next is {e.Seq}): deleted");
                if (e.Previous != previous)
                    return new AuditVerification(count, e.Seq, $"entry {e.Seq} does not follow entry {e.Seq - 1} (its previous hash differs): an entry before it was changed, or entries were reordered");
                var hash = Hash(e.Previous, e.Seq, e.At.ToUnixTimeMilliseconds(), e.Actor, e.Action, e.RunId, e.Step, e.Detail);
                if (hash != e.Hash)
                    return new AuditVerification(count, e.Seq, $"entry {e.Seq} was changed after it was written (its content does not match its hash)");
                previous = e.Hash;
                expectedSeq++;
            }
        }
        return new AuditVerification(count, null, null);
    }
}
