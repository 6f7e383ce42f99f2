namespace Bureau.Resilience;

/// <summary>
/// The clock of the resilience links (retry waits, breaker durations, rate-limit refills, attempt timeouts):
/// the host's <see cref="TimeProvider"/> unless a test gives them their own, so that their waits can be
/// driven without driving the engine's leases and timers too.
/// </summary>
internal sealed record ResilienceClock(TimeProvider Time);
