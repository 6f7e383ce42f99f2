namespace Bureau.Engine;

/// <summary>
/// Named points of the agent loop where durability tests kill the process. The runtime passes them
/// in a run's order; the default does nothing. Only a test host registers an implementation that
/// kills (tests/Bureau.TestHost): no setting of a user's process can.
/// </summary>
internal interface ICrashPoints
{
    /// <summary>The point was reached.</summary>
    void Hit(string name);
}

/// <summary>The production crash points: none.</summary>
internal sealed class NoCrashPoints : ICrashPoints
{
    public static readonly NoCrashPoints Instance = new();

    public void Hit(string name)
    {
    }
}

/// <summary>The names of the crash points, in a run's order.</summary>
internal static class CrashPointNames
{
    public static readonly string[] All =
        ["after-model", "after-model-journal", "before-intent", "after-intent", "after-tool", "after-result", "before-finish", "waiting"];
}
