using Bureau.Storage.PostgreSql;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace Bureau;

/// <summary>Registers the PostgreSQL store.</summary>
public static class PostgreSqlBureauBuilderExtensions
{
    /// <summary>The configuration section of <see cref="PostgreSqlStoreOptions"/>.</summary>
    public const string SectionName = "Bureau:PostgreSql";

    /// <summary>Keeps runs, journals, API keys, events, the audit log, memory, boards and the workforce's inbox in the PostgreSQL database <paramref name="connectionString"/> names; run events and cancels reach every node that uses it.</summary>
    public static TBuilder UsePostgreSqlStorage<TBuilder>(this TBuilder builder, string connectionString) where TBuilder : IBureauBuilder
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(connectionString);
        return builder.UsePostgreSqlStorage(o => o.ConnectionString = connectionString);
    }

    /// <summary>
    /// Keeps runs, journals, API keys, events, the audit log, memory, boards and the workforce's inbox in PostgreSQL: options bound from <c>Bureau:PostgreSql</c>
    /// (<c>ConnectionString</c>, <c>Schema</c>, <c>MaxBatchSize</c>), then <paramref name="configure"/>; validated at start.
    /// The stores share one connection pool; the schema is created or migrated when the host starts. Several hosts
    /// (nodes) may use one database: each needs its own <c>Bureau:NodeId</c>.
    /// </summary>
    public static TBuilder UsePostgreSqlStorage<TBuilder>(this TBuilder builder, Action<PostgreSqlStoreOptions>? configure = null) where TBuilder : IBureauBuilder
    {
        ArgumentNullException.ThrowIfNull(builder);
        var services = builder.Services;
        services.AddOptions<PostgreSqlStoreOptions>()
            .Configure<IServiceProvider>((o, sp) => sp.GetService<IConfiguration>()?.GetSection(SectionName).Bind(o))
            .ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<PostgreSqlStoreOptions>, PostgreSqlStoreOptionsValidator>());
        if (configure is not null) services.Configure(configure);
        services.RemoveAll<IRunStore>();
        services.RemoveAll<IApiKeyStore>();
        services.RemoveAll<IEventStore>();
        services.TryAddSingleton(sp => new PostgreSqlDatabase(sp.GetRequiredService<IOptions<PostgreSqlStoreOptions>>().Value));
        services.TryAddSingleton(sp => new PostgreSqlRunStore(sp.GetRequiredService<PostgreSqlDatabase>()));
        services.AddSingleton<IRunStore>(sp => sp.GetRequiredService<PostgreSqlRunStore>());
        services.TryAddSingleton(sp => new PostgreSqlApiKeyStore(sp.GetRequiredService<PostgreSqlDatabase>()));
        services.AddSingleton<IApiKeyStore>(sp => sp.GetRequiredService<PostgreSqlApiKeyStore>());
        services.TryAddSingleton(sp => new PostgreSqlEventStore(sp.GetRequiredService<PostgreSqlDatabase>()));
        services.AddSingleton<IEventStore>(sp => sp.GetRequiredService<PostgreSqlEventStore>());
        services.RemoveAll<IMemoryStore>();
        services.TryAddSingleton(sp => new PostgreSqlMemoryStore(sp.GetRequiredService<PostgreSqlDatabase>(),
            sp.GetService<Microsoft.Extensions.AI.IEmbeddingGenerator<string, Microsoft.Extensions.AI.Embedding<float>>>())); // recall by meaning when the app registers one
        services.AddSingleton<IMemoryStore>(sp => sp.GetRequiredService<PostgreSqlMemoryStore>());
        services.RemoveAll<IBoardStore>();
        services.TryAddSingleton(sp => new PostgreSqlBoardStore(sp.GetRequiredService<PostgreSqlDatabase>()));
        services.AddSingleton<IBoardStore>(sp => sp.GetRequiredService<PostgreSqlBoardStore>());
        services.RemoveAll<IWorkforceStore>();
        services.TryAddSingleton(sp => new PostgreSqlWorkforceStore(sp.GetRequiredService<PostgreSqlDatabase>()));
        services.AddSingleton<IWorkforceStore>(sp => sp.GetRequiredService<PostgreSqlWorkforceStore>());
        // Watchers on any node see every node's runs; cancels reach the node that executes the run (decision 0038).
        services.RemoveAll<IRunEventBus>();
        services.RemoveAll<IRunCommandRelay>();
        services.TryAddSingleton(sp => new PostgreSqlRunEventBus(sp.GetRequiredService<PostgreSqlDatabase>(), sp.GetService<Microsoft.Extensions.Logging.ILoggerFactory>()));
        services.AddSingleton<IRunEventBus>(sp => sp.GetRequiredService<PostgreSqlRunEventBus>());
        services.AddSingleton<IRunCommandRelay>(sp => sp.GetRequiredService<PostgreSqlRunEventBus>());
        // Per-agent concurrency limits hold across the nodes on the schema (decision 0056).
        services.RemoveAll<IAgentSlots>();
        services.AddSingleton<IAgentSlots>(sp => new PostgreSqlAgentSlots(sp.GetRequiredService<PostgreSqlDatabase>()));
        System.Data.Common.DbProviderFactories.RegisterFactory("Npgsql", Npgsql.NpgsqlFactory.Instance); // for poll triggers
        return builder;
    }

    private sealed class PostgreSqlStoreOptionsValidator : IValidateOptions<PostgreSqlStoreOptions>
    {
        public ValidateOptionsResult Validate(string? name, PostgreSqlStoreOptions options)
        {
            try
            {
                options.Validate();
                return ValidateOptionsResult.Success;
            }
            catch (ArgumentException ex)
            {
                return ValidateOptionsResult.Fail(ex.Message.Split(" (Parameter")[0]);
            }
        }
    }
}
