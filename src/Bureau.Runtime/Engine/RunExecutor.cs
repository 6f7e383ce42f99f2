using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Bureau.Tools;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;

namespace Bureau.Engine;

/// <summary>
/// Executes one run: folds its journal, then loops model call → tool calls, journaling each step
/// before the next starts. One executor per run at a time (the run grain, or the local activator);
/// the store's expected-version check rejects a stale one.
/// </summary>
internal sealed partial class RunExecutor
{
    // AIJsonUtilities.DefaultOptions writes indented JSON; journaled arguments are compact (one line, fewer bytes).
    private static readonly JsonTypeInfo CompactArguments = CreateCompactArguments();

    private static JsonTypeInfo CreateCompactArguments()
    {
        var options = new JsonSerializerOptions(AIJsonUtilities.DefaultOptions) { WriteIndented = false };
        options.MakeReadOnly();
        return options.GetTypeInfo(typeof(IDictionary<string, object?>));
    }

    private readonly BureauEngine _engine;
    private readonly string _runId;
    private readonly CancellationToken _cancel;
    private RunState _state = null!;
    private AgentRuntime _agent = null!;
    private string? _inFlight;

    public RunExecutor(BureauEngine engine, string runId, CancellationToken cancel)
    {
        _engine = engine;
        _runId = runId;
        _cancel = cancel;
    }

    private IRunStore Store => _engine.Store;
    private TimeProvider Time => _engine.TimeProvider;

    /// <summary>Runs until the run ends or waits; returns its status then.</summary>
    public async Task<RunStatus> ExecuteAsync()
    {
        var run = await Store.GetRunAsync(_runId, CancellationToken.None)
            ?? throw new InvalidOperationException($"run {_runId} does not exist");
        if (run.Status.IsTerminal()) return run.Status;
        if (!_engine.Agents.TryGetValue(run.Agent, out _agent!))
        {
            _state = new RunState(_runId, null);
            await LoadAsync();
            return await FinishAsync(RunStatus.Failed, null, $"agent '{run.Agent}' is not deployed in this host", "error");
        }

        _state = new RunState(_runId, _agent.Definition.Instructions);
        await LoadAsync();
        if (_state.Finished is { } done) return done.Status;
        if (_state.Waiting is not null) return RunStatus.Waiting;

        try
        {
            if (_state.Version > 1 || run.Status == RunStatus.Running)
            {
                var reason = _state.Resolutions.Count > 0 && run.Status == RunStatus.Queued ? "resolved" : "restart";
                await AppendAsync([new RunResumed(reason)], new RunUpdate { Status = RunStatus.Running, Usage = _state.Usage });
                Log.Resumed(_engine.Logger, _runId, _state.Version, reason);
            }
            else
            {
                _ = MarkRunningAsync();
            }
            return await LoopAsync();
        }
        catch (OperationCanceledException) when (_cancel.IsCancellationRequested)
        {
            return await CancelFinishAsync();
        }
    }

    private async Task MarkRunningAsync()
    {
        try
        {
            await Store.MarkRunningAsync(_runId, Time.GetUtcNow(), CancellationToken.None);
        }
        catch (Exception ex)
        {
            Log.MarkRunningFailed(_engine.Logger, _runId, ex);
        }
    }

    private async Task LoadAsync()
    {
        var journal = await Store.ReadJournalAsync(_runId, 0, CancellationToken.None);
        foreach (var record in journal) _state.Apply(record);
    }

