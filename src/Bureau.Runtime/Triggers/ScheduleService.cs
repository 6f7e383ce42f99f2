using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Bureau.Triggers;

/// <summary>
/// Fires the deployed schedule triggers. A tick is a run submitted with the idempotency key
/// <c>schedule:NAME:TICK</c> (the tick in UTC): the store accepts it once, so a tick fires once however many
/// hosts run this service, and a restarted host does not fire it again. Nothing lives only in memory: the last
/// fired tick of a schedule is read back from the store (its newest run by key prefix) when the service starts,
/// and the ticks missed since then follow the trigger's <see cref="CatchUpPolicy"/>.
/// </summary>
internal sealed partial class ScheduleService(IServiceProvider services, TimeProvider time, ILoggerFactory loggerFactory)
    : BackgroundService
{
    private readonly ILogger _logger = loggerFactory.CreateLogger("Bureau.Schedules");
    // Resolved when the service runs, after the runtime service built (and checked) the deployment: a host whose
    // definitions are refused fails in one place, with the definitions' message.
    private BureauEngine? _engine;
    private BureauEngine Engine => _engine ??= services.GetRequiredService<BureauEngine>();

    /// <summary>Longest sleep (a timer cannot wait for ever; a yearly cron wakes up now and then to find nothing due).</summary>
    internal static readonly TimeSpan MaxSleep = TimeSpan.FromHours(12);

    /// <summary>Wait before trying again a tick whose submission failed (the store could not write).</summary>
    internal static readonly TimeSpan RetryDelay = TimeSpan.FromSeconds(5);

    private readonly Lock _gate = new();
    private DateTimeOffset _sleepingUntil = DateTimeOffset.MinValue;
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>One schedule's state in this host.</summary>
    private sealed class State(ScheduleTriggerDefinition definition, ScheduleClock clock)
    {
        public ScheduleTriggerDefinition Definition { get; } = definition;
        public ScheduleClock Clock { get; } = clock;
        /// <summary>The next tick to fire; null when the cron never matches again.</summary>
        public DateTimeOffset? Next { get; set; }
        /// <summary>No earlier than this (after a failed submission).</summary>
        public DateTimeOffset RetryAt { get; set; } = DateTimeOffset.MinValue;
        /// <summary>Whether the last tick fired was read from the store.</summary>
        public bool Started { get; set; }
        /// <summary>The run of the last tick fired (for the overlap policy).</summary>
        public string? LastRunId { get; set; }
    }

    /// <summary>Registers the service once.</summary>
    internal static void Register(IServiceCollection services)
    {
        PollService.Register(services); // poll triggers fire where schedules do
        if (services.Any(d => d.ServiceType == typeof(ScheduleService))) return;
        services.AddSingleton<ScheduleService>();
        services.AddHostedService(sp => sp.GetRequiredService<ScheduleService>());
    }

    /// <summary>The last tick of <paramref name="schedule"/> that started a run, and that run, from the store.</summary>
    /// <remarks>
    /// A schedule that targets the workforce adds tasks (id: the tick's key), whose runs have the key <c>workforce:KEY</c>
    /// once a member takes them: the last tick found is the newest whose task has a run. A tick whose task still waits in the
    /// inbox may be fired again after a restart; its task id makes that add nothing.
    /// </remarks>
    internal static async Task<(DateTimeOffset? Tick, RunRecord? Run)> LastFiredAsync(IRunStore store, ScheduleTriggerDefinition schedule, CancellationToken cancellationToken)
    {
        var prefix = schedule.Workforce is null ? schedule.KeyPrefix : WorkforceTask.RunKey(schedule.KeyPrefix);
        var page = await store.ListRunsAsync(new RunQuery { IdempotencyKeyPrefix = prefix, Limit = 1 }, cancellationToken);
        var run = page.Items.FirstOrDefault();
        var key = run?.IdempotencyKey is { } k && k.StartsWith(prefix, StringComparison.Ordinal) ? k[(prefix.Length - schedule.KeyPrefix.Length)..] : null;
        return (schedule.TickOf(key), schedule.Workforce is null ? run : null);
    }

    /// <summary>Completes once the service sleeps until a time after <paramref name="t"/> (every tick up to <paramref name="t"/> is handled). For tests.</summary>
    internal async Task WaitSleepingPastAsync(DateTimeOffset t, CancellationToken cancellationToken)
    {
        while (true)
        {
            Task changed;
            lock (_gate)
            {
                if (_sleepingUntil > t) return;
                changed = _changed.Task;
            }
            await changed.WaitAsync(cancellationToken);
        }
    }

    private void SetSleeping(DateTimeOffset until)
    {
        TaskCompletionSource changed;
        lock (_gate)
        {
            _sleepingUntil = until;
            changed = _changed;
            _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        changed.TrySetResult();
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var schedules = Engine.Definitions.Triggers.Values.OfType<ScheduleTriggerDefinition>()
            .OrderBy(s => s.Name, StringComparer.Ordinal)
            .Select(s => new State(s, ScheduleClock.For(s)))
            .ToList();
        if (schedules.Count == 0)
        {
            SetSleeping(DateTimeOffset.MaxValue);
            return;
        }
        try
        {
            while (!Engine.IsReady) await Task.Delay(TimeSpan.FromMilliseconds(200), time, stoppingToken); // the silo starts the engine later
            while (!stoppingToken.IsCancellationRequested)
            {
                var now = time.GetUtcNow();
                foreach (var s in schedules)
                {
                    if (!s.Started)
                    {
                        if (s.RetryAt <= now) await StartAsync(s, now, stoppingToken);
                    }
                    else if (s.Next is { } next && next <= now && s.RetryAt <= now)
                    {
                        await FireDueAsync(s, now, startup: false, stoppingToken);
                    }
                }
                var wake = schedules.Where(s => s.Next is not null || !s.Started).Select(s => s.Next is { } n && n > s.RetryAt ? n : s.RetryAt)
                    .DefaultIfEmpty(DateTimeOffset.MaxValue).Min();
                var delay = wake == DateTimeOffset.MaxValue ? MaxSleep : wake - time.GetUtcNow();
                if (delay <= TimeSpan.Zero) continue;
                if (delay > MaxSleep) delay = MaxSleep;
                var sleep = Task.Delay(delay, time, stoppingToken); // armed before anyone may read that we sleep
                SetSleeping(wake);
                await sleep;
                SetSleeping(DateTimeOffset.MinValue);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>At start: the ticks missed since the last one fired (read from the store) follow the catch-up policy.</summary>
    private async Task StartAsync(State s, DateTimeOffset now, CancellationToken cancellationToken)
    {
        DateTimeOffset? last;
        RunRecord? run;
        try
        {
            (last, run) = await LastFiredAsync(Engine.Store, s.Definition, cancellationToken);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            // The store could not be read: try again shortly; the ticks missed meanwhile follow the catch-up policy then.
            Log.StartFailed(_logger, ex, s.Definition.Name);
            s.RetryAt = time.GetUtcNow() + RetryDelay;
            return;
        }
        s.Started = true;
        s.LastRunId = run?.Id;
        if (last is null)
        {
            // Never fired: nothing was missed; the first tick is the next one.
            s.Next = s.Clock.NextAfter(now);
            Log.Starting(_logger, s.Definition.Name, s.Next, null);
            return;
        }
        s.Next = s.Clock.NextAfter(last.Value);
        Log.Starting(_logger, s.Definition.Name, s.Next, last);
        if (s.Next is { } next && next <= now) await FireDueAsync(s, now, startup: true, cancellationToken);
    }

    /// <summary>Fires what is due at <paramref name="now"/>: one tick normally; after downtime (or a host that slept), the catch-up policy.</summary>
    private async Task FireDueAsync(State s, DateTimeOffset now, bool startup, CancellationToken cancellationToken)
    {
        var d = s.Definition;
        var keep = d.CatchUp switch { CatchUpPolicy.All => d.MaxCatchUp, _ => 1 };
        var (count, latest) = s.Clock.Between(s.Next!.Value.AddTicks(-1), now, keep);
        List<DateTimeOffset> fire;
        if (count <= 1 && !startup) fire = latest;
        else
        {
            fire = d.CatchUp switch
            {
                CatchUpPolicy.Skip => [],
                CatchUpPolicy.Once => latest,
                _ => latest,
            };
            Log.CatchingUp(_logger, d.Name, count, WireNames.Of(d.CatchUp), fire.Count);
        }
        foreach (var tick in fire)
        {
            try
            {
                await FireAsync(s, tick, cancellationToken);
            }
            catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                // Not fired: try this tick again shortly (the key makes a second attempt harmless).
                Log.FireFailed(_logger, ex, d.Name, tick);
                s.Next = tick;
                s.RetryAt = time.GetUtcNow() + RetryDelay;
                return;
            }
        }
        s.Next = s.Clock.NextAfter(now);
    }

    private async Task FireAsync(State s, DateTimeOffset tick, CancellationToken cancellationToken)
    {
        var d = s.Definition;
        if (d.Workforce is null && d.Overlap != OverlapPolicy.Allow && s.LastRunId is { } previous
            && await Engine.GetRunAsync(previous, cancellationToken) is { } run && !run.Status.IsTerminal()
            && (d.Overlap == OverlapPolicy.Skip || Engine.IsQueuedHere(previous)))
        {
            // skip: the previous run is unfinished; queue-one: the previous run is itself the one queued (not started yet;
            // the engine knows, the stored status may lag: a run's "running" mark is written without waiting for it).
            Log.SkippedOverlap(_logger, d.Name, tick, previous, run.Status.ToWireName(), WireNames.Of(d.Overlap));
            return;
        }
        var tickText = tick.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);
        using var doc = JsonDocument.Parse(new JsonObject { ["schedule"] = d.Name, ["tick"] = tickText }.ToJsonString());
        var input = TriggerTemplate.InputFor(d, doc.RootElement);
        // queue-one: the schedule's runs execute one at a time, so the one fired while another runs waits behind it.
        var orderingKey = d.Overlap == OverlapPolicy.QueueOne ? "schedule:" + d.Name : d.OrderingKeyFor(doc.RootElement);
        var delivered = await services.GetRequiredService<TriggerIngest>().DeliverAsync(d, d.KeyOf(tick), input, doc.RootElement, orderingKey, cancellationToken);
        if (delivered.Run is { } result)
        {
            s.LastRunId = result.Run.Id;
            Log.Fired(_logger, d.Name, tick, result.Run.Id, result.Created);
        }
        else
        {
            Log.FiredTask(_logger, d.Name, tick, delivered.Task!.Task.Id, delivered.Task.Created);
        }
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "Schedule {Schedule}: next tick {Next:o}, last fired {Last:o}")]
        public static partial void Starting(ILogger logger, string schedule, DateTimeOffset? next, DateTimeOffset? last);

        [LoggerMessage(2, LogLevel.Information, "Schedule {Schedule}: tick {Tick:o} started run {RunId} (new: {Created})")]
        public static partial void Fired(ILogger logger, string schedule, DateTimeOffset tick, string runId, bool created);

        [LoggerMessage(3, LogLevel.Warning, "Schedule {Schedule}: {Missed} ticks missed; catchUp {Policy} fires {Firing}")]
        public static partial void CatchingUp(ILogger logger, string schedule, long missed, string policy, int firing);

        [LoggerMessage(4, LogLevel.Information, "Schedule {Schedule}: tick {Tick:o} skipped, run {RunId} of the previous tick is {Status} (overlap: {Overlap})")]
        public static partial void SkippedOverlap(ILogger logger, string schedule, DateTimeOffset tick, string runId, string status, string overlap);

        [LoggerMessage(7, LogLevel.Information, "Schedule {Schedule}: tick {Tick:o} added workforce task {TaskId} (new: {Created})")]
        public static partial void FiredTask(ILogger logger, string schedule, DateTimeOffset tick, string taskId, bool created);

        [LoggerMessage(6, LogLevel.Error, "Schedule {Schedule}: its last tick could not be read from the store; trying again")]
        public static partial void StartFailed(ILogger logger, Exception exception, string schedule);

        [LoggerMessage(5, LogLevel.Error, "Schedule {Schedule}: tick {Tick:o} could not be fired; trying again")]
        public static partial void FireFailed(ILogger logger, Exception exception, string schedule, DateTimeOffset tick);
    }
}
