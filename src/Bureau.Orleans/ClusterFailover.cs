using Microsoft.Extensions.Logging;
using Orleans.Runtime;

namespace Bureau.Orleans;

/// <summary>
/// Fast failover: when the cluster's membership declares a silo dead, this silo drops the dead node's claims on
/// unfinished runs (the silo's name is its Bureau node id, see <see cref="BureauOrleansExtensions.AddBureauGrains"/>)
/// and claims at once, so the runs resume on the survivors without waiting for the dead node's leases to run out.
/// Every survivor does it; releasing twice is harmless (the claim that follows is a single <c>FOR UPDATE SKIP LOCKED</c>
/// statement in the store). A dead silo whose name belongs to a live one (the same node restarted) is left alone:
/// the restarted node took its claims back itself when it started.
/// </summary>
internal sealed partial class ClusterFailover(BureauEngine engine, IClusterMembershipService membership, ILocalSiloDetails local,
    ILogger<ClusterFailover> logger) : ILifecycleParticipant<ISiloLifecycle>
{
    private readonly HashSet<SiloAddress> _handled = [];
    private readonly CancellationTokenSource _stop = new();
    private Task? _watch;

    /// <summary>How long a failed release waits before it is tried again (the store may be down for a moment).</summary>
    internal static readonly TimeSpan RetryDelay = TimeSpan.FromSeconds(1);

    public void Participate(ISiloLifecycle lifecycle) =>
        // After the engine started (Active): its scheduler is there to claim what is released.
        lifecycle.Subscribe(nameof(ClusterFailover), ServiceLifecycleStage.Active + 1,
            _ =>
            {
                _watch = Task.Run(WatchAsync, CancellationToken.None);
                return Task.CompletedTask;
            },
            async _ =>
            {
                await _stop.CancelAsync();
                if (_watch is not null) await _watch;
            });

    private async Task WatchAsync()
    {
        try
        {
            await HandleAsync(membership.CurrentSnapshot);
            await foreach (var snapshot in membership.MembershipUpdates.WithCancellation(_stop.Token))
            {
                await HandleAsync(snapshot);
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
        }
        catch (Exception ex)
        {
            Log.WatchFailed(logger, ex);
        }
    }

    /// <summary>Takes over from every silo newly declared dead in <paramref name="snapshot"/>.</summary>
    internal async Task HandleAsync(ClusterMembershipSnapshot snapshot)
    {
        var live = snapshot.Members.Values.Where(m => m.Status != SiloStatus.Dead).Select(m => m.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var member in snapshot.Members.Values)
        {
            if (member.Status != SiloStatus.Dead || member.SiloAddress.Equals(local.SiloAddress) || !_handled.Add(member.SiloAddress)) continue;
            if (string.IsNullOrEmpty(member.Name) || live.Contains(member.Name)) continue;
            while (!_stop.IsCancellationRequested)
            {
                try
                {
                    if (await engine.TakeOverAsync(member.Name, _stop.Token)) Log.TookOver(logger, member.Name, member.SiloAddress.ToString());
                    break;
                }
                catch (Exception ex) when (!_stop.IsCancellationRequested)
                {
                    Log.TakeOverFailed(logger, member.Name, ex);
                    await Task.Delay(RetryDelay, _stop.Token);
                }
            }
        }
    }

    private static partial class Log
    {
        [LoggerMessage(160, LogLevel.Warning, "Node {Node} ({Silo}) was declared dead by the cluster; its claims are released and its unfinished runs resume on the survivors")]
        public static partial void TookOver(ILogger logger, string node, string silo);

        [LoggerMessage(161, LogLevel.Error, "Releasing the claims of dead node {Node} failed; trying again")]
        public static partial void TakeOverFailed(ILogger logger, string node, Exception ex);

        [LoggerMessage(162, LogLevel.Error, "Watching the cluster's membership failed; dead nodes' runs resume when their leases run out")]
        public static partial void WatchFailed(ILogger logger, Exception ex);
    }
}
