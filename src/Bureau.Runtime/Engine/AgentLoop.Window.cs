using System.Diagnostics;
using Bureau.Memory;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;

namespace Bureau.Engine;

/// <summary>
/// The short-term memory seam: the messages of a model call under the agent's conversation window. With overflow
/// <c>summarize</c>, what no longer fits is summarized by a model and the summary journaled (<see cref="ConversationSummarized"/>)
/// before the call, so a resumed or replayed run sends exactly the same request.
/// </summary>
internal sealed partial class AgentLoop
{
    private async Task<IList<ChatMessage>> WindowAsync(ConversationWindow window, int turn, CancellationToken token)
    {
        var tokenizer = TokenCounter.For(window.Tokenizer);
        var w = ContextWindow.Apply(_state.Messages, window, _state.Summary, tokenizer);
        if (w.Dropped == 0 || window.Overflow != WindowOverflow.Summarize) return [.. w.Messages];

        var model = window.SummaryModel is { } name ? _kind.Models.Definition(name) : null;
        var client = model is null ? _agent.Client : _kind.Models.Get(model);
        var label = model?.Name ?? _agent.ModelName;
        var started = Stopwatch.GetTimestamp();
        ChatResponse answer;
        try
        {
            answer = await client.GetResponseAsync(ContextWindow.SummaryRequest(_state.Messages, w.From, w.FirstKept, _state.Summary), null, token);
        }
        catch (Exception ex) when (!token.IsCancellationRequested)
        {
            // The window still holds: the older messages are left out this time, and the next call tries to summarize again.
            Log.SummaryFailed(Logger, _runId, _state.Version + 1, label, ex);
            return [.. w.Messages];
        }
        if (string.IsNullOrWhiteSpace(answer.Text))
        {
            Log.SummaryFailed(Logger, _runId, _state.Version + 1, label, null);
            return [.. w.Messages];
        }
        var usage = answer.Usage is { } u ? new UsageRecord(u.InputTokenCount ?? 0, u.OutputTokenCount ?? 0) : UsageRecord.Zero;
        await AppendAsync([new ConversationSummarized(turn, w.FirstKept, answer.Text, label, usage, Math.Round(Stopwatch.GetElapsedTime(started).TotalMilliseconds, 3))],
            new RunUpdate { Status = RunStatus.Running, Usage = _state.Usage + usage });
        _run.CrashPoints.Hit("after-summary");
        return [.. ContextWindow.Apply(_state.Messages, window, _state.Summary, tokenizer).Messages];
    }

    private static partial class Log
    {
        [LoggerMessage(60, LogLevel.Warning, "Run {RunId} step {Step}: model '{Model}' could not summarize the conversation's older messages; they are left out of this call instead")]
        public static partial void SummaryFailed(ILogger logger, string runId, long step, string model, Exception? ex);
    }
}
