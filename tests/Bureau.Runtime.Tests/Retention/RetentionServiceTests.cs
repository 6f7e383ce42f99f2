using System.Text.Json.Nodes;
using System.Threading.Channels;
using Bureau.Retention;
using Bureau.Tests.Support;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace Bureau.Tests.Retention;

/// <summary>
/// The retention sweep on a fake clock: old finished runs go with their journals, recent ones and failed ones within
/// keepFailedDays stay, unfinished runs and runs of an unfinished root never go, and the audit chain still verifies.
/// </summary>
public sealed class RetentionServiceTests : IAsyncDisposable
{
    private static readonly DateTimeOffset Now = new(2026, 12, 6, 12, 0, 0, TimeSpan.Zero);
    private readonly EngineFixture _fx = new();
    private readonly FakeTimeProvider _time = new(Now);

    public RetentionServiceTests() => _fx.Time = _time;

    public ValueTask DisposeAsync() => _fx.DisposeAsync();

    private void AddAgent(string name, AgentRetention? retention) =>
        _fx.Definitions.Add(new AgentDefinition { Name = name, Model = "m", Retention = retention });

    private async Task<(IRunStore Store, RetentionService Service)> StartAsync()
    {
        await _fx.StartAsync(start: false);
        return (_fx.Services.GetRequiredService<IRunStore>(), _fx.Services.GetRequiredService<RetentionService>());
    }

    private static async Task SubmitAsync(IRunStore store, string id, string agent, DateTimeOffset at, string? root = null)
    {
        await store.SubmitAsync(new NewRun
        {
            Id = id, Agent = agent, Input = "in", Started = new RunStarted(agent, "in"), CreatedAt = at, ParentRunId = root, RootRunId = root,
        });
    }

    private static async Task FinishedAsync(IRunStore store, string id, string agent, DateTimeOffset endedAt, RunStatus status = RunStatus.Succeeded, string? root = null)
    {
        await SubmitAsync(store, id, agent, endedAt.AddMinutes(-1), root);
        await store.AppendAsync(new AppendRequest
        {
            RunId = id, ExpectedVersion = 1, At = endedAt, Entries = [new RunFinished(status, "out", status == RunStatus.Failed ? "boom" : null, null)],
            Update = new RunUpdate { Status = status, Output = "out", Error = status == RunStatus.Failed ? "boom" : null },
        });
    }

    private static async Task<HashSet<string>> IdsAsync(IRunStore store)
    {
        var page = await store.ListRunsAsync(new RunQuery { Limit = 1000 });
        return [.. page.Items.Select(r => r.Id)];
    }

    [Fact]
    public async Task Sweep_KeepDays_DeletesOldFinishedRunsAndTheirJournalsKeepsRecentAndFailedLonger()
    {
        AddAgent("desk", new AgentRetention { KeepDays = 30, KeepFailedDays = 90 });
        AddAgent("other", null);
        var (store, service) = await StartAsync();
        await FinishedAsync(store, "old-ok", "desk", Now.AddDays(-31));
        await FinishedAsync(store, "old-canceled", "desk", Now.AddDays(-40), RunStatus.Canceled);
        await FinishedAsync(store, "recent-ok", "desk", Now.AddDays(-29));
        await FinishedAsync(store, "old-failed", "desk", Now.AddDays(-60), RunStatus.Failed);
        await FinishedAsync(store, "ancient-failed", "desk", Now.AddDays(-91), RunStatus.Failed);
        await FinishedAsync(store, "no-policy", "other", Now.AddDays(-400));

        Assert.Equal(3, await service.SweepAsync());

        Assert.Equal(["no-policy", "old-failed", "recent-ok"], (await IdsAsync(store)).Order());
        Assert.Empty(await store.ReadJournalAsync("old-ok"));
        Assert.Equal(2, (await store.ReadJournalAsync("recent-ok")).Count);
        Assert.Equal(0, await service.SweepAsync());
    }

    [Fact]
    public async Task Sweep_KeepRuns_KeepsTheNewestFinishedRunsAndFailedOnesWithinKeepFailedDays()
    {
        AddAgent("desk", new AgentRetention { KeepRuns = 2, KeepFailedDays = 10 });
        var (store, service) = await StartAsync();
        await FinishedAsync(store, "failed-old", "desk", Now.AddDays(-11), RunStatus.Failed);
        await FinishedAsync(store, "failed-young", "desk", Now.AddDays(-5), RunStatus.Failed);
        for (var i = 1; i <= 5; i++) await FinishedAsync(store, $"ok{i}", "desk", Now.AddHours(-10 + i));

        Assert.Equal(4, await service.SweepAsync());

        Assert.Equal(["failed-young", "ok4", "ok5"], (await IdsAsync(store)).Order());
    }