    private async Task<RunStatus> LoopAsync()
    {
        var budgets = _agent.Definition.Budgets;
        var loop = _agent.Definition.LoopDetection;
        while (true)
        {
            _cancel.ThrowIfCancellationRequested();
            if (_engine.IsStopping) return RunStatus.Running;

            // 1. Finish the tool calls of the latest model answer (after a crash, some may be in doubt).
            foreach (var call in _state.Pending)
            {
                if (call.State == CallState.Done) continue;
                var stop = await HandleCallAsync(call, budgets, loop);
                if (stop is not null) return stop.Value;
            }

            // 2. Budgets and progress, before asking the model again.
            if (budgets.MaxSteps is { } maxSteps && _state.Steps >= maxSteps)
                return await BudgetStopAsync("steps", maxSteps, _state.Steps);
            if (budgets.MaxTokens is { } maxTokens && _state.Usage.TotalTokens >= maxTokens)
                return await BudgetStopAsync("tokens", maxTokens, _state.Usage.TotalTokens);
            if (RemainingTime() is { } remaining && remaining <= TimeSpan.Zero)
                return await BudgetStopAsync("time", budgets.MaxWallTime!.Value.TotalSeconds, ActiveTime().TotalSeconds);
            if (loop.MaxTurnsWithoutProgress > 0 && _state.TurnsWithoutProgressNow >= loop.MaxTurnsWithoutProgress)
            {
                var reason = $"{_state.TurnsWithoutProgressNow} turns in a row brought no new information";
                var stop = await LoopFoundAsync(reason, null, null, loop);
                if (stop is not null) return stop.Value;
            }

            // 3. Ask the model; journal its answer before anything it asks for runs.
            var response = await CallModelAsync();
            if (response is null) return RunStatus.Failed;
            var answer = response.Value;
            if (answer.Entry.ToolCalls.Count == 0)
            {
                CrashPoints.Hit("before-finish");
                return await AppendFinishAsync(answer.Entry);
            }
            await AppendAsync([answer.Entry], new RunUpdate { Status = RunStatus.Running, Usage = _state.Usage + answer.Entry.Usage });
            CrashPoints.Hit("after-model-journal");
            if (budgets.MaxTokens is { } maxTok && _state.Usage.TotalTokens > maxTok)
                return await BudgetStopAsync("tokens", maxTok, _state.Usage.TotalTokens);
        }
    }

    private readonly record struct ModelAnswer(ModelResponded Entry);

    private async Task<ModelAnswer?> CallModelAsync()
    {
        var turn = _state.Turns + 1;
        var started = Stopwatch.GetTimestamp();
        ChatResponse response;
        using var timeLimit = RemainingTime() is { } remaining ? new CancellationTokenSource(remaining, Time) : null;
        using var linked = timeLimit is null ? null : CancellationTokenSource.CreateLinkedTokenSource(_cancel, timeLimit.Token);
        var token = linked?.Token ?? _cancel;
        _inFlight = $"model call {turn} ({_agent.ModelName})";
        _engine.Hub.PublishActivity(_runId, "model.started", $"{_agent.ModelLabel} turn {turn}");
        try
        {
            response = await _agent.Client.GetResponseAsync(_state.Messages, _agent.ChatOptions, token);
        }
        catch (OperationCanceledException) when (timeLimit?.IsCancellationRequested == true && !_cancel.IsCancellationRequested)
        {
            await BudgetStopAsync("time", _agent.Definition.Budgets.MaxWallTime!.Value.TotalSeconds, ActiveTime().TotalSeconds);
            return null;
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !_cancel.IsCancellationRequested)
        {
            var message = $"model '{_agent.ModelName}' failed at turn {turn} (run {_runId}, step {_state.Version + 1}): {ex.Message}";
            Log.ModelFailed(_engine.Logger, _runId, _state.Version + 1, ex);
            await FinishAsync(RunStatus.Failed, null, message, "error");
            return null;
        }
        finally
        {
            _inFlight = null;
        }
        CrashPoints.Hit("after-model");
        var elapsed = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        return new ModelAnswer(ToEntry(response, turn, elapsed));
    }

    private ModelResponded ToEntry(ChatResponse response, int turn, double elapsedMs)
    {
        List<ToolCallRecord>? calls = null;
        foreach (var message in response.Messages)
        {
            foreach (var content in message.Contents)
            {
                if (content is FunctionCallContent fc)
                {
                    calls ??= [];
                    var args = fc.Exception is not null || fc.Arguments is null
                        ? (fc.Exception is null ? "{}" : "")
                        : JsonSerializer.Serialize(fc.Arguments, CompactArguments);
                    calls.Add(new ToolCallRecord(string.IsNullOrEmpty(fc.CallId) ? $"call_{turn}_{calls.Count}" : fc.CallId, fc.Name, args));
                }
            }
        }
        var usage = response.Usage is { } u
            ? new UsageRecord(u.InputTokenCount ?? 0, u.OutputTokenCount ?? 0)
            : UsageRecord.Zero;
        var text = response.Text;
        return new ModelResponded(
            turn,
            response.ModelId ?? _agent.ModelLabel,
            _agent.Provider,
            string.IsNullOrEmpty(text) ? null : text,
            (IReadOnlyList<ToolCallRecord>?)calls ?? [],
            usage,
            response.FinishReason?.Value,
            _state.Messages.Count,
            Math.Round(elapsedMs, 3));
    }

