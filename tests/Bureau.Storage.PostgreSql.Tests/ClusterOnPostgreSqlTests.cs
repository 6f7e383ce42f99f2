using Bureau.Orleans.PostgreSql;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Npgsql;
using Xunit;

namespace Bureau.Storage.PostgreSql.Tests;

/// <summary>
/// Cluster mode on one PostgreSQL database: schedules fire each tick once however many nodes run them, a due wait
/// expires once, Orleans' scripts are applied once by nodes starting together, and the cluster's state reads back.
/// </summary>
public sealed class ClusterOnPostgreSqlTests : IAsyncDisposable
{
    private readonly PostgreSqlTestDatabase _db = new();
    private readonly string _clusterSchema = "c_" + Guid.NewGuid().ToString("n");
    private readonly List<IHost> _hosts = [];

    public async ValueTask DisposeAsync()
    {
        foreach (var h in _hosts)
        {
            await h.StopAsync(CancellationToken.None);
            h.Dispose();
        }
        await using (var c = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(_db.ConnectionString) { Pooling = false }.ConnectionString))
        {
            await c.OpenAsync();
            await using var cmd = new NpgsqlCommand($"DROP SCHEMA IF EXISTS {_clusterSchema} CASCADE", c);
            await cmd.ExecuteNonQueryAsync();
        }
        await _db.DisposeAsync();
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>A node: the engine and its hosted services (schedules among them) on the shared database.</summary>
    private async Task<IHost> StartNodeAsync(string node)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        var d = new BureauDefinitions();
        d.Add(new ScriptedModelDefinition { Name = "scripted", Rules = [new ScriptRule { Reply = "tick" }] });
        d.Add(new AgentDefinition { Name = "reporter", Model = "scripted" });
        d.Add(new ScheduleTriggerDefinition { Name = "every-second", Agent = "reporter", Every = TimeSpan.FromSeconds(1), Overlap = OverlapPolicy.Allow });
        builder.Services.AddBureau(o => o.NodeId = node).AddDefinitions(d).AddSchedules().UsePostgreSqlStorage(o =>
        {
            o.ConnectionString = _db.ConnectionString;
            o.Schema = _db.Schema;
        });
        var host = builder.Build();
        _hosts.Add(host);
        await host.StartAsync(Ct);
        return host;
    }

    [Fact]
    public async Task Schedule_TwoNodesRunningIt_FiresEachTickOnce()
    {
        var a = await StartNodeAsync("node-a");
        var b = await StartNodeAsync("node-b");
        var store = a.Services.GetRequiredService<IRunStore>();
        // Both nodes fire the same ticks for a while (real time: at least 4 ticks after both started).
        var deadline = DateTime.UtcNow.AddSeconds(60);
        IReadOnlyList<RunRecord> runs;
        while (true)
        {
            runs = (await store.ListRunsAsync(new RunQuery { IdempotencyKeyPrefix = "schedule:every-second:", Limit = 1000 }, Ct)).Items;
            if (runs.Count >= 5) break;
            Assert.True(DateTime.UtcNow < deadline, $"only {runs.Count} ticks fired in 60 s");
            await Task.Delay(250, Ct);
        }
        foreach (var h in _hosts) await h.StopAsync(Ct);
        runs = (await store.ListRunsAsync(new RunQuery { IdempotencyKeyPrefix = "schedule:every-second:", Limit = 1000 }, Ct)).Items;
        // One run per tick: the key is the tick, the store accepts it once whichever node submits first.
        Assert.Equal(runs.Count, runs.Select(r => r.IdempotencyKey).Distinct(StringComparer.Ordinal).Count());
        var ticks = runs.Select(r => DateTimeOffset.Parse(r.IdempotencyKey!["schedule:every-second:".Length..], System.Globalization.CultureInfo.InvariantCulture)).Order().ToList();
        Assert.All(ticks.Zip(ticks.Skip(1)), p => Assert.True(p.Second - p.First >= TimeSpan.FromSeconds(1), $"ticks {p.First:o} and {p.Second:o}"));
        _ = b;
    }

    [Fact]
    public async Task OrleansScripts_AppliedByNodesStartingTogether_AreAppliedOnceAndTheNextStartAppliesNothing()
    {
        var applied = await Task.WhenAll(Enumerable.Range(0, 3).Select(_ => ClusterSchema.ApplyAsync(_db.ConnectionString, _clusterSchema, Ct)));
        Assert.Equal(ClusterSchema.Scripts.Order(StringComparer.Ordinal), applied.SelectMany(a => a).Order(StringComparer.Ordinal));
        Assert.Single(applied, a => a.Count > 0); // one of the three applied all of them, in one transaction
        Assert.Empty(await ClusterSchema.ApplyAsync(_db.ConnectionString, _clusterSchema, Ct));
        // The queries Orleans 10.4 reads are there, the update's among them.
        await using var c = new NpgsqlConnection(_db.ConnectionString);
        await c.OpenAsync(Ct);
        await using var cmd = new NpgsqlCommand($"SELECT querykey FROM {_clusterSchema}.orleansquery", c);
        var keys = new List<string>();
        await using (var r = await cmd.ExecuteReaderAsync(Ct)) while (await r.ReadAsync(Ct)) keys.Add(r.GetString(0));
        Assert.Contains("CleanupDefunctSiloEntryKey", keys);
        Assert.Contains("MembershipReadAllKey", keys);
    }

    [Fact]
    public async Task ClusterStatus_ListsSilosAndTheRunsEachNodeHolds()
    {
        await ClusterSchema.ApplyAsync(_db.ConnectionString, _clusterSchema, Ct);
        var store = new PostgreSqlRunStore(_db.Options);
        await using (store)
        {
            await store.InitializeAsync(Ct);
            var now = DateTimeOffset.UtcNow;
            for (var i = 0; i < 3; i++)
                await store.SubmitAsync(new NewRun { Id = "r" + i, Agent = "a", Input = "x", CreatedAt = now, Started = new RunStarted("a", "x"), Claim = new RunClaim(i < 2 ? "node-a" : "node-gone", now.AddMinutes(1)) }, Ct);
            await store.SubmitAsync(new NewRun { Id = "r3", Agent = "a", Input = "x", CreatedAt = now, Started = new RunStarted("a", "x") }, Ct);
        }
        await using (var c = new NpgsqlConnection(_db.ConnectionString))
        {
            await c.OpenAsync(Ct);
            await using var cmd = new NpgsqlCommand($"""
                INSERT INTO {_clusterSchema}.orleansmembershipversiontable(deploymentid) VALUES ('prod');
                INSERT INTO {_clusterSchema}.orleansmembershiptable(deploymentid, address, port, generation, siloname, hostname, status, proxyport, starttime, iamalivetime)
                VALUES ('prod', '127.0.0.1', 11111, 1, 'node-a', 'h', 6, 30000, now() - interval '1 hour', now() - interval '1 hour'),
                       ('prod', '127.0.0.1', 11112, 2, 'node-a', 'h', 3, 30001, now(), now()),
                       ('other', '127.0.0.1', 11113, 3, 'node-x', 'h', 3, 30002, now(), now());
                """, c);
            await Assert.ThrowsAsync<PostgresException>(() => cmd.ExecuteNonQueryAsync(Ct)); // 'other' has no version row: the scripts' foreign key
            cmd.CommandText = cmd.CommandText.Replace("('prod');", "('prod'), ('other');", StringComparison.Ordinal);
            await cmd.ExecuteNonQueryAsync(Ct);
        }
        var state = await ClusterStatus.ReadAsync(_db.ConnectionString, _clusterSchema, _db.Schema, "prod", Ct);
        Assert.Equal(
            [("node-a", 11112, "active", 2), ("node-a", 11111, "dead", 0), ("node-gone", 0, "unknown", 1)],
            state.Nodes.Select(n => (n.Node, n.Port, n.Status, n.Runs)));
        Assert.Equal(1, state.Unclaimed);
    }
}
