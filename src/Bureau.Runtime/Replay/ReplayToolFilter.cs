using Bureau.Tools;

namespace Bureau.Replay;

/// <summary>
/// The replay's tools: the innermost link of the tool pipeline, which answers every call with the
/// recorded result of the same call id (content, error flag and note as journaled) and never calls
/// <c>next</c>, so no real tool runs. The outer links (policy, approval, retry) run as they do for
/// real. A call the recording has no result for gets an error outcome the replay reports as a divergence.
/// </summary>
internal sealed class ReplayToolFilter(ReplaySession session) : IToolCallFilter
{
    /// <summary>Innermost: after every stage Bureau defines.</summary>
    public ToolFilterStage Stage => (ToolFilterStage)int.MaxValue;

    public async ValueTask<ToolOutcome> InvokeAsync(ToolCall call, ToolCallHandler next)
    {
        await session.CancelHereIfRecordedAsync(call.CancellationToken);
        foreach (var r in session.Recorded)
        {
            if (r.N > session.Version && r.Entry is ToolCompleted t && t.CallId == call.CallId && t.Tool == call.Tool.Name)
                return new ToolOutcome(t.Content, t.IsError) { Note = t.Note };
        }
        return ToolOutcome.Error($"replay of run {session.RunId}: the journal has no result for call {call.CallId} of '{call.Tool.Name}' (step {call.Step}); the recorded run never made this call");
    }
}
