using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Bureau.Governance;
using Bureau.Resilience;
using Bureau.Tools;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;

namespace Bureau.Engine;

/// <summary>
/// The <c>agent</c> run kind: an agent loop of model calls and tool calls until the model answers.
/// Holds what every run of every agent shares (models, tools, the tool pipeline), built once.
/// </summary>
internal sealed class AgentRunExecutor : IRunExecutor
{
    private readonly BureauDeployment _deployment;
    private readonly ToolFactory _toolFactory;
    private volatile Deployed _current;
    private readonly Lock _rebuild = new();

    /// <summary>The agents and tools built from one set of definitions.</summary>
    private sealed record Deployed(BureauDefinitions Source, IReadOnlyDictionary<string, AgentRuntime> Agents, IReadOnlyDictionary<string, BureauTool> ToolsByName);

    public AgentRunExecutor(BureauDeployment deployment, ModelGateway models, ToolFactory toolFactory, IEnumerable<IToolCallFilter> filters, ILoggerFactory loggerFactory,
        IEnumerable<HostedAgentLoop>? hosted = null)
    {
        Models = models;
        _deployment = deployment;
        _toolFactory = toolFactory;
        var definitions = deployment.Definitions;
        Logger = loggerFactory.CreateLogger("Bureau.Engine");
        _current = Build(definitions, null);
        Targets = [.. _current.Agents.Keys];
        var hostedLoops = new Dictionary<string, HostedAgentLoop>(StringComparer.Ordinal);
        foreach (var h in hosted ?? [])
        {
            if (!_current.Agents.ContainsKey(h.Agent))
                throw new ArgumentException($"an agent loop is hosted for agent '{h.Agent}' (AddAgentFrameworkAgent), but no agent '{h.Agent}' is defined: define it (model, tools, budgets) in a manifest or with AddAgent", nameof(hosted));
            hostedLoops[h.Agent] = h;
        }
        Hosted = hostedLoops;
        Pipeline = new ToolPipeline(filters);
        Policies = definitions.Policies;
    }

    /// <summary>
    /// Why <paramref name="arguments"/> cannot replace the arguments of a call of <paramref name="tool"/> by
    /// <paramref name="agent"/> (not JSON, not an object, not the tool's schema), or null when they can, or when the tool is
    /// not one of the deployment's (a memory tool: its edit is checked when the run resumes).
    /// </summary>
    internal string? EditedArgumentsProblem(string agent, string tool, string arguments)
    {
        var current = Current;
        if (!current.Agents.TryGetValue(agent, out var runtime) || !current.ToolsByName.ContainsKey(tool)) return null;
        var check = runtime.Validator.Check(runtime.Definition, tool, arguments);
        return check.IsValid ? null : check.Error;
    }

    /// <summary>
    /// The deployment as built now: rebuilt when the definitions were replaced (an MCP server's tools listed after
    /// start). A run takes its agent at its start (or resume), so its tool list does not change while it runs.
    /// </summary>
    private Deployed Current
    {
        get
        {
            var current = _current;
            var definitions = _deployment.Definitions;
            if (ReferenceEquals(current.Source, definitions)) return current;
            lock (_rebuild)
            {
                if (!ReferenceEquals(_current.Source, definitions)) _current = Build(definitions, _current);
                return _current;
            }
        }
    }

    private Deployed Build(BureauDefinitions definitions, Deployed? previous)
    {
        var tools = new Dictionary<string, BureauTool>(StringComparer.Ordinal);
        foreach (var t in definitions.Tools.Values)
            tools[t.Name] = previous?.ToolsByName.GetValueOrDefault(t.Name) is { } same && ReferenceEquals(same.Definition, t) ? same : _toolFactory.Create(t);
        var validator = new ToolCallValidator(tools);
        var agents = new Dictionary<string, AgentRuntime>(StringComparer.Ordinal);
        foreach (var a in definitions.Agents.Values)
        {
            if (!definitions.Models.TryGetValue(a.Model, out var model))
                throw new ArgumentException($"agent '{a.Name}': model '{a.Model}' is not defined", nameof(definitions));
            var agentTools = new List<BureauTool>();
            foreach (var name in a.Tools)
            {
                if (!tools.TryGetValue(name, out var tool))
                    throw new ArgumentException($"agent '{a.Name}': tool '{name}' is not defined", nameof(definitions));
                agentTools.Add(tool);
            }
            var delegates = new List<AITool>();
            foreach (var d in a.Delegates)
            {
                if (!definitions.Agents.TryGetValue(d, out var callee))
                    throw new ArgumentException($"agent '{a.Name}': delegate '{d}' is not an agent", nameof(definitions));
                delegates.Add(Delegation.Declaration(callee));
            }
            if (a.Memory is { } memory)
            {
                // The built-in memory tools are declared beside the delegates; the loop handles their calls itself.
                foreach (var name in memory.Tools)
                {
                    if (!AgentMemory.ToolNames.Contains(name))
                        throw new ArgumentException($"agent '{a.Name}': memory tool '{name}' does not exist; memory tools: {string.Join(", ", AgentMemory.ToolNames)}", nameof(definitions));
                    if (a.Tools.Contains(name) || a.Delegates.Contains(name))
                        throw new ArgumentException($"agent '{a.Name}': '{name}' is both a memory tool and one of its tools or delegates; rename the tool or leave it out of memory.tools", nameof(definitions));
                }
                foreach (var kind in memory.Scopes)
                {
                    if (!MemoryScopes.All.Contains(kind))
                        throw new ArgumentException($"agent '{a.Name}': memory scope '{kind}' does not exist; scopes: {string.Join(", ", MemoryScopes.All)}", nameof(definitions));
                }
                delegates.AddRange(Memory.MemoryTools.Declarations(memory));
            }
            agents[a.Name] = new AgentRuntime(a, model, Models.Get(model), agentTools, validator, delegates);
        }
        return new Deployed(definitions, agents, tools);
    }