    [Fact]
    public async Task Sweep_UnfinishedRunsAndRunsOfAnUnfinishedRoot_AreNeverDeleted()
    {
        AddAgent("desk", new AgentRetention { KeepDays = 1, KeepRuns = 1 });
        var (store, service) = await StartAsync();
        var old = Now.AddDays(-100);
        await SubmitAsync(store, "queued", "desk", old);
        await SubmitAsync(store, "running", "desk", old);
        await store.MarkRunningAsync("running", old);
        await SubmitAsync(store, "waiting", "desk", old);
        var wait = new TimerWait { Step = 2 };
        await store.AppendAsync(new AppendRequest
        {
            RunId = "waiting", ExpectedVersion = 1, At = old, Entries = [new RunWaiting(wait)],
            Update = new RunUpdate { Status = RunStatus.Waiting, WaitingFor = wait },
        });
        await SubmitAsync(store, "team", "team", old);              // the root, still queued
        await FinishedAsync(store, "member", "desk", old, root: "team");
        await FinishedAsync(store, "done", "desk", old);

        Assert.Equal(1, await service.SweepAsync());

        Assert.Equal(["member", "queued", "running", "team", "waiting"], (await IdsAsync(store)).Order());
        var runs = (await store.ListRunsAsync(new RunQuery { Limit = 100 })).Items.ToDictionary(r => r.Id, r => r.Status);
        Assert.Equal((RunStatus.Queued, RunStatus.Running, RunStatus.Waiting), (runs["queued"], runs["running"], runs["waiting"]));
    }

    [Fact]
    public async Task Sweep_EachBatch_WritesOneAuditEntryAndTheChainStillVerifies()
    {
        AddAgent("desk", new AgentRetention { KeepDays = 1 });
        _fx.Configure = b => b.Services.Configure<BureauOptions>(o => o.Retention.BatchSize = 2);
        var (store, service) = await StartAsync();
        for (var i = 1; i <= 5; i++) await FinishedAsync(store, $"r{i}", "desk", Now.AddDays(-2));
        var audit = (IAuditLog)store;
        var before = (await audit.ReadAuditAsync()).Count;

        Assert.Equal(5, await service.SweepAsync());

        var entries = (await audit.ReadAuditAsync()).Skip(before).ToList();
        Assert.Equal([2, 2, 1], entries.Select(e => (int)JsonNode.Parse(e.Detail!)!["count"]!));
        Assert.All(entries, e => Assert.Equal(("retention.deleted", "retention", Now), (e.Action, e.Actor, e.At)));
        Assert.Equal(["r1", "r2", "r3", "r4", "r5"], entries.SelectMany(e => JsonNode.Parse(e.Detail!)!["runs"]!.AsArray().Select(n => (string)n!)).Order());
        Assert.Contains("keepDays 1", (string)JsonNode.Parse(entries[0].Detail!)!["reason"]!);
        var verified = await audit.VerifyAuditAsync();
        Assert.True(verified.IsIntact, verified.Problem);
        Assert.Equal(before + 3, verified.Entries);
    }

    [Fact]
    public async Task Sweep_ExportTo_WritesTheRunsAsJsonLinesBeforeDeletingThem()
    {
        var folder = Path.Combine(Path.GetDirectoryName(_fx.DbPath)!, "archive");
        AddAgent("desk", new AgentRetention { KeepDays = 1, ExportTo = folder });
        var (store, service) = await StartAsync();
        await FinishedAsync(store, "gone", "desk", Now.AddDays(-3));

        Assert.Equal(1, await service.SweepAsync());

        var line = Assert.Single(await File.ReadAllLinesAsync(Path.Combine(folder, "desk-20261206.jsonl")));
        var run = JsonNode.Parse(line)!;
        Assert.Equal(("gone", "succeeded"), ((string)run["id"]!, (string)run["status"]!));
        Assert.Equal(["run.started", "run.finished"], run["steps"]!.AsArray().Select(s => (string)s!["kind"]!));
        Assert.Empty(await IdsAsync(store));
    }

    [Fact]
    public async Task Background_SweepsAtStartThenEveryInterval()
    {
        AddAgent("desk", new AgentRetention { KeepDays = 1 });
        var (store, service) = await StartAsync();
        var swept = Channel.CreateUnbounded<int>();
        service.Swept += n => swept.Writer.TryWrite(n);
        await FinishedAsync(store, "old", "desk", Now.AddDays(-2));
        await FinishedAsync(store, "young", "desk", Now.AddHours(-23.5));

        await service.StartAsync(CancellationToken.None);
        try
        {
            Assert.Equal(1, await swept.Reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(20)));
            Assert.Equal(["young"], await IdsAsync(store));

            _time.Advance(TimeSpan.FromHours(1));     // the next sweep: "young" is now over a day old
            var second = await swept.Reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(20));
            Assert.True(second == 1, $"the sweep an hour later deleted {second} run(s), expected 1 (run 'young', ended 24.5 h before)");
            Assert.Empty(await IdsAsync(store));
        }
        finally
        {
            await service.StopAsync(CancellationToken.None);
        }
    }

    [Fact]
    public async Task Options_BadBatchSizeOrInterval_FailNamingTheKey()
    {
        AddAgent("desk", new AgentRetention { KeepDays = 1 });
        _fx.Configure = b => b.Services.Configure<BureauOptions>(o => { o.Retention.BatchSize = 0; o.Retention.SweepInterval = TimeSpan.Zero; });

        var ex = await Assert.ThrowsAsync<Microsoft.Extensions.Options.OptionsValidationException>(() => _fx.StartAsync(start: false));
        Assert.Contains("Bureau:Retention:BatchSize must be between 1 and 10000 (is 0)", ex.Message);
        Assert.Contains("Bureau:Retention:SweepInterval must be at least 1 second", ex.Message);
    }
}
