using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Bureau.Engine;

namespace Bureau;

public sealed partial class BureauEngine
{
    // Engines started in this process (tests and benches start several), observed by the gauges below.
    private static readonly ConcurrentDictionary<BureauEngine, byte> s_started = new(ReferenceEqualityComparer.Instance);

    /// <summary>How long a count of open approvals is reported before the gauge reads the store again.</summary>
    internal static readonly TimeSpan ApprovalsCountTtl = TimeSpan.FromSeconds(10);

    private int _approvalsOpen;
    private long _approvalsCountedAt = long.MinValue;
    private int _approvalsCounting;

    static BureauEngine()
    {
        BureauTelemetry.Meter.CreateObservableGauge("bureau.queue.depth",
            () => s_started.Keys.Select(e => new Measurement<int>(e._scheduler.QueuedRuns, new KeyValuePair<string, object?>("bureau.node", e.Options.NodeId))),
            "{run}", "Runs queued in this process for a free execution slot (Bureau:MaxConcurrentRuns).");
        BureauTelemetry.Meter.CreateObservableGauge("bureau.runs.active",
            () => s_started.Keys.Select(e => new Measurement<int>(e._scheduler.ActiveRuns, new KeyValuePair<string, object?>("bureau.node", e.Options.NodeId))),
            "{run}", "Runs executing in this process now.");
        BureauTelemetry.Meter.CreateObservableGauge("bureau.approvals.open",
            () => s_started.Keys.Select(e => new Measurement<int>(e.ObserveApprovalsOpen(), new KeyValuePair<string, object?>("bureau.node", e.Options.NodeId))),
            "{approval}", $"Approvals runs wait for (read from the store at most every {ApprovalsCountTtl.TotalSeconds:0} s).");
    }

    private void TrackStarted() => s_started.TryAdd(this, 0);

    private void UntrackStarted() => s_started.TryRemove(this, out _);

    /// <summary>The last count of open approvals; starts a new count (in the background) when it is older than <see cref="ApprovalsCountTtl"/>.</summary>
    private int ObserveApprovalsOpen()
    {
        var now = TimeProvider.GetTimestamp();
        var countedAt = Interlocked.Read(ref _approvalsCountedAt);
        if ((countedAt == long.MinValue || TimeProvider.GetElapsedTime(countedAt, now) >= ApprovalsCountTtl)
            && Interlocked.CompareExchange(ref _approvalsCounting, 1, 0) == 0)
            _ = Task.Run(async () =>
            {
                try { await CountApprovalsOpenAsync(CancellationToken.None); }
                catch (Exception) { /* the store is unavailable: the last count stands */ }
                finally { Volatile.Write(ref _approvalsCounting, 0); }
            });
        return Volatile.Read(ref _approvalsOpen);
    }

    /// <summary>Counts the runs waiting for an approval (what <c>bureau.approvals.open</c> reports) and returns it.</summary>
    internal async Task<int> CountApprovalsOpenAsync(CancellationToken cancellationToken)
    {
        var count = 0;
        string? cursor = null;
        do
        {
            var page = await Store.ListRunsAsync(new RunQuery { Status = RunStatus.Waiting, Limit = 500, Cursor = cursor }, cancellationToken);
            foreach (var run in page.Items)
            {
                if (run.WaitingFor is ApprovalWait) count++;
            }
            cursor = page.Next;
        }
        while (cursor is not null);
        Volatile.Write(ref _approvalsOpen, count);
        Interlocked.Exchange(ref _approvalsCountedAt, TimeProvider.GetTimestamp());
        return count;
    }
}
