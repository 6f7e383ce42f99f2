using System.Text.Json;
using Microsoft.Extensions.AI;

namespace Bureau.Replay;

/// <summary>
/// The replay's model: answers each model call with the recorded answer of the same turn (the turn is
/// the number of model answers the replayed run has journaled, plus one), and a summary call with the recorded summary. It never calls a real model. A turn the
/// recording does not have fails the call, which the replayed run journals, and the replay reports as
/// a divergence.
/// </summary>
internal sealed class ReplayChatClient(ReplaySession session) : IChatClient
{
    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        await session.CancelHereIfRecordedAsync(cancellationToken);
        if (session.Next?.Entry is BudgetExceeded { Budget: "time" } stopped)
        {
            // The recorded run's time budget ran out during this call: wait for the replayed run's to.
            await Task.Delay(TimeSpan.FromSeconds(stopped.Limit + 5), cancellationToken);
            throw new InvalidOperationException($"replay of run {session.RunId}: the recorded run's time budget ({stopped.Limit}s) stopped the model call after step {session.Version}; the replayed run's did not");
        }
        if (session.Next?.Entry is ConversationSummarized summarized)
        {
            // The loop asks for a summary of the conversation's older messages: the recorded one.
            return new ChatResponse(new ChatMessage(ChatRole.Assistant, summarized.Summary))
            {
                ModelId = summarized.Model,
                Usage = new UsageDetails { InputTokenCount = summarized.Usage.InputTokens, OutputTokenCount = summarized.Usage.OutputTokens, TotalTokenCount = summarized.Usage.TotalTokens },
            };
        }
        // The replayed run's journal is the recorded one up to session.Version (every append is checked against it), so its
        // turn is the recorded model answers up to there, plus one. (Counting the request's assistant messages would miss
        // those a conversation window left out.)
        var turn = 1;
        foreach (var r in session.Recorded)
        {
            if (r.N > session.Version) break;
            if (r.Entry is ModelResponded) turn++;
        }
        ModelResponded? recorded = null;
        foreach (var r in session.Recorded)
        {
            if (r.N > session.Version && r.Entry is ModelResponded m && m.Turn == turn)
            {
                recorded = m;
                break;
            }
        }
        if (recorded is null)
            throw new InvalidOperationException($"replay of run {session.RunId}: the journal has no model answer for turn {turn} after step {session.Version}; the replayed run asked the model once more than the recorded one");
        return ToResponse(recorded);
    }

    internal static ChatResponse ToResponse(ModelResponded recorded)
    {
        var contents = new List<AIContent>();
        if (recorded.Text is not null) contents.Add(new TextContent(recorded.Text));
        foreach (var call in recorded.ToolCalls)
        {
            contents.Add(call.Arguments.Length == 0
                ? new FunctionCallContent(call.CallId, call.Name) { Exception = new JsonException("the model's arguments were not valid JSON (as recorded)") }
                : new FunctionCallContent(call.CallId, call.Name, Arguments(call.Arguments)));
        }
        return new ChatResponse(new ChatMessage(ChatRole.Assistant, contents))
        {
            ModelId = recorded.Model,
            FinishReason = recorded.FinishReason is null ? null : new ChatFinishReason(recorded.FinishReason),
            Usage = recorded.Usage == UsageRecord.Zero
                ? null
                : new UsageDetails { InputTokenCount = recorded.Usage.InputTokens, OutputTokenCount = recorded.Usage.OutputTokens, TotalTokenCount = recorded.Usage.TotalTokens },
        };
    }

    private static Dictionary<string, object?> Arguments(string json)
    {
        var result = new Dictionary<string, object?>(StringComparer.Ordinal);
        using var doc = JsonDocument.Parse(json);
        foreach (var p in doc.RootElement.EnumerateObject()) result[p.Name] = p.Value.Clone();
        return result;
    }

    public IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
        throw new NotSupportedException("the replay model answers the agent loop's GetResponseAsync only");

    public object? GetService(Type serviceType, object? serviceKey = null) =>
        serviceKey is null && serviceType.IsInstanceOfType(this) ? this : null;

    public void Dispose()
    {
    }
}
