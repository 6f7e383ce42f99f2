using System.Threading.Channels;

namespace Bureau.Engine;

/// <summary>How far a followed run got: it ended, or it (or a run of its tree) waits for a person.</summary>
/// <param name="Run">The followed run, as stored when following stopped.</param>
/// <param name="WaitingRun">The run that waits for a person (the followed run or one of its descendants), or null when <paramref name="Run"/> ended.</param>
internal sealed record RunEnd(RunRecord Run, RunRecord? WaitingRun)
{
    /// <summary>True when following stopped because someone must act (approve, resolve, send an event).</summary>
    public bool Waiting => WaitingRun is not null;
}

/// <summary>
/// Follows a run for the protocol endpoints (OpenAI-compatible, AG-UI) and the Agent Framework adapter: its journal from the start, then
/// live, until it ends or waits for a person: an approval, an in-doubt step or an external event, its own
/// or one of its descendants' (a team's member, a delegated agent). Waits that resolve by themselves (for
/// child runs, for a timer) are followed through. The run goes on when the follower stops; only the
/// watching ends.
/// </summary>
internal static class RunFollower
{
    /// <summary>Whether a wait needs someone outside the run to act.</summary>
    public static bool NeedsPerson(WaitingFor? wait) => wait is ApprovalWait or InDoubtWait or ExternalEventWait;

    /// <param name="engine">The engine.</param>
    /// <param name="runId">The run.</param>
    /// <param name="onEvent">Called for each journal record of the run after <paramref name="afterStep"/>, in order, and, with
    /// <paramref name="includeActivity"/>, for activities (a model call or tool starting); null: not needed.</param>
    /// <param name="onIdle">Called after <paramref name="heartbeat"/> without a record (for keep-alive comments; null: none).</param>
    /// <param name="heartbeat">How long without a record before <paramref name="onIdle"/>.</param>
    /// <param name="time">The clock of the heartbeat.</param>
    /// <param name="cancellationToken">Stops following (the client went away); the run goes on.</param>
    /// <param name="afterStep">Follow from the step after this one (0: from the start).</param>
    /// <param name="includeActivity">Whether <paramref name="onEvent"/> also gets activities.</param>
    public static async Task<RunEnd> FollowAsync(BureauEngine engine, string runId, Func<RunEvent, ValueTask>? onEvent, Func<ValueTask>? onIdle,
        TimeSpan heartbeat, TimeProvider time, CancellationToken cancellationToken, long afterStep = 0, bool includeActivity = false)
    {
        // A descendant that starts waiting for a person shows only in its own journal: once the run has started a
        // child, listen to every run's waits (rare events) and look down the tree when one comes. A run without
        // children costs no listener. A run that waits for its children is looked down at that moment too, so a
        // member that waited before the listener came is found.
        var descendantWaits = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
        IDisposable? all = null;
        void Listen() => all ??= engine.Events.SubscribeAll(e =>
        {
            if (e.RunId != runId && e.Record?.Entry is RunWaiting w && NeedsPerson(w.WaitingFor)) descendantWaits.Writer.TryWrite(true);
        });
        if (afterStep > 0) Listen(); // its children may have started before the step we follow from
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var ct = stop.Token;
        var events = engine.WatchAsync(runId, afterStep, includeActivity, untilWaiting: false, cancellationToken: ct).GetAsyncEnumerator(ct);
        Task<bool>? next = null;
        var lastStep = afterStep;
        try
        {
            next = events.MoveNextAsync().AsTask();
            var signal = descendantWaits.Reader.WaitToReadAsync(ct).AsTask();
            while (true)
            {
                Task done;
                using (var beat = CancellationTokenSource.CreateLinkedTokenSource(ct))
                {
                    var delay = onIdle is null ? Task.Delay(Timeout.Infinite, beat.Token) : Task.Delay(heartbeat, time, beat.Token);
                    done = await Task.WhenAny(next, signal, delay);
                    await beat.CancelAsync();
                    if (done == delay)
                    {
                        await delay.ContinueWith(_ => { }, TaskScheduler.Default); // observe its cancellation
                        if (ct.IsCancellationRequested) ct.ThrowIfCancellationRequested();
                        await onIdle!();
                        continue;
                    }
                }
                if (done == signal)
                {
                    await signal;
                    while (descendantWaits.Reader.TryRead(out _)) { }
                    signal = descendantWaits.Reader.WaitToReadAsync(ct).AsTask();
                    if (await FindWaitingDescendantAsync(engine, runId, ct) is { } waiting)
                    {
                        // The descendant's wait can be seen before the steps the run journaled until then (its child
                        // starting, say): hand those over first, so the follower's picture of the run is whole.
                        var run = await GetAsync(engine, runId, ct);
                        while (lastStep < run.Version && await next)
                        {
                            var pending = events.Current;
                            if (onEvent is not null) await onEvent(pending);
                            if (pending.Record is { } r) lastStep = r.N;
                            next = events.MoveNextAsync().AsTask();
                        }
                        return new RunEnd(run, waiting);
                    }
                    continue;
                }
                if (!await next) break;
                var current = events.Current;
                if (onEvent is not null) await onEvent(current);
                if (current.Record is not { } record)
                {
                    next = events.MoveNextAsync().AsTask();
                    continue;
                }
                lastStep = record.N;
                if (record.Entry is ChildRunStarted) Listen();
                if (record.Entry is RunWaiting w)
                {
                    var run = await GetAsync(engine, runId, ct);
                    if (run.Status == RunStatus.Waiting && run.Version == record.N)
                    {
                        if (NeedsPerson(w.WaitingFor)) return new RunEnd(run, run);
                        if (w.WaitingFor is ChildRunsWait)
                        {
                            Listen();
                            if (await FindWaitingDescendantAsync(engine, runId, ct) is { } waiting) return new RunEnd(run, waiting);
                        }
                    }
                }
                next = events.MoveNextAsync().AsTask();
            }
            return new RunEnd(await GetAsync(engine, runId, ct), null);
        }
        finally
        {
            all?.Dispose();
            await stop.CancelAsync();
            if (next is not null)
            {
                try { await next; }
                catch (OperationCanceledException) { }
            }
            await events.DisposeAsync();
        }
    }