    /// <summary>Handles one tool call; returns a status when the run stops (waits, loops, budget).</summary>
    private async Task<RunStatus?> HandleCallAsync(PendingCall call, AgentBudgets budgets, LoopDetectionSettings loop)
    {
        var c = call.Call;
        if (call.State == CallState.Intent)
        {
            return await HandleInDoubtAsync(call);
        }

        if (budgets.MaxSteps is { } maxSteps && _state.Steps >= maxSteps)
            return await BudgetStopAsync("steps", maxSteps, _state.Steps);
        if (loop.MaxRepeatedCalls > 0 && _state.CallCount(c.Name, c.Arguments) + 1 >= loop.MaxRepeatedCalls)
        {
            var reason = $"the model called '{c.Name}' with the same arguments {loop.MaxRepeatedCalls} times";
            var stop = await LoopFoundAsync(reason, c.Name, c.CallId, loop);
            if (stop is not null || call.State == CallState.Done) return stop;
        }

        var check = _agent.Validator.Check(_agent.Definition, c.Name, c.Arguments);
        if (!check.IsValid)
        {
            await AppendAsync([new ToolCallRejected(c.CallId, c.Name, c.Arguments, check.Error!)]);
            Log.CallRejected(_engine.Logger, _runId, _state.Version, c.Name, check.Error!);
            return null;
        }

        var tool = check.Tool!;
        if (tool.Definition.Effect == ToolEffect.Read)
        {
            var step = _state.Version + 1;
            var outcome = await InvokeAsync(tool, c, step, $"{_runId}:{step}", check.Arguments);
            CrashPoints.Hit("after-tool");
            await AppendAsync([new ToolCompleted(c.CallId, c.Name, outcome.Outcome.Content, outcome.Outcome.IsError, outcome.Ms)]);
            CrashPoints.Hit("after-result");
            return null;
        }

        CrashPoints.Hit("before-intent");
        var intentStep = _state.Version + 1;
        var key = $"{_runId}:{intentStep}";
        await AppendAsync([new ToolIntent(c.CallId, c.Name, c.Arguments, tool.Definition.Effect, key)]);
        CrashPoints.Hit("after-intent");
        return await RunIntentAsync(call, tool, check.Arguments);
    }

    private async Task<RunStatus?> RunIntentAsync(PendingCall call, BureauTool tool, JsonElement arguments)
    {
        var c = call.Call;
        var result = await InvokeAsync(tool, c, call.IntentStep, call.IdempotencyKey!, arguments);
        CrashPoints.Hit("after-tool");
        await AppendAsync([new ToolCompleted(c.CallId, c.Name, result.Outcome.Content, result.Outcome.IsError, result.Ms, call.IntentStep)]);
        CrashPoints.Hit("after-result");
        return null;
    }

