using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Bureau.Triggers;

/// <summary>What became of one event for one trigger: a run (new or the one seen before), a workforce task, or a dead letter.</summary>
/// <param name="Trigger">The trigger.</param>
/// <param name="Result">The run, when the trigger starts an agent or team and the event was not dead-lettered.</param>
/// <param name="DeadLetter">The dead letter, when the run (or task) could not be started.</param>
/// <param name="Task">The task, when the trigger targets the workforce and the event was not dead-lettered.</param>
internal sealed record TriggerOutcome(TriggerDefinition Trigger, SubmitResult? Result, DeadLetter? DeadLetter, WorkforceEnqueueResult? Task = null)
{
    /// <summary>Whether this event was new here (a run or task created, or a dead letter kept).</summary>
    public bool Created => Result is { Created: true } || Task is { Created: true } || DeadLetter is not null;
}

/// <summary>What a trigger's target made of one event: the run it started, or the workforce task it added.</summary>
internal readonly record struct TriggerDelivery(SubmitResult? Run, WorkforceEnqueueResult? Task)
{
    public bool Created => Run?.Created ?? Task!.Created;
}

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
    /// <exception cref="WorkforceInboxFullException">The trigger targets the workforce and its inbox is full; nothing was written.</exception>
    public async Task<TriggerOutcome> StartAsync(TriggerDefinition trigger, string key, string? eventId, JsonElement ev, JsonElement? data, CancellationToken cancellationToken)
    {
        // A redelivered event whose run exists is answered as a duplicate, full queue or not.
        if (trigger.Workforce is null) await engine.EnsureQueueRoomAsync(trigger.Agent, key, cancellationToken);
        return await SubmitAsync(trigger, key, eventId, ev, data, cancellationToken);
    }

    /// <summary>
    /// The run queues' limits, for a trigger that starts an agent or team. A workforce target has none here: its inbox is
    /// the buffer (durable; a task waits there until a member has room, and the member's run is bounded by its concurrency),
    /// bounded by its own limit, which the inbox checks as it adds the task (<see cref="WorkforceInboxFullException"/>).
    /// </summary>
    private void EnsureRoom(TriggerDefinition trigger, int count = 1)
    {
        if (trigger.Workforce is null) engine.EnsureQueueRoom(trigger.Agent, count);
    }

    /// <summary>
    /// The one place a trigger's event reaches its target: the agent's (or team's) run is submitted with idempotency key
    /// <paramref name="key"/>, or, for a workforce target, a task (id <see cref="TriggerWorkforceTarget.TaskIdOf"/> of the key,
    /// skill rendered from <paramref name="ev"/>) is added to the inbox, idempotently. Webhooks, topics, polls, schedules and
    /// dead-letter retries all come through here.
    /// </summary>
    /// <exception cref="UnknownAgentException">The agent is not deployed.</exception>
    /// <exception cref="ArgumentException">The request is invalid (an empty input; for a workforce target an empty or unknown skill).</exception>
    /// <exception cref="WorkforceInboxFullException">The workforce's inbox is full; nothing was written (not a dead letter: sending again can work).</exception>
    internal async Task<TriggerDelivery> DeliverAsync(TriggerDefinition trigger, string key, string input, JsonElement ev, string? orderingKey, CancellationToken cancellationToken)
    {
        if (trigger.Workforce is { } target)
        {
            var skill = target.SkillFor(ev);
            if (skill.Length == 0)
                throw new ArgumentException($"trigger '{trigger.Name}': the workforce skill '{target.Skill}' renders empty for this event", nameof(trigger));
            var workforce = services.GetRequiredService<BureauWorkforce>();
            var task = await workforce.SubmitAsync(new WorkforceTaskRequest(skill, input, TriggerWorkforceTarget.TaskIdOf(key), trigger.Actor, trigger.Actor), cancellationToken);
            return new TriggerDelivery(null, task);
        }
        var run = await engine.SubmitAsync(new RunRequest(trigger.Agent, input, key, trigger.Actor)
        {
            Priority = trigger.Priority,
            OrderingKey = orderingKey,
        }, cancellationToken);
        return new TriggerDelivery(run, null);
    }

    /// <summary>What a dead letter records as the target: the agent or team, or <c>workforce:SKILL</c>.</summary>
    private static string TargetName(TriggerDefinition trigger, JsonElement ev) =>
        trigger.Workforce is { } target ? "workforce:" + (target.SkillFor(ev) is { Length: > 0 } skill ? skill : target.Skill) : trigger.Agent;

    private async Task<TriggerOutcome> SubmitAsync(TriggerDefinition trigger, string key, string? eventId, JsonElement ev, JsonElement? data, CancellationToken cancellationToken)
    {
        var input = TriggerTemplate.InputFor(trigger, ev, data);
        try
        {
            var delivered = await DeliverAsync(trigger, key, input, ev, trigger.OrderingKeyFor(ev), cancellationToken);
            return new TriggerOutcome(trigger, delivered.Run, null, delivered.Task);
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
                Agent = TargetName(trigger, ev),
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
    /// checked first: a full one refuses the whole event before anything is written, unless the event was sent before
    /// and every subscriber of that queue already has its run (then each is answered as a duplicate).
    /// </summary>
    /// <exception cref="QueueFullException">A subscriber's queue is full; nothing was written.</exception>
    /// <exception cref="WorkforceInboxFullException">
    /// A subscriber targets the workforce and its inbox is full: the subscribers before it (by name) were delivered, the
    /// rest not; the event sent again delivers only the rest (their keys).
    /// </exception>
    public async Task<IReadOnlyList<TriggerOutcome>> PublishAsync(JsonElement cloudEvent, CancellationToken cancellationToken)
    {
        var id = cloudEvent.GetProperty("id").GetString()!;
        var type = cloudEvent.GetProperty("type").GetString()!;
        var subscribers = Subscribers(type);
        foreach (var group in subscribers.Where(t => t.Workforce is null).GroupBy(t => t.Agent, StringComparer.Ordinal))
        {
            try
            {
                engine.EnsureQueueRoom(group.Key, group.Count());
            }
            catch (QueueFullException)
            {
                // The event sent again needs room only for the subscribers it has not started yet (each key names its run).
                var missing = 0;
                foreach (var trigger in group)
                {
                    if ((await engine.Store.ListRunsAsync(new RunQuery { IdempotencyKey = KeyOf(trigger), Limit = 1 }, cancellationToken)).Items.Count == 0) missing++;
                }
                if (missing > 0) engine.EnsureQueueRoom(group.Key, missing);
            }
        }
        var data = cloudEvent.TryGetProperty("data", out var d) ? d : (JsonElement?)null;
        var outcomes = new List<TriggerOutcome>(subscribers.Count);
        foreach (var trigger in subscribers)
            outcomes.Add(await SubmitAsync(trigger, KeyOf(trigger), id, cloudEvent, data ?? cloudEvent, cancellationToken));
        return outcomes;

        string KeyOf(TopicTriggerDefinition trigger) => $"event:{id}:{trigger.Name}";
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
    /// is marked retried. For a trigger that targets the workforce, the retry adds the task (its id derived from that key;
    /// the dead letter records <c>task:ID</c> as its retry's run). A submission refused again throws and leaves the dead letter as it was.
    /// </summary>
    /// <exception cref="DeadLetterNotFoundException">No such dead letter.</exception>
    /// <exception cref="QueueFullException">The agent's queue is full.</exception>
    /// <exception cref="WorkforceInboxFullException">The workforce's inbox is full; the dead letter is left as it was.</exception>
    public async Task<(DeadLetter Letter, TriggerDelivery Delivered)> RetryAsync(string id, CancellationToken cancellationToken)
    {
        var store = Store ?? throw new InvalidOperationException("this storage keeps no dead letters");
        var letter = await store.GetDeadLetterAsync(id, cancellationToken) ?? throw new DeadLetterNotFoundException(id);
        engine.Definitions.Triggers.TryGetValue(letter.Trigger, out var deployed);
        // A trigger no longer deployed: its run goes to the agent (or workforce skill) the dead letter names, as that trigger would have.
        var trigger = deployed ?? (letter.Agent.StartsWith("workforce:", StringComparison.Ordinal)
            ? new TopicTriggerDefinition { Name = letter.Trigger, Topic = "", Workforce = new TriggerWorkforceTarget { Skill = letter.Agent["workforce:".Length..] } }
            : new TopicTriggerDefinition { Name = letter.Trigger, Agent = letter.Agent, Topic = "" });
        var input = letter.Input;
        using var ev = JsonDocument.Parse(letter.Event ?? "{}");
        if (deployed is not null && letter.Event is not null)
        {
            using var data = letter.Data is { } dataText ? JsonDocument.Parse(dataText) : null;
            input = TriggerTemplate.InputFor(deployed, ev.RootElement, data?.RootElement);
        }
        EnsureRoom(trigger);
        var n = letter.Retries + 1;
        var delivered = await DeliverAsync(trigger, $"{letter.Key}#retry-{n}", input, ev.RootElement, orderingKey: null, cancellationToken);
        var started = delivered.Run?.Run.Id ?? "task:" + delivered.Task!.Task.Id;
        await store.MarkRetriedAsync(letter.Id, n, started, time.GetUtcNow(), cancellationToken);
        Log.Retried(_logger, letter.Id, letter.Trigger, started);
        return ((await store.GetDeadLetterAsync(letter.Id, cancellationToken))!, delivered);
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Warning, "Trigger {Trigger}: the event {Key} could not start a run and is dead letter {DeadLetter}: {Error}")]
        public static partial void DeadLettered(ILogger logger, string trigger, string key, string deadLetter, string error);

        [LoggerMessage(2, LogLevel.Information, "Dead letter {DeadLetter} of trigger {Trigger} retried: run {RunId}")]
        public static partial void Retried(ILogger logger, string deadLetter, string trigger, string runId);
    }
}