    public string Kind => RunKinds.Agent;
    public IReadOnlyCollection<string> Targets { get; }
    internal IReadOnlyDictionary<string, AgentRuntime> Agents => Current.Agents;
    /// <summary>Agents whose loop another framework runs (a MAF agent), through this run's durable model client and tools.</summary>
    internal IReadOnlyDictionary<string, HostedAgentLoop> Hosted { get; }
    internal IReadOnlyDictionary<string, BureauTool> ToolsByName => Current.ToolsByName;
    internal ToolPipeline Pipeline { get; }
    internal ILogger Logger { get; }
    internal ModelGateway Models { get; }
    internal PolicySet Policies { get; }

    public Task<RunStatus> ExecuteAsync(RunContext run) => new AgentLoop(this, run).ExecuteAsync();
}

/// <summary>
/// Executes one agent run: folds its journal, then loops model call → tool calls, journaling each step
/// before the next starts. One executor per run at a time (the scheduler's claims, the run grain or
/// the local activator); the store's expected-version check rejects a stale one.
/// </summary>
internal sealed partial class AgentLoop : IResilienceJournal
{
    // AIJsonUtilities.DefaultOptions writes indented JSON; journaled arguments are compact (one line, fewer bytes).
    private static readonly JsonTypeInfo CompactArguments = CreateCompactArguments();

    private static JsonTypeInfo CreateCompactArguments()
    {
        var options = new JsonSerializerOptions(AIJsonUtilities.DefaultOptions) { WriteIndented = false };
        options.MakeReadOnly();
        return options.GetTypeInfo(typeof(IDictionary<string, object?>));
    }

    private readonly AgentRunExecutor _kind;
    private readonly RunContext _run;
    private readonly string _runId;
    private readonly CancellationToken _cancel;
    private RunState _state = null!;
    private AgentRuntime _agent = null!;

    public AgentLoop(AgentRunExecutor kind, RunContext run)
    {
        _kind = kind;
        _run = run;
        _runId = run.RunId;
        _cancel = run.CancellationToken;
    }

    private TimeProvider Time => _run.Time;

    string IResilienceJournal.RunId => _runId;

    /// <summary>What the resilience links journal during a call (a failed attempt, a wait, a fallback): appended as it happens.</summary>
    ValueTask IResilienceJournal.RecordAsync(JournalEntry entry) => _run.AppendAsync([entry]);
    private ILogger Logger => _kind.Logger;

    /// <summary>Runs until the run ends or waits; returns its status then. A cancellation propagates to the engine, which journals it.</summary>
    public async Task<RunStatus> ExecuteAsync()
    {
        var run = _run.Run;
        if (!_kind.Agents.TryGetValue(run.Agent, out _agent!))
        {
            _state = new RunState(_runId, null);
            Load();
            return await FinishAsync(RunStatus.Failed, null, $"agent '{run.Agent}' is not deployed in this host", "error",
                failure: new RunFailure("internal", null, _state.Version + 1, null, null, $"deploy agent '{run.Agent}' in this host, or cancel the run"));
        }

        if (run.ParentRunId is not null) await ApplyAncestorLimitsAsync(run);

        _state = new RunState(_runId, _agent.Definition.Instructions);
        Load();
        if (_state.Finished is { } done) return done.Status;
        if (_state.Waiting is not null) return RunStatus.Waiting;

        if (_state.Version > 1 || run.Status == RunStatus.Running)
        {
            var reason = ResumeReason(run);
            _state.BeginExecution(Time.GetUtcNow());
            await AppendAsync([new RunResumed(reason)], new RunUpdate { Status = RunStatus.Running, Usage = _state.Usage });
            Log.Resumed(Logger, _runId, _state.Version, reason);
        }
        else
        {
            // A fresh run: the queue's time is not the run's; a run that waited too long expires unrun.
            var now = Time.GetUtcNow();
            if (_agent.Definition.Budgets.MaxQueueTime is { } maxQueue && now - run.CreatedAt > maxQueue)
            {
                var queued = Math.Round((now - run.CreatedAt).TotalSeconds, 3);
                return await FinishAsync(RunStatus.Failed, null,
                    $"expired: waited {queued}s in the queue, longer than maxQueueTime {maxQueue.TotalSeconds}s; it never started", "expired",
                    failure: new RunFailure("budget", "queue-time", _state.Version + 1, null, null, "the queue was too long: raise maxConcurrentRuns or budgets.maxQueueTime, or submit fewer runs at once"));
            }
            _state.BeginExecution(now);
        }
        return _kind.Hosted.TryGetValue(run.Agent, out var hosted) ? await HostedLoopAsync(hosted) : await LoopAsync();
    }

    /// <summary>The runs above this one, its parent first (empty for a root run); read once per execution, for the limits of the tree.</summary>
    private IReadOnlyList<RunRecord> _ancestors = [];

