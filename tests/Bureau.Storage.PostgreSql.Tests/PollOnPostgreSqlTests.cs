using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using Xunit;

namespace Bureau.Storage.PostgreSql.Tests;

/// <summary>
/// A <c>poll</c> trigger reading a PostgreSQL table through Npgsql (the provider <c>UsePostgreSqlStorage</c> registers), with
/// Bureau's own store on the same server: one run per new row, and the cursor survives a restart of the host.
/// </summary>
public sealed class PollOnPostgreSqlTests : IAsyncDisposable
{
    private readonly PostgreSqlTestDatabase _db = new();
    private readonly List<ServiceProvider> _providers = [];

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask DisposeAsync()
    {
        foreach (var p in _providers) await p.DisposeAsync();
        await _db.DisposeAsync();
    }

    /// <summary>The application's own table (a CRM's tickets), in the test's schema.</summary>
    private string TicketsConnectionString => new NpgsqlConnectionStringBuilder(_db.ConnectionString) { SearchPath = _db.Schema, Pooling = false }.ConnectionString;

    private PollTriggerDefinition Poll => new()
    {
        Name = "tickets", Agent = "triage", Provider = "Npgsql", ConnectionString = TicketsConnectionString, CursorColumn = "id",
        Query = "SELECT id, title FROM tickets WHERE id > @cursor ORDER BY id LIMIT 100", Every = TimeSpan.FromHours(1),
        Input = "ticket {{$.data.id}}: {{$.data.title}}",
    };

    /// <summary>A host's services on the test schema; its poll loop is not started (no host): the test polls with <c>PollOnceAsync</c>.</summary>
    private async Task<ServiceProvider> StartAsync()
    {
        var definitions = new BureauDefinitions();
        definitions.Add(new ScriptedModelDefinition { Name = "scripted", Rules = [new ScriptRule { Reply = "triaged {{input}}" }] });
        definitions.Add(new AgentDefinition { Name = "triage", Model = "scripted" });
        var services = new ServiceCollection();
        services.AddBureau().AddDefinitions(definitions).AddTrigger(Poll).AddSchedules().UsePostgreSqlStorage(o =>
        {
            o.ConnectionString = _db.ConnectionString;
            o.Schema = _db.Schema;
        });
        var provider = services.BuildServiceProvider();
        _providers.Insert(0, provider);
        await provider.GetRequiredService<IRunStore>().InitializeAsync(Ct);
        await provider.GetRequiredService<IEventStore>().InitializeAsync(Ct); // where the cursor lives
        Triggers.TriggerChecks.Check(provider.GetRequiredService<BureauEngine>().Definitions); // as a host's start does: the provider is registered
        await provider.GetRequiredService<BureauEngine>().StartAsync(Ct);
        return provider;
    }

    private static async Task<List<RunRecord>> PolledRunsAsync(BureauEngine engine) =>
        [.. (await engine.ListRunsAsync(new RunQuery { IdempotencyKeyPrefix = "poll:tickets:" }, Ct)).Items.OrderBy(r => r.IdempotencyKey, StringComparer.Ordinal)];

    [Fact]
    public async Task Poll_OneRunPerNewRow_CursorDurableAcrossRestart()
    {
        var first = await StartAsync(); // creates the schema
        await _db.ExecuteSqlAsync("CREATE TABLE tickets(id bigint PRIMARY KEY, title text NOT NULL); INSERT INTO tickets VALUES (1, 'refund'), (2, 'login');");
        var engine = first.GetRequiredService<BureauEngine>();

        Assert.Equal(2, await first.GetRequiredService<Triggers.PollService>().PollOnceAsync(Poll, Ct));
        var runs = await PolledRunsAsync(engine);
        Assert.Equal(["poll:tickets:1", "poll:tickets:2"], runs.Select(r => r.IdempotencyKey));
        var done = await engine.WaitAsync(runs[0].Id).WaitAsync(TimeSpan.FromSeconds(60), Ct);
        Assert.Equal((RunStatus.Succeeded, "ticket 1: refund"), (done.Status, done.Input));
        Assert.Equal("ticket 2: login", (await engine.WaitAsync(runs[1].Id).WaitAsync(TimeSpan.FromSeconds(60), Ct)).Input);
        Assert.Equal("2", await first.GetRequiredService<IEventStore>().GetCursorAsync("tickets", Ct));
        Assert.Equal(0, await first.GetRequiredService<Triggers.PollService>().PollOnceAsync(Poll, Ct)); // nothing new: nothing started

        // The host goes away; a row arrives meanwhile; a new host (new pool, new engine) reads the cursor back from PostgreSQL.
        await engine.StopAsync(Ct);
        _providers.Remove(first);
        await first.DisposeAsync();
        await _db.ExecuteSqlAsync("INSERT INTO tickets VALUES (3, 'invoice');");
        var second = await StartAsync();
        engine = second.GetRequiredService<BureauEngine>();
        Assert.Equal("2", await second.GetRequiredService<IEventStore>().GetCursorAsync("tickets", Ct));

        Assert.Equal(1, await second.GetRequiredService<Triggers.PollService>().PollOnceAsync(Poll, Ct));
        runs = await PolledRunsAsync(engine);
        Assert.Equal(["poll:tickets:1", "poll:tickets:2", "poll:tickets:3"], runs.Select(r => r.IdempotencyKey));
        Assert.Equal("ticket 3: invoice", (await engine.WaitAsync(runs[2].Id).WaitAsync(TimeSpan.FromSeconds(60), Ct)).Input);
        Assert.Equal("3", await second.GetRequiredService<IEventStore>().GetCursorAsync("tickets", Ct));
        Assert.Equal(0, await second.GetRequiredService<Triggers.PollService>().PollOnceAsync(Poll, Ct));
    }
}
