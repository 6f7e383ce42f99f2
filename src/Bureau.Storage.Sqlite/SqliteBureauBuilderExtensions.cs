using Bureau.Storage.Sqlite;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace Bureau;

/// <summary>Registers the embedded SQLite store.</summary>
public static class SqliteBureauBuilderExtensions
{
    /// <summary>The configuration section of <see cref="SqliteStoreOptions"/>.</summary>
    public const string SectionName = "Bureau:Sqlite";

    /// <summary>Keeps runs, journals, API keys and long-term memory in the SQLite file at <paramref name="path"/> (created if missing).</summary>
    public static TBuilder UseSqliteStorage<TBuilder>(this TBuilder builder, string path) where TBuilder : IBureauBuilder
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        return builder.UseSqliteStorage(o => o.Path = path);
    }

    /// <summary>
    /// Keeps runs, journals and API keys in a SQLite file: options bound from <c>Bureau:Sqlite</c>
    /// (<c>Path</c>, <c>Durability</c>, <c>MaxBatchSize</c>, <c>BusyTimeout</c>), then
    /// <paramref name="configure"/>; validated at start. The store takes the database's engine lock
    /// when it opens (one engine per database file) and releases it when the host is disposed.
    /// </summary>
    public static TBuilder UseSqliteStorage<TBuilder>(this TBuilder builder, Action<SqliteStoreOptions>? configure = null) where TBuilder : IBureauBuilder
    {
        ArgumentNullException.ThrowIfNull(builder);
        var services = builder.Services;
        services.AddOptions<SqliteStoreOptions>()
            .Configure<IServiceProvider>((o, sp) => sp.GetService<IConfiguration>()?.GetSection(SectionName).Bind(o))
            .ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<SqliteStoreOptions>, SqliteStoreOptionsValidator>());
        if (configure is not null) services.Configure(configure);
        services.RemoveAll<IRunStore>();
        services.RemoveAll<IApiKeyStore>();
        services.TryAddSingleton(sp => new SqliteRunStore(sp.GetRequiredService<IOptions<SqliteStoreOptions>>().Value, exclusive: true));
        services.AddSingleton<IRunStore>(sp => sp.GetRequiredService<SqliteRunStore>());
        services.TryAddSingleton(sp => new SqliteApiKeyStore(sp.GetRequiredService<IOptions<SqliteStoreOptions>>().Value));
        services.AddSingleton<IApiKeyStore>(sp => sp.GetRequiredService<SqliteApiKeyStore>());
        System.Data.Common.DbProviderFactories.RegisterFactory("Microsoft.Data.Sqlite", Microsoft.Data.Sqlite.SqliteFactory.Instance); // for poll triggers
        services.RemoveAll<IEventStore>();
        services.TryAddSingleton(sp => new SqliteEventStore(sp.GetRequiredService<IOptions<SqliteStoreOptions>>().Value));
        services.AddSingleton<IEventStore>(sp => sp.GetRequiredService<SqliteEventStore>());
        services.RemoveAll<IMemoryStore>();
        services.TryAddSingleton(sp => new SqliteMemoryStore(sp.GetRequiredService<IOptions<SqliteStoreOptions>>().Value,
            sp.GetService<Microsoft.Extensions.AI.IEmbeddingGenerator<string, Microsoft.Extensions.AI.Embedding<float>>>())); // recall by meaning when the app registers one
        services.AddSingleton<IMemoryStore>(sp => sp.GetRequiredService<SqliteMemoryStore>());
        services.RemoveAll<IBoardStore>();
        services.TryAddSingleton(sp => new SqliteBoardStore(sp.GetRequiredService<IOptions<SqliteStoreOptions>>().Value));
        services.AddSingleton<IBoardStore>(sp => sp.GetRequiredService<SqliteBoardStore>());
        services.RemoveAll<IWorkforceStore>();
        services.TryAddSingleton(sp => new SqliteWorkforceStore(sp.GetRequiredService<IOptions<SqliteStoreOptions>>().Value));
        services.AddSingleton<IWorkforceStore>(sp => sp.GetRequiredService<SqliteWorkforceStore>());
        return builder;
    }

    private sealed class SqliteStoreOptionsValidator : IValidateOptions<SqliteStoreOptions>
    {
        public ValidateOptionsResult Validate(string? name, SqliteStoreOptions options)
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
