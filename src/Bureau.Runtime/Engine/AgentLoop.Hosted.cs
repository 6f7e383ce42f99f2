using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;
using System.Text.Json;
using Bureau.Resilience;
using Microsoft.Extensions.AI;

namespace Bureau.Engine;

/// <summary>
/// An agent whose loop another framework runs (a Microsoft Agent Framework agent: Bureau.AgentFramework registers it).
/// <see cref="Run"/> is given the run's durable model client and tools and the run's input, and answers the output.
/// The durable client journals each model call (and on resume answers the journaled ones again without calling the
/// model); each tool goes through the agent loop's call handling (validation, loop detection, policies and approvals,
/// intent and idempotency key, the tool pipeline) and on resume answers the journaled result. docs/decisions/0042.
/// </summary>
internal sealed record HostedAgentLoop(string Agent, Func<IChatClient, IReadOnlyList<AITool>, string, CancellationToken, Task<string>> Run);

/// <summary>The agent loop's steps driven by a hosted agent: it decides when to call the model and the tools, Bureau makes each call durable.</summary>
internal sealed partial class AgentLoop
{
    /// <summary>What a hosted execution keeps (made only for a hosted agent's run).</summary>
    private sealed class HostedRun
    {
        /// <summary>One model or tool call at a time: the run's state is not shared.</summary>
        public SemaphoreSlim Gate { get; } = new(1, 1);
        /// <summary>The model answers journaled before this execution, in order.</summary>
        public List<ModelResponded> Journaled { get; } = [];
        /// <summary>Every call's journaled result, by (model turn, call id).</summary>
        public Dictionary<(int Turn, string CallId), string> Results { get; } = [];
        public int FoldTurn { get; set; }
        /// <summary>The model calls the hosted agent made in this execution.</summary>
        public int Turn { get; set; }
    }

    private HostedRun? _hostedRun;
    private CancellationTokenSource? _hostedStop;
    private RunStatus? _hostedEnd;
    private ExceptionDispatchInfo? _hostedFault;

    private HostedRun Hosted => _hostedRun!;

    private async Task<RunStatus> HostedLoopAsync(HostedAgentLoop host)
    {
        _hostedRun = new HostedRun();
        // Model answers journaled before this execution are answered again, in order; tool results by (turn, call id).
        foreach (var record in _run.Journal)
        {
            if (record.Entry is ModelResponded m) Hosted.Journaled.Add(m);
            TrackHosted(record);
        }
        var fold = _run.Fold;
        _run.Fold = r =>
        {
            fold?.Invoke(r);
            TrackHosted(r);
        };

        using var stop = CancellationTokenSource.CreateLinkedTokenSource(_cancel);
        _hostedStop = stop;
        var tools = (_agent.ChatOptions.Tools ?? []).OfType<AIFunctionDeclaration>().Select(d => (AITool)new HostedTool(this, d)).ToList();
        string output;
        try
        {
            output = await host.Run(new HostedChatClient(this), tools, _state.Input, stop.Token);
        }
        catch (Exception) when (_hostedFault is not null || _hostedEnd is not null)
        {
            output = "";
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !_cancel.IsCancellationRequested)
        {
            var step = _state.Version + 1;
            return await FinishAsync(RunStatus.Failed, null, $"agent '{_agent.Definition.Name}' (hosted) failed (run {_runId}, step {step}): {ex.GetType().Name}: {ex.Message}", "error",
                failure: new RunFailure("internal", null, step, "agent:" + _agent.Definition.Name, null,
                    "the hosted agent threw outside a model or tool call: see the error; its journaled steps are kept and are not repeated when the run is started again"));
        }
        _hostedFault?.Throw();
        if (_hostedEnd is { } end) return end;
        _cancel.ThrowIfCancellationRequested();
        _run.CrashPoints.Hit("before-finish");
        await AppendAsync([new RunFinished(RunStatus.Succeeded, output, null, null)], new RunUpdate { Status = RunStatus.Succeeded, Output = output, Usage = _state.Usage });
        return RunStatus.Succeeded;
    }

    private void TrackHosted(JournalRecord record)
    {
        switch (record.Entry)
        {
            case ModelResponded:
                Hosted.FoldTurn++;
                break;
            case ToolCompleted t:
                Hosted.Results[(Hosted.FoldTurn, t.CallId)] = t.Content;
                break;
            case ToolCallRejected r:
                Hosted.Results[(Hosted.FoldTurn, r.CallId)] = r.Error;
                break;
            case LoopDetected { Action: LoopAction.Warn, CallId: { } callId } l:
                Hosted.Results[(Hosted.FoldTurn, callId)] = RunState.WarningText(l);
                break;
        }
    }

