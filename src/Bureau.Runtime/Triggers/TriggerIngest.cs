using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Bureau.Triggers;

/// <summary>What became of one event for one trigger: a run (new or the one seen before), or a dead letter.</summary>
/// <param name="Trigger">The trigger.</param>
/// <param name="Result">The run, unless the event was dead-lettered.</param>
/// <param name="DeadLetter">The dead letter, when the run could not be started.</param>
internal sealed record TriggerOutcome(TriggerDefinition Trigger, SubmitResult? Result, DeadLetter? DeadLetter);

/// <summary>
/// Where every trigger's events enter (webhooks, <c>POST /v1/events</c>, the <c>emit</c> tool, poll triggers): the queue
/// limits are checked before anything is written (<see cref="QueueFullException"/>: the edge answers 429), then the
/// run is submitted with the event's idempotency key; a submission refused for a reason that sending the event again
/// cannot fix (an empty input, an agent no longer deployed, an invalid request) goes to the dead-letter store, durably,
/// instead of being lost. Dead letters are retried from here too.
/// </summary>
internal sealed partial class TriggerIngest(BureauEngine engine, IServiceProvider services, TimeProvider time, ILoggerFactory loggerFactory)
{
    private readonly ILogger _logger = loggerFactory.CreateLogger("Bureau.Events");

    /// <summary>The dead-letter store, or null when the storage has none.</summary>
    public IEventStore? Store => services.GetService<IEventStore>();

    public BureauEngine Engine => engine;

    /// <summary>
    /// Starts <paramref name="trigger"/>'s run for an event (input rendered from <paramref name="ev"/>, or
    /// <paramref name="data"/> without a template), with idempotency key <paramref name="key"/>.
    /// </summary>
    /// <exception cref="QueueFullException">The agent's (or the global) queue is full; nothing was written.</exception>
    public async Task<TriggerOutcome> StartAsync(TriggerDefinition trigger, string key, string? eventId, JsonElement ev, JsonElement? data, CancellationToken cancellationToken)
    {
        engine.EnsureQueueRoom(trigger.Agent);
        return await SubmitAsync(trigger, key, eventId, ev, data, cancellationToken);
    }

    private async Task<TriggerOutcome> SubmitAsync(TriggerDefinition trigger, string key, string? eventId, JsonElement ev, JsonElement? data, CancellationToken cancellationToken)
    {
        var input = TriggerTemplate.InputFor(trigger, ev, data);
        try
        {
            var result = await engine.SubmitAsync(new RunRequest(trigger.Agent, input, key, trigger.Actor)
            {
                Priority = trigger.Priority,
                OrderingKey = trigger.OrderingKeyFor(ev),
            }, cancellationToken);
            return new TriggerOutcome(trigger, result, null);
        }
        catch (Exception ex) when (ex is UnknownAgentException or ArgumentException && Store is not null)
        {
            var letter = new DeadLetter
            {
                Id = DeadLetter.IdOf(key),
                Key = key,
                Trigger = trigger.Name,
                EventId = eventId,
                Reason = DeadLetterReasons.Refused,
                Agent = trigger.Agent,
                Input = input,
                Event = ev.GetRawText(),
                Data = data?.GetRawText(),
                Error = ex.Message.Split(" (Parameter")[0],
                At = time.GetUtcNow(),
            };
            if (await Store!.AddDeadLetterAsync(letter, cancellationToken))
                Log.DeadLettered(_logger, trigger.Name, key, letter.Id, letter.Error);
            return new TriggerOutcome(trigger, null, await Store.GetDeadLetterAsync(letter.Id, cancellationToken) ?? letter);
        }
    }