    /// <summary>
    /// A child run is never given more than its ancestors were: a delegate (its parent an agent run)
    /// may use only the tools it and every agent above it, up to the first non-agent, may use; a
    /// team's member starts with at most the tokens, cost, steps and time every team above it has left of its
    /// <c>budgets.maxTokens</c>, <c>budgets.maxCost</c>, <c>budgets.maxSteps</c> and <c>budgets.maxWallTime</c>
    /// (counted from the team's first step). One walk up the tree serves all, and the depth limits of delegation.
    /// </summary>
    private async Task ApplyAncestorLimitsAsync(RunRecord run)
    {
        var ancestors = await Teams.RunTree.AncestorsAsync(_run.Engine.Store, run);
        _ancestors = ancestors;

        IReadOnlyList<string> allowed = _agent.Definition.Tools;
        foreach (var caller in ancestors.TakeWhile(a => a.Kind == RunKinds.Agent))
        {
            if (_kind.Agents.TryGetValue(caller.Agent, out var callerAgent)) allowed = [.. allowed.Where(callerAgent.Definition.Tools.Contains)];
        }
        if (allowed.Count < _agent.Definition.Tools.Count) _agent = _agent.Restricted(allowed);

        long? tokensLeft = null;
        double? costLeft = null;
        TimeSpan? timeLeft = null;
        int? stepsLeft = null;
        // What the tree below each team has used so far: the team's finished members (its own record)
        // plus, for a team higher up, what every run between it and this one used and has not reported
        // up yet (a member team's finished members, a delegating agent's own calls and its finished delegates).
        // A delegating agent's own token and cost budgets count its delegates too, so they are handed down the same way.
        var teams = _run.Engine.Definitions.Teams;
        var countSteps = Teams.RunTree.CountsSteps(run, ancestors, teams);
        var countSpend = ancestors.Any(a => SpendBudgetOf(a) is not null);
        long usedTokens = 0;
        double usedCost = 0;
        var usedSteps = 0;
        foreach (var parent in ancestors)
        {
            var team = parent.Kind == RunKinds.Team && teams.TryGetValue(parent.Agent, out var t) ? t : null;
            var delegating = parent.Kind == RunKinds.Agent;
            // The parent's journal, read from where this process last read it (a team's grows with its members).
            var tally = countSteps || team?.Budgets.MaxWallTime is not null || (countSpend && delegating) ? await _run.Engine.Tallies.GetAsync(parent.Id) : null;
            usedTokens += parent.Usage.TotalTokens;
            usedCost += parent.Cost;
            if (delegating && countSpend)
            {
                usedTokens += tally!.ChildUsage.TotalTokens;
                usedCost = Teams.JournalTally.SumCost(usedCost, tally.ChildCost);
            }
            if (countSteps) usedSteps += tally!.Steps;
            if (SpendBudgetOf(parent) is { } spend)
            {
                if (spend.MaxTokens is { } budget)
                {
                    var remaining = budget - usedTokens;
                    tokensLeft = tokensLeft is { } l ? Math.Min(l, remaining) : remaining;
                }
                if (spend.MaxCost is { } maxCost)
                {
                    var remaining = Math.Round(maxCost - usedCost, 9); // costs are kept to 9 decimals: 0.06 - 0.04 leaves 0.02, not 0.019999...
                    costLeft = costLeft is { } l ? Math.Min(l, remaining) : remaining;
                }
            }
            if (team is null) continue;
            if (team.Budgets.MaxSteps is { } maxSteps)
            {
                var remaining = maxSteps - usedSteps;
                stepsLeft = stepsLeft is { } l ? Math.Min(l, remaining) : remaining;
            }
            if (team.Budgets.MaxWallTime is { } wall)
            {
                var remaining = (tally!.FirstStepAt ?? parent.CreatedAt) + wall - Time.GetUtcNow();
                timeLeft = timeLeft is { } l && l < remaining ? l : remaining;
            }
        }
        if (tokensLeft is null && timeLeft is null && costLeft is null && stepsLeft is null) return;
        var b = _agent.Definition.Budgets;
        var tokens = tokensLeft is { } tl && (b.MaxTokens is not { } ownTokens || tl < ownTokens) ? Math.Max(1, tl) : b.MaxTokens;
        var wallTime = timeLeft is { } wl && (b.MaxWallTime is not { } ownWall || wl < ownWall) ? TimeSpan.FromTicks(Math.Max(TimeSpan.TicksPerMillisecond, wl.Ticks)) : b.MaxWallTime;
        var cost = costLeft is { } cl && (b.MaxCost is not { } ownCost || cl < ownCost) ? Math.Max(0, cl) : b.MaxCost;
        var steps = stepsLeft is { } sl && (b.MaxSteps is not { } ownSteps || sl < ownSteps) ? Math.Max(0, sl) : b.MaxSteps;
        _agent = _agent.WithBudgets(new AgentBudgets { MaxTokens = tokens, MaxSteps = steps, MaxWallTime = wallTime, MaxQueueTime = b.MaxQueueTime, MaxCost = cost });
    }

    /// <summary>
    /// The token and cost budgets of <paramref name="run"/> that bound the runs below it, or null: a team's, or the
    /// agent's own of an agent that delegates (its budgets count its delegates' spending).
    /// </summary>
    private AgentBudgets? SpendBudgetOf(RunRecord run)
    {
        var budgets = run.Kind switch
        {
            RunKinds.Team => _run.Engine.Definitions.Teams.TryGetValue(run.Agent, out var team) ? team.Budgets : null,
            RunKinds.Agent => _kind.Agents.TryGetValue(run.Agent, out var agent) ? agent.Definition.Budgets : null,
            _ => null,
        };
        return budgets is { MaxTokens: not null } or { MaxCost: not null } ? budgets : null;
    }

    private string ResumeReason(RunRecord run)
    {
        if (run.Status != RunStatus.Queued) return "restart";
        return _state.LastEntry switch
        {
            StepResolved => "resolved",
            WaitExpired => "expired",
            WaitAnswered => "answered",
            _ => "restart",
        };
    }

    private void Load()
    {
        foreach (var record in _run.Journal) _state.Apply(record);
        _run.Fold = _state.Apply;
    }

    private async Task<RunStatus> LoopAsync()
    {
        var loop = _agent.Definition.LoopDetection;
        while (true)
        {
            _cancel.ThrowIfCancellationRequested();
            if (_run.IsStopping) return RunStatus.Running;

            // 1. Finish the tool calls of the latest model answer (after a crash, some may be in doubt).
            foreach (var call in _state.Pending)
            {
                if (call.State == CallState.Done) continue;
                var stop = await HandleCallAsync(call, loop);
                if (stop is not null) return stop.Value;
            }

            // 2. Budgets and progress, before asking the model again.
            if (Budgets.Check(_agent.Definition.Budgets, _state, ActiveTime(), BudgetPoint.BeforeModel) is { } exceeded)
                return await BudgetStopAsync(exceeded);
            if (loop.MaxTurnsWithoutProgress > 0 && _state.TurnsWithoutProgressNow >= loop.MaxTurnsWithoutProgress)
            {
                var reason = $"{_state.TurnsWithoutProgressNow} turns in a row brought no new information";
                var stop = await LoopFoundAsync(reason, null, null, loop);
                if (stop is not null) return stop.Value;
            }

            // 3. Ask the model; journal its answer before anything it asks for runs.
            var chat = BureauTelemetry.ObservesModelCalls ? ChatTelemetry.Start(_agent, _runId, _state.Turns + 1) : null;
            var response = await CallModelAsync();
            chat?.End(response?.Entry, _run.Engine.Options.Telemetry.CaptureContent);
            if (response is null) return RunStatus.Failed;
            var answer = response.Value;
            if (answer.Entry.ToolCalls.Count == 0)
            {
                _run.CrashPoints.Hit("before-finish");
                return await AppendFinishAsync(answer.Entry);
            }
            await AppendAsync([answer.Entry], new RunUpdate { Status = RunStatus.Running, Usage = _state.Usage + answer.Entry.Usage });
            _run.CrashPoints.Hit("after-model-journal");
            if (Budgets.Check(_agent.Definition.Budgets, _state, ActiveTime(), BudgetPoint.AfterModel) is { } over)
                return await BudgetStopAsync(over);
        }
    }

