using Bureau.Engine;
using Bureau.Tools;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Bureau;

/// <summary>Registers Bureau in any generic-host application (a worker, ASP.NET Core, the <c>bureau</c> CLI).</summary>
public static class BureauServiceCollectionExtensions
{
    /// <summary>
    /// Adds Bureau's runtime: the run engine (scheduler, journal writer, run executors, timer service),
    /// models and tools from the definitions added in code or manifests, and a hosted service that opens
    /// the store and starts the engine (which resumes unfinished runs) with the host. Options come from
    /// the configuration section <c>Bureau</c> (<see cref="BureauOptions"/>) and are validated at start.
    /// Pick a store with a <c>Use*Storage</c> call (<c>UseSqliteStorage</c>); executors run in this
    /// process unless <c>UseOrleans</c> puts them in grains; <c>AddHttpApi</c> and <c>MapBureau</c> add the REST API.
    /// Calling it again returns a builder over the same registration.
    /// </summary>
    public static BureauBuilder AddBureau(this IServiceCollection services, Action<BureauOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        var existing = services.FirstOrDefault(d => d.ServiceType == typeof(CodeDefinitions))?.ImplementationInstance as CodeDefinitions;
        if (existing is not null)
        {
            if (configure is not null) services.Configure(configure);
            return new BureauBuilder(services, existing);
        }

        var code = new CodeDefinitions();
        services.AddSingleton(code);
        services.AddOptions<BureauOptions>().BindIfConfigured(BureauOptions.SectionName).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<BureauOptions>, BureauOptionsValidator>());
        if (configure is not null) services.Configure(configure);

        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton<ILoggerFactory>(Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance);
        services.TryAddSingleton(sp => new Tools.Mcp.McpConnections(sp.GetRequiredService<ILoggerFactory>(), sp.GetRequiredService<Resilience.DependencyHealth>()));
        services.TryAddSingleton(sp => new BureauDeployment(sp.GetRequiredService<IOptions<BureauOptions>>(), sp.GetRequiredService<CodeDefinitions>(),
            sp.GetRequiredService<Tools.Mcp.McpConnections>(), sp.GetRequiredService<ILoggerFactory>(), () => sp.GetRequiredService<BureauWorkforce>()));
        services.TryAddSingleton<IRunEventBus, InProcessRunEventBus>();
        services.TryAddSingleton(sp => new Models.ModelClientFactory(timeProvider: sp.GetRequiredService<TimeProvider>()));
        services.TryAddSingleton<ChatClients>();
        services.TryAddSingleton(sp => new Resilience.ResilienceClock(sp.GetRequiredService<TimeProvider>()));
        services.TryAddSingleton<Resilience.DependencyHealth>();
        services.TryAddSingleton<Resilience.ModelGateway>();
        services.TryAddSingleton(sp => BureauBuilder.NewToolFactory(sp, httpClient: null));
        services.TryAddSingleton<Triggers.TriggerIngest>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IToolCallFilter, TelemetryToolFilter>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IToolCallFilter, Resilience.ToolResilienceFilter>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IRunExecutor, AgentRunExecutor>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IRunExecutor, Teams.TeamRunExecutor>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IRunExecutor, Governance.RollbackRunExecutor>());
        services.TryAddSingleton<ICrashPoints>(NoCrashPoints.Instance);
        services.TryAddSingleton(sp => new BureauEngine(
            sp.GetRequiredService<IOptions<BureauOptions>>().Value,
            sp.GetRequiredService<BureauDeployment>(),
            sp.GetService<IRunStore>() ?? throw new InvalidOperationException(
                "Bureau has no store: pick one with a Use*Storage call, for example services.AddBureau().UseSqliteStorage(\"bureau.db\")"),
            sp.GetRequiredService<IRunEventBus>(),
            sp.GetServices<IRunExecutor>(),
            sp.GetRequiredService<TimeProvider>(),
            sp.GetRequiredService<ILoggerFactory>(),
            sp,
            sp.GetRequiredService<ICrashPoints>()));
        services.AddSingleton<BureauRuntimeService>();
        services.AddHostedService(sp => sp.GetRequiredService<BureauRuntimeService>());
        services.TryAddSingleton(new Governance.ApprovalNotificationOptions());
        services.AddHostedService<Governance.ApprovalNotifications>();
        services.AddHostedService<Governance.AuditCheckpointService>(); // only with an AuditCheckpointOptions key and file
        services.TryAddSingleton<Retention.RetentionService>();
        services.AddHostedService(sp => sp.GetRequiredService<Retention.RetentionService>()); // only when an agent has a retention policy
        Triggers.DeadLetterRecorder.Register(services);
        services.TryAddSingleton(sp => new BureauWorkforce(sp.GetRequiredService<BureauEngine>(), sp.GetService<IWorkforceStore>(), sp.GetService<IMemoryStore>(),
            sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILoggerFactory>(), sp.GetService<IBoardStore>()));
        services.AddHostedService<Workforce.WorkforceDispatcher>(); // only with a workforce
        return new BureauBuilder(services, code);
    }
}

