using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;

namespace Bureau.Replay;

/// <summary>What a what-if changes: the step it goes on after, and the model or the instructions it goes on with.</summary>
/// <param name="FromStep">The fork shares the recorded run's steps 1..N and goes on after step N.</param>
/// <param name="Model">A model of the definitions; null: the agent's own.</param>
/// <param name="Instructions">The instructions the fork goes on with; null: the agent's own.</param>
/// <param name="AllowWrites">Let the fork call write tools (left out by default: a what-if should change nothing).</param>
/// <param name="Actor">Who the fork's <see cref="RunStarted"/> names: <c>bureau:whatif</c> over HTTP, <c>bureau:replay-fork</c> from the CLI.</param>
internal sealed record ForkRequest(long FromStep, string? Model = null, string? Instructions = null, bool AllowWrites = false, string Actor = "bureau:whatif");

/// <summary>A what-if that ran: the fork's id, the model it went on with, the write tools left out, its row and its journal.</summary>
internal sealed record ForkResult(string ForkId, long FromStep, string Model, bool InstructionsChanged, IReadOnlyList<string> WriteToolsLeftOut,
    RunRecord Run, IReadOnlyList<JournalRecord> Journal);

/// <summary>A what-if request that cannot run; <see cref="Field"/> names what is wrong.</summary>
internal sealed class ForkRequestException(string field, string message) : Exception(message)
{
    public string Field { get; } = field;
}

/// <summary>
/// A what-if (decision 0013, <c>bureau replay ID --from-step N</c>, <c>POST /v1/runs/{id}/whatif</c>): a new run of
/// the same agent shares a finished run's journal up to step N, then goes on live with another model or other
/// instructions, in a throwaway in-memory store of its own and an engine of its own. The recorded run and the host's
/// store are only read; write tools are left out unless allowed, and a fork that starts child runs or waits for a
/// person stops there (it is not kept).
/// </summary>
internal sealed class RunForker
{
    private readonly BureauDefinitions _definitions;
    private readonly Models.ModelClientFactory? _models;
    private readonly ILoggerFactory? _loggerFactory;
    private readonly IMemoryStore? _forkMemory;

    /// <param name="definitions">The definitions as they are now (copied: the fork's agent never replaces the host's).</param>
    /// <param name="models">The model clients' factory of the host (its HTTP client and clock); null: a new one.</param>
    /// <param name="loggerFactory">Where the fork's engine logs.</param>
    /// <param name="forkMemory">
    /// A throwaway memory store for the fork (the CLI's fork database), so an agent with memory can be forked without
    /// touching the real one; null: an agent with memory cannot be forked.
    /// </param>
    public RunForker(BureauDefinitions definitions, Models.ModelClientFactory? models = null, ILoggerFactory? loggerFactory = null, IMemoryStore? forkMemory = null)
    {
        ArgumentNullException.ThrowIfNull(definitions);
        _definitions = definitions;
        _models = models;
        _loggerFactory = loggerFactory;
        _forkMemory = forkMemory;
    }

    /// <summary>Checks the request against the recorded run and the definitions; throws <see cref="ForkRequestException"/> naming the field.</summary>
    public (AgentDefinition Forked, string Model, IReadOnlyList<string> LeftOut) Check(string runId, IReadOnlyList<JournalRecord> journal, ForkRequest request)
    {
        if (journal.Count == 0 || journal[0].Entry is not RunStarted started)
            throw new ForkRequestException("id", $"run {runId} has no run.started step; it cannot be forked");
        if ((started.RunKind ?? RunKinds.Agent) != RunKinds.Agent)
            throw new ForkRequestException("id", $"run {runId} is a '{started.RunKind}' run; only agent runs can be forked yet");
        if (request.FromStep < 1 || request.FromStep >= journal.Count)
            throw new ForkRequestException("fromStep", $"'fromStep' must be between 1 and {journal.Count - 1} (run {runId} has {journal.Count} steps; the fork goes on after step N), not {request.FromStep}");
        if (journal[(int)request.FromStep - 1].Entry is RunFinished or RunCanceled)
            throw new ForkRequestException("fromStep", $"step {request.FromStep} of run {runId} ends the run; fork from an earlier step");
        if (!_definitions.Agents.TryGetValue(started.Agent, out var agent))
            throw new ForkRequestException("id", $"agent '{started.Agent}' of run {runId} is not deployed here");
        if (agent.Memory is not null && _forkMemory is null)
            throw new ForkRequestException("id", $"agent '{agent.Name}' has memory; a what-if of it is not supported here (its memory writes would change the real store): use `bureau replay {runId} --from-step N`, which forks into a throwaway database");
        var model = string.IsNullOrWhiteSpace(request.Model) ? agent.Model : request.Model.Trim();
        if (!_definitions.Models.ContainsKey(model))
            throw new ForkRequestException("model", $"'model' must be a deployed model, not '{model}'; models: {string.Join(", ", _definitions.Models.Keys.Order(StringComparer.Ordinal))}");
        var forked = agent.WithModel(model, string.IsNullOrWhiteSpace(request.Instructions) ? null : request.Instructions);
        IReadOnlyList<string> leftOut = request.AllowWrites
            ? []
            : [.. forked.Tools.Where(t => _definitions.Tools.TryGetValue(t, out var tool) && tool.Effect == ToolEffect.Write)];
        if (leftOut.Count > 0) forked = forked.WithTools([.. forked.Tools.Except(leftOut, StringComparer.Ordinal)]);
        return (forked, model, leftOut);
    }