    /// <summary>One model call of the hosted agent: the journaled answer of that turn, else a call through the model pipeline, journaled before it is answered.</summary>
    private async Task<ChatResponse> HostedModelCallAsync(IEnumerable<ChatMessage> messages, ChatOptions? options)
    {
        await Hosted.Gate.WaitAsync(_cancel);
        try
        {
            var turn = ++Hosted.Turn;
            if (turn <= Hosted.Journaled.Count) return ResponseOf(Hosted.Journaled[turn - 1]);

            _cancel.ThrowIfCancellationRequested();
            if (_run.IsStopping) throw StopHosted(RunStatus.Running);
            foreach (var tool in options?.Tools ?? [])
            {
                if (tool is not HostedTool)
                    throw await FailHostedAsync($"run {_runId}: the hosted agent '{_agent.Definition.Name}' offers the model tool '{tool.Name}', which Bureau did not hand it: its calls would be neither journaled nor governed. Define it as a Bureau tool (AddTool or a manifest), list it in the agent's tools, and give the agent the tools its factory receives");
            }
            // A call of the latest answer the agent did not make (its framework refused it): the journal says so.
            foreach (var pending in _state.Pending.ToList())
            {
                if (pending.State == CallState.NotStarted)
                    await RejectAsync(pending.Call, $"the hosted agent '{_agent.Definition.Name}' did not call '{pending.Call.Name}'; it did not run");
            }
            if (Budgets.Check(_agent.Definition.Budgets, _state, ActiveTime(), BudgetPoint.BeforeModel) is { } exceeded)
                throw StopHosted(await BudgetStopAsync(exceeded));
            var loop = _agent.Definition.LoopDetection;
            if (loop.MaxTurnsWithoutProgress > 0 && _state.TurnsWithoutProgressNow >= loop.MaxTurnsWithoutProgress
                && await LoopFoundAsync($"{_state.TurnsWithoutProgressNow} turns in a row brought no new information", null, null, loop) is { } looped)
                throw StopHosted(looped);

            var request = messages as IList<ChatMessage> ?? [.. messages];
            var chat = BureauTelemetry.ObservesModelCalls ? ChatTelemetry.Start(_agent, _runId, _state.Turns + 1) : null;
            var answer = await CallModelAsync(request, options);
            chat?.End(answer?.Entry, _run.Engine.Options.Telemetry.CaptureContent);
            if (answer is null) throw StopHosted(_state.Finished?.Status ?? RunStatus.Failed);
            var entry = answer.Value.Entry;
            await AppendAsync([entry], new RunUpdate { Status = RunStatus.Running, Usage = _state.Usage + entry.Usage });
            _run.CrashPoints.Hit("after-model-journal");
            if (entry.ToolCalls.Count > 0 && Budgets.Check(_agent.Definition.Budgets, _state, ActiveTime(), BudgetPoint.AfterModel) is { } over)
                throw StopHosted(await BudgetStopAsync(over));
            return ResponseOf(entry);
        }
        finally
        {
            Hosted.Gate.Release();
        }
    }

    /// <summary>One tool call of the hosted agent (named by the call id of the model answer it answers): its journaled result, else the agent loop's handling of the call.</summary>
    private async Task<string> HostedToolCallAsync(string name, string? callId)
    {
        await Hosted.Gate.WaitAsync(_cancel);
        try
        {
            var turn = Hosted.Turn;
            if (callId is null || turn == 0)
                throw await FailHostedAsync($"run {_runId}: the hosted agent '{_agent.Definition.Name}' called tool '{name}' outside a model answer; Bureau runs a tool only for a call the model asked for (through the agent's function invocation)");
            if (Hosted.Results.TryGetValue((turn, callId), out var journaled)) return journaled;
            var call = turn == _state.Turns ? _state.Pending.Find(p => p.Call.CallId == callId && p.Call.Name == name) : null;
            if (call is null)
                throw await FailHostedAsync($"run {_runId}: the hosted agent '{_agent.Definition.Name}' called '{name}' (call '{callId}') at model turn {turn}, which the journal's answer of that turn did not ask for: the agent does not behave as it did when the journal was written");
            if (call.State != CallState.Done && await HandleCallAsync(call, _agent.Definition.LoopDetection) is { } stop)
                throw StopHosted(stop);
            return Hosted.Results.TryGetValue((turn, callId), out var result)
                ? result
                : throw new InvalidOperationException($"run {_runId}: call '{callId}' of '{name}' ended without a journaled result");
        }
        finally
        {
            Hosted.Gate.Release();
        }
    }

