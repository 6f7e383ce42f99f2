namespace Bureau;

/// <summary>
/// A2A push notifications (<c>services.Configure&lt;A2AOptions&gt;(...)</c>, or the configuration section
/// <c>Bureau:A2A</c>). See docs/a2a.md and decision 0034.
/// </summary>
public sealed class A2AOptions
{
    /// <summary>
    /// Lets push notifications go to loopback, private, link-local and other non-public addresses. Off by default: a
    /// client could otherwise make the host call services behind its firewall (SSRF). Turn it on only where every
    /// client that may create a push config is trusted (tests, one private network).
    /// </summary>
    public bool AllowPrivatePushUrls { get; set; }

    /// <summary>Attempts per notification (the first included) before it is given up (logged). Default 5.</summary>
    public int PushAttempts { get; set; } = 5;

    /// <summary>The wait before the second attempt; each next wait doubles, up to a minute. Default 1 s.</summary>
    public TimeSpan PushRetryDelay { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>How long one attempt may take. Default 10 s.</summary>
    public TimeSpan PushTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>At most this many push configs per task. Default 10.</summary>
    public int MaxPushConfigsPerTask { get; set; } = 10;
}