/// <summary>
/// Configures Bureau: <c>Use*</c> picks the single implementation of a slot, <c>Add*</c> appends
/// definitions and extensions. What is added in code is deployed beside the manifests; on a name
/// clash the code wins.
/// </summary>
public sealed class BureauBuilder : IBureauBuilder
{
    private readonly CodeDefinitions _code;

    internal BureauBuilder(IServiceCollection services, CodeDefinitions code)
    {
        Services = services;
        _code = code;
    }

    /// <inheritdoc />
    public IServiceCollection Services { get; }

    /// <summary>Deploys the models, tools and agents of a YAML manifest, loaded when the host starts (errors stop the start, listing every problem).</summary>
    public BureauBuilder AddManifest(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        Services.Configure<BureauOptions>(o => o.Manifests.Add(path));
        return this;
    }

    /// <summary>Deploys an agent. Its model and tools must be defined (in code or a manifest) by the time the host starts.</summary>
    public BureauBuilder AddAgent(AgentDefinition agent)
    {
        ArgumentNullException.ThrowIfNull(agent);
        lock (_code) _code.Definitions.Add(agent);
        return this;
    }

    /// <summary>
    /// Deploys a team: members (agents or teams) in a pattern, each running as a child run. It runs
    /// wherever an agent does (submit its name). Its members must be defined by the time the host starts.
    /// </summary>
    public BureauBuilder AddTeam(TeamDefinition team)
    {
        ArgumentNullException.ThrowIfNull(team);
        lock (_code) _code.Definitions.Add(team);
        return this;
    }

    /// <summary>
    /// Deploys a trigger: a signed webhook (<c>POST /v1/hooks/NAME</c>), a schedule or a topic, starting an agent
    /// or a team. Schedules fire in hosts that call <see cref="AddSchedules"/> (<c>AddHttpApi()</c> does).
    /// </summary>
    public BureauBuilder AddTrigger(TriggerDefinition trigger)
    {
        ArgumentNullException.ThrowIfNull(trigger);
        lock (_code) _code.Definitions.Add(trigger);
        return this;
    }

    /// <summary>
    /// Fires the deployed schedule triggers in this host (a hosted service; each tick starts one run, also with
    /// several hosts). <c>AddHttpApi()</c> calls it; a worker without the API calls it itself.
    /// </summary>
    public BureauBuilder AddSchedules()
    {
        Triggers.ScheduleService.Register(Services);
        return this;
    }

    /// <summary>
    /// Adds a tool-call policy rule after those already added (a manifest's rules come first when it
    /// is added first): before every tool call the rules are evaluated in order and the first whose
    /// conditions hold decides: allow, deny (the model is told why) or require an approval.
    /// </summary>
    public BureauBuilder AddPolicy(PolicyRule rule)
    {
        ArgumentNullException.ThrowIfNull(rule);
        lock (_code) _code.Definitions.Merge(new BureauDefinitions { Policies = new PolicySet { Rules = [rule] } });
        return this;
    }

    /// <summary>What applies to tools of <paramref name="effect"/> when no rule matches (for example: write tools require approval).</summary>
    public BureauBuilder AddPolicyDefault(ToolEffect effect, PolicyAction action, ApprovalSpec? approval = null)
    {
        lock (_code)
        {
            _code.Definitions.Merge(new BureauDefinitions
            {
                Policies = new PolicySet { Defaults = new Dictionary<ToolEffect, PolicyAction> { [effect] = action }, DefaultApproval = approval ?? _code.Definitions.Policies.DefaultApproval },
            });
        }
        return this;
    }

    /// <summary>Defines a model agents can name.</summary>
    public BureauBuilder AddModel(ModelDefinition model)
    {
        ArgumentNullException.ThrowIfNull(model);
        lock (_code) _code.Definitions.Add(model);
        return this;
    }

