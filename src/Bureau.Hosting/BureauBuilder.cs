using Bureau.Hosting;
using Bureau.Storage.Sqlite;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Bureau;

/// <summary>Registers Bureau in an ASP.NET Core (or any generic-host) application.</summary>
public static class BureauServiceCollectionExtensions
{
    /// <summary>
    /// Adds Bureau: the embedded SQLite store, an Orleans silo on loopback, the run engine (which
    /// resumes unfinished runs as the host starts) and the services behind <c>MapBureau()</c>.
    /// Options come from the configuration section <c>Bureau</c> (<see cref="BureauHostOptions"/>)
    /// and are validated at start. Calling it again returns a builder over the same registration.
    /// </summary>
    public static BureauBuilder AddBureau(this IServiceCollection services, Action<BureauHostOptions>? configure = null)
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
        services.AddOptions<BureauHostOptions>().BindConfiguration(BureauHostOptions.SectionName).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<BureauHostOptions>, BureauHostOptionsValidator>());
        if (configure is not null) services.Configure(configure);

        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton<BureauDeployment>();
        services.AddSingleton<BureauStorage>();
        services.AddSingleton<IApiKeyStore>(sp => sp.GetRequiredService<BureauStorage>().Keys);
        services.AddSingleton<ApiAccess>();
        services.AddSingleton(sp =>
        {
            var o = sp.GetRequiredService<IOptions<BureauHostOptions>>().Value;
            return new BureauEngine(
                sp.GetRequiredService<BureauDeployment>().Definitions,
                sp.GetRequiredService<BureauStorage>().Runs,
                ModelClients.Create,
                new BureauEngineOptions { MaxConcurrentRuns = o.MaxConcurrentRuns, ShutdownGrace = o.ShutdownGrace },
                new Tools.ToolFactory(),
                sp.GetRequiredService<TimeProvider>(),
                sp.GetRequiredService<ILoggerFactory>());
        });
        // Registered before the silo: its StartingAsync opens the store before the silo starts the engine.
        services.AddSingleton<BureauHostService>();
        services.AddHostedService(sp => sp.GetRequiredService<BureauHostService>());
        services.AddOrleans(silo => silo.UseEmbeddedSilo());
        services.AddOpenApi();
        return new BureauBuilder(services, code);
    }
}

/// <summary>
/// Configures Bureau: <c>Use*</c> picks the single implementation of a slot, <c>Add*</c> appends
/// definitions. What is added in code is deployed beside the manifests; on a name clash the code wins.
/// </summary>
public sealed class BureauBuilder
{
    private readonly CodeDefinitions _code;

    internal BureauBuilder(IServiceCollection services, CodeDefinitions code)
    {
        Services = services;
        _code = code;
    }

    /// <summary>The application's services.</summary>
    public IServiceCollection Services { get; }

    /// <summary>Keeps runs in the SQLite file at <paramref name="path"/> (created if missing). Overrides <c>Bureau:Sqlite:Path</c>.</summary>
    public BureauBuilder UseSqliteStorage(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        return UseSqliteStorage(o => o.Path = path);
    }

    /// <summary>Configures the SQLite store (path, durability, ...). Runs after binding <c>Bureau:Sqlite</c>.</summary>
    public BureauBuilder UseSqliteStorage(Action<SqliteStoreOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(configure);
        Services.Configure<BureauHostOptions>(o => configure(o.Sqlite));
        return this;
    }

    /// <summary>Deploys the models, tools and agents of a YAML manifest, loaded when the host starts (errors stop the start, listing every problem).</summary>
    public BureauBuilder AddManifest(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        Services.Configure<BureauHostOptions>(o => o.Manifests.Add(path));
        return this;
    }

    /// <summary>Deploys an agent. Its model and tools must be defined (in code or a manifest) by the time the host starts.</summary>
    public BureauBuilder AddAgent(AgentDefinition agent)
    {
        ArgumentNullException.ThrowIfNull(agent);
        lock (_code) _code.Definitions.Add(agent);
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

    /// <summary>Deploys everything in <paramref name="definitions"/>.</summary>
    public BureauBuilder AddDefinitions(BureauDefinitions definitions)
    {
        ArgumentNullException.ThrowIfNull(definitions);
        lock (_code) _code.Definitions.Merge(definitions);
        return this;
    }

    /// <summary>Configures <see cref="BureauHostOptions"/> in code (after configuration binding).</summary>
    public BureauBuilder Configure(Action<BureauHostOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(configure);
        Services.Configure(configure);
        return this;
    }
}
