using System.Globalization;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Bureau.Retention;

/// <summary>
/// Applies the agents' retention policies: a sweep at start, then every <see cref="BureauRetentionOptions.SweepInterval"/>.
/// A sweep reads each agent's runs through the store's readers (newest first, in pages) and deletes those the policy
/// lets go in batches of <see cref="BureauRetentionOptions.BatchSize"/>, each one write transaction with its own audit
/// entry, so appends queued behind a batch wait for a small transaction only. Nothing happens without a policy.
/// </summary>
internal sealed partial class RetentionService(BureauDeployment deployment, IRunStore store, IOptions<BureauOptions> options, TimeProvider time, ILoggerFactory loggers)
    : BackgroundService
{
    /// <summary>The audit entry's actor.</summary>
    public const string Actor = "retention";

    private readonly ILogger _logger = loggers.CreateLogger("Bureau.Retention");
    private readonly BureauRetentionOptions _options = options.Value.Retention;
    private readonly SemaphoreSlim _gate = new(1, 1);

    private IEnumerable<AgentDefinition> Policies =>
        deployment.Definitions.Agents.Values.Where(a => a.Retention is not null).OrderBy(a => a.Name, StringComparer.Ordinal);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!Policies.Any()) return;
        await Task.Yield();
        while (!stoppingToken.IsCancellationRequested)
        {
            var deleted = 0;
            try
            {
                deleted = await SweepAsync(stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (NotSupportedException ex)
            {
                Log.NotSupported(_logger, ex.Message);
                return;
            }
            catch (Exception ex)
            {
                Log.Failed(_logger, ex);
            }
            var next = Task.Delay(_options.SweepInterval, time, stoppingToken); // the timer is set before anyone hears of the sweep
            Swept?.Invoke(deleted);
            await next.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }

    /// <summary>Raised after each background sweep with how many runs it deleted (tests await it rather than sleep).</summary>
    internal event Action<int>? Swept;

    /// <summary>One sweep over every agent with a policy; returns how many runs were deleted.</summary>
    public async Task<int> SweepAsync(CancellationToken cancellationToken = default)
    {
        await _gate.WaitAsync(cancellationToken);
        try
        {
            var deleted = 0;
            foreach (var agent in Policies) deleted += await SweepAgentAsync(agent.Name, agent.Retention!, cancellationToken);
            return deleted;
        }
        finally
        {
            _gate.Release();
        }
    }

    private async Task<int> SweepAgentAsync(string agent, AgentRetention policy, CancellationToken ct)
    {
        var now = time.GetUtcNow();
        var reason = Describe(agent, policy);
        var batch = new List<RunRecord>(_options.BatchSize);
        var finished = 0;
        var deleted = 0;
        string? cursor = null;
        do
        {
            var page = await store.ListRunsAsync(new RunQuery { Agent = agent, Limit = 500, Cursor = cursor }, ct);
            foreach (var run in page.Items)
            {
                if (!run.Status.IsTerminal()) continue;
                if (policy.ShouldDelete(run.Status, run.UpdatedAt, finished++, now)) batch.Add(run);
                if (batch.Count == _options.BatchSize) deleted += await DeleteAsync(agent, policy, reason, batch, now, ct);
            }
            cursor = page.Next;
        }
        while (cursor is not null);
        if (batch.Count > 0) deleted += await DeleteAsync(agent, policy, reason, batch, now, ct);
        return deleted;
    }

    private async Task<int> DeleteAsync(string agent, AgentRetention policy, string reason, List<RunRecord> batch, DateTimeOffset now, CancellationToken ct)
    {
        if (policy.ExportTo is { } folder) await ExportAsync(folder, agent, batch, now, ct);
        var ids = await store.DeleteRunsAsync(new RunDeletion { RunIds = [.. batch.Select(r => r.Id)], At = now, Actor = Actor, Reason = reason }, ct);
        batch.Clear();
        if (ids.Count > 0) Log.Deleted(_logger, ids.Count, agent);
        return ids.Count;
    }

    /// <summary>Appends the runs to <c>FOLDER/AGENT-YYYYMMDD.jsonl</c> (the day of the sweep, UTC), durably, before they are deleted.</summary>
    private async Task ExportAsync(string folder, string agent, List<RunRecord> batch, DateTimeOffset now, CancellationToken ct)
    {
        Directory.CreateDirectory(folder);
        var file = Path.Combine(folder, $"{agent}-{now.UtcDateTime.ToString("yyyyMMdd", CultureInfo.InvariantCulture)}.jsonl");
        await using var stream = new FileStream(file, FileMode.Append, FileAccess.Write, FileShare.Read);
        foreach (var run in batch)
            await RunExport.WriteLineAsync(stream, run, await store.ReadJournalAsync(run.Id, 0, ct), ct);
        await stream.FlushAsync(ct);
        stream.Flush(flushToDisk: true);
    }

    private static string Describe(string agent, AgentRetention p) =>
        $"agent {agent}: keepDays {p.KeepDays?.ToString(CultureInfo.InvariantCulture) ?? "-"}, keepRuns {p.KeepRuns?.ToString(CultureInfo.InvariantCulture) ?? "-"}, keepFailedDays {p.KeepFailedDays?.ToString(CultureInfo.InvariantCulture) ?? "-"}";

    private static partial class Log
    {
        [LoggerMessage(100, LogLevel.Information, "Retention: {Count} finished run(s) of agent {Agent} deleted")]
        public static partial void Deleted(ILogger logger, int count, string agent);

        [LoggerMessage(101, LogLevel.Error, "Retention sweep failed; trying again at the next sweep")]
        public static partial void Failed(ILogger logger, Exception ex);

        [LoggerMessage(102, LogLevel.Warning, "Retention is off: {Reason}")]
        public static partial void NotSupported(ILogger logger, string reason);
    }
}
