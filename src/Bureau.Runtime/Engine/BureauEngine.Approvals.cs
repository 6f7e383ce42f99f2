using Bureau.Engine;
using Bureau.Governance;

namespace Bureau;

/// <summary>An approval a run waits for: the run, the step that asked (its id within the run), and what is asked.</summary>
/// <param name="Id">The approval's id: <c>RUN:STEP</c>.</param>
/// <param name="Run">The waiting run.</param>
/// <param name="Wait">What it waits for: the tool call, who may answer at this level, the deadline.</param>
/// <param name="Votes">Approvals given so far (four-eyes: fewer than required).</param>
public sealed record PendingApproval(string Id, RunRecord Run, ApprovalWait Wait, IReadOnlyList<string> Votes);

/// <summary>The caller may not answer this approval (not among its approvers at this level).</summary>
public sealed class ApprovalForbiddenException(string message) : Exception(message);

public sealed partial class BureauEngine
{
    /// <summary>Approvals runs wait for now, oldest run first (at most <paramref name="limit"/>).</summary>
    public async Task<IReadOnlyList<PendingApproval>> ListApprovalsAsync(int limit = 200, CancellationToken cancellationToken = default)
    {
        var list = new List<PendingApproval>();
        string? cursor = null;
        do
        {
            var page = await Store.ListRunsAsync(new RunQuery { Status = RunStatus.Waiting, Limit = 500, Cursor = cursor }, cancellationToken);
            foreach (var run in page.Items)
            {
                if (run.WaitingFor is not ApprovalWait wait) continue;
                list.Add(new PendingApproval($"{run.Id}:{wait.Step}", run, wait, await VotesAsync(run.Id, wait.Step, cancellationToken)));
            }
            cursor = page.Next;
        }
        while (cursor is not null && list.Count < limit);
        list.Reverse(); // oldest first
        return list.Count > limit ? list[..limit] : list;
    }

