namespace Bureau.Engine;

/// <summary>One message of a conversation a protocol sends, as text (<see cref="ConversationInput"/>).</summary>
/// <param name="Role">Who spoke: system, developer, user, assistant, tool (with its call id), a context entry.</param>
/// <param name="Text">What was said.</param>
internal readonly record struct ConversationMessage(string Role, string Text);

/// <summary>
/// Turns a conversation into a run's input (docs/decisions/0026): the last message, the user's, is what the agent
/// answers; the messages before it are context, written above it as a transcript. A conversation of one message is
/// its text, as is. The agent's own instructions are never replaced: a client's system message is context like the rest.
/// </summary>
internal static class ConversationInput
{
    public static string ToInput(IReadOnlyList<ConversationMessage> messages)
    {
        var last = messages[^1].Text;
        if (messages.Count == 1) return last;
        var sb = new System.Text.StringBuilder("Earlier in this conversation:\n");
        for (var i = 0; i < messages.Count - 1; i++)
            sb.Append('[').Append(messages[i].Role).Append("] ").Append(messages[i].Text).Append('\n');
        sb.Append("\nThe message to answer:\n").Append(last);
        return sb.ToString();
    }
}
