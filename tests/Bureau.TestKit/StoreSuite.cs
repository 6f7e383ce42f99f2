using Xunit;

namespace Bureau.TestKit;

/// <summary>
/// One empty database of a backend, for one test: its stores (each call a new instance on the same data) and raw SQL.
/// A backend's test project implements it (SQLite: a file in a temp folder; PostgreSQL: a database of its own).
/// </summary>
public interface IStoreTestDatabase : IAsyncDisposable
{
    /// <summary>A run store on this database (not initialized).</summary>
    IRunStore CreateRunStore();

    /// <summary>An API key store on this database (not initialized).</summary>
    IApiKeyStore CreateKeyStore();

    /// <summary>An event store (dead letters, poll cursors) on this database (not initialized).</summary>
    IEventStore CreateEventStore();

    /// <summary>Runs SQL on the database (to play a tamperer); tables and columns are named alike in every store.</summary>
    Task ExecuteSqlAsync(string sql);
}

/// <summary>
/// What the conformance suites beside <see cref="StoreConformanceTests"/> share: a database of the backend under test
/// (a new one per test: xunit makes a test class instance per test), its opened stores, closed at the end.
/// </summary>
/// <param name="database">The backend's database for this test.</param>
public abstract class StoreSuite(IStoreTestDatabase database) : IAsyncLifetime
{
    private readonly List<IAsyncDisposable> _opened = [];

    /// <summary>The database under test.</summary>
    protected IStoreTestDatabase Database { get; } = database;

    private IRunStore CreateRunStore() => Database.CreateRunStore();
    private IApiKeyStore CreateKeyStore() => Database.CreateKeyStore();
    private IEventStore CreateEventStore() => Database.CreateEventStore();

    /// <summary>Runs SQL on the database.</summary>
    protected Task ExecuteSqlAsync(string sql) => Database.ExecuteSqlAsync(sql);

    /// <summary>The run store, initialized.</summary>
    protected async Task<IRunStore> OpenRunsAsync()
    {
        var s = CreateRunStore();
        await s.InitializeAsync(TestContext.Current.CancellationToken);
        _opened.Add(s);
        return s;
    }

    /// <summary>The run store as its audit log.</summary>
    protected async Task<IAuditLog> OpenAuditAsync() =>
        await OpenRunsAsync() as IAuditLog ?? throw new InvalidOperationException("the run store does not keep an audit log (IAuditLog)");

    /// <summary>The key store, initialized.</summary>
    protected async Task<IApiKeyStore> OpenKeysAsync()
    {
        var s = CreateKeyStore();
        await s.InitializeAsync(TestContext.Current.CancellationToken);
        if (s is IAsyncDisposable d) _opened.Add(d);
        return s;
    }

    /// <summary>The event store, initialized.</summary>
    protected async Task<IEventStore> OpenEventsAsync()
    {
        var s = CreateEventStore();
        await s.InitializeAsync(TestContext.Current.CancellationToken);
        if (s is IAsyncDisposable d) _opened.Add(d);
        return s;
    }

    /// <inheritdoc />
    public virtual ValueTask InitializeAsync() => ValueTask.CompletedTask;

    /// <inheritdoc />
    public virtual async ValueTask DisposeAsync()
    {
        foreach (var s in _opened) await s.DisposeAsync();
        await Database.DisposeAsync();
        GC.SuppressFinalize(this);
    }

    /// <summary>A time all the suites start from.</summary>
    protected static readonly DateTimeOffset T0 = new(2026, 1, 2, 3, 4, 5, TimeSpan.Zero);

    /// <summary>A new agent run created <paramref name="minute"/> minutes after <see cref="T0"/>.</summary>
    protected static NewRun Run(string id, string agent = "a", int minute = 0, string? parent = null, string? root = null, string kind = RunKinds.Agent) =>
        new()
        {
            Id = id, Agent = agent, Kind = kind, ParentRunId = parent, RootRunId = root, Input = "input of " + id,
            Started = new RunStarted(agent, "input of " + id, "test", kind == RunKinds.Agent ? null : kind, parent, root),
            CreatedAt = T0.AddMinutes(minute), Actor = "test",
        };

    /// <summary>Ends <paramref name="id"/> (at version 1) with <paramref name="status"/>.</summary>
    protected static Task FinishAsync(IRunStore store, string id, RunStatus status = RunStatus.Succeeded) =>
        store.AppendAsync(new AppendRequest
        {
            RunId = id, ExpectedVersion = 1, At = T0.AddSeconds(1),
            Entries = [new RunFinished(status, status == RunStatus.Succeeded ? "ok" : null, status == RunStatus.Succeeded ? null : "x", null)],
            Update = new RunUpdate { Status = status, Output = status == RunStatus.Succeeded ? "ok" : null },
        }).AsTask();
}