    private readonly record struct ModelAnswer(ModelResponded Entry);

    private async Task<ModelAnswer?> CallModelAsync(IList<ChatMessage>? hostedRequest = null, ChatOptions? hostedOptions = null)
    {
        var turn = _state.Turns + 1;
        var started = Stopwatch.GetTimestamp();
        ChatResponse response;
        using var timeLimit = RemainingTime() is { } remaining ? new CancellationTokenSource(remaining, Time) : null;
        using var linked = timeLimit is null ? null : CancellationTokenSource.CreateLinkedTokenSource(_cancel, timeLimit.Token);
        var token = linked?.Token ?? _cancel;
        IList<ChatMessage> request = hostedRequest ?? _state.Messages;
        if (hostedRequest is null && _agent.Definition.Memory?.Window is { } window)
        {
            try
            {
                using var scope = ResilienceScope.Enter(this);
                request = await WindowAsync(window, turn, token);
            }
            catch (OperationCanceledException) when (timeLimit?.IsCancellationRequested == true && !_cancel.IsCancellationRequested)
            {
                await BudgetStopAsync(new BudgetExceeded("time", _agent.Definition.Budgets.MaxWallTime!.Value.TotalSeconds, Math.Round(ActiveTime().TotalSeconds, 3)));
                return null;
            }
        }
        var requestMessages = request.Count;
        _run.InFlight = $"model call {turn} ({_agent.ModelName})";
        _run.PublishActivity("model.started", $"{_agent.ModelLabel} turn {turn}");
        try
        {
            using var scope = ResilienceScope.Enter(this);
            response = await _agent.Client.GetResponseAsync(request, hostedOptions ?? _agent.ChatOptions, token);
        }
        catch (OperationCanceledException) when (timeLimit?.IsCancellationRequested == true && !_cancel.IsCancellationRequested)
        {
            await BudgetStopAsync(new BudgetExceeded("time", _agent.Definition.Budgets.MaxWallTime!.Value.TotalSeconds, Math.Round(ActiveTime().TotalSeconds, 3)));
            return null;
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !_cancel.IsCancellationRequested)
        {
            var step = _state.Version + 1;
            var message = $"model '{_agent.ModelName}' failed at turn {turn} (run {_runId}, step {step}): {ex.Message}";
            // A failure the model link classified (and journaled attempt by attempt) is said in a line; anything else keeps its stack.
            if (ex is ModelCallException) Log.ModelGaveUp(Logger, _runId, step, ex.Message);
            else Log.ModelFailed(Logger, _runId, step, ex);
            await FinishAsync(RunStatus.Failed, null, message, "error", failure: ModelFailureOf(ex, step));
            return null;
        }
        finally
        {
            _run.InFlight = null;
        }
        _run.CrashPoints.Hit("after-model");
        var elapsed = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        return new ModelAnswer(ToEntry(response, turn, elapsed, requestMessages));
    }

    private RunFailure ModelFailureOf(Exception ex, long step)
    {
        var (failure, attempts, model) = ex is ModelCallException m
            ? (m.Failure, m.Attempts, m.Model)
            : (ModelFailure.Classify(ex, Time.GetUtcNow()), 1, _agent.ModelName);
        var kind = failure.Class switch
        {
            "rate-limited" => "rate-limited",
            "refused" => "refused",
            "invalid-output" => "invalid-output",
            _ => "unavailable",
        };
        var fallbacks = _agent.FallbackCount > 0 ? $" (and its {_agent.FallbackCount} fallback model(s))" : "";
        var hint = kind switch
        {
            "rate-limited" => $"the model{fallbacks} kept answering 429: lower concurrency, set requestsPerMinute/tokensPerMinute, or add a fallback model",
            "refused" => "the endpoint refused the request (key, model id, request size): check the model's settings; retrying will not help",
            "invalid-output" => "the model's answer could not be read: check that the endpoint speaks Chat Completions",
            _ => $"the model{fallbacks} failed or did not answer after retries: check its endpoint (bureau health), or add a fallback model",
        };
        return new RunFailure("model", kind, step, "model:" + model, attempts, hint);
    }

