using System.Text.Json;

namespace Bureau;

/// <summary>
/// A tool that calls a remote A2A (Agent2Agent 1.0) agent over its JSON-RPC binding: the model gives a
/// <c>message</c> (and optionally a <c>contextId</c>), the tool sends it (<c>SendMessage</c>, blocking) and the remote
/// task's output (its artifacts' text) is the result. The call's idempotency key is the message's <c>messageId</c>,
/// so a retried or resumed call is the same message to an agent that deduplicates by it (Bureau does).
/// </summary>
public sealed class A2AToolDefinition : ToolDefinition
{
    /// <summary>
    /// Creates the definition. Its effect is <see cref="ToolEffect.Write"/> unless declared otherwise: a remote agent
    /// may act on what it is told. Declare <see cref="ToolEffect.Idempotent"/> for an agent that deduplicates by
    /// messageId (a Bureau host), or <see cref="ToolEffect.Read"/> for one that only answers.
    /// </summary>
    public A2AToolDefinition()
    {
        Effect = ToolEffect.Write;
        Parameters = JsonDocument.Parse("""
            {"type":"object","properties":{"message":{"type":"string","description":"What to tell the agent."},"contextId":{"type":"string","description":"A conversation to continue (optional)."}},"required":["message"],"additionalProperties":false}
            """).RootElement.Clone();
    }

    /// <inheritdoc />
    public override string Kind => "a2a";

    /// <summary>The agent's JSON-RPC interface URL (its card's <c>supportedInterfaces</c> entry with <c>protocolBinding: JSONRPC</c>).</summary>
    public required Uri Url { get; init; }

    /// <summary>Headers sent with each request (such as <c>Authorization: Bearer ...</c> for the remote's key).</summary>
    public IReadOnlyDictionary<string, string> Headers { get; init; } = new Dictionary<string, string>();

    /// <summary>A result beyond this many characters is cut, and the result says so.</summary>
    public int MaxResultChars { get; init; } = 64 * 1024;
}
