namespace Bureau.Tools;

/// <summary>
/// The tool call in progress on the current async flow. <see cref="BureauTool.InvokeAsync"/> sets it
/// around the tool's work, so a C# function tool can read its idempotency key:
/// <c>BureauToolContext.Current?.IdempotencyKey</c>.
/// </summary>
public sealed class BureauToolContext
{
    private static readonly AsyncLocal<BureauToolContext?> s_current = new();

    internal BureauToolContext(string runId, long step, string idempotencyKey, string toolName)
    {
        RunId = runId;
        Step = step;
        IdempotencyKey = idempotencyKey;
        ToolName = toolName;
    }

    /// <summary>The call in progress, or null outside a tool call.</summary>
    public static BureauToolContext? Current
    {
        get => s_current.Value;
        internal set => s_current.Value = value;
    }

    /// <summary>The run making the call.</summary>
    public string RunId { get; }

    /// <summary>The journal step of the call.</summary>
    public long Step { get; }

    /// <summary>The idempotency key of the call, <c>{runId}:{step}</c>: the same on every retry of this call.</summary>
    public string IdempotencyKey { get; }

    /// <summary>The name of the tool called.</summary>
    public string ToolName { get; }
}