    private ModelResponded ToEntry(ChatResponse response, int turn, double elapsedMs, int requestMessages)
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
        var answeredBy = response.AdditionalProperties?.TryGetValue(ResilientChatClient.AnsweredByKey, out var by) == true ? by as string : null;
        var attempts = response.AdditionalProperties?.TryGetValue(ResilientChatClient.AttemptsKey, out var n) == true && n is int count ? count : 1;
        var model = answeredBy is null ? null : _kind.Models.Definition(answeredBy);
        var fellBack = answeredBy is not null && answeredBy != _agent.ModelName;
        var price = (model ?? _agent.Model).Price;
        return new ModelResponded(
            turn,
            response.ModelId ?? (fellBack ? answeredBy! : _agent.ModelLabel),
            fellBack && model is not null ? model.Provider : _agent.Provider,
            string.IsNullOrEmpty(text) ? null : text,
            (IReadOnlyList<ToolCallRecord>?)calls ?? [],
            usage,
            response.FinishReason?.Value,
            requestMessages,
            Math.Round(elapsedMs, 3),
            price is null ? null : Math.Round(price.CostOf(usage), 9),
            fellBack ? answeredBy : null,
            attempts > 1 ? attempts : null);
    }

    /// <summary>Handles one tool call; returns a status when the run stops (waits, loops, budget).</summary>
    private async Task<RunStatus?> HandleCallAsync(PendingCall call, LoopDetectionSettings loop)
    {
        if (_agent.Definition.Delegates.Contains(call.Call.Name)) return await HandleDelegationAsync(call);
        if (Memory.MemoryTools.IsMemoryTool(_agent.Definition.Memory, call.Call.Name)) return await HandleMemoryCallAsync(call);
        var c = call.Call;
        _confidence = null;
        if (_agent.Definition.StateConfidence && call.State == CallState.NotStarted) (c, _confidence) = Confidence.Take(c);
        if (call.State == CallState.NotStarted && _state.Approvals.ContainsKey(c.CallId))
        {
            // Asked for approval before the run waited: the decision (or the deadline) decides now.
            var check0 = _agent.Validator.Check(_agent.Definition, c.Name, c.Arguments);
            if (!check0.IsValid) return await RejectAsync(c, check0.Error!);
            var gate0 = await PolicyGateAsync(call, c, check0);
            if (gate0.Check is null) return gate0.Stop;
            return await RunAllowedAsync(call, gate0.Call!, gate0.Check);
        }
        if (call.State == CallState.Intent)
        {
            return await HandleInDoubtAsync(call);
        }

        if (Budgets.Check(_agent.Definition.Budgets, _state, ActiveTime(), BudgetPoint.BeforeTool) is { } exceeded)
            return await BudgetStopAsync(exceeded);
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
            Log.CallRejected(Logger, _runId, _state.Version, c.Name, check.Error!);
            return null;
        }

        if (!_kind.Policies.IsEmpty)
        {
            var gate = await PolicyGateAsync(call, c, check);
            if (gate.Check is null) return gate.Stop;
            return await RunAllowedAsync(call, gate.Call!, gate.Check);
        }
        return await RunAllowedAsync(call, c, check);
    }

    /// <summary>
    /// A call of another agent (a delegate): journaled as an intent, then done by a child run (found
    /// again by the intent's key after a crash); the run waits for it and the child's answer becomes
    /// the call's result.
    /// </summary>
    private async Task<RunStatus?> HandleDelegationAsync(PendingCall call)
    {
        var c = call.Call;
        if (call.State == CallState.NotStarted)
        {
            var (valid, error) = Delegation.TaskOf(c.Arguments);
            if (valid is null) return await RejectAsync(c, $"invalid arguments for agent '{c.Name}': {error}");
            // A delegation is a level of the tree: the teams above (and the tree's own bound) limit how deep a chain goes.
            if (Teams.RunTree.DepthProblem(_run.Run, _ancestors, _run.Engine.Definitions.Teams) is { } tooDeep)
                return await RejectAsync(c, $"agent '{c.Name}' was not called: {tooDeep}");
            var step = _state.Version + 1;
            await AppendAsync([new ToolIntent(c.CallId, c.Name, c.Arguments, ToolEffect.Idempotent, $"{_runId}:{step}")]);
        }
        var (task, _) = Delegation.TaskOf(call.IntentArguments ?? c.Arguments);
        var child = (await _run.Engine.SubmitAsync(new RunRequest(c.Name, task!, call.IdempotencyKey, $"agent:{_agent.Definition.Name}", RunKinds.Agent, _runId))).Run;
        if (!_state.StartedChildren.Contains(child.Id))
            await AppendAsync([new ChildRunStarted(child.Id, c.Name, RunKinds.Agent, task!, "delegate:" + c.CallId)]);
        if (!child.Status.IsTerminal())
        {
            var wait = new ChildRunsWait { Step = _state.Version + 1, RunIds = [child.Id], Deadline = Time.GetUtcNow() + Teams.TeamRunExecutor.RecheckEvery };
            await AppendAsync([new RunWaiting(wait)], new RunUpdate { Status = RunStatus.Waiting, WaitingFor = wait, Usage = _state.Usage });
            var now = await _run.Engine.Store.GetRunAsync(child.Id, CancellationToken.None);
            if (now is null || !now.Status.IsTerminal()) return RunStatus.Waiting;
            try
            {
                await AppendAsync([new WaitAnswered(wait.Step, ChildRunsWait.ReasonName, child.Id, "agent")], new RunUpdate { Status = RunStatus.Running, Usage = _state.Usage });
            }
            catch (JournalConflictException)
            {
                // The delegate's end answered the wait first and requeued this run: its next execution goes on from there.
                return RunStatus.Waiting;
            }
            child = now;
        }
        var ok = child.Status == RunStatus.Succeeded;
        var content = ok ? child.Output ?? "" : $"agent '{c.Name}' (run {child.Id}) {child.Status.ToWireName()}: {child.Error}";
        var countSteps = Teams.RunTree.CountsSteps(_run.Run, _ancestors, _run.Engine.Definitions.Teams);
        var (childUsage, childCost, childSteps) = await Teams.RunTree.FinishedChildAsync(_run.Engine.Store, child, countSteps, _run.Engine.Definitions);
        await AppendAsync([new ChildRunFinished(child.Id, child.Status, child.Output, child.Error, childUsage, childCost == 0 ? null : childCost, childSteps),
            new ToolCompleted(c.CallId, c.Name, content, !ok, 0, call.IntentStep)]);
        return null;
    }

    private async Task<RunStatus?> RejectAsync(ToolCallRecord c, string error)
    {
        await AppendAsync([new ToolCallRejected(c.CallId, c.Name, c.Arguments, error)]);
        Log.CallRejected(Logger, _runId, _state.Version, c.Name, error);
        return null;
    }

    /// <summary>Runs a call the policy allows (<paramref name="c"/> carries the arguments it runs with, an approver's edits included).</summary>
    private async Task<RunStatus?> RunAllowedAsync(PendingCall call, ToolCallRecord c, ToolCallCheck check)
    {
        var tool = check.Tool!;
        if (tool.Definition.Effect == ToolEffect.Read)
        {
            var step = _state.Version + 1;
            var outcome = await InvokeAsync(tool, c, step, $"{_runId}:{step}", check.Arguments);
            _run.CrashPoints.Hit("after-tool");
            await AppendAsync([new ToolCompleted(c.CallId, c.Name, outcome.Outcome.Content, outcome.Outcome.IsError, outcome.Ms, Note: outcome.Outcome.Note,
                Failure: ToolFailureNames.Of(outcome.Outcome.Failure), Attempts: outcome.Outcome.Attempts > 1 ? outcome.Outcome.Attempts : null)]);
            _run.CrashPoints.Hit("after-result");
            return null;
        }

        _run.CrashPoints.Hit("before-intent");
        var intentStep = _state.Version + 1;
        var key = $"{_runId}:{intentStep}";
        await AppendAsync([new ToolIntent(c.CallId, c.Name, c.Arguments, tool.Definition.Effect, key)]);
        _run.CrashPoints.Hit("after-intent");
        return await RunIntentAsync(call, tool, check.Arguments);
    }

    /// <summary>The confidence the model stated for the call being handled (agents that state confidence).</summary>
    private double? _confidence;

    private readonly record struct PolicyGate(RunStatus? Stop, ToolCallRecord? Call, ToolCallCheck? Check);

    /// <summary>
    /// The policy link: evaluates the call (rules, then the effect class's default), denies it (the
    /// model is told why), or asks for an approval and waits; resumed, it applies the decision, or
    /// after a level's deadline escalates to the next level or applies the policy's onTimeout.
    /// </summary>
    private Task<PolicyGate> PolicyGateAsync(PendingCall call, ToolCallRecord c, ToolCallCheck check) =>
        PolicyGateAsync(c, check, check.Tool!.Definition.Effect, edited => _agent.Validator.Check(_agent.Definition, c.Name, edited));

    /// <summary>
    /// The policy link for a call of effect <paramref name="effect"/> (a tool's, or a memory tool's, which has no
    /// <see cref="BureauTool"/>): <paramref name="recheckEdited"/> validates an approver's edited arguments for that call;
    /// <paramref name="invalidToAsk"/>, when set, is why the call is not valid, and rejects it back to the model instead of
    /// asking a person to approve a call that cannot run.
    /// </summary>
    private async Task<PolicyGate> PolicyGateAsync(ToolCallRecord c, ToolCallCheck check, ToolEffect effect, Func<string, ToolCallCheck> recheckEdited,
        string? invalidToAsk = null)
    {
        if (!_state.Approvals.TryGetValue(c.CallId, out var progress))
        {
            var decision = PolicyEvaluator.Evaluate(_kind.Policies, new PolicyContext(_agent.Definition.Name, c.Name, effect, c.Arguments,
                Confidence: _confidence, Tokens: _state.Usage.TotalTokens, Cost: (decimal)_state.Cost, Actor: _run.Run.Actor, Now: Time.GetUtcNow()));
            switch (decision.Action)
            {
                case PolicyAction.Allow:
                    return new(null, c, check);
                case PolicyAction.Deny:
                    var denied = $"denied by policy '{decision.Rule}'{(decision.Reason is null ? "" : ": " + decision.Reason)}; the call did not run";
                    await AppendAsync([new PolicyApplied(c.CallId, c.Name, PolicyAction.Deny, decision.Rule, decision.Reason),
                        new ToolCompleted(c.CallId, c.Name, denied, true, 0, Failure: "policy")]);
                    Log.PolicyDenied(Logger, _runId, _state.Version, c.Name, decision.Rule);
                    return new(null, null, null);
                default:
                    if (invalidToAsk is not null)
                    {
                        await RejectAsync(c, invalidToAsk);
                        return new(null, null, null);
                    }
                    var step = _state.Version + 1;
                    var spec = decision.Approval ?? _kind.Policies.DefaultApproval;
                    var wait = ApprovalWaitFor(step, c, decision.Rule, decision.Reason, spec, 0);
                    await AppendAsync([new PolicyApplied(c.CallId, c.Name, PolicyAction.RequireApproval, decision.Rule, decision.Reason), new RunWaiting(wait)],
                        new RunUpdate { Status = RunStatus.Waiting, WaitingFor = wait, Usage = _state.Usage });
                    Log.ApprovalAsked(Logger, _runId, step, c.Name, decision.Rule);
                    return new(RunStatus.Waiting, null, null);
            }
        }

        var approval = ApprovalSpecOf(progress.Rule);
        if (progress.Rejection is { } refused && approval.FailRunOnReject)
        {
            var error = $"run {_runId} step {_state.Version + 1}: {refused.Actor} rejected the call of '{c.Name}' (approval {_runId}:{progress.Step}){(refused.Reason is null ? "" : ": " + refused.Reason)}";
            await FinishAsync(RunStatus.Failed, null, error, "rejected",
                failure: new RunFailure("policy", "rejected", progress.Step, "tool:" + c.Name, null, "a person rejected the call; the policy fails the run on a rejection"));
            return new(RunStatus.Failed, null, null);
        }
        if (progress.Rejection is { } no)
        {
            await AppendAsync([new ToolCompleted(c.CallId, c.Name, $"rejected by {no.Actor}{(no.Reason is null ? "" : ": " + no.Reason)}; the call did not run", true, 0, Failure: "policy")]);
            return new(null, null, null);
        }
        if (progress.Approvals >= Math.Max(1, approval.Required))
        {
            var edited = progress.Votes.LastOrDefault(v => v.Approve && v.Arguments is not null)?.Arguments;
            if (edited is null || !approval.EditableArguments || edited == c.Arguments) return new(null, c, check);
            var recheck = recheckEdited(edited);
            if (!recheck.IsValid)
            {
                await AppendAsync([new ToolCompleted(c.CallId, c.Name, $"the approver's edited arguments are not valid ({recheck.Error}); the call did not run", true, 0, Failure: "policy")]);
                return new(null, null, null);
            }
            return new(null, c with { Arguments = edited }, recheck);
        }
        if (progress.LevelExpired)
        {
            if (progress.Level + 1 < approval.Levels.Count)
            {
                var next = ApprovalWaitFor(progress.Step, c, progress.Rule, null, approval, progress.Level + 1);
                await AppendAsync([new RunWaiting(next)], new RunUpdate { Status = RunStatus.Waiting, WaitingFor = next, Usage = _state.Usage });
                Log.ApprovalEscalated(Logger, _runId, progress.Step, c.Name, progress.Level + 1);
                return new(RunStatus.Waiting, null, null);
            }
            switch (approval.OnTimeout)
            {
                case ApprovalTimeoutAction.Approve:
                    return new(null, c, check);
                case ApprovalTimeoutAction.Fail:
                    var error = $"run {_runId} step {_state.Version + 1}: nobody answered the approval of '{c.Name}' (step {progress.Step}) before its last deadline";
                    await FinishAsync(RunStatus.Failed, null, error, "approval-timeout",
                        failure: new RunFailure("policy", "approval-timeout", progress.Step, "tool:" + c.Name, null, "answer approvals sooner, add an escalation level, or set onTimeout"));
                    return new(RunStatus.Failed, null, null);
                default:
                    await AppendAsync([new ToolCompleted(c.CallId, c.Name, $"nobody approved the call before its last deadline; it did not run (policy '{progress.Rule}')", true, 0, Failure: "policy")]);
                    return new(null, null, null);
            }
        }
        // Asked, not yet decided (executed again while waiting): wait again at the same level.
        var again = ApprovalWaitFor(progress.Step, c, progress.Rule, null, approval, progress.Level);
        await AppendAsync([new RunWaiting(again)], new RunUpdate { Status = RunStatus.Waiting, WaitingFor = again, Usage = _state.Usage });
        return new(RunStatus.Waiting, null, null);
    }

    private ApprovalSpec ApprovalSpecOf(string rule)
    {
        foreach (var r in _kind.Policies.Rules)
            if (r.Name == rule) return r.Approval;
        return _kind.Policies.DefaultApproval;
    }

    private ApprovalWait ApprovalWaitFor(long step, ToolCallRecord c, string rule, string? reason, ApprovalSpec spec, int level)
    {
        var levels = spec.Levels.Count == 0 ? [new ApprovalLevel([], null)] : spec.Levels;
        var current = levels[Math.Min(level, levels.Count - 1)];
        return new ApprovalWait
        {
            Step = step,
            CallId = c.CallId,
            Tool = c.Name,
            Arguments = c.Arguments,
            Rule = rule,
            Level = level,
            Approvers = current.Approvers,
            Required = Math.Max(1, spec.Required),
            EditableArguments = spec.EditableArguments,
            Question = reason is null
                ? $"May agent '{_agent.Definition.Name}' call '{c.Name}' with {c.Arguments}? (policy '{rule}')"
                : $"{reason}: may agent '{_agent.Definition.Name}' call '{c.Name}' with {c.Arguments}? (policy '{rule}')",
            Deadline = current.Timeout is { } t ? Time.GetUtcNow() + t : null,
        };
    }

    private async Task<RunStatus?> RunIntentAsync(PendingCall call, BureauTool tool, JsonElement arguments)
    {
        var c = call.IntentArguments is { } journaled && journaled != call.Call.Arguments ? call.Call with { Arguments = journaled } : call.Call;
        var result = await InvokeAsync(tool, c, call.IntentStep, call.IdempotencyKey!, arguments);
        _run.CrashPoints.Hit("after-tool");
        await AppendAsync([new ToolCompleted(c.CallId, c.Name, result.Outcome.Content, result.Outcome.IsError, result.Ms, call.IntentStep, result.Outcome.Note,
            ToolFailureNames.Of(result.Outcome.Failure), result.Outcome.Attempts > 1 ? result.Outcome.Attempts : null)]);
        _run.CrashPoints.Hit("after-result");
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

        if (!_kind.ToolsByName.TryGetValue(c.Name, out var tool))
        {
            await AppendAsync([new ToolCompleted(c.CallId, c.Name, $"tool '{c.Name}' is no longer deployed; the call's outcome is unknown", true, 0, call.IntentStep)]);
            return null;
        }
        switch (tool.Definition.EffectiveInDoubtAction)
        {
            case InDoubtAction.Retry:
                Log.InDoubtRetry(Logger, _runId, call.IntentStep, c.Name);
                return await RetryInDoubtAsync(call);
            case InDoubtAction.Fail:
                await AppendAsync([new ToolCompleted(c.CallId, c.Name, $"tool '{c.Name}' was interrupted by a crash; whether it took effect is unknown", true, 0, call.IntentStep)]);
                return null;
            default:
                var waiting = new InDoubtWait
                {
                    Step = call.IntentStep,
                    Tool = c.Name,
                    Key = call.IdempotencyKey,
                    Arguments = c.Arguments,
                    Deadline = tool.Definition.InDoubtTimeout is { } timeout ? Time.GetUtcNow() + timeout : null,
                };
                await AppendAsync([new RunWaiting(waiting)], new RunUpdate { Status = RunStatus.Waiting, WaitingFor = waiting, Usage = _state.Usage });
                Log.InDoubtWaiting(Logger, _runId, call.IntentStep, c.Name);
                _run.CrashPoints.Hit("waiting");
                return RunStatus.Waiting;
        }
    }

    private async Task<RunStatus?> RetryInDoubtAsync(PendingCall call)
    {
        var check = _agent.Validator.Check(_agent.Definition, call.Call.Name, call.IntentArguments ?? call.Call.Arguments);
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
        _run.InFlight = $"tool '{call.Name}' (step {step}, key {key})";
        _run.PublishActivity("tool.started", $"{call.Name} step {step}");
        var started = Stopwatch.GetTimestamp();
        try
        {
            using var scope = ResilienceScope.Enter(this);
            var outcome = await _kind.Pipeline.InvokeAsync(new ToolCall(_runId, _agent.Definition, tool, step, key, call.CallId, arguments, call.Arguments, _cancel));
            return new TimedOutcome(outcome, Math.Round(Stopwatch.GetElapsedTime(started).TotalMilliseconds, 3));
        }
        finally
        {
            if (!_cancel.IsCancellationRequested) _run.InFlight = null; // a cancel journals what was in flight
        }
    }

    private async Task<RunStatus?> LoopFoundAsync(string reason, string? tool, string? callId, LoopDetectionSettings loop)
    {
        if (loop.Action == LoopAction.Warn && !_state.LoopWarned)
        {
            await AppendAsync([new LoopDetected(reason, tool, LoopAction.Warn, callId)]);
            Log.LoopWarned(Logger, _runId, _state.Version, reason);
            return null;
        }
        Log.LoopStopped(Logger, _runId, _state.Version, reason);
        var step = _state.Version + 1;
        var failure = _state.RejectionsInARow >= 2
            ? new RunFailure("validation", null, step, tool is null ? null : "tool:" + tool, null,
                "the model kept making tool calls that fail validation: check the tool's schema and description, or the agent's instructions")
            : _state.LastToolFailure is { } lf
                ? new RunFailure("tool", lf.Failure is "timeout" or "crash" or "unavailable" ? lf.Failure : "error", lf.Step, "tool:" + lf.Tool, lf.Attempts ?? 1,
                    $"tool '{lf.Tool}' kept failing and the model went round in circles: check the tool (bureau health), its timeout and retry settings")
                : new RunFailure("loop", null, step, tool is null ? null : "tool:" + tool, null,
                    "the model repeated itself without progress: refine the instructions, or raise loop.maxRepeatedCalls / maxTurnsWithoutProgress");
        return await FinishAsync(RunStatus.Failed, null, $"loop detected: {reason}", "loop", new LoopDetected(reason, tool, LoopAction.Stop, callId), failure);
    }

    private Task<RunStatus> BudgetStopAsync(BudgetExceeded exceeded)
    {
        var unit = exceeded.Budget switch { "time" => "s", "tokens" => " tokens", "cost" => "", _ => " steps" };
        Log.BudgetStopped(Logger, _runId, _state.Version, exceeded.Budget);
        var key = exceeded.Budget switch { "time" => "maxWallTime", "tokens" => "maxTokens", "cost" => "maxCost", _ => "maxSteps" };
        var failure = new RunFailure("budget", exceeded.Budget, _state.Version + 1, null, null,
            $"the run used its {exceeded.Budget} budget: raise budgets.{key} if the work needs it, or look for a loop in its journal");
        return FinishAsync(RunStatus.Failed, null, $"budget exceeded: {exceeded.Budget} (limit {exceeded.Limit}{unit}, used {exceeded.Used}{unit})", "budget", exceeded, failure);
    }

    private TimeSpan ActiveTime() => _state.ActiveTime(Time.GetUtcNow());

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

    private async Task<RunStatus> FinishAsync(RunStatus status, string? output, string? error, string? outcome, JournalEntry? cause = null, RunFailure? failure = null)
    {
        var entries = cause is null
            ? new JournalEntry[] { new RunFinished(status, output, error, outcome, failure) }
            : [cause, new RunFinished(status, output, error, outcome, failure)];
        await AppendAsync(entries, new RunUpdate { Status = status, Output = output, Error = error, Outcome = outcome, Usage = _state.Usage });
        return status;
    }

    /// <summary>Appends entries (numbered after the current version); the writer folds them into the state. Never canceled midway.</summary>
    private ValueTask AppendAsync(JournalEntry[] entries, RunUpdate? update = null) => _run.AppendAsync(entries, WithCost(entries, update));

    /// <summary>The row's cost goes wherever its usage goes: the run's cost once these entries are folded (unpriced runs: nothing to write).</summary>
    private RunUpdate? WithCost(JournalEntry[] entries, RunUpdate? update)
    {
        if (update is not { Usage: not null, Cost: null }) return update;
        var cost = _state.Cost;
        foreach (var e in entries)
            if (e is ModelResponded { Cost: { } c }) cost += c;
        return cost == 0 ? update : update with { Cost = Math.Round(cost, 9) };
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "Run {RunId} resumed from its journal at step {Step} ({Reason})")]
        public static partial void Resumed(ILogger logger, string runId, long step, string reason);

        [LoggerMessage(2, LogLevel.Warning, "Run {RunId} step {Step}: the model failed")]
        public static partial void ModelFailed(ILogger logger, string runId, long step, Exception ex);

        [LoggerMessage(12, LogLevel.Warning, "Run {RunId} step {Step}: the model failed: {Error}")]
        public static partial void ModelGaveUp(ILogger logger, string runId, long step, string error);

        [LoggerMessage(3, LogLevel.Information, "Run {RunId} step {Step}: call of '{Tool}' rejected before running: {Error}")]
        public static partial void CallRejected(ILogger logger, string runId, long step, string tool, string error);

        [LoggerMessage(4, LogLevel.Warning, "Run {RunId} step {Step}: '{Tool}' was in doubt after a crash; re-running it with the same idempotency key")]
        public static partial void InDoubtRetry(ILogger logger, string runId, long step, string tool);

        [LoggerMessage(5, LogLevel.Warning, "Run {RunId} step {Step}: '{Tool}' is a write that was in doubt after a crash; the run waits for a person (bureau runs resolve)")]
        public static partial void InDoubtWaiting(ILogger logger, string runId, long step, string tool);

        [LoggerMessage(50, LogLevel.Information, "Run {RunId} step {Step}: policy '{Rule}' denied a call of '{Tool}'; the model is told why")]
        public static partial void PolicyDenied(ILogger logger, string runId, long step, string tool, string rule);

        [LoggerMessage(51, LogLevel.Information, "Run {RunId} step {Step}: policy '{Rule}' asks a person to approve a call of '{Tool}'; the run waits")]
        public static partial void ApprovalAsked(ILogger logger, string runId, long step, string tool, string rule);

        [LoggerMessage(52, LogLevel.Information, "Run {RunId}: the approval of '{Tool}' (step {Step}) moves to escalation level {Level}")]
        public static partial void ApprovalEscalated(ILogger logger, string runId, long step, string tool, int level);

        [LoggerMessage(6, LogLevel.Warning, "Run {RunId} step {Step}: loop detected, model warned: {Reason}")]
        public static partial void LoopWarned(ILogger logger, string runId, long step, string reason);

        [LoggerMessage(7, LogLevel.Warning, "Run {RunId} step {Step}: loop detected, run stopped: {Reason}")]
        public static partial void LoopStopped(ILogger logger, string runId, long step, string reason);

        [LoggerMessage(8, LogLevel.Warning, "Run {RunId} step {Step}: {Budget} budget exceeded, run stopped")]
        public static partial void BudgetStopped(ILogger logger, string runId, long step, string budget);
    }
}
