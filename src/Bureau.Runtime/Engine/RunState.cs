using System.Text.Json;
using Microsoft.Extensions.AI;

namespace Bureau.Engine;

/// <summary>Where one tool call of the latest model answer stands.</summary>
internal enum CallState
{
    /// <summary>Nothing journaled for it yet.</summary>
    NotStarted,
    /// <summary>Its intent is journaled, its result is not: in doubt if found so on resume.</summary>
    Intent,
    /// <summary>Its result (or rejection, or loop warning) is journaled.</summary>
    Done,
}

/// <summary>A tool call of the latest model answer.</summary>
internal sealed class PendingCall(ToolCallRecord call)
{
    public ToolCallRecord Call { get; } = call;
    public CallState State { get; set; }
    public long IntentStep { get; set; }
    public string? IdempotencyKey { get; set; }
    /// <summary>The arguments the intent was journaled with (an approver may have edited the model's).</summary>
    public string? IntentArguments { get; set; }
}

/// <summary>
/// A run's state as a fold over its journal. The executor applies every entry it appends, and a
/// resumed executor applies the stored journal, so both see exactly the same state.
/// </summary>
/// <summary>One vote on an approval: who, approve or reject, edited arguments, why.</summary>
internal sealed record ApprovalVote(string Actor, bool Approve, string? Arguments, string? Reason);

/// <summary>An approval a policy asked for on a tool call, as the journal tells it.</summary>
internal sealed class ApprovalProgress(long step, string callId, string rule)
{
    /// <summary>The step of the <see cref="PolicyApplied"/> entry: the approval's id within the run.</summary>
    public long Step { get; } = step;
    public string CallId { get; } = callId;
    public string Rule { get; } = rule;
    /// <summary>The level asked now (0 first).</summary>
    public int Level { get; set; }
    /// <summary>Set when the level asked now passed its deadline unanswered.</summary>
    public bool LevelExpired { get; set; }
    public bool Asked { get; set; }
    public List<ApprovalVote> Votes { get; } = [];
    public ApprovalVote? Rejection => Votes.Find(v => !v.Approve);
    public int Approvals => Votes.Select(v => v.Actor).Distinct(StringComparer.Ordinal).Count(a => Votes.Any(v => v.Actor == a && v.Approve));
}

internal sealed class RunState
{
    private readonly Dictionary<(string Tool, string Arguments), int> _callCounts = new();
    private readonly HashSet<string> _seenResults = new(StringComparer.Ordinal);
    private bool _turnLearnedSomething;

    public RunState(string runId, string? instructions)
    {
        RunId = runId;
        if (!string.IsNullOrEmpty(instructions)) Messages.Add(new ChatMessage(ChatRole.System, instructions));
    }

    public string RunId { get; }
    public string Agent { get; private set; } = "";
    public string Input { get; private set; } = "";
    public long Version { get; private set; }
    /// <summary>When the run was accepted.</summary>
    public DateTimeOffset CreatedAt { get; private set; }
    /// <summary>When its first step started: the executor's start for a fresh run, else the time of the first entry after <c>run.started</c>. Queue time does not count against budgets.</summary>
    public DateTimeOffset? StartedAt { get; private set; }
    /// <summary>The last entry folded.</summary>
    public JournalEntry? LastEntry { get; private set; }
    public List<ChatMessage> Messages { get; } = [];
    public int Turns { get; private set; }
    public int Steps { get; private set; }
    public UsageRecord Usage { get; private set; } = UsageRecord.Zero;
    /// <summary>What the run's model calls cost (priced models only).</summary>
    public double Cost { get; private set; }
    /// <summary>The tokens the agents this run delegated to used, as their finished child runs reported (<see cref="ChildRunFinished.Usage"/>).</summary>
    public UsageRecord DelegatedUsage { get; private set; } = UsageRecord.Zero;
    /// <summary>What the agents this run delegated to cost, as their finished child runs reported.</summary>
    public double DelegatedCost { get; private set; }
    /// <summary>The tokens a token budget counts: the run's own and its delegates'.</summary>
    public long SpentTokens => Usage.TotalTokens + DelegatedUsage.TotalTokens;
    /// <summary>The cost a cost budget counts: the run's own and its delegates' (kept to 9 decimals).</summary>
    public double SpentCost => Teams.JournalTally.SumCost(Cost, DelegatedCost);
    /// <summary>The latest tool call that failed, while no tool call succeeded after it: (tool, failure class, attempts, step).</summary>
    public (string Tool, string? Failure, int? Attempts, long Step)? LastToolFailure { get; private set; }
    /// <summary>Tool calls rejected by validation in a row (no tool result between them).</summary>
    public int RejectionsInARow { get; private set; }
    public List<PendingCall> Pending { get; } = [];
    public RunFinished? Finished { get; private set; }
    public WaitingFor? Waiting { get; private set; }
    public Dictionary<long, StepResolved> Resolutions { get; } = [];
    /// <summary>Approvals of the latest turn's calls, by call id.</summary>
    public Dictionary<string, ApprovalProgress> Approvals { get; } = new(StringComparer.Ordinal);
    /// <summary>Child runs this run started (delegated agents).</summary>
    public HashSet<string> StartedChildren { get; } = new(StringComparer.Ordinal);
    /// <summary>The version of each fact (scope address, key) this run last read or wrote: a memory write's default compare-and-set condition (0: absent).</summary>
    public Dictionary<(string Scope, string Key), long> MemorySeen { get; } = [];
    /// <summary>The latest summary of the conversation's older messages (a window with overflow <c>summarize</c>), or null.</summary>
    public ConversationSummarized? Summary { get; private set; }
    private readonly Dictionary<long, ApprovalProgress> _approvalsByStep = [];
    public TimeSpan TimeWaiting { get; private set; }
    public int TurnsWithoutProgress { get; private set; }
    public bool LoopWarned { get; private set; }
    public string? LastText { get; private set; }
    private DateTimeOffset? _waitingSince;
    /// <summary>When the wait just ended (answered, resolved, expired), while no other entry followed: the time until an executor resumes the run is queue time, not active time.</summary>
    private DateTimeOffset? _waitEndedAt;