    /// <summary>The run stops here (it waits, or it ended): the hosted agent's call is canceled; the executor answers <paramref name="status"/>.</summary>
    private OperationCanceledException StopHosted(RunStatus status)
    {
        _hostedEnd = status;
        _hostedStop!.Cancel();
        return new OperationCanceledException($"run {_runId} stopped the hosted agent: the run is {status.ToWireName()}", _hostedStop.Token);
    }

    /// <summary>The hosted agent did what Bureau cannot make durable (a foreign tool, a call the journal does not have): the run fails, saying what.</summary>
    private async Task<OperationCanceledException> FailHostedAsync(string error)
    {
        var status = await FinishAsync(RunStatus.Failed, null, error, "error",
            failure: new RunFailure("internal", null, _state.Version + 1, "agent:" + _agent.Definition.Name, null,
                "a hosted agent must call only the tools its factory is given, each for a call of the model's answer, and call them as it did before a restart"));
        return StopHosted(status);
    }

    /// <summary>
    /// Whatever else failed inside a model or tool call (the store, a crash point) is raised by the executor as the
    /// agent loop would raise it: a hosted framework might otherwise hand it to the model as a tool error.
    /// </summary>
    private OperationCanceledException FaultHosted(Exception ex)
    {
        _hostedFault ??= ExceptionDispatchInfo.Capture(ex);
        _hostedStop!.Cancel();
        return new OperationCanceledException($"run {_runId}: {ex.Message}", ex, _hostedStop.Token);
    }

    private bool HostedStopped => _hostedEnd is not null || _hostedFault is not null;

    private static ChatResponse ResponseOf(ModelResponded m) => new(RunState.ToAssistantMessage(m))
    {
        ModelId = m.Model,
        FinishReason = m.FinishReason is { } f ? new ChatFinishReason(f) : null,
        Usage = new UsageDetails { InputTokenCount = m.Usage.InputTokens, OutputTokenCount = m.Usage.OutputTokens, TotalTokenCount = m.Usage.TotalTokens },
    };

    /// <summary>The model client a hosted agent is given: every call a durable step of the run.</summary>
    private sealed class HostedChatClient(AgentLoop loop) : IChatClient
    {
        public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
        {
            ArgumentNullException.ThrowIfNull(messages);
            try
            {
                return await loop.HostedModelCallAsync(messages, options);
            }
            catch (OperationCanceledException) when (loop.HostedStopped || loop._cancel.IsCancellationRequested)
            {
                throw;
            }
            catch (Exception ex)
            {
                throw loop.FaultHosted(ex);
            }
        }

        public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
            [EnumeratorCancellation] CancellationToken cancellationToken = default)
        {
            // The journal's granularity: a model call is one step, answered once it is durable.
            var response = await GetResponseAsync(messages, options, cancellationToken);
            foreach (var update in response.ToChatResponseUpdates()) yield return update;
        }

        public object? GetService(Type serviceType, object? serviceKey = null) =>
            serviceKey is null && serviceType.IsInstanceOfType(this) ? this : null;

        public void Dispose()
        {
        }
    }

    /// <summary>A Bureau tool as a hosted agent sees it: its declaration, and each call handled by the agent loop under the call id of the model's answer.</summary>
    private sealed class HostedTool(AgentLoop loop, AIFunctionDeclaration declaration) : AIFunction
    {
        public override string Name => declaration.Name;
        public override string Description => declaration.Description;
        public override JsonElement JsonSchema => declaration.JsonSchema;
        public override JsonElement? ReturnJsonSchema => null;

        protected override async ValueTask<object?> InvokeCoreAsync(AIFunctionArguments arguments, CancellationToken cancellationToken)
        {
            // The arguments are the journaled call's (the model answer the agent got came from the journal), found by its call id.
            var callId = FunctionInvokingChatClient.CurrentContext?.CallContent.CallId;
            try
            {
                return await loop.HostedToolCallAsync(Name, callId);
            }
            catch (OperationCanceledException) when (loop.HostedStopped || loop._cancel.IsCancellationRequested)
            {
                throw;
            }
            catch (Exception ex)
            {
                throw loop.FaultHosted(ex);
            }
        }
    }
}