    private static async Task<RunRecord> GetAsync(BureauEngine engine, string runId, CancellationToken ct) =>
        await engine.GetRunAsync(runId, ct) ?? throw new RunNotFoundException(runId);

    /// <summary>The first run under <paramref name="rootId"/> (breadth first, unfinished runs only) that waits for a person, or null.</summary>
    public static async Task<RunRecord?> FindWaitingDescendantAsync(BureauEngine engine, string rootId, CancellationToken ct)
    {
        var queue = new Queue<(string Id, int Depth)>();
        queue.Enqueue((rootId, 0));
        var looked = 0;
        while (queue.TryDequeue(out var item) && looked++ < 500)
        {
            var page = await engine.ListRunsAsync(new RunQuery { ParentRunId = item.Id, Limit = 200 }, ct);
            foreach (var child in page.Items)
            {
                if (child.Status == RunStatus.Waiting && NeedsPerson(child.WaitingFor)) return child;
                if (!child.Status.IsTerminal() && item.Depth < 16) queue.Enqueue((child.Id, item.Depth + 1));
            }
        }
        return null;
    }

    /// <summary>One sentence for a client: what the run waits for and how to let it go on.</summary>
    public static string WaitingMessage(RunEnd end)
    {
        var w = end.WaitingRun!;
        var root = end.Run.Id;
        var step = w.WaitingFor!.Step;
        var whose = w.Id == root ? $"Run {root}" : $"Run {root} (its member run {w.Id})";
        var then = $"The run goes on once answered; read its answer with GET /v1/runs/{root}.";
        return w.WaitingFor switch
        {
            ApprovalWait a => $"{whose} is waiting for approval of {(a.Tool is null ? "a step" : $"the tool call '{a.Tool}'")} (approval {w.Id}:{step}). "
                + $"Approve or reject it with POST /v1/approvals/{w.Id}:{step}/decision or 'bureau approvals approve {w.Id}:{step}'. {then}",
            InDoubtWait d => $"{whose} is waiting for a person to resolve the in-doubt step {step} ({d.Tool}): POST /v1/runs/{w.Id}/resolve or 'bureau runs resolve'. {then}",
            ExternalEventWait e => $"{whose} is waiting for the event '{e.EventName}' (step {step}). {then}",
            _ => $"{whose} is waiting ({w.WaitingFor.Reason}, step {step}). {then}",
        };
    }
}