    /// <summary>Defines a model answered by any <see cref="IChatClient"/>, under <paramref name="name"/>.</summary>
    public BureauBuilder AddChatClient(string name, IChatClient client)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(client);
        return AddModel(new ChatClientModelDefinition { Name = name, Client = client });
    }

    /// <summary>
    /// Adds a link to every model's chat pipeline (built with <see cref="ChatClientBuilder"/>): for
    /// example <c>(model, b) =&gt; b.UseOpenTelemetry()</c>, caching, rate limiting or a fallback. Links
    /// run in the order added, the first outermost.
    /// </summary>
    public BureauBuilder ConfigureChatClients(Action<ModelDefinition, ChatClientBuilder> configure)
    {
        ArgumentNullException.ThrowIfNull(configure);
        Services.AddSingleton(new ChatPipelineStep(configure));
        return this;
    }

    /// <summary>
    /// Defines a tool implemented by a C# function (for example from <c>AIFunctionFactory.Create</c>),
    /// under the function's name. <paramref name="effect"/> decides what happens to a call a crash
    /// interrupted: <see cref="ToolEffect.Write"/> calls are never re-run without a person.
    /// </summary>
    public BureauBuilder AddTool(AIFunction function, ToolEffect effect = ToolEffect.Read, InDoubtAction? onInDoubt = null, TimeSpan? timeout = null)
    {
        ArgumentNullException.ThrowIfNull(function);
        return AddTool(new FunctionToolDefinition
        {
            Name = function.Name,
            Description = function.Description,
            Effect = effect,
            OnInDoubt = onInDoubt,
            Timeout = timeout,
            Parameters = function.JsonSchema,
            Function = function,
        });
    }

    /// <summary>Defines a tool (process, HTTP or function).</summary>
    public BureauBuilder AddTool(ToolDefinition tool)
    {
        ArgumentNullException.ThrowIfNull(tool);
        lock (_code) _code.Definitions.Add(tool);
        return this;
    }

    /// <summary>
    /// Sends the requests of <c>http</c> and <c>a2a</c> tools through <paramref name="client"/> (your handlers: a proxy,
    /// client certificates, logging) instead of Bureau's shared client. Each tool's timeout still applies; the client's own
    /// <see cref="HttpClient.Timeout"/> applies too, so keep it above the longest tool timeout (or infinite).
    /// </summary>
    public BureauBuilder UseToolHttpClient(HttpClient client)
    {
        ArgumentNullException.ThrowIfNull(client);
        Services.Replace(ServiceDescriptor.Singleton(sp => NewToolFactory(sp, client)));
        return this;
    }

    internal static ToolFactory NewToolFactory(IServiceProvider sp, HttpClient? httpClient) =>
        new(httpClient) { Events = () => sp.GetRequiredService<Triggers.TriggerIngest>(), Mcp = () => sp.GetRequiredService<Tools.Mcp.McpConnections>() };

    /// <summary>Adds a link to the tool pipeline every validated call passes through (policy → approval → telemetry → retry → tool).</summary>
    public BureauBuilder AddToolFilter<TFilter>() where TFilter : class, IToolCallFilter
    {
        Services.TryAddEnumerable(ServiceDescriptor.Singleton<IToolCallFilter, TFilter>());
        return this;
    }

    /// <summary>Registers the executor of another run kind (a team orchestration, ...), resolved from the services.</summary>
    public BureauBuilder AddRunExecutor<TExecutor>() where TExecutor : class, IRunExecutor
    {
        Services.TryAddEnumerable(ServiceDescriptor.Singleton<IRunExecutor, TExecutor>());
        return this;
    }

    /// <summary>
    /// Adds a persistent agent to the workforce: tasks that need one of its skills are routed to it by load, at most
    /// <see cref="WorkforceMember.Concurrency"/> at once (docs/workforce.md). The agent must be deployed by the time the host starts.
    /// </summary>
    public BureauBuilder AddWorkforceMember(WorkforceMember member)
    {
        ArgumentNullException.ThrowIfNull(member);
        lock (_code) _code.Definitions.Workforce.Add(member);
        return this;
    }

    /// <summary>Deploys everything in <paramref name="definitions"/>.</summary>
    public BureauBuilder AddDefinitions(BureauDefinitions definitions)
    {
        ArgumentNullException.ThrowIfNull(definitions);
        lock (_code) _code.Definitions.Merge(definitions);
        return this;
    }

    /// <summary>Configures <see cref="BureauOptions"/> in code (after configuration binding).</summary>
    public BureauBuilder Configure(Action<BureauOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(configure);
        Services.Configure(configure);
        return this;
    }
}