    /// <summary>True when the latest model answer's calls all have results (or there was none).</summary>
    public bool PendingDone => Pending.TrueForAll(p => p.State == CallState.Done);

    /// <summary>The executor starts working on the run now; for a fresh run, its budgets count from here.</summary>
    public void BeginExecution(DateTimeOffset now) => StartedAt ??= now;

    /// <summary>Time the run has been active: since its first step, less the time it waited.</summary>
    public TimeSpan ActiveTime(DateTimeOffset now) => StartedAt is { } started ? now - started - TimeWaiting : TimeSpan.Zero;

    public int CallCount(string tool, string arguments) =>
        _callCounts.GetValueOrDefault(CallKey(tool, arguments));

    public void Apply(JournalRecord record)
    {
        if (record.N != Version + 1)
        {
            throw new InvalidDataException($"run {RunId}: journal step {record.N} follows step {Version}; the journal has a gap or a repeat");
        }
        Version = record.N;
        LastEntry = record.Entry;
        var waitEndedAt = _waitEndedAt;
        _waitEndedAt = null;
        if (record.N == 2) StartedAt ??= record.At;
        switch (record.Entry)
        {
            case RunStarted s:
                Agent = s.Agent;
                Input = s.Input;
                CreatedAt = record.At;
                Messages.Add(new ChatMessage(ChatRole.User, s.Input));
                break;
            case ModelResponded m:
                CloseTurn();
                Turns++;
                Steps++;
                Usage += m.Usage;
                Cost += m.Cost ?? 0;
                LastText = m.Text;
                Pending.Clear();
                Approvals.Clear();
                Messages.Add(ToAssistantMessage(m));
                foreach (var c in m.ToolCalls) Pending.Add(new PendingCall(c));
                _turnLearnedSomething = m.ToolCalls.Count == 0;
                break;
            case ToolIntent i:
            {
                var p = Find(i.CallId);
                p.State = CallState.Intent;
                p.IntentStep = record.N;
                p.IntentArguments = i.Arguments;
                p.IdempotencyKey = i.IdempotencyKey;
                break;
            }
            case ToolCompleted t:
                Steps++;
                CountCall(t.CallId);
                Complete(t.CallId, t.Content);
                if (!t.IsError && _seenResults.Add(t.Tool + "\u0000" + t.Content)) _turnLearnedSomething = true;
                LastToolFailure = t.IsError ? (t.Tool, t.Failure, t.Attempts, record.N) : null;
                RejectionsInARow = 0;
                break;
            case ToolCallRejected r:
                RejectionsInARow++;
                Steps++;
                CountCall(r.CallId);
                Complete(r.CallId, r.Error);
                break;
            case LoopDetected l:
                if (l.Action == LoopAction.Warn)
                {
                    LoopWarned = true;
                    TurnsWithoutProgress = 0;
                    if (l.CallId is not null) Complete(l.CallId, WarningText(l));
                    else Messages.Add(new ChatMessage(ChatRole.User, WarningText(l)));
                }
                break;
            case RunWaiting w:
                Waiting = w.WaitingFor;
                _waitingSince = record.At;
                if (w.WaitingFor is ApprovalWait aw && _approvalsByStep.TryGetValue(aw.Step, out var asked))
                {
                    asked.Asked = true;
                    asked.Level = aw.Level;
                    asked.LevelExpired = false;
                }
                break;
            case PolicyApplied pa:
                if (pa.Action == PolicyAction.RequireApproval)
                {
                    var progress = new ApprovalProgress(record.N, pa.CallId, pa.Rule);
                    Approvals[pa.CallId] = progress;
                    _approvalsByStep[record.N] = progress;
                }
                break;
            case StepResolved sr:
                Resolutions[sr.Step] = sr;
                EndWait(record.At);
                break;
            case WaitExpired e:
                // An in-doubt call nobody decided before its deadline counts as failed.
                if (e.Reason == InDoubtWait.ReasonName)
                    Resolutions[e.Step] = new StepResolved(e.Step, StepResolution.Failed,
                        $"no one decided whether the interrupted call ran before the deadline ({e.Deadline:u}); its outcome is unknown, treat it as failed", "bureau:timer");
                else if (e.Reason == ApprovalWait.ReasonName && _approvalsByStep.TryGetValue(e.Step, out var expired))
                    expired.LevelExpired = true;
                EndWait(record.At);
                break;
            case WaitAnswered answered:
                if (answered.Reason == ApprovalWait.ReasonName && _approvalsByStep.TryGetValue(answered.Step, out var voted))
                    voted.Votes.Add(Governance.ApprovalAnswers.Parse(answered.Answer, answered.Actor));
                EndWait(record.At);
                break;
            case RunFinished f:
                Finished = f;
                break;
            case ChildRunStarted cs:
                StartedChildren.Add(cs.ChildRunId);
                break;
            case MemoryRead mr:
                foreach (var hit in mr.Hits) MemorySeen[(hit.Fact.Scope, hit.Fact.Key)] = hit.Fact.Version;
                break;
            case MemoryWritten mw:
                if (mw.Fact is { } written) MemorySeen[(written.Scope, written.Key)] = written.Version;
                else if (mw.Outcome == MemoryWriteOutcome.Conflict) MemorySeen[(mw.Scope, mw.Key)] = mw.Current?.Version ?? 0;
                break;
            case ConversationSummarized cs:
                Summary = cs;
                Usage += cs.Usage;
                break;
            case ChildRunFinished f:
                DelegatedUsage += f.Usage ?? UsageRecord.Zero;
                DelegatedCost = Teams.JournalTally.SumCost(DelegatedCost, f.Cost ?? 0);
                break;
            case RunResumed when waitEndedAt is { } ended:
                // Picked up again after the answer: the time the run spent queued for an executor is not active time.
                if (record.At > ended) TimeWaiting += record.At - ended;
                break;
            case BudgetExceeded or RunResumed or RunCanceled or AttemptFailed or DependencyWaited or ModelFallback:
                break;
            default:
                throw new InvalidDataException($"run {RunId}, step {record.N}: unknown journal entry kind '{record.Entry.Kind}'");
        }
    }

