using System.Text.Json;
using System.Text.Json.Nodes;
using Bureau.Engine;
using Bureau.Tools;
using Microsoft.Extensions.Logging;

namespace Bureau.Governance;

/// <summary>
/// The run kind <c>rollback</c>: compensates the completed writes of another run (named by its input),
/// newest first, each with the write tool's declared compensation tool. Each compensation is journaled
/// as an intent before it runs and a result after, with an idempotency key of its own, so a crash
/// mid-way resumes where it stopped and runs a compensation again only with the same key. A write
/// whose tool declares no compensation is listed, never skipped silently.
/// </summary>
internal sealed partial class RollbackRunExecutor : IRunExecutor
{
    private readonly BureauDefinitions _definitions;
    private readonly Dictionary<string, BureauTool> _tools = new(StringComparer.Ordinal);
    private readonly ToolPipeline _pipeline;
    private readonly ILogger _logger;

    public RollbackRunExecutor(BureauDeployment deployment, ToolFactory toolFactory, IEnumerable<IToolCallFilter> filters, ILoggerFactory loggerFactory)
    {
        _definitions = deployment.Definitions;
        foreach (var t in _definitions.Tools.Values)
        {
            if (t.Compensate is not { } c) continue;
            if (!_definitions.Tools.TryGetValue(c, out var compensation))
                throw new ArgumentException($"tool '{t.Name}': its compensation tool '{c}' is not defined", nameof(deployment));
            _tools[c] = toolFactory.Create(compensation);
        }
        _pipeline = new ToolPipeline(filters);
        _logger = loggerFactory.CreateLogger("Bureau.Rollback");
        Targets = _definitions.Agents.Keys;
    }

    public string Kind => RunKinds.Rollback;
    public IReadOnlyCollection<string> Targets { get; }

    /// <summary>A completed write of the target run: its intent step, tool, arguments and result.</summary>
    private sealed record Write(long Step, string CallId, string Tool, string Arguments, string Result);

    public async Task<RunStatus> ExecuteAsync(RunContext run)
    {
        var targetId = run.Run.Input;
        var target = await run.Engine.Store.GetRunAsync(targetId, CancellationToken.None);
        if (target is null) return await FinishAsync(run, RunStatus.Failed, null, $"run {targetId} does not exist", []);
        var writes = Writes(await run.Engine.Store.ReadJournalAsync(targetId, 0, CancellationToken.None));

        // What this rollback did so far (its own journal): results by the undone write's step; intents without results were in flight.
        var done = new Dictionary<long, ToolCompleted>();
        var inFlight = new Dictionary<long, ToolIntent>();
        foreach (var r in run.Journal)
        {
            if (r.Entry is ToolIntent i && StepOf(i.CallId) is { } s1) inFlight[s1] = i;
            else if (r.Entry is ToolCompleted c && StepOf(c.CallId) is { } s2) { done[s2] = c; inFlight.Remove(s2); }
        }
        var agent = _definitions.Agents.TryGetValue(target.Agent, out var a) ? a : new AgentDefinition { Name = target.Agent, Model = "" };
        // What earlier (failed) rollbacks of the same run compensated is not compensated again.
        foreach (var sibling in (await run.Engine.Store.ListRunsAsync(new RunQuery { ParentRunId = targetId, Limit = 1000 }, CancellationToken.None)).Items)
        {
            if (sibling.Kind != RunKinds.Rollback || sibling.Id == run.RunId) continue;
            foreach (var r in await run.Engine.Store.ReadJournalAsync(sibling.Id, 0, CancellationToken.None))
            {
                if (r.Entry is ToolCompleted { IsError: false } c && StepOf(c.CallId) is { } s && !done.ContainsKey(s))
                    done[s] = c with { Note = "compensated by rollback " + sibling.Id };
            }
        }

        foreach (var write in writes)
        {
            if (done.ContainsKey(write.Step)) continue;
            if (run.IsStopping) return RunStatus.Running;
            run.CancellationToken.ThrowIfCancellationRequested();
            var callId = $"undo:{write.Step}";
            var compensation = _definitions.Tools.TryGetValue(write.Tool, out var def) ? def.Compensate : null;
            if (compensation is null || !_tools.TryGetValue(compensation, out var tool))
            {
                var note = $"tool '{write.Tool}' declares no compensation: the write of step {write.Step} in run {targetId} stays";
                await run.AppendAsync([new ToolCompleted(callId, write.Tool, note, true, 0, Note: "not-compensable")], new RunUpdate { Status = RunStatus.Running });
                done[write.Step] = new ToolCompleted(callId, write.Tool, note, true, 0, Note: "not-compensable");
                continue;
            }

            var arguments = new JsonObject { ["arguments"] = Parse(write.Arguments), ["result"] = Parse(write.Result) }.ToJsonString();
            string key;
            if (inFlight.TryGetValue(write.Step, out var intent))
            {
                key = intent.IdempotencyKey!; // interrupted: the same compensation again, with the same key
                Log.Retrying(_logger, run.RunId, write.Step, compensation);
            }
            else
            {
                key = $"{run.RunId}:{run.Version + 1}";
                await run.AppendAsync([new ToolIntent(callId, compensation, arguments, ToolEffect.Write, key)], new RunUpdate { Status = RunStatus.Running });
            }
            var intentStep = run.Version;
            run.InFlight = $"compensation '{compensation}' of step {write.Step}";
            using var json = JsonDocument.Parse(arguments);
            var outcome = await _pipeline.InvokeAsync(new ToolCall(run.RunId, agent, tool, intentStep, key, callId, json.RootElement.Clone(), arguments, run.CancellationToken));
            run.InFlight = null;
            var completed = new ToolCompleted(callId, compensation, outcome.Content, outcome.IsError, 0, intentStep);
            await run.AppendAsync([completed], new RunUpdate { Status = RunStatus.Running });
            done[write.Step] = completed;
        }

        var failed = writes.Where(w => done.TryGetValue(w.Step, out var c) && c.IsError && c.Note != "not-compensable").ToList();
        var kept = writes.Where(w => done.TryGetValue(w.Step, out var c) && c.Note == "not-compensable").ToList();
        var compensated = writes.Count - failed.Count - kept.Count;
        var summary = writes.Count == 0
            ? $"run {targetId} has no completed writes: nothing to roll back"
            : $"compensated {compensated} of {writes.Count} writes of run {targetId}"
              + (kept.Count > 0 ? $"; not compensable (no compensation declared): {string.Join(", ", kept.Select(k => $"step {k.Step} {k.Tool}"))}" : "")
              + (failed.Count > 0 ? $"; compensation FAILED: {string.Join(", ", failed.Select(f => $"step {f.Step} {f.Tool}: {done[f.Step].Content}"))}" : "");
        return failed.Count > 0
            ? await FinishAsync(run, RunStatus.Failed, null, summary, failed)
            : await FinishAsync(run, RunStatus.Succeeded, summary, null, []);
    }