    private async Task<RunStatus?> HandleInDoubtAsync(PendingCall call)
    {
        var c = call.Call;
        if (_state.Resolutions.TryGetValue(call.IntentStep, out var resolution))
        {
            switch (resolution.Resolution)
            {
                case StepResolution.Done:
                    await AppendAsync([new ToolCompleted(c.CallId, c.Name, resolution.Content ?? $"(a person confirmed the call ran; no result recorded)", false, 0, call.IntentStep)]);
                    return null;
                case StepResolution.Failed:
                    await AppendAsync([new ToolCompleted(c.CallId, c.Name, resolution.Content ?? $"tool '{c.Name}' failed (decided by a person after a crash left the call in doubt)", true, 0, call.IntentStep)]);
                    return null;
            }
            return await RetryInDoubtAsync(call);
        }

        if (!_engine.ToolsByName.TryGetValue(c.Name, out var tool))
        {
            await AppendAsync([new ToolCompleted(c.CallId, c.Name, $"tool '{c.Name}' is no longer deployed; the call's outcome is unknown", true, 0, call.IntentStep)]);
            return null;
        }
        switch (tool.Definition.EffectiveInDoubtAction)
        {
            case InDoubtAction.Retry:
                Log.InDoubtRetry(_engine.Logger, _runId, call.IntentStep, c.Name);
                return await RetryInDoubtAsync(call);
            case InDoubtAction.Fail:
                await AppendAsync([new ToolCompleted(c.CallId, c.Name, $"tool '{c.Name}' was interrupted by a crash; whether it took effect is unknown", true, 0, call.IntentStep)]);
                return null;
            default:
                var waiting = new WaitingFor("in-doubt", call.IntentStep, c.Name, call.IdempotencyKey, c.Arguments);
                await AppendAsync([new RunWaiting(waiting)], new RunUpdate { Status = RunStatus.Waiting, WaitingFor = waiting, Usage = _state.Usage });
                Log.InDoubtWaiting(_engine.Logger, _runId, call.IntentStep, c.Name);
                return RunStatus.Waiting;
        }
    }

    private async Task<RunStatus?> RetryInDoubtAsync(PendingCall call)
    {
        var check = _agent.Validator.Check(_agent.Definition, call.Call.Name, call.Call.Arguments);
        if (!check.IsValid)
        {
            await AppendAsync([new ToolCompleted(call.Call.CallId, call.Call.Name, check.Error!, true, 0, call.IntentStep)]);
            return null;
        }
        return await RunIntentAsync(call, check.Tool!, check.Arguments);
    }

    private readonly record struct TimedOutcome(ToolOutcome Outcome, double Ms);

    private async Task<TimedOutcome> InvokeAsync(BureauTool tool, ToolCallRecord call, long step, string key, JsonElement arguments)
    {
        _inFlight = $"tool '{call.Name}' (step {step}, key {key})";
        _engine.Hub.PublishActivity(_runId, "tool.started", $"{call.Name} step {step}");
        var started = Stopwatch.GetTimestamp();
        try
        {
            var outcome = await tool.InvokeAsync(new ToolInvocation(_runId, step, key, call.Name, arguments), _cancel);
            return new TimedOutcome(outcome, Math.Round(Stopwatch.GetElapsedTime(started).TotalMilliseconds, 3));
        }
        finally
        {
            if (!_cancel.IsCancellationRequested) _inFlight = null; // a cancel journals what was in flight
        }
    }

    private async Task<RunStatus?> LoopFoundAsync(string reason, string? tool, string? callId, LoopDetectionSettings loop)
    {
        if (loop.Action == LoopAction.Warn && !_state.LoopWarned)
        {
            await AppendAsync([new LoopDetected(reason, tool, LoopAction.Warn, callId)]);
            Log.LoopWarned(_engine.Logger, _runId, _state.Version, reason);
            return null;
        }
        Log.LoopStopped(_engine.Logger, _runId, _state.Version, reason);
        return await FinishAsync(RunStatus.Failed, null, $"loop detected: {reason}", "loop", new LoopDetected(reason, tool, LoopAction.Stop, callId));
    }

    private Task<RunStatus> BudgetStopAsync(string budget, double limit, double used)
    {
        var unit = budget switch { "time" => "s", "tokens" => " tokens", _ => " steps" };
        Log.BudgetStopped(_engine.Logger, _runId, _state.Version, budget);
        return FinishAsync(RunStatus.Failed, null, $"budget exceeded: {budget} (limit {limit}{unit}, used {Math.Round(used, 3)}{unit})", "budget",
            new BudgetExceeded(budget, limit, Math.Round(used, 3)));
    }

    private TimeSpan ActiveTime() => Time.GetUtcNow() - _state.StartedAt - _state.TimeWaiting;

    private TimeSpan? RemainingTime() =>
        _agent.Definition.Budgets.MaxWallTime is { } max ? max - ActiveTime() : null;

    private async Task<RunStatus> AppendFinishAsync(ModelResponded answer)
    {
        var usage = _state.Usage + answer.Usage;
        var output = answer.Text ?? "";
        await AppendAsync(
            [answer, new RunFinished(RunStatus.Succeeded, output, null, null)],
            new RunUpdate { Status = RunStatus.Succeeded, Output = output, Usage = usage });
        return RunStatus.Succeeded;
    }