    /// <summary>
    /// Approves (optionally with edited arguments) or rejects the tool call a run waits on. The first
    /// decisive answer wins (a rejection, or the last approval a four-eyes policy needs); a later one
    /// is refused naming who answered. A partial four-eyes approval is journaled and the run keeps waiting.
    /// </summary>
    /// <param name="runId">The run.</param>
    /// <param name="step">The approval's step (the <see cref="PolicyApplied"/> entry's).</param>
    /// <param name="decision">The decision.</param>
    /// <param name="actor">Who answers (an API key's name, a CLI user).</param>
    /// <param name="roles">The answerer's roles and groups, matched against the level's approvers (with <paramref name="actor"/>); null skips the check (the caller authorized it).</param>
    /// <param name="cancellationToken">Cancels the read; an accepted answer is journaled.</param>
    /// <exception cref="RunNotFoundException">No such run.</exception>
    /// <exception cref="RunStateConflictException">The run does not wait on that approval (answered already, expired, canceled), or this actor voted already.</exception>
    /// <exception cref="ApprovalForbiddenException">The actor is not among this level's approvers.</exception>
    public async Task<RunRecord> DecideApprovalAsync(string runId, long step, ApprovalDecision decision, string actor, IReadOnlyCollection<string>? roles = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(decision);
        ArgumentException.ThrowIfNullOrWhiteSpace(actor);
        var run = await Store.GetRunAsync(runId, cancellationToken) ?? throw new RunNotFoundException(runId);
        if (run.Status != RunStatus.Waiting || run.WaitingFor is not ApprovalWait wait || wait.Step != step)
        {
            var answered = await AnswerOfAsync(runId, step, cancellationToken);
            throw new RunStateConflictException(runId, run.Status, answered is not null
                ? $"approval {runId}:{step} was already answered by {answered.Actor} ({Verdict(answered.Answer)}); the run is {run.Status.ToWireName()}"
                : $"run {runId} does not wait on approval {runId}:{step} (it is {run.Status.ToWireName()}{(run.WaitingFor is { } w ? $", waiting for {w.Reason} on step {w.Step}" : "")})", step);
        }
        if (roles is not null && wait.Approvers.Count > 0 && !wait.Approvers.Contains(actor, StringComparer.Ordinal) && !wait.Approvers.Any(roles.Contains))
        {
            throw new ApprovalForbiddenException(
                $"{actor} may not answer approval {runId}:{step}: at escalation level {wait.Level + 1} its approvers are {string.Join(", ", wait.Approvers)}");
        }
        if (decision.Arguments is not null && !wait.EditableArguments)
            throw new ArgumentException($"approval {runId}:{step}: the policy '{wait.Rule}' does not let the approver edit the arguments", nameof(decision));
        // An edit the tool would refuse is refused now, with nothing written: the approval stays open for a correct one.
        if (decision.Arguments is { } edited && ApprovalEditProblem(run, edited) is { } problem)
            throw new ArgumentException($"approval {runId}:{step}: the edited arguments were refused, nothing was decided: {problem}", nameof(decision));
        var votes = await VotesAsync(runId, step, cancellationToken);
        if (votes.Contains(actor, StringComparer.Ordinal))
            throw new RunStateConflictException(runId, run.Status, $"{actor} has already approved {runId}:{step}; it needs {wait.Required} distinct approvers", step);

        var entry = new WaitAnswered(step, ApprovalWait.ReasonName, ApprovalAnswers.Format(decision), actor);
        var decisive = !decision.Approve || votes.Count + 1 >= wait.Required;
        try
        {
            if (decisive)
            {
                await Writer.AppendAsync(runId, run.Version, [entry], new RunUpdate { Status = RunStatus.Queued, Claim = _scheduler.NewClaim() }, null);
                _scheduler.Schedule(runId, run.Agent, continuing: true);
            }
            else
            {
                // Four-eyes: the vote is journaled and the run goes on waiting, with the same deadline.
                await Writer.AppendAsync(runId, run.Version, [entry, new RunWaiting(wait)], new RunUpdate { Status = RunStatus.Waiting, WaitingFor = wait }, null);
            }
        }
        catch (JournalConflictException)
        {
            var answered = await AnswerOfAsync(runId, step, cancellationToken);
            throw new RunStateConflictException(runId, run.Status, answered is not null
                ? $"approval {runId}:{step} was answered first by {answered.Actor} ({Verdict(answered.Answer)})"
                : $"run {runId} changed while answering approval {runId}:{step} (it expired or was canceled); read it again", step);
        }
        return (await Store.GetRunAsync(runId, cancellationToken))!;
    }

    /// <summary>
    /// Why <paramref name="arguments"/> cannot replace the arguments of the tool call <paramref name="run"/> waits to have
    /// approved (the tool's schema refuses them), or null when they can or the tool's own check comes at resume (a memory tool).
    /// </summary>
    internal string? ApprovalEditProblem(RunRecord run, string arguments) =>
        run.WaitingFor is ApprovalWait { Tool: { } tool } && run.Kind == RunKinds.Agent && _executors.GetValueOrDefault(RunKinds.Agent) is AgentRunExecutor agents
            ? agents.EditedArgumentsProblem(run.Agent, tool, arguments)
            : null;

    private async Task<List<string>> VotesAsync(string runId, long step, CancellationToken ct)
    {
        var journal = await Store.ReadJournalAsync(runId, step, ct);
        return [.. journal.Select(r => r.Entry).OfType<WaitAnswered>()
            .Where(a => a.Step == step && a.Reason == ApprovalWait.ReasonName && ApprovalAnswers.Parse(a.Answer, a.Actor).Approve)
            .Select(a => a.Actor ?? "unknown")];
    }

    private async Task<WaitAnswered?> AnswerOfAsync(string runId, long step, CancellationToken ct)
    {
        var journal = await Store.ReadJournalAsync(runId, step, ct);
        return journal.Select(r => r.Entry).OfType<WaitAnswered>().LastOrDefault(a => a.Step == step && a.Reason == ApprovalWait.ReasonName);
    }

    private static string Verdict(string? answer) => ApprovalAnswers.Parse(answer, null).Approve ? "approved" : "rejected";
}
