namespace Bureau.Resilience;

/// <summary>
/// Where the resilience links journal what they did (an attempt that failed, a wait for a rate limit, a fallback):
/// the run executing the call. The agent loop sets it around each model and tool call; the links are shared by
/// every run in the process, so the run travels with the call's async flow.
/// </summary>
internal interface IResilienceJournal
{
    /// <summary>The run.</summary>
    string RunId { get; }

    /// <summary>Appends <paramref name="entry"/> to the run's journal (the run's loop is awaiting the call, so nothing else appends meanwhile).</summary>
    ValueTask RecordAsync(JournalEntry entry);
}

/// <summary>The run a model or tool call is made for, as an async-local.</summary>
internal static class ResilienceScope
{
    private static readonly AsyncLocal<IResilienceJournal?> s_current = new();

    public static IResilienceJournal? Current => s_current.Value;

    /// <summary>Makes <paramref name="journal"/> current until the returned scope is disposed.</summary>
    public static Scope Enter(IResilienceJournal journal)
    {
        var previous = s_current.Value;
        s_current.Value = journal;
        return new Scope(previous);
    }

    public static ValueTask RecordAsync(JournalEntry entry) => s_current.Value is { } j ? j.RecordAsync(entry) : ValueTask.CompletedTask;

    public readonly struct Scope(IResilienceJournal? previous) : IDisposable
    {
        public void Dispose() => s_current.Value = previous;
    }
}