    private async Task<RunStatus> FinishAsync(RunStatus status, string? output, string? error, string? outcome, JournalEntry? cause = null)
    {
        var entries = cause is null
            ? new JournalEntry[] { new RunFinished(status, output, error, outcome) }
            : [cause, new RunFinished(status, output, error, outcome)];
        await AppendAsync(entries, new RunUpdate { Status = status, Output = output, Error = error, Outcome = outcome, Usage = _state.Usage });
        return status;
    }

    private async Task<RunStatus> CancelFinishAsync()
    {
        var inFlight = _inFlight is null ? Array.Empty<string>() : [_inFlight];
        var (actor, reason) = _engine.TakeCancelReason(_runId);
        var error = $"canceled{(actor is null ? "" : " by " + actor)}{(reason is null ? "" : ": " + reason)}";
        await AppendAsync(
            [new RunCanceled(reason, actor, inFlight), new RunFinished(RunStatus.Canceled, null, error, "canceled")],
            new RunUpdate { Status = RunStatus.Canceled, Error = error, Outcome = "canceled", Usage = _state.Usage });
        Log.Canceled(_engine.Logger, _runId, _state.Version);
        return RunStatus.Canceled;
    }

    /// <summary>Appends entries (numbered after the current version), then folds them in. Never canceled midway.</summary>
    private async ValueTask AppendAsync(JournalEntry[] entries, RunUpdate? update = null)
    {
        var at = Time.GetUtcNow();
        var request = new AppendRequest { RunId = _runId, ExpectedVersion = _state.Version, Entries = entries, At = at, Update = update };
        await Store.AppendAsync(request, CancellationToken.None);
        var records = new JournalRecord[entries.Length];
        for (var i = 0; i < entries.Length; i++)
        {
            records[i] = new JournalRecord(_state.Version + 1, at, entries[i]);
            _state.Apply(records[i]);
        }
        _engine.Hub.Publish(_runId, records);
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "Run {RunId} resumed from its journal at step {Step} ({Reason})")]
        public static partial void Resumed(ILogger logger, string runId, long step, string reason);

        [LoggerMessage(2, LogLevel.Warning, "Run {RunId} step {Step}: the model failed")]
        public static partial void ModelFailed(ILogger logger, string runId, long step, Exception ex);

        [LoggerMessage(3, LogLevel.Information, "Run {RunId} step {Step}: call of '{Tool}' rejected before running: {Error}")]
        public static partial void CallRejected(ILogger logger, string runId, long step, string tool, string error);

        [LoggerMessage(4, LogLevel.Warning, "Run {RunId} step {Step}: '{Tool}' was in doubt after a crash; re-running it with the same idempotency key")]
        public static partial void InDoubtRetry(ILogger logger, string runId, long step, string tool);

        [LoggerMessage(5, LogLevel.Warning, "Run {RunId} step {Step}: '{Tool}' is a write that was in doubt after a crash; the run waits for a person (bureau runs resolve)")]
        public static partial void InDoubtWaiting(ILogger logger, string runId, long step, string tool);

        [LoggerMessage(6, LogLevel.Warning, "Run {RunId} step {Step}: loop detected, model warned: {Reason}")]
        public static partial void LoopWarned(ILogger logger, string runId, long step, string reason);

        [LoggerMessage(7, LogLevel.Warning, "Run {RunId} step {Step}: loop detected, run stopped: {Reason}")]
        public static partial void LoopStopped(ILogger logger, string runId, long step, string reason);

        [LoggerMessage(8, LogLevel.Warning, "Run {RunId} step {Step}: {Budget} budget exceeded, run stopped")]
        public static partial void BudgetStopped(ILogger logger, string runId, long step, string budget);

        [LoggerMessage(9, LogLevel.Information, "Run {RunId} step {Step}: canceled")]
        public static partial void Canceled(ILogger logger, string runId, long step);

        [LoggerMessage(10, LogLevel.Debug, "Run {RunId}: marking it running failed")]
        public static partial void MarkRunningFailed(ILogger logger, string runId, Exception ex);
    }
}
