using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.AI;
using Microsoft.ML.Tokenizers;

namespace Bureau.Memory;

/// <summary>
/// Counts the tokens of chat messages with a tiktoken encoding whose data ships in a NuGet package (o200k_base: no
/// download at run time). The encoding loads once per process (its cost is in docs/performance.md); a message's
/// count is computed once and kept beside the message.
/// </summary>
internal static class TokenCounter
{
    /// <summary>What every message costs besides its content (role and separators), as OpenAI's chat format counts it.</summary>
    public const int PerMessage = 4;

    private static readonly Lazy<Tokenizer> s_o200k = new(() => TiktokenTokenizer.CreateForEncoding("o200k_base"));
    private static readonly ConditionalWeakTable<ChatMessage, StrongBox<int>> s_counts = new();

    /// <summary>The tokenizer of <paramref name="name"/>.</summary>
    public static Tokenizer For(string name) => name == "o200k_base"
        ? s_o200k.Value
        : throw new ArgumentException($"unknown tokenizer '{name}'; supported: o200k_base", nameof(name));

    /// <summary>The tokens of one message (content, tool calls with their arguments, tool results), counted once.</summary>
    public static int Count(ChatMessage message, Tokenizer tokenizer) =>
        s_counts.GetValue(message, m => new StrongBox<int>(CountNow(m, tokenizer))).Value;

    private static int CountNow(ChatMessage message, Tokenizer tokenizer)
    {
        var tokens = PerMessage;
        foreach (var content in message.Contents)
        {
            switch (content)
            {
                case TextContent t:
                    tokens += tokenizer.CountTokens(t.Text);
                    break;
                case FunctionCallContent c:
                    tokens += tokenizer.CountTokens(c.Name) + (c.Arguments is null ? 0 : tokenizer.CountTokens(JsonSerializer.Serialize(c.Arguments, AIJsonUtilities.DefaultOptions)));
                    break;
                case FunctionResultContent r:
                    tokens += tokenizer.CountTokens(r.Result?.ToString() ?? "");
                    break;
            }
        }
        return tokens;
    }
}

/// <summary>What goes to the model for one call under a conversation window.</summary>
/// <param name="Messages">The request's messages.</param>
/// <param name="FirstKept">The index (in the whole conversation) of the first message kept after the pinned head.</param>
/// <param name="From">The index where the unsummarized conversation starts (after the head, or after what the summary covers).</param>
/// <param name="Dropped">How many messages of the unsummarized conversation were left out.</param>
/// <param name="Tokens">The request's tokens, as counted.</param>
internal sealed record WindowedRequest(IReadOnlyList<ChatMessage> Messages, int FirstKept, int From, int Dropped, int Tokens);

/// <summary>
/// The short-term memory seam of the agent loop: which messages of the conversation go to the model when it no longer
/// fits the agent's window (<c>memory.window</c>). The pinned head (the system prompt and the run's input) is always sent;
/// the rest is cut into units, each a model answer with the results of its tool calls (a call and its result are never
/// separated) or a message of its own, and the newest units that fit are kept. A summary (overflow <c>summarize</c>)
/// stands in for the messages it covers. Pure: the same conversation, window and summary give the same request.
/// </summary>
internal static class ContextWindow
{
    public static WindowedRequest Apply(IReadOnlyList<ChatMessage> conversation, ConversationWindow window, ConversationSummarized? summary, Tokenizer tokenizer)
    {
        var headEnd = HeadEnd(conversation);
        var head = new List<ChatMessage>(conversation.Take(headEnd));
        var from = summary is null ? headEnd : Math.Clamp(summary.Covers, headEnd, conversation.Count);
        if (summary is not null) head.Add(new ChatMessage(ChatRole.System, $"Summary of the earlier conversation (written by a model, covering {from - headEnd} messages):\n{summary.Summary}"));
        var headTokens = head.Sum(m => TokenCounter.Count(m, tokenizer));

        var units = Units(conversation, from);
        var budget = window.MaxTokens - headTokens;
        var kept = 0;
        var keptTokens = 0;
        for (var u = units.Count - 1; u >= 0; u--)
        {
            var t = 0;
            for (var i = units[u].Start; i < units[u].End; i++) t += TokenCounter.Count(conversation[i], tokenizer);
            if (kept > 0 && keptTokens + t > budget) break;   // the newest unit is always sent, even alone over the window
            kept++;
            keptTokens += t;
        }
        var firstKept = kept == 0 ? conversation.Count : units[^kept].Start;
        var dropped = firstKept - from;
        var request = new List<ChatMessage>(head.Count + 1 + conversation.Count - firstKept);
        request.AddRange(head);
        if (dropped > 0)
            request.Add(new ChatMessage(ChatRole.System, $"(Bureau: {dropped} earlier messages of this conversation are left out to fit its window of {window.MaxTokens} tokens.)"));
        for (var i = firstKept; i < conversation.Count; i++) request.Add(conversation[i]);
        var tokens = headTokens + keptTokens + (dropped > 0 ? TokenCounter.Count(request[head.Count], tokenizer) : 0);
        return new WindowedRequest(request, firstKept, from, dropped, tokens);
    }

    /// <summary>The pinned head's end: the leading system messages and the first user message (the run's input).</summary>
    internal static int HeadEnd(IReadOnlyList<ChatMessage> conversation)
    {
        var i = 0;
        while (i < conversation.Count && conversation[i].Role == ChatRole.System) i++;
        if (i < conversation.Count && conversation[i].Role == ChatRole.User) i++;
        return i;
    }

    /// <summary>The conversation from <paramref name="from"/> cut into units: a message, with the tool results that follow it.</summary>
    internal static List<(int Start, int End)> Units(IReadOnlyList<ChatMessage> conversation, int from)
    {
        var units = new List<(int Start, int End)>();
        for (var i = from; i < conversation.Count;)
        {
            var start = i++;
            while (i < conversation.Count && conversation[i].Role == ChatRole.Tool) i++;
            units.Add((start, i));
        }
        return units;
    }

    /// <summary>The request that asks a model to summarize messages [<paramref name="from"/>, <paramref name="to"/>) (and the previous summary).</summary>
    public static List<ChatMessage> SummaryRequest(IReadOnlyList<ChatMessage> conversation, int from, int to, ConversationSummarized? previous)
    {
        var transcript = new StringBuilder();
        if (previous is not null) transcript.Append("Summary so far:\n").Append(previous.Summary).Append("\n\nWhat followed:\n");
        for (var i = from; i < to; i++)
        {
            var m = conversation[i];
            foreach (var content in m.Contents)
            {
                switch (content)
                {
                    case TextContent t when !string.IsNullOrWhiteSpace(t.Text):
                        transcript.Append(m.Role.Value).Append(": ").Append(t.Text).Append('\n');
                        break;
                    case FunctionCallContent c:
                        transcript.Append(m.Role.Value).Append(" called ").Append(c.Name).Append(' ')
                            .Append(c.Arguments is null ? "{}" : JsonSerializer.Serialize(c.Arguments, AIJsonUtilities.DefaultOptions)).Append('\n');
                        break;
                    case FunctionResultContent r:
                        transcript.Append("result: ").Append(r.Result?.ToString()).Append('\n');
                        break;
                }
            }
        }
        return
        [
            new ChatMessage(ChatRole.System, "You summarize the earlier part of an agent's conversation so the agent can go on without it. " +
                "Keep every fact, decision, identifier, number and open question the agent may still need; leave out small talk. Answer with the summary only."),
            new ChatMessage(ChatRole.User, transcript.ToString()),
        ];
    }
}