    /// <summary>Runs the what-if: the shared steps are copied, then the fork executes until it finishes, waits or stops.</summary>
    /// <exception cref="ForkRequestException">The request cannot run (the field and the reason in the message).</exception>
    public async Task<ForkResult> ForkAsync(string runId, IReadOnlyList<JournalRecord> journal, ForkRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(runId);
        ArgumentNullException.ThrowIfNull(journal);
        ArgumentNullException.ThrowIfNull(request);
        var (forked, model, leftOut) = Check(runId, journal, request);
        var started = (RunStarted)journal[0].Entry;
        var definitions = new BureauDefinitions { SourcePath = _definitions.SourcePath }.Merge(_definitions).Add(forked);

        var forkId = "fork-" + Guid.NewGuid().ToString("n")[..12];
        // The fork goes on now, right after its shared steps: they (and the run's start) are moved forward to end now, so the
        // time the original took up to step N counts against the agent's budgets (maxWallTime) and the time since it ran does not.
        var shared = journal.Skip(1).Take((int)request.FromStep - 1).ToList();
        var shift = DateTimeOffset.UtcNow - (shared.Count > 0 ? shared[^1].At : journal[0].At);
        if (shift < TimeSpan.Zero) shift = TimeSpan.Zero;
        var store = new ForkStore(forkId, started, journal[0].At + shift, [.. shared.Select(r => r with { At = r.At + shift })], request.Actor);
        var services = new ServiceCollection();
        if (_forkMemory is not null) services.AddSingleton(_forkMemory);
        if (_loggerFactory is not null) services.AddSingleton(_loggerFactory);
        if (_models is not null) services.TryAddSingleton(_models);
        services.AddSingleton<IRunStore>(store);
        services.AddBureau(o => o.NodeId = "whatif").AddDefinitions(definitions);
        // A what-if starts no child runs, so a failed fork of an agent with rollbackOnFailure is not rolled back (its store
        // would refuse the rollback run, logged as a failure): without the rollback kind the engine does not try.
        foreach (var rollback in services.Where(d => d.ServiceType == typeof(IRunExecutor) && d.ImplementationType == typeof(Governance.RollbackRunExecutor)).ToList())
            services.Remove(rollback);
        await using var provider = services.BuildServiceProvider();
        var engine = provider.GetRequiredService<BureauEngine>();
        // One execution at a time, as long as the fork makes progress (a retry the engine queues runs again here).
        var stopped = false;
        for (var executions = 0; executions < 100; executions++)
        {
            var before = store.Run.Version;
            try
            {
                await engine.Activator.ExecuteAsync(forkId, cancellationToken).WaitAsync(cancellationToken);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                stopped = true; // the caller's limit: the steps so far are the answer
                break;
            }
            var run = store.Run;
            if (run.Status is not (RunStatus.Queued or RunStatus.Running) || run.Version == before) break;
        }
        var result = store.Run;
        if (stopped && !result.Status.IsTerminal()) result = result with { Error = result.Error ?? "the what-if was stopped before the fork finished (its time limit or the caller)" };
        return new ForkResult(forkId, request.FromStep, model, !string.IsNullOrWhiteSpace(request.Instructions), leftOut, result,
            await store.ReadJournalAsync(forkId, 0, CancellationToken.None));
    }

    /// <summary>
    /// The fork's throwaway store: one run, seeded with the shared steps, taking the appends of its executions. A child
    /// run is refused (the fork stops with an error saying so): a what-if does not start other runs.
    /// </summary>
    private sealed class ForkStore : OneRunStore
    {
        public ForkStore(string forkId, RunStarted started, DateTimeOffset createdAt, IReadOnlyList<JournalRecord> shared, string actor) : base(new RunRecord
        {
            Id = forkId,
            Agent = started.Agent,
            Kind = RunKinds.Agent,
            Status = RunStatus.Queued,
            Input = started.Input,
            Actor = actor,
            CreatedAt = createdAt,
            UpdatedAt = shared.Count > 0 ? shared[^1].At : createdAt,
            Version = 1 + shared.Count,
        })
        {
            Journal.Add(new JournalRecord(1, createdAt, new RunStarted(started.Agent, started.Input, actor)));
            foreach (var r in shared) Journal.Add(new JournalRecord(Journal.Count + 1, r.At, r.Entry));
        }

        protected override string ChildRunRefused(NewRun run) =>
            $"what-if {Current.Id}: the fork started another run ({run.Agent}); a what-if does not start child runs";

        public override ValueTask AppendAsync(AppendRequest request, CancellationToken cancellationToken = default)
        {
            lock (Gate)
            {
                CheckVersion(request);
                foreach (var e in request.Entries) Journal.Add(new JournalRecord(Journal.Count + 1, request.At, e));
                Current = Updated(Current, Journal.Count, request.At, request.Update);
            }
            return ValueTask.CompletedTask;
        }
    }
}
