using System.Threading.Channels;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Bureau.Triggers;

/// <summary>
/// Makes a dead letter of every failed run that a trigger started (a top-level run whose actor is <c>trigger:NAME</c>
/// and that has an idempotency key): the event's handling failed after the run's own retries. It listens to runs
/// finishing; at start it also goes over the latest failed runs (<see cref="SweepLimit"/>), so a failure journaled
/// just before a crash still becomes a dead letter. Adding one is idempotent (by the run's key).
/// </summary>
internal sealed partial class DeadLetterRecorder(IServiceProvider services, TimeProvider time, ILoggerFactory loggerFactory) : BackgroundService
{
    /// <summary>How many of the latest failed runs the start goes over.</summary>
    internal const int SweepLimit = 500;

    private readonly ILogger _logger = loggerFactory.CreateLogger("Bureau.Events");
    private readonly Channel<string> _failed = Channel.CreateUnbounded<string>(new UnboundedChannelOptions { SingleReader = true });

    internal static void Register(IServiceCollection services)
    {
        if (services.Any(d => d.ServiceType == typeof(DeadLetterRecorder))) return;
        services.AddSingleton<DeadLetterRecorder>();
        services.AddHostedService(sp => sp.GetRequiredService<DeadLetterRecorder>());
    }

    /// <summary>Whether <paramref name="run"/> was started by a trigger for an event.</summary>
    internal static bool IsTriggered(RunRecord run) =>
        run.ParentRunId is null && run.IdempotencyKey is not null && run.Actor is { } a && a.StartsWith("trigger:", StringComparison.Ordinal);

    /// <summary>The dead letter of a failed triggered run.</summary>
    internal static DeadLetter For(RunRecord run, DateTimeOffset at)
    {
        var trigger = run.Actor!["trigger:".Length..];
        var key = run.IdempotencyKey!;
        return new DeadLetter
        {
            Id = DeadLetter.IdOf(key),
            Key = key,
            Trigger = trigger,
            EventId = EventIdOf(key, trigger),
            Reason = DeadLetterReasons.RunFailed,
            Agent = run.Agent,
            Input = run.Input,
            Error = run.Error ?? "the run failed",
            RunId = run.Id,
            At = at,
        };
    }

    /// <summary>
    /// The event id in a trigger's key: <c>trigger:NAME:ID</c>, <c>schedule:NAME:TICK</c>, <c>poll:NAME:CURSOR</c>, <c>event:ID:NAME</c>,
    /// each also as the run of a workforce task added for the event (<c>workforce:</c> + the key).
    /// </summary>
    internal static string? EventIdOf(string key, string trigger)
    {
        if (key.StartsWith("workforce:", StringComparison.Ordinal)) key = key["workforce:".Length..];
        var retry = key.IndexOf("#retry-", StringComparison.Ordinal);
        if (retry >= 0) key = key[..retry];
        foreach (var kind in (string[])["trigger:", "schedule:", "poll:"])
        {
            var prefix = kind + trigger + ":";
            if (key.StartsWith(prefix, StringComparison.Ordinal)) return key[prefix.Length..];
        }
        var suffix = ":" + trigger;
        return key.StartsWith("event:", StringComparison.Ordinal) && key.EndsWith(suffix, StringComparison.Ordinal) && key.Length > 6 + suffix.Length
            ? key[6..^suffix.Length] : null;
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (services.GetService<IEventStore>() is not { } store) return;
        var engine = services.GetRequiredService<BureauEngine>();
        using var subscription = engine.Events.SubscribeAll(e =>
        {
            if (e.Record?.Entry is RunFinished { Status: RunStatus.Failed }) _failed.Writer.TryWrite(e.RunId);
        });
        try
        {
            var page = await engine.Store.ListRunsAsync(new RunQuery { Status = RunStatus.Failed, Limit = SweepLimit }, stoppingToken);
            foreach (var run in page.Items) await RecordAsync(store, run, stoppingToken);
            _swept.TrySetResult();
            await foreach (var runId in _failed.Reader.ReadAllAsync(stoppingToken))
            {
                try
                {
                    if (await engine.Store.GetRunAsync(runId, stoppingToken) is { } run) await RecordAsync(store, run, stoppingToken);
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    Log.RecordFailed(_logger, runId, ex); // the next start's sweep finds it again
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    private readonly TaskCompletionSource _swept = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Completes once the start's sweep over the latest failed runs is done. For tests.</summary>
    internal Task Swept => _swept.Task;

    /// <summary>Raised after a failed run's dead letter is stored (or found stored). For tests.</summary>
    internal event Action<DeadLetter>? Recorded;

    private async Task RecordAsync(IEventStore store, RunRecord run, CancellationToken ct)
    {
        if (run.Status != RunStatus.Failed || !IsTriggered(run)) return;
        var letter = For(run, time.GetUtcNow());
        if (await store.AddDeadLetterAsync(letter, ct)) Log.RunDeadLettered(_logger, run.Id, letter.Trigger, letter.Id);
        Recorded?.Invoke(letter);
    }

    private static partial class Log
    {
        [LoggerMessage(10, LogLevel.Warning, "Run {RunId} started by trigger {Trigger} failed; its event is dead letter {DeadLetter}")]
        public static partial void RunDeadLettered(ILogger logger, string runId, string trigger, string deadLetter);

        [LoggerMessage(11, LogLevel.Warning, "Run {RunId}: recording its dead letter failed; the next start tries again")]
        public static partial void RecordFailed(ILogger logger, string runId, Exception ex);
    }
}