    private void EndWait(DateTimeOffset at)
    {
        Waiting = null;
        if (_waitingSince is { } since) TimeWaiting += at - since;
        _waitingSince = null;
        _waitEndedAt = at;
    }

    /// <summary>Counts a finished turn toward "no progress" once all its calls are done.</summary>
    private void CloseTurn()
    {
        if (Turns == 0 || Pending.Count == 0) return;
        TurnsWithoutProgress = _turnLearnedSomething ? 0 : TurnsWithoutProgress + 1;
    }

    /// <summary>Turns without progress including the current turn, once its calls are all done.</summary>
    public int TurnsWithoutProgressNow =>
        Pending.Count > 0 && PendingDone && !_turnLearnedSomething ? TurnsWithoutProgress + 1 : TurnsWithoutProgress;

    internal static string WarningText(LoopDetected l) =>
        $"Bureau loop detection: {l.Reason}. Do not repeat it; try something different or give your final answer.";

    private void CountCall(string callId)
    {
        var p = Find(callId);
        var key = CallKey(p.Call.Name, p.Call.Arguments);
        _callCounts[key] = _callCounts.GetValueOrDefault(key) + 1;
    }

    private static (string Tool, string Arguments) CallKey(string tool, string arguments) => (tool, arguments);

    private void Complete(string callId, string content)
    {
        var p = Find(callId);
        p.State = CallState.Done;
        Messages.Add(new ChatMessage(ChatRole.Tool, [new FunctionResultContent(callId, content)]));
    }

    private PendingCall Find(string callId)
    {
        foreach (var p in Pending)
        {
            if (p.Call.CallId == callId) return p;
        }
        throw new InvalidDataException($"run {RunId}, step {Version}: the journal names tool call '{callId}', which the latest model answer did not ask for");
    }

    internal static ChatMessage ToAssistantMessage(ModelResponded m)
    {
        var contents = new List<AIContent>(m.ToolCalls.Count + 1);
        if (!string.IsNullOrEmpty(m.Text)) contents.Add(new TextContent(m.Text));
        foreach (var c in m.ToolCalls) contents.Add(new FunctionCallContent(c.CallId, c.Name, ParseArguments(c.Arguments)));
        return new ChatMessage(ChatRole.Assistant, contents);
    }

    internal static Dictionary<string, object?> ParseArguments(string json)
    {
        var result = new Dictionary<string, object?>(StringComparer.Ordinal);
        if (string.IsNullOrWhiteSpace(json)) return result;
        try
        {
            // One unpooled document backs every value: nothing to dispose, nothing to clone.
            var root = JsonElement.Parse(json);
            if (root.ValueKind != JsonValueKind.Object) return result;
            foreach (var p in root.EnumerateObject()) result[p.Name] = p.Value;
        }
        catch (JsonException)
        {
            // The model sent invalid JSON; validation already told it so. The history keeps no arguments.
        }
        return result;
    }
}
