using Bureau.Tests.Support;
using Bureau.Triggers;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace Bureau.Tests.Triggers;

/// <summary>
/// Schedule triggers on a fake clock: a run per tick, keyed by the tick (once, also with two services firing it),
/// the catch-up policy after downtime (read back from the store), and the overlap policy.
/// </summary>
public sealed class ScheduleTests : IAsyncDisposable
{
    private static readonly DateTimeOffset T0 = new(2026, 12, 6, 10, 0, 30, TimeSpan.Zero);
    private readonly EngineFixture _f = new();
    private readonly FakeTimeProvider _clock = new(T0);
    private readonly List<ScheduleService> _services = [];
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ScheduleTests()
    {
        // The engine keeps the real clock (its shutdown waits on it); only the schedules run on the fake one.
        _f.UseModel((_, _) => FakeModel.Text("done"));
        _f.AddAgent("reporter");
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var s in _services) await s.StopAsync(CancellationToken.None);
        _release.TrySetResult();
        await _f.DisposeAsync();
    }

    /// <summary>Holds the model's answers while a test asks it to (the overlap tests).</summary>
    private readonly TaskCompletionSource _release = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private async Task<ScheduleService> StartAsync(ScheduleTriggerDefinition schedule)
    {
        _f.Definitions.Triggers.Clear();
        _f.Definitions.Add(schedule);
        await _f.StartAsync();
        var service = new ScheduleService(_f.Services, _clock, NullLoggerFactory.Instance);
        _services.Add(service);
        await service.StartAsync(Ct);
        await SettledAsync(service);
        return service;
    }

    /// <summary>Every tick up to now is handled: the service sleeps until a later time.</summary>
    private async Task SettledAsync(ScheduleService service)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(20));
        try
        {
            await service.WaitSleepingPastAsync(_clock.GetUtcNow(), timeout.Token);
        }
        catch (OperationCanceledException) when (!Ct.IsCancellationRequested)
        {
            throw new TimeoutException($"the schedule service did not settle at {_clock.GetUtcNow():o} within 20 s");
        }
    }

    private async Task AdvanceAsync(ScheduleService service, TimeSpan by)
    {
        _clock.Advance(by);
        await SettledAsync(service);
    }

    /// <summary>Waits until every run ended (a host stopping with runs in flight is another test).</summary>
    private async Task EndedAsync()
    {
        var engine = _f.Services.GetRequiredService<BureauEngine>();
        foreach (var r in await RunsAsync()) await EngineFixture.WaitAsync(engine, r.Id);
    }

    private async Task<List<RunRecord>> RunsAsync() =>
        [.. (await _f.Services.GetRequiredService<BureauEngine>().ListRunsAsync(new RunQuery { Limit = 1000 }, Ct)).Items.OrderBy(r => r.IdempotencyKey, StringComparer.Ordinal)];

    [Fact]
    public async Task Every_OneRunPerTick_KeyedAndMappedByTheTick()
    {
        var service = await StartAsync(new ScheduleTriggerDefinition { Name = "minutely", Agent = "reporter", Every = TimeSpan.FromMinutes(1), Input = "report for {{$.tick}}" });
        Assert.Empty(await RunsAsync());

        await AdvanceAsync(service, TimeSpan.FromSeconds(30));
        var run = Assert.Single(await RunsAsync());
        Assert.Equal(("reporter", "schedule:minutely:2026-12-06T10:01:00Z", "report for 2026-12-06T10:01:00Z", "trigger:minutely"),
            (run.Agent, run.IdempotencyKey, run.Input, run.Actor));

        await EndedAsync(); // overlap: skip (the default) would skip the next tick while this run goes on
        await AdvanceAsync(service, TimeSpan.FromSeconds(59));
        Assert.Single(await RunsAsync());
        await AdvanceAsync(service, TimeSpan.FromSeconds(1));
        Assert.Equal(["schedule:minutely:2026-12-06T10:01:00Z", "schedule:minutely:2026-12-06T10:02:00Z"], (await RunsAsync()).Select(r => r.IdempotencyKey));
    }

    [Fact]
    public async Task TwoServicesFiringTheSameSchedule_OneRunPerTick()
    {
        var service = await StartAsync(new ScheduleTriggerDefinition { Name = "s", Agent = "reporter", Every = TimeSpan.FromMinutes(1), Overlap = OverlapPolicy.Allow });
        var second = new ScheduleService(_f.Services, _clock, NullLoggerFactory.Instance);
        _services.Add(second);
        await second.StartAsync(Ct);
        await SettledAsync(second);

        for (var i = 0; i < 3; i++)
        {
            _clock.Advance(TimeSpan.FromMinutes(1));
            await SettledAsync(service);
            await SettledAsync(second);
        }
        Assert.Equal(["schedule:s:2026-12-06T10:01:00Z", "schedule:s:2026-12-06T10:02:00Z", "schedule:s:2026-12-06T10:03:00Z"],
            (await RunsAsync()).Select(r => r.IdempotencyKey));
    }

    [Theory]
    [InlineData(CatchUpPolicy.Skip, new string[0])]
    [InlineData(CatchUpPolicy.Once, new[] { "10:11:00" })]
    [InlineData(CatchUpPolicy.All, new[] { "10:09:00", "10:10:00", "10:11:00" })]
    public async Task AfterDowntime_MissedTicks_FollowTheCatchUpPolicy(CatchUpPolicy policy, string[] caughtUp)
    {
        var schedule = new ScheduleTriggerDefinition
        {
            Name = "s", Agent = "reporter", Every = TimeSpan.FromMinutes(1), CatchUp = policy, MaxCatchUp = 3, Overlap = OverlapPolicy.Allow,
        };
        var service = await StartAsync(schedule);
        await AdvanceAsync(service, TimeSpan.FromSeconds(30)); // 10:01:00 fires
        Assert.Single(await RunsAsync());

        // Down from 10:01:00 to 10:11:30: ten ticks (10:02 .. 10:11) pass with no host.
        await service.StopAsync(Ct);
        _services.Remove(service);
        await EndedAsync();
        await _f.DisposeEnginesAsync();
        _clock.Advance(TimeSpan.FromSeconds(630));
        var restarted = await StartAsync(schedule);

        var expected = new[] { "10:01:00" }.Concat(caughtUp).Select(t => $"schedule:s:2026-12-06T{t}Z");
        Assert.Equal(expected, (await RunsAsync()).Select(r => r.IdempotencyKey));

        // Then it goes on from the next tick, whatever the policy.
        await AdvanceAsync(restarted, TimeSpan.FromSeconds(30));
        Assert.Equal("schedule:s:2026-12-06T10:12:00Z", (await RunsAsync()).Last().IdempotencyKey);
    }

    [Fact]
    public async Task NeverFired_CatchUpAll_FiresNothingBeforeItsFirstTick()
    {
        var service = await StartAsync(new ScheduleTriggerDefinition { Name = "s", Agent = "reporter", Every = TimeSpan.FromSeconds(7), CatchUp = CatchUpPolicy.All });
        Assert.Empty(await RunsAsync()); // ticks before the schedule existed were not missed
        await AdvanceAsync(service, TimeSpan.FromSeconds(1));
        Assert.Empty(await RunsAsync());
        await AdvanceAsync(service, TimeSpan.FromSeconds(1)); // 10:00:32 = 1796551232 s since the epoch, a multiple of 7
        Assert.Equal("schedule:s:2026-12-06T10:00:32Z", Assert.Single(await RunsAsync()).IdempotencyKey);
    }

    [Theory]
    [InlineData(OverlapPolicy.Skip, 1)]
    [InlineData(OverlapPolicy.Allow, 2)]
    public async Task Overlap_PreviousRunUnfinished_FollowsThePolicy(OverlapPolicy overlap, int runsWhileBlocked)
    {
        var release = _release;
        _f.Definitions.Models.Clear();
        var model = _f.UseModel((_, _) => FakeModel.Text("done"));
        model.BeforeAnswer = (_, _, ct) => release.Task.WaitAsync(ct);
        var service = await StartAsync(new ScheduleTriggerDefinition { Name = "s", Agent = "reporter", Every = TimeSpan.FromMinutes(1), Overlap = overlap });

        await AdvanceAsync(service, TimeSpan.FromSeconds(30)); // 10:01: starts a run that does not end
        await AdvanceAsync(service, TimeSpan.FromMinutes(1));  // 10:02: the first run is unfinished
        var runs = await RunsAsync();
        Assert.Equal(runsWhileBlocked, runs.Count);
        Assert.False(runs[0].Status.IsTerminal());

        release.SetResult();
        foreach (var r in runs) await EngineFixture.WaitAsync(_f.Services.GetRequiredService<BureauEngine>(), r.Id);
        await AdvanceAsync(service, TimeSpan.FromMinutes(1)); // 10:03: nothing unfinished, fires
        Assert.Equal("schedule:s:2026-12-06T10:03:00Z", (await RunsAsync()).Last().IdempotencyKey);
    }

    [Fact]
    public async Task Overlap_QueueOne_OneRunWaitsBehindTheUnfinishedOne_FurtherTicksSkipped_ThenItRuns()
    {
        var release = _release;
        _f.Definitions.Models.Clear();
        var model = _f.UseModel((_, _) => FakeModel.Text("done"));
        model.BeforeAnswer = (_, _, ct) => release.Task.WaitAsync(ct);
        var service = await StartAsync(new ScheduleTriggerDefinition { Name = "s", Agent = "reporter", Every = TimeSpan.FromMinutes(1), Overlap = OverlapPolicy.QueueOne });
        var engine = _f.Services.GetRequiredService<BureauEngine>();

        await AdvanceAsync(service, TimeSpan.FromSeconds(30)); // 10:01: a run that does not end
        var first = Assert.Single(await RunsAsync());
        using (var started = CancellationTokenSource.CreateLinkedTokenSource(Ct))
        {
            started.CancelAfter(TimeSpan.FromSeconds(20));
            await foreach (var e in engine.WatchAsync(first.Id, includeActivity: true, cancellationToken: started.Token))
                if (e.Activity == "model.started") break;
        }
        await AdvanceAsync(service, TimeSpan.FromMinutes(1));  // 10:02: queued behind it
        await AdvanceAsync(service, TimeSpan.FromMinutes(1));  // 10:03: one is queued already: skipped
        var runs = await RunsAsync();
        Assert.Equal(["schedule:s:2026-12-06T10:01:00Z", "schedule:s:2026-12-06T10:02:00Z"], runs.Select(r => r.IdempotencyKey));
        Assert.Equal(RunStatus.Queued, runs[1].Status);
        Assert.True(engine.IsQueuedHere(runs[1].Id));
        Assert.Equal(1, model.Calls); // the queued run has not started beside the first

        release.SetResult();
        foreach (var r in runs) Assert.Equal(RunStatus.Succeeded, (await EngineFixture.WaitAsync(engine, r.Id)).Status);
    }

    [Fact]
    public void CronClock_WithSecondsAndATimeZone_FollowsTheZonesOffsetAcrossDst()
    {
        var clock = ScheduleClock.For(new ScheduleTriggerDefinition { Name = "c", Agent = "a", Cron = "0 30 9 * * *", TimeZone = "Europe/Paris" });
        Assert.Equal(new DateTimeOffset(2026, 12, 6, 8, 30, 0, TimeSpan.Zero), clock.NextAfter(new DateTimeOffset(2026, 12, 6, 0, 0, 0, TimeSpan.Zero)));
        Assert.Equal(new DateTimeOffset(2026, 7, 6, 7, 30, 0, TimeSpan.Zero), clock.NextAfter(new DateTimeOffset(2026, 7, 6, 0, 0, 0, TimeSpan.Zero)));
        Assert.Equal(new DateTimeOffset(2026, 12, 7, 8, 30, 0, TimeSpan.Zero), clock.NextAfter(new DateTimeOffset(2026, 12, 6, 8, 30, 0, 500, TimeSpan.Zero)));
    }

    [Fact]
    public void EveryClock_TicksAlignedOnTheEpoch_CountedArithmetically()
    {
        var clock = ScheduleClock.For(new ScheduleTriggerDefinition { Name = "e", Agent = "a", Every = TimeSpan.FromMinutes(10) });
        var at = new DateTimeOffset(2026, 12, 6, 10, 3, 0, TimeSpan.Zero);
        Assert.Equal(new DateTimeOffset(2026, 12, 6, 10, 10, 0, TimeSpan.Zero), clock.NextAfter(at));
        var (count, latest) = clock.Between(at, at.AddDays(365), keep: 2);
        Assert.Equal(365 * 144, count);
        Assert.Equal([at.AddDays(365).AddMinutes(-13), at.AddDays(365).AddMinutes(-3)], latest);
    }
}
