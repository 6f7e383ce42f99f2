namespace Bureau;

/// <summary>
/// Options of Bureau's runtime, bound from the configuration section <c>Bureau</c>
/// (<c>appsettings.json</c>, environment variables such as <c>Bureau__MaxConcurrentRuns</c>) and
/// validated when the host starts; an invalid value stops the start with an error naming its key.
/// </summary>
public sealed class BureauOptions
{
    /// <summary>The configuration section the options are bound from.</summary>
    public const string SectionName = "Bureau";

    /// <summary>Manifest files (YAML) whose models, tools and agents are deployed, besides those added in code. Key <c>Bureau:Manifests:0</c>, ...</summary>
    public List<string> Manifests { get; set; } = [];

    /// <summary>Most runs executing at once in this process; more wait in the queue. Default 64.</summary>
    public int MaxConcurrentRuns { get; set; } = 64;

    /// <summary>On shutdown, how long in-flight steps get to reach the journal. Default 10 s.</summary>
    public TimeSpan ShutdownGrace { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// This scheduler's name in the store's claims. Default <c>local</c>: one engine per database (the
    /// embedded default) takes its own claims back at start. Nodes of a cluster need distinct names.
    /// </summary>
    public string NodeId { get; set; } = "local";

    /// <summary>
    /// How long a scheduler's claim on unfinished runs holds without renewal; another node picks them up after it. Default 30 s.
    /// In cluster mode <c>Bureau:Cluster:ClaimLease</c> (15 s) replaces it, and a node the cluster declares dead loses its claims at once.
    /// </summary>
    public TimeSpan ClaimLease { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Telemetry settings (section <c>Bureau:Telemetry</c>). Telemetry itself is off unless enabled: <c>UseOpenTelemetry()</c>
    /// (Bureau.Hosting), <c>bureau serve --otlp URL</c> or <c>OTEL_EXPORTER_OTLP_ENDPOINT</c>. See docs/observability.md.
    /// </summary>
    public BureauTelemetryOptions Telemetry { get; set; } = new();

    /// <summary>Makes run ids; default: time-ordered, 18 characters (<see cref="RunIds.New"/>). Not bound from configuration.</summary>
    public Func<string>? RunIdGenerator { get; set; }

    /// <summary>
    /// Most runs accepted by this process that wait to start, all agents together; a trigger or <c>POST /v1/runs</c>
    /// beyond it is answered 429 with <c>Retry-After</c> and stores nothing. Null (default): no limit.
    /// </summary>
    public int? MaxQueuedRuns { get; set; }

    /// <summary>Most runs of one agent (or team) accepted by this process that wait to start; beyond it, 429. Null (default): no limit.</summary>
    public int? MaxQueuedRunsPerAgent { get; set; }

    /// <summary>Per-agent queue limits overriding <see cref="MaxQueuedRunsPerAgent"/>: <c>Bureau:AgentQueueLimits:triage = 100</c>.</summary>
    public Dictionary<string, int> AgentQueueLimits { get; set; } = new(StringComparer.Ordinal);

    /// <summary>
    /// Most runs of one agent (or team) executing at once in this process; more wait in the queue while runs of other agents
    /// take the free slots of <see cref="MaxConcurrentRuns"/>. Waiting runs (approvals, children) hold no slot. An agent's
    /// <c>maxConcurrentRuns</c> in the manifest, or its entry in <see cref="AgentConcurrencyLimits"/>, overrides it. Null (default): no limit.
    /// </summary>
    public int? MaxConcurrentRunsPerAgent { get; set; }

    /// <summary>Per-agent (or team) concurrency limits overriding the manifest and <see cref="MaxConcurrentRunsPerAgent"/>: <c>Bureau:AgentConcurrencyLimits:triage = 2</c>.</summary>
    public Dictionary<string, int> AgentConcurrencyLimits { get; set; } = new(StringComparer.Ordinal);

    /// <summary>The <c>Retry-After</c> of a 429 when a queue is full. Default 5 s.</summary>
    public TimeSpan QueueFullRetryAfter { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>How agents' retention policies (<c>retention:</c> in the manifest) are applied (section <c>Bureau:Retention</c>).</summary>
    public BureauRetentionOptions Retention { get; set; } = new();

    /// <summary>The workforce's inbox limits (section <c>Bureau:Workforce</c>; docs/workforce.md).</summary>
    public BureauWorkforceOptions Workforce { get; set; } = new();

    internal IEnumerable<string> Problems()
    {
        if (Retention.SweepInterval < TimeSpan.FromSeconds(1)) yield return $"Bureau:Retention:SweepInterval must be at least 1 second (is {Retention.SweepInterval})";
        if (Retention.BatchSize is < 1 or > 10_000) yield return $"Bureau:Retention:BatchSize must be between 1 and 10000 (is {Retention.BatchSize})";
        foreach (var problem in Workforce.Problems()) yield return problem;
        if (MaxQueuedRuns < 1) yield return $"Bureau:MaxQueuedRuns must be at least 1 (is {MaxQueuedRuns})";
        if (MaxQueuedRunsPerAgent < 1) yield return $"Bureau:MaxQueuedRunsPerAgent must be at least 1 (is {MaxQueuedRunsPerAgent})";
        foreach (var (agent, limit) in AgentQueueLimits)
        {
            if (limit < 1) yield return $"Bureau:AgentQueueLimits:{agent} must be at least 1 (is {limit})";
        }
        if (MaxConcurrentRunsPerAgent < 1) yield return $"Bureau:MaxConcurrentRunsPerAgent must be at least 1 (is {MaxConcurrentRunsPerAgent})";
        foreach (var (agent, limit) in AgentConcurrencyLimits)
        {
            if (limit < 1) yield return $"Bureau:AgentConcurrencyLimits:{agent} must be at least 1 (is {limit})";
        }
        if (QueueFullRetryAfter < TimeSpan.FromSeconds(1)) yield return $"Bureau:QueueFullRetryAfter must be at least 1 second (is {QueueFullRetryAfter})";
        if (MaxConcurrentRuns < 1) yield return $"Bureau:MaxConcurrentRuns must be at least 1 (is {MaxConcurrentRuns})";
        if (ShutdownGrace < TimeSpan.Zero) yield return $"Bureau:ShutdownGrace must not be negative (is {ShutdownGrace})";
        if (string.IsNullOrWhiteSpace(NodeId)) yield return "Bureau:NodeId must not be empty";
        if (ClaimLease < TimeSpan.FromSeconds(1)) yield return $"Bureau:ClaimLease must be at least 1 second (is {ClaimLease})";
        for (var i = 0; i < Manifests.Count; i++)
        {
            if (string.IsNullOrWhiteSpace(Manifests[i])) yield return $"Bureau:Manifests:{i} must name a manifest file";
        }
    }
}

/// <summary>How the retention sweep runs (section <c>Bureau:Retention</c>): at start, then every <see cref="SweepInterval"/>.</summary>
public sealed class BureauRetentionOptions
{
    /// <summary>Time between sweeps. Default 1 hour.</summary>
    public TimeSpan SweepInterval { get; set; } = TimeSpan.FromHours(1);

    /// <summary>Most runs deleted in one write transaction (one audit entry each); small, so appends queued behind it wait little. Default 100.</summary>
    public int BatchSize { get; set; } = 100;
}

/// <summary>
/// How big the workforce's inbox may grow (section <c>Bureau:Workforce</c>). A task beyond a limit is refused and nothing is
/// stored (<see cref="WorkforceInboxFullException"/>: 429 with <c>Retry-After</c> = <see cref="BureauOptions.QueueFullRetryAfter"/>
/// at the API); adding a task whose id is already in the inbox is never refused. Only queued tasks count: assigned and
/// running ones are bounded by the members' concurrency.
/// </summary>
public sealed class BureauWorkforceOptions
{
    /// <summary>Most tasks queued in the inbox, all skills together. Default 10,000.</summary>
    public int MaxQueuedTasks { get; set; } = 10_000;

    /// <summary>Most tasks of one skill queued in the inbox. Null (default): only <see cref="MaxQueuedTasks"/>.</summary>
    public int? MaxQueuedTasksPerSkill { get; set; }

    /// <summary>Per-skill limits overriding <see cref="MaxQueuedTasksPerSkill"/>: <c>Bureau:Workforce:SkillQueueLimits:triage = 500</c>.</summary>
    public Dictionary<string, int> SkillQueueLimits { get; set; } = new(StringComparer.Ordinal);

    /// <summary>The limits a task of <paramref name="skill"/> is added under.</summary>
    internal WorkforceInboxLimits LimitsFor(string skill, TimeSpan retryAfter) => new(MaxQueuedTasks, SkillLimit(skill), retryAfter);

    /// <summary>The limit of <paramref name="skill"/>'s own queued tasks: its <see cref="SkillQueueLimits"/> entry, else <see cref="MaxQueuedTasksPerSkill"/>.</summary>
    internal int? SkillLimit(string skill) => SkillQueueLimits.TryGetValue(skill, out var own) ? own : MaxQueuedTasksPerSkill;

    /// <summary>
    /// The limit of each skill that has queued tasks (<paramref name="queued"/>) or a limit of its own: a
    /// <see cref="SkillQueueLimits"/> entry, or any member's skill when <see cref="MaxQueuedTasksPerSkill"/> is set.
    /// Null: the skill has no limit of its own. In name order.
    /// </summary>
    internal SortedDictionary<string, int?> SkillLimits(WorkforceDefinition definition, IEnumerable<string> queued)
    {
        var skills = new SortedSet<string>(queued, StringComparer.Ordinal);
        skills.UnionWith(SkillQueueLimits.Keys);
        if (MaxQueuedTasksPerSkill is not null) skills.UnionWith(definition.Skills);
        var limits = new SortedDictionary<string, int?>(StringComparer.Ordinal);
        foreach (var skill in skills) limits[skill] = SkillLimit(skill);
        return limits;
    }

    internal IEnumerable<string> Problems()
    {
        if (MaxQueuedTasks < 1) yield return $"Bureau:Workforce:MaxQueuedTasks must be at least 1 (is {MaxQueuedTasks})";
        if (MaxQueuedTasksPerSkill < 1) yield return $"Bureau:Workforce:MaxQueuedTasksPerSkill must be at least 1 (is {MaxQueuedTasksPerSkill})";
        foreach (var (skill, limit) in SkillQueueLimits)
        {
            if (limit < 1) yield return $"Bureau:Workforce:SkillQueueLimits:{skill} must be at least 1 (is {limit})";
        }
    }
}

/// <summary>
/// Bureau's telemetry settings read by the runtime (section <c>Bureau:Telemetry</c>). Whether telemetry is exported, and
/// where, is decided where the OpenTelemetry SDK is wired: <c>UseOpenTelemetry()</c> in Bureau.Hosting, <c>bureau serve
/// --otlp</c>, the <c>OTEL_EXPORTER_OTLP_*</c> environment variables.
/// </summary>
public sealed class BureauTelemetryOptions
{
    /// <summary>
    /// Put model answers and tool arguments and results on spans (<c>gen_ai.output.text</c>, <c>gen_ai.output.tool_calls</c>,
    /// <c>gen_ai.tool.call.arguments</c>, <c>gen_ai.tool.call.result</c>). Default false: spans carry names, ids, tokens,
    /// durations and outcomes only. Secrets (API keys, header values, environment variables) are never on a span either way.
    /// </summary>
    public bool CaptureContent { get; set; }
}
