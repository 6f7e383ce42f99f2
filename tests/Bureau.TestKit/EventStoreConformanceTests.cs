using Xunit;

namespace Bureau.TestKit;

/// <summary>The contract of <see cref="IEventStore"/>: dead letters kept once per key, listed newest first, retries recorded; poll cursors.</summary>
public abstract class EventStoreConformanceTests(IStoreTestDatabase database) : StoreSuite(database)
{
    private static DeadLetter Letter(string key, int second, string reason = DeadLetterReasons.Refused) => new()
    {
        Id = DeadLetter.IdOf(key), Key = key, Trigger = "github", EventId = "ev-" + second, Reason = reason, Agent = "triage",
        Input = "", Event = """{"action":"opened"}""", Data = null, Error = "the input is empty", RunId = reason == DeadLetterReasons.RunFailed ? "run-" + second : null,
        At = T0.AddSeconds(second),
    };

    [Fact]
    public async Task AddDeadLetter_OncePerKey_AndReadBackAsStored()
    {
        var events = await OpenEventsAsync();
        Assert.True(await events.AddDeadLetterAsync(Letter("trigger:github:1", 1)));
        Assert.False(await events.AddDeadLetterAsync(Letter("trigger:github:1", 2) with { Error = "another" }));
        Assert.Equal(Letter("trigger:github:1", 1), await events.GetDeadLetterAsync(DeadLetter.IdOf("trigger:github:1")));
        Assert.Null(await events.GetDeadLetterAsync("dl_nope"));
    }

    [Fact]
    public async Task ListDeadLetters_NewestFirst_RetriedOnlyWhenAsked()
    {
        var events = await OpenEventsAsync();
        for (var i = 1; i <= 4; i++) await events.AddDeadLetterAsync(Letter("trigger:github:" + i, i, i % 2 == 0 ? DeadLetterReasons.RunFailed : DeadLetterReasons.Refused));
        Assert.Equal(["4", "3", "2", "1"], (await events.ListDeadLettersAsync()).Select(l => l.Key[^1..]));
        Assert.Equal(["4", "3"], (await events.ListDeadLettersAsync(limit: 2)).Select(l => l.Key[^1..]));

        var id = DeadLetter.IdOf("trigger:github:3");
        await events.MarkRetriedAsync(id, 1, "retry-run", T0.AddMinutes(1));
        Assert.Equal(["4", "2", "1"], (await events.ListDeadLettersAsync()).Select(l => l.Key[^1..]));
        Assert.Equal(4, (await events.ListDeadLettersAsync(includeRetried: true)).Count);
        var retried = await events.GetDeadLetterAsync(id);
        Assert.Equal((1, T0.AddMinutes(1), "retry-run"), (retried!.Retries, retried.RetriedAt, retried.RetryRunId));
    }

    [Fact]
    public async Task MarkRetried_NeverGoesBack()
    {
        var events = await OpenEventsAsync();
        await events.AddDeadLetterAsync(Letter("k", 1));
        var id = DeadLetter.IdOf("k");
        await events.MarkRetriedAsync(id, 2, "second", T0.AddMinutes(2));
        await events.MarkRetriedAsync(id, 1, "first (late)", T0.AddMinutes(1));
        var letter = await events.GetDeadLetterAsync(id);
        Assert.Equal((2, "second"), (letter!.Retries, letter.RetryRunId));
    }

    [Fact]
    public async Task Cursors_AreNullUntilSet_ThenTheLastValueWins_PerTrigger()
    {
        var events = await OpenEventsAsync();
        Assert.Null(await events.GetCursorAsync("orders"));
        await events.SetCursorAsync("orders", "41", T0);
        await events.SetCursorAsync("orders", "42", T0.AddSeconds(1));
        await events.SetCursorAsync("invoices", "2026-01-01T00:00:00Z", T0);
        Assert.Equal("42", await events.GetCursorAsync("orders"));
        Assert.Equal("2026-01-01T00:00:00Z", await events.GetCursorAsync("invoices"));
        var again = await OpenEventsAsync();
        Assert.Equal("42", await again.GetCursorAsync("orders"));
    }

    [Fact]
    public async Task PushConfigs_PerTaskInOrder_ReplacedById_LimitedPerTask_Deleted()
    {
        var push = Assert.IsAssignableFrom<IA2APushConfigStore>(await OpenEventsAsync());
        Assert.Empty(await push.ListPushConfigsAsync("t1"));
        Assert.True(await push.PutPushConfigAsync("t1", "a", """{"id":"a","url":"https://a.example/"}""", 2, T0));
        Assert.True(await push.PutPushConfigAsync("t1", "b", """{"id":"b","url":"https://b.example/"}""", 2, T0));
        Assert.True(await push.PutPushConfigAsync("t2", "a", """{"id":"a","url":"https://other.example/"}""", 2, T0));
        // A third config is refused (nothing changes); replacing one of the two is not a third: it becomes the newest.
        Assert.False(await push.PutPushConfigAsync("t1", "c", """{"id":"c","url":"https://c.example/"}""", 2, T0));
        Assert.True(await push.PutPushConfigAsync("t1", "a", """{"id":"a","url":"https://a2.example/"}""", 2, T0.AddSeconds(1)));
        Assert.Equal(["""{"id":"b","url":"https://b.example/"}""", """{"id":"a","url":"https://a2.example/"}"""], await push.ListPushConfigsAsync("t1"));
        Assert.Equal(["""{"id":"a","url":"https://other.example/"}"""], await push.ListPushConfigsAsync("t2"));

        Assert.True(await push.DeletePushConfigAsync("t1", "b"));
        Assert.False(await push.DeletePushConfigAsync("t1", "b"));
        Assert.False(await push.DeletePushConfigAsync("t3", "a"));
        var again = Assert.IsAssignableFrom<IA2APushConfigStore>(await OpenEventsAsync());
        Assert.Equal(["""{"id":"a","url":"https://a2.example/"}"""], await again.ListPushConfigsAsync("t1"));
    }

    [Fact]
    public async Task PushTasks_AreWatchedFromTheirFirstConfig_UntilUnwatched_AndAgainWithANewConfig()
    {
        var push = Assert.IsAssignableFrom<IA2APushConfigStore>(await OpenEventsAsync());
        Assert.Empty(await push.ListWatchedPushTasksAsync());
        await push.PutPushConfigAsync("t1", "a", """{"id":"a"}""", 10, T0);
        await push.PutPushConfigAsync("t2", "a", """{"id":"a"}""", 10, T0);
        await push.PutPushConfigAsync("t1", "b", """{"id":"b"}""", 10, T0);
        Assert.Equal(["t1", "t2"], await push.ListWatchedPushTasksAsync());

        await push.UnwatchPushTaskAsync("t1");
        Assert.Equal(["t2"], await push.ListWatchedPushTasksAsync());
        Assert.Equal(2, (await push.ListPushConfigsAsync("t1")).Count); // its configs stay readable
        await push.PutPushConfigAsync("t1", "c", """{"id":"c"}""", 10, T0);
        Assert.Equal(["t1", "t2"], await push.ListWatchedPushTasksAsync());
    }
}