    /// <summary>
    /// Publishes a CloudEvent (a JSON object with at least <c>id</c> and <c>type</c>) to the topic triggers subscribed
    /// to its type, in trigger-name order, each with the key <c>event:ID:TRIGGER</c>. The queues of every subscriber are
    /// checked first: a full one refuses the whole event before anything is written.
    /// </summary>
    /// <exception cref="QueueFullException">A subscriber's queue is full; nothing was written.</exception>
    public async Task<IReadOnlyList<TriggerOutcome>> PublishAsync(JsonElement cloudEvent, CancellationToken cancellationToken)
    {
        var id = cloudEvent.GetProperty("id").GetString()!;
        var type = cloudEvent.GetProperty("type").GetString()!;
        var subscribers = Subscribers(type);
        foreach (var group in subscribers.GroupBy(t => t.Agent, StringComparer.Ordinal)) engine.EnsureQueueRoom(group.Key, group.Count());
        var data = cloudEvent.TryGetProperty("data", out var d) ? d : (JsonElement?)null;
        var outcomes = new List<TriggerOutcome>(subscribers.Count);
        foreach (var trigger in subscribers)
            outcomes.Add(await SubmitAsync(trigger, $"event:{id}:{trigger.Name}", id, cloudEvent, data ?? cloudEvent, cancellationToken));
        return outcomes;
    }

    /// <summary>The topic triggers subscribed to <paramref name="type"/>, by name.</summary>
    public List<TopicTriggerDefinition> Subscribers(string type) =>
        engine.Definitions.Triggers.Values.OfType<TopicTriggerDefinition>()
            .Where(t => string.Equals(t.Topic, type, StringComparison.Ordinal))
            .OrderBy(t => t.Name, StringComparer.Ordinal)
            .ToList();

    /// <summary>
    /// Retries a dead letter: the input is rendered again from the kept event with the trigger as deployed now (a
    /// fixed template, a redeployed agent), or for a failed run its input is used again; the run is submitted with the
    /// key <c>KEY#retry-N</c> (N: this retry's number, so retrying twice at once starts one run), then the dead letter
    /// is marked retried. A submission refused again throws and leaves the dead letter as it was.
    /// </summary>
    /// <exception cref="DeadLetterNotFoundException">No such dead letter.</exception>
    /// <exception cref="QueueFullException">The agent's queue is full.</exception>
    public async Task<(DeadLetter Letter, SubmitResult Result)> RetryAsync(string id, CancellationToken cancellationToken)
    {
        var store = Store ?? throw new InvalidOperationException("this storage keeps no dead letters");
        var letter = await store.GetDeadLetterAsync(id, cancellationToken) ?? throw new DeadLetterNotFoundException(id);
        engine.Definitions.Triggers.TryGetValue(letter.Trigger, out var trigger);
        var agent = trigger?.Agent ?? letter.Agent;
        var input = letter.Input;
        if (trigger is not null && letter.Event is { } evText)
        {
            using var ev = JsonDocument.Parse(evText);
            using var data = letter.Data is { } dataText ? JsonDocument.Parse(dataText) : null;
            input = TriggerTemplate.InputFor(trigger, ev.RootElement, data?.RootElement);
        }
        engine.EnsureQueueRoom(agent);
        var n = letter.Retries + 1;
        var result = await engine.SubmitAsync(new RunRequest(agent, input, $"{letter.Key}#retry-{n}", trigger?.Actor ?? "trigger:" + letter.Trigger)
        {
            Priority = trigger?.Priority ?? 0,
        }, cancellationToken);
        await store.MarkRetriedAsync(letter.Id, n, result.Run.Id, time.GetUtcNow(), cancellationToken);
        Log.Retried(_logger, letter.Id, letter.Trigger, result.Run.Id);
        return ((await store.GetDeadLetterAsync(letter.Id, cancellationToken))!, result);
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Warning, "Trigger {Trigger}: the event {Key} could not start a run and is dead letter {DeadLetter}: {Error}")]
        public static partial void DeadLettered(ILogger logger, string trigger, string key, string deadLetter, string error);

        [LoggerMessage(2, LogLevel.Information, "Dead letter {DeadLetter} of trigger {Trigger} retried: run {RunId}")]
        public static partial void Retried(ILogger logger, string deadLetter, string trigger, string runId);
    }
}
