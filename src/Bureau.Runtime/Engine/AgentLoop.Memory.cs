using System.Diagnostics;
using Bureau.Memory;
using Bureau.Tools;
using Microsoft.Extensions.DependencyInjection;

namespace Bureau.Engine;

/// <summary>
/// The built-in memory tools in the agent loop (decision 0023). A <c>recall</c> journals what it read
/// (<see cref="MemoryRead"/>) with its result, so a resumed or replayed run sees the same values. A
/// <c>remember</c> or <c>forget</c> journals an intent first (its arguments carry the resolved scope and the
/// expected version), writes with the intent's key (the store applies a key once), then journals what the write
/// did (<see cref="MemoryWritten"/>) with its result: a crash anywhere in between completes the write once.
/// </summary>
internal sealed partial class AgentLoop
{
    private string? _teamScope;
    private string? _userScope;

    /// <summary>
    /// A memory tool's call. The policy link comes first, like any tool's (decision 0052): <c>recall</c> is a <c>read</c>,
    /// <c>remember</c> and <c>forget</c> are <c>idempotent</c> (their writes are keyed). A deny is journaled and told to the
    /// model. A call that requires an approval is checked first (an invalid one goes back to the model, nobody is asked),
    /// then waits like any call (deadlines, escalation, four-eyes, onTimeout); approved, it runs with the approver's
    /// edited arguments when the policy lets them be edited and they are valid for that memory tool; rejected, the
    /// model gets the rejection as the call's result. A call whose intent is journaled was allowed already: it completes.
    /// </summary>
    private async Task<RunStatus?> HandleMemoryCallAsync(PendingCall call)
    {
        var c = call.Call;
        if (call.State == CallState.NotStarted && !_kind.Policies.IsEmpty)
        {
            var memory = _agent.Definition.Memory!;
            var effect = c.Name == MemoryTools.Recall ? ToolEffect.Read : ToolEffect.Idempotent;
            var invalid = _state.Approvals.ContainsKey(c.CallId) ? null : MemoryCheck(c.Name, c.Arguments, memory).Error;
            _confidence = null;
            var gate = await PolicyGateAsync(c, new ToolCallCheck(true, null, null, default), effect, edited => MemoryCheck(c.Name, edited, memory), invalid);
            if (gate.Check is null) return gate.Stop;
            c = gate.Call!;
        }
        return await HandleMemoryAsync(call, c);
    }

    /// <summary>Whether <paramref name="arguments"/> are valid for the memory tool <paramref name="tool"/> (the error the model gets if not).</summary>
    private static ToolCallCheck MemoryCheck(string tool, string arguments, AgentMemory memory)
    {
        var error = tool == MemoryTools.Recall ? MemoryTools.ParseRecall(arguments, memory).Error : MemoryTools.ParseWrite(tool, arguments, memory).Error;
        return new ToolCallCheck(error is null, error, null, default);
    }

    /// <summary>Runs a memory call the policy allows (<paramref name="c"/> carries the arguments it runs with, an approver's edits included).</summary>
    private async Task<RunStatus?> HandleMemoryAsync(PendingCall call, ToolCallRecord c)
    {
        var memory = _agent.Definition.Memory!;
        if (call.State == CallState.NotStarted && Budgets.Check(_agent.Definition.Budgets, _state, ActiveTime(), BudgetPoint.BeforeTool) is { } exceeded)
            return await BudgetStopAsync(exceeded);
        var store = _run.Services.GetService<IMemoryStore>();
        if (store is null)
        {
            await AppendAsync([new ToolCompleted(c.CallId, c.Name, $"'{c.Name}' is not available: this host has no memory store", true, 0, Failure: "unavailable")]);
            return null;
        }
        return c.Name == MemoryTools.Recall ? await RecallAsync(c, memory, store) : await MemoryWriteAsync(call, c, memory, store);
    }

    private async Task<RunStatus?> RecallAsync(ToolCallRecord c, AgentMemory memory, IMemoryStore store)
    {
        var (recall, error) = MemoryTools.ParseRecall(c.Arguments, memory);
        if (recall is null) return await RejectAsync(c, error!);
        var scopes = new List<string>();
        foreach (var kind in recall.ScopeKinds)
        {
            var (address, problem) = await ScopeAddressAsync(kind, memory);
            if (address is not null) scopes.Add(address);
            else if (recall.ScopeNamed)
            {
                await AppendAsync([new ToolCompleted(c.CallId, c.Name, problem!, true, 0, Failure: "error")]);
                return null;
            }
        }
        var started = Stopwatch.GetTimestamp();
        IReadOnlyList<MemoryHit> hits;
        _run.InFlight = $"memory recall (step {_state.Version + 1})";
        try
        {
            hits = await store.RecallAsync(new MemoryRecall { Scopes = scopes, Key = recall.Key, Query = recall.Query, Limit = recall.Limit }, _cancel);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !_cancel.IsCancellationRequested)
        {
            await AppendAsync([new ToolCompleted(c.CallId, c.Name, $"'recall' failed: the memory store did not answer ({ex.Message}); try again later", true,
                Ms(started), Failure: "unavailable")]);
            return null;
        }
        finally
        {
            _run.InFlight = null;
        }
        await AppendAsync([new MemoryRead(c.CallId, scopes, recall.Key, recall.Query, hits),
            new ToolCompleted(c.CallId, c.Name, MemoryTools.RecallResult(hits), false, Ms(started))]);
        return null;
    }

