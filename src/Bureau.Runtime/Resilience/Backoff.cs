namespace Bureau.Resilience;

/// <summary>Retry waits: exponential backoff with jitter, or the dependency's <c>Retry-After</c> when it gave one.</summary>
internal static class Backoff
{
    /// <summary>The wait before retry number <paramref name="retry"/> (1 for the first retry).</summary>
    public static TimeSpan Delay(RetrySettings settings, int retry, TimeSpan? retryAfter, Func<double> random)
    {
        if (retryAfter is { } after && after > TimeSpan.Zero) return after;
        var exponent = Math.Min(retry - 1, 30);
        var ms = settings.Delay.TotalMilliseconds * Math.Pow(2, exponent);
        if (settings.Jitter) ms *= 0.5 + random();
        ms = Math.Min(ms, settings.MaxDelay.TotalMilliseconds);
        return TimeSpan.FromMilliseconds(Math.Max(ms, 0));
    }

    /// <summary>Parses a <c>Retry-After</c> value: seconds, or an HTTP date.</summary>
    public static TimeSpan? ParseRetryAfter(string? value, DateTimeOffset now)
    {
        if (string.IsNullOrWhiteSpace(value)) return null;
        if (double.TryParse(value.Trim(), System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var seconds))
            return seconds >= 0 ? TimeSpan.FromSeconds(seconds) : null;
        if (DateTimeOffset.TryParse(value, System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.AssumeUniversal, out var date))
            return date > now ? date - now : TimeSpan.Zero;
        return null;
    }

    /// <summary>"1.5s", "250ms".</summary>
    public static string Format(TimeSpan t) =>
        t.TotalSeconds >= 1 ? $"{Math.Round(t.TotalSeconds, 1).ToString(System.Globalization.CultureInfo.InvariantCulture)}s" : $"{Math.Round(t.TotalMilliseconds)}ms";
}
