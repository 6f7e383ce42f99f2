using System.Collections.Concurrent;
using System.Runtime.CompilerServices;

namespace Bureau;

/// <summary>Something that happened to a run, live: a journal record (durable, numbered) or an activity (not journaled).</summary>
/// <param name="RunId">The run.</param>
/// <param name="Record">The journal record, or null for an activity.</param>
/// <param name="Activity">For activities: <c>model.started</c>, <c>tool.started</c>.</param>
/// <param name="Detail">For activities: what started.</param>
public sealed record RunEvent(string RunId, JournalRecord? Record, string? Activity = null, string? Detail = null);

/// <summary>
/// Where the journal writer publishes what it appended, and where watchers (the event stream,
/// <c>WaitAsync</c>, the CLI) listen. The default delivers within this process; a cluster replaces it
/// with one that reaches every node. Publishing is on the hot path: it must not block.
/// </summary>
public interface IRunEventBus
{
    /// <summary>Publishes records the journal writer just committed, in order.</summary>
    void Publish(string runId, IReadOnlyList<JournalRecord> records);

    /// <summary>Publishes an activity (a model or tool call starting); not durable.</summary>
    void PublishActivity(string runId, string activity, string detail);

    /// <summary>What the run is doing right now (the latest activity not yet followed by a record), or null.</summary>
    RunEvent? CurrentActivity(string runId);

    /// <summary>Listens to one run until the returned handle is disposed.</summary>
    IDisposable Subscribe(string runId, Action<RunEvent> handler);

    /// <summary>Listens to every run until the returned handle is disposed.</summary>
    IDisposable SubscribeAll(Action<RunEvent> handler);
}

/// <summary>The in-process event bus: a dictionary lookup per publish when nobody listens.</summary>
public sealed class InProcessRunEventBus : IRunEventBus
{
    // Striped wider than the default (one lock per core): every step of every run writes here.
    private readonly ConcurrentDictionary<string, Subscribers> _byRun = new(concurrencyLevel: 64, capacity: 256, StringComparer.Ordinal);
    // A run's current activity, in a box made once per execution: each step sets and clears the box
    // without a dictionary write (lock-free); the box goes when the execution stops (the run ends or waits).
    private readonly ConcurrentDictionary<string, StrongBox<RunEvent?>> _current = new(concurrencyLevel: 64, capacity: 1024, StringComparer.Ordinal);
    private volatile Action<RunEvent>[] _all = [];
    private readonly Lock _gate = new();

    /// <inheritdoc />
    public IDisposable Subscribe(string runId, Action<RunEvent> handler)
    {
        var subs = _byRun.GetOrAdd(runId, _ => new Subscribers());
        lock (subs) subs.Handlers = [.. subs.Handlers, handler];
        return new Unsubscriber(() =>
        {
            lock (subs)
            {
                subs.Handlers = Array.FindAll(subs.Handlers, h => h != handler);
                if (subs.Handlers.Length == 0) _byRun.TryRemove(new KeyValuePair<string, Subscribers>(runId, subs));
            }
        });
    }

    /// <inheritdoc />
    public IDisposable SubscribeAll(Action<RunEvent> handler)
    {
        lock (_gate) _all = [.. _all, handler];
        return new Unsubscriber(() => { lock (_gate) _all = Array.FindAll(_all, h => h != handler); });
    }

    /// <inheritdoc />
    public RunEvent? CurrentActivity(string runId) => _current.TryGetValue(runId, out var box) ? Volatile.Read(ref box.Value) : null;

    /// <inheritdoc />
    public void Publish(string runId, IReadOnlyList<JournalRecord> records)
    {
        if (_current.TryGetValue(runId, out var box))
        {
            Volatile.Write(ref box.Value, null);
            if (records.Count > 0 && records[^1].Entry is RunFinished or RunWaiting) _current.TryRemove(runId, out _);
        }
        var all = _all;
        _byRun.TryGetValue(runId, out var subs);
        if (all.Length == 0 && subs is null) return;
        foreach (var r in records) Dispatch(new RunEvent(runId, r), subs, all);
    }

    /// <inheritdoc />
    public void PublishActivity(string runId, string activity, string detail)
    {
        var all = _all;
        _byRun.TryGetValue(runId, out var subs);
        // Kept also when nobody listens now: a watcher that subscribes mid-call still learns of it.
        var e = new RunEvent(runId, null, activity, detail);
        var box = _current.TryGetValue(runId, out var existing) ? existing : _current.GetOrAdd(runId, static _ => new StrongBox<RunEvent?>());
        Volatile.Write(ref box.Value, e);
        if (all.Length == 0 && subs is null) return;
        Dispatch(e, subs, all);
    }

    private static void Dispatch(RunEvent e, Subscribers? subs, Action<RunEvent>[] all)
    {
        if (subs is not null) foreach (var h in subs.Handlers) h(e);
        foreach (var h in all) h(e);
    }

    private sealed class Subscribers
    {
        public volatile Action<RunEvent>[] Handlers = [];
    }

    private sealed class Unsubscriber(Action dispose) : IDisposable
    {
        private Action? _dispose = dispose;
        public void Dispose() => Interlocked.Exchange(ref _dispose, null)?.Invoke();
    }
}
