using System.Globalization;

namespace Bureau.Cli;

/// <summary>One readable line per journal entry, for progress and <c>runs show</c>.</summary>
internal static class JournalText
{
    public static string Describe(JournalEntry entry) => entry switch
    {
        RunStarted s => $"agent {s.Agent}{(s.Actor is null ? "" : ", by " + s.Actor)}: {Cut(s.Input, 100)}",
        ModelResponded m => DescribeModel(m),
        ToolIntent i => $"{i.Tool} {Cut(i.Arguments, 80)} ({WireNames.Of(i.Effect)}, key {i.IdempotencyKey})",
        ToolCompleted t => $"{t.Tool} {(t.IsError ? $"ERROR{(t.Failure is null ? "" : " (" + t.Failure + ")")} " : "")}→ {Cut(OneLine(t.Content), 100)} ({Ms(t.DurationMs)}{(t.Attempts is { } n ? $", {n} attempts" : "")})",
        AttemptFailed a => $"{a.Dependency} attempt {a.Attempt} failed ({a.Class}): {Cut(OneLine(a.Error), 100)}; "
            + (a.RetryInMs is { } wait ? $"retrying in {Ms(wait)}" : "no retry" + (a.GaveUp is null ? "" : ": " + a.GaveUp)),
        DependencyWaited w => $"{w.Dependency} waited {Ms(w.WaitedMs)} for its {w.Reason} limit",
        ModelFallback f => $"model {f.From} → fallback {f.To}: {Cut(OneLine(f.Reason), 120)}",
        ToolCallRejected r => $"{r.Tool} rejected, returned to the model: {Cut(r.Error, 120)}",
        BudgetExceeded b => $"{b.Budget} budget exceeded (limit {b.Limit.ToString(CultureInfo.InvariantCulture)}, used {b.Used.ToString(CultureInfo.InvariantCulture)})",
        LoopDetected l => $"{(l.Action == LoopAction.Warn ? "model warned" : "run stopped")}: {l.Reason}",
        RunWaiting { WaitingFor: InDoubtWait d } => $"waiting (in-doubt) on step {d.Step}: {d.Tool} {Cut(d.Arguments ?? "", 60)} key {d.Key}{Deadline(d)}",
        RunWaiting w => $"waiting ({w.WaitingFor.Reason}) on step {w.WaitingFor.Step}{Deadline(w.WaitingFor)}",
        WaitAnswered a => $"step {a.Step} ({a.Reason}) answered{(a.Actor is null ? "" : " by " + a.Actor)}: {Cut(OneLine(a.Answer ?? ""), 80)}",
        WaitExpired e => $"step {e.Step} ({e.Reason}): the deadline {e.Deadline:u} passed with no answer",
        PolicyApplied p => $"{WireNames.Of(p.Action)} by policy '{p.Rule}' for {p.Tool}{(p.Reason is null ? "" : ": " + p.Reason)}",
        ChildRunStarted c => $"{(c.Label is null ? "" : c.Label + ": ")}{c.RunKind} {c.Target} as run {c.ChildRunId}: {Cut(c.Input, 80)}",
        ChildRunFinished c => $"run {c.ChildRunId} {c.Status.ToWireName()}: {Cut(c.Output ?? c.Error ?? "", 80)}",
        StepResolved r => $"step {r.Step} resolved as {WireNames.Of(r.Resolution)}{(r.Actor is null ? "" : " by " + r.Actor)}",
        RunResumed r => $"resumed from the journal ({r.Reason})",
        RunCanceled c => $"canceled{(c.Actor is null ? "" : " by " + c.Actor)}{(c.Reason is null ? "" : ": " + c.Reason)}{(c.InFlight.Count == 0 ? "" : "; in flight: " + string.Join(", ", c.InFlight))}",
        RunFinished f => f.Status == RunStatus.Succeeded ? $"succeeded: {Cut(OneLine(f.Output ?? ""), 100)}" : $"{f.Status.ToWireName()}: {f.Error}{Failure(f.Failure)}",
        MemoryRead r => $"recall {(r.Key is null ? "\"" + Cut(r.Query ?? "", 60) + "\"" : r.Key)} in {string.Join(", ", r.Scopes)}: "
            + (r.Hits.Count == 0 ? "nothing found" : string.Join("; ", r.Hits.Take(3).Select(h => $"{h.Fact.Scope}/{h.Fact.Key} v{h.Fact.Version}{(h.Fact.Provenance.Agent is null ? "" : " by " + h.Fact.Provenance.Agent)}{(h.Fact.Provenance.RunId is null ? "" : " (run " + h.Fact.Provenance.RunId + ")")}")) + (r.Hits.Count > 3 ? $" and {r.Hits.Count - 3} more" : "")),
        MemoryWritten w => w.Outcome == MemoryWriteOutcome.Conflict
            ? $"{w.Tool} {w.Scope}/{w.Key}: CONFLICT, expected v{w.ExpectedVersion}, current v{w.Current?.Version ?? 0}{(w.Current?.Provenance.Agent is { } by ? " by " + by : "")}"
            : $"{w.Tool} {w.Scope}/{w.Key}: {WireNames.Of(w.Outcome)} v{w.Fact?.Version}{(w.Fact?.Supersedes is { } s ? $" (supersedes v{s})" : "")}{(w.Repeated ? ", completed after a crash" : "")}",
        _ => entry.Kind,
    };

    private static string Failure(RunFailure? f) => f is null ? "" : $" [cause {Cause(f)}]";

    /// <summary>"model/rate-limited model:main, 6 attempts".</summary>
    public static string Cause(RunFailure f) =>
        f.Cause + (f.Kind is null ? "" : "/" + f.Kind) + (f.Dependency is null ? "" : " " + f.Dependency) + (f.Attempts is { } n and > 1 ? $", {n} attempts" : "");

    private static string Deadline(WaitingFor w) => w.Deadline is { } d ? $" (deadline {d:u})" : "";

    private static string DescribeModel(ModelResponded m)
    {
        var what = m.ToolCalls.Count > 0
            ? "→ " + string.Join(", ", m.ToolCalls.Select(c => $"{c.Name} {Cut(c.Arguments, 80)}"))
            : "→ " + Cut(OneLine(m.Text ?? ""), 100);
        var label = m.Provider == "scripted" ? $"{m.Model} [scripted model]" : m.Model;
        if (m.AnsweredBy is not null) label += $" (fallback {m.AnsweredBy})";
        var extra = (m.Cost is { } c ? $", cost {c.ToString("0.######", CultureInfo.InvariantCulture)}" : "") + (m.Attempts is { } n ? $", {n} attempts" : "");
        return $"turn {m.Turn} {label} {what} ({m.Usage.InputTokens}+{m.Usage.OutputTokens} tokens, {Ms(m.DurationMs)}{extra})";
    }

    private static string Ms(double ms) => ms >= 1000 ? $"{ms / 1000:0.0} s" : $"{ms:0.#} ms";

    public static string OneLine(string s) => s.ReplaceLineEndings(" ");

    public static string Cut(string s, int max)
    {
        s = s.ReplaceLineEndings(" ");
        return s.Length <= max ? s : s[..(max - 1)] + "…";
    }
}