    private static async Task<RunStatus> FinishAsync(RunContext run, RunStatus status, string? output, string? error, IReadOnlyCollection<Write> failed)
    {
        var failure = status == RunStatus.Failed
            ? new RunFailure("tool", "error", run.Version + 1, failed.Count > 0 ? "tool:" + failed.First().Tool : null, null, "fix the compensation and roll back again (bureau runs rollback): completed compensations are not run twice")
            : null;
        await run.AppendAsync([new RunFinished(status, output, error, status == RunStatus.Failed ? "rollback-failed" : null, failure)],
            new RunUpdate { Status = status, Output = output, Error = error, Outcome = status == RunStatus.Failed ? "rollback-failed" : null });
        return status;
    }

    /// <summary>The run's completed writes (intent, then a successful result), newest first.</summary>
    private static List<Write> Writes(IReadOnlyList<JournalRecord> journal)
    {
        var intents = new Dictionary<string, (long Step, ToolIntent Intent)>(StringComparer.Ordinal);
        var writes = new List<Write>();
        foreach (var r in journal)
        {
            switch (r.Entry)
            {
                case ToolIntent { Effect: ToolEffect.Write } i:
                    intents[i.CallId] = (r.N, i);
                    break;
                case ToolCompleted { IsError: false } c when intents.Remove(c.CallId, out var intent):
                    writes.Add(new Write(intent.Step, c.CallId, intent.Intent.Tool, intent.Intent.Arguments, c.Content));
                    break;
            }
        }
        writes.Reverse();
        return writes;
    }

    private static long? StepOf(string callId) =>
        callId.StartsWith("undo:", StringComparison.Ordinal) && long.TryParse(callId.AsSpan(5), out var step) ? step : null;

    private static JsonNode? Parse(string text)
    {
        try
        {
            return JsonNode.Parse(text);
        }
        catch (JsonException)
        {
            return JsonValue.Create(text);
        }
    }

    private static partial class Log
    {
        [LoggerMessage(60, LogLevel.Warning, "Rollback {RunId}: the compensation '{Tool}' of step {Step} was interrupted; running it again with the same idempotency key")]
        public static partial void Retrying(ILogger logger, string runId, long step, string tool);
    }
}