    private async Task<RunStatus?> MemoryWriteAsync(PendingCall call, ToolCallRecord c, AgentMemory memory, IMemoryStore store)
    {
        if (call.State == CallState.NotStarted)
        {
            var (write, error) = MemoryTools.ParseWrite(c.Name, c.Arguments, memory);
            if (write is null) return await RejectAsync(c, error!);
            var (address, problem) = await ScopeAddressAsync(write.Scope, memory);
            if (address is null)
            {
                await AppendAsync([new ToolCompleted(c.CallId, c.Name, problem!, true, 0, Failure: "error")]);
                return null;
            }
            // The compare-and-set condition: the version the model named, else the version this run last saw (0: none).
            var expected = write.ExpectedVersion ?? _state.MemorySeen.GetValueOrDefault((address, write.Key));
            var resolved = MemoryTools.IntentArguments(address, write with { ExpectedVersion = expected });
            _run.CrashPoints.Hit("before-intent");
            var step = _state.Version + 1;
            await AppendAsync([new ToolIntent(c.CallId, c.Name, resolved, ToolEffect.Idempotent, $"{_runId}:{step}")]);
            _run.CrashPoints.Hit("after-intent");
        }

        var intent = MemoryTools.ParseIntent(call.IntentArguments!);
        var started = Stopwatch.GetTimestamp();
        MemoryWriteResult result;
        _run.InFlight = $"memory {c.Name} (step {call.IntentStep}, key {call.IdempotencyKey})";
        try
        {
            result = await store.WriteAsync(new MemoryWrite
            {
                Scope = intent.Scope,
                Key = intent.Key,
                Value = c.Name == MemoryTools.Forget ? null : intent.Value,
                ExpectedVersion = intent.ExpectedVersion,
                OnConflict = memory.OnConflict,
                IdempotencyKey = call.IdempotencyKey,
                Provenance = new MemoryProvenance(_runId, call.IntentStep, _agent.Definition.Name, Time.GetUtcNow(), _run.Run.Actor),
            }, _cancel);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !_cancel.IsCancellationRequested)
        {
            await AppendAsync([new ToolCompleted(c.CallId, c.Name,
                $"'{c.Name}' failed: the memory store did not answer ({ex.Message}); whether the write took effect is unknown: recall '{intent.Key}' to check",
                true, Ms(started), call.IntentStep, Failure: "unavailable")]);
            return null;
        }
        finally
        {
            _run.InFlight = null;
        }
        _run.CrashPoints.Hit("after-tool");
        await AppendAsync([
            new MemoryWritten(c.CallId, c.Name, intent.Scope, intent.Key, result.Outcome, intent.ExpectedVersion, result.Fact, result.Current, call.IntentStep, result.Repeated),
            new ToolCompleted(c.CallId, c.Name, MemoryTools.WriteResult(c.Name, intent, result), !result.Succeeded, Ms(started), call.IntentStep,
                Failure: result.Succeeded ? null : "error")]);
        _run.CrashPoints.Hit("after-result");
        return null;
    }

    /// <summary>The address of a scope kind for this run, or why it has none.</summary>
    private async Task<(string? Address, string? Problem)> ScopeAddressAsync(string kind, AgentMemory memory)
    {
        switch (kind)
        {
            case MemoryScopes.Agent:
                return (MemoryScopes.Address(kind, _agent.Definition.Name), null);
            case MemoryScopes.Tenant:
                return (MemoryScopes.Address(kind, memory.Tenant), null);
            case MemoryScopes.Team:
                _teamScope ??= memory.Team ?? await NearestTeamAsync();
                return _teamScope is null
                    ? (null, $"scope 'team' has no team here: run {_runId} is not a member of a team, and agent '{_agent.Definition.Name}' names none (memory.team)")
                    : (MemoryScopes.Address(kind, _teamScope), null);
            case MemoryScopes.User:
                _userScope ??= await RootActorAsync();
                return _userScope is null
                    ? (null, $"scope 'user' has no user here: run {_runId} was started without an actor")
                    : (MemoryScopes.Address(kind, _userScope), null);
            default:
                return (null, $"unknown memory scope '{kind}'");
        }
    }

    private async Task<string?> NearestTeamAsync()
    {
        for (var (parentId, hops) = (_run.Run.ParentRunId, 0); parentId is not null && hops < 16; hops++)
        {
            var parent = await _run.Engine.Store.GetRunAsync(parentId, CancellationToken.None);
            if (parent is null) return null;
            if (parent.Kind == RunKinds.Team) return parent.Agent;
            parentId = parent.ParentRunId;
        }
        return null;
    }

    private async Task<string?> RootActorAsync()
    {
        var run = _run.Run;
        if (run.RootRunId is { } root && root != run.Id && await _run.Engine.Store.GetRunAsync(root, CancellationToken.None) is { } rootRun) run = rootRun;
        return string.IsNullOrWhiteSpace(run.Actor) ? null : run.Actor;
    }

    private static double Ms(long started) => Math.Round(Stopwatch.GetElapsedTime(started).TotalMilliseconds, 3);
}
