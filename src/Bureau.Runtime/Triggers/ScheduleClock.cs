using Bureau.Manifests;
using Cronos;

namespace Bureau.Triggers;

/// <summary>The ticks of a schedule: a cron expression in a time zone, or a fixed interval aligned on the Unix epoch (UTC).</summary>
internal sealed class ScheduleClock
{
    private readonly CronExpression? _cron;
    private readonly TimeZoneInfo _zone = TimeZoneInfo.Utc;
    private readonly long _everyTicks;

    private ScheduleClock(CronExpression? cron, TimeZoneInfo zone, long everyTicks)
    {
        _cron = cron;
        _zone = zone;
        _everyTicks = everyTicks;
    }

    /// <summary>The clock of <paramref name="schedule"/>; <see cref="ArgumentException"/> naming what is wrong.</summary>
    public static ScheduleClock For(ScheduleTriggerDefinition schedule)
    {
        if ((schedule.Cron is null) == (schedule.Every is null))
            throw new ArgumentException("set either Cron or Every", nameof(schedule));
        if (schedule.Every is { } every)
        {
            if (every < TimeSpan.FromSeconds(1) || every.Ticks % TimeSpan.TicksPerSecond != 0)
                throw new ArgumentException($"Every must be whole seconds, at least 1 s (is {every})", nameof(schedule));
            return new ScheduleClock(null, TimeZoneInfo.Utc, every.Ticks);
        }
        var cron = ManifestReader.TryParseCron(schedule.Cron!, out var problem)
            ?? throw new ArgumentException($"Cron {problem}", nameof(schedule));
        var zone = TimeZoneInfo.Utc;
        if (schedule.TimeZone is { } id && !TimeZoneInfo.TryFindSystemTimeZoneById(id, out zone))
            throw new ArgumentException($"unknown TimeZone '{id}'", nameof(schedule));
        return new ScheduleClock(cron, zone!, 0);
    }

    /// <summary>The first tick strictly after <paramref name="t"/>, or null when there is none (a cron that never matches again).</summary>
    public DateTimeOffset? NextAfter(DateTimeOffset t)
    {
        if (_cron is null)
        {
            var since = t.UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks;
            var floor = since >= 0 ? since / _everyTicks : -((-since + _everyTicks - 1) / _everyTicks);
            var n = floor + 1;
            return DateTimeOffset.UnixEpoch.AddTicks(n * _everyTicks);
        }
        // Cron ticks have whole seconds: search from the start of t's second, exclusive, so a fraction of a second past a tick cannot return it again.
        var second = new DateTimeOffset(t.UtcTicks - t.UtcTicks % TimeSpan.TicksPerSecond, TimeSpan.Zero);
        return _cron.GetNextOccurrence(second, _zone, inclusive: false)?.ToUniversalTime();
    }

    /// <summary>
    /// The ticks in (<paramref name="after"/>, <paramref name="until"/>]: how many, and the latest <paramref name="keep"/>
    /// of them in order. Counting stops at <paramref name="maxCount"/> (the count is then a lower bound).
    /// </summary>
    public (long Count, List<DateTimeOffset> Latest) Between(DateTimeOffset after, DateTimeOffset until, int keep, long maxCount = 10_000_000)
    {
        var latest = new Queue<DateTimeOffset>();
        long count = 0;
        if (_cron is null)
        {
            // Arithmetic: the ticks are evenly spaced.
            var first = NextAfter(after)!.Value;
            if (first > until) return (0, []);
            count = (until.UtcTicks - first.UtcTicks) / _everyTicks + 1;
            var from = Math.Max(0, count - keep);
            var list = new List<DateTimeOffset>();
            for (var i = from; i < count; i++) list.Add(first.AddTicks(i * _everyTicks));
            return (count, list);
        }
        var t = after;
        while (count < maxCount && NextAfter(t) is { } next && next <= until)
        {
            count++;
            if (keep > 0)
            {
                latest.Enqueue(next);
                if (latest.Count > keep) latest.Dequeue();
            }
            t = next;
        }
        return (count, [.. latest]);
    }
}
