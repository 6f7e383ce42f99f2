using System.ClientModel;
using System.Threading.RateLimiting;
using Polly.CircuitBreaker;
using Polly.RateLimiting;
using Polly.Timeout;

namespace Bureau.Resilience;

/// <summary>What a failed model call was, for retrying, breaking, falling back and the failure taxonomy.</summary>
/// <param name="Class"><c>rate-limited</c>, <c>unavailable</c>, <c>timeout</c>, <c>refused</c>, <c>invalid-output</c>, <c>error</c>.</param>
/// <param name="Retriable">Worth another attempt (a 429, a 5xx, a timeout, a lost connection).</param>
/// <param name="RetryAfter">The wait the endpoint asked for.</param>
/// <param name="CountsAsOutage">Counts toward the breaker (a 5xx, a timeout, a lost connection; not a 429 or a refusal).</param>
internal readonly record struct ModelFailure(string Class, bool Retriable, TimeSpan? RetryAfter, bool CountsAsOutage)
{
    /// <summary>A fallback model may answer instead (the failure is the model's, not the request's).</summary>
    public bool FallbackEligible => Retriable || Class is "unavailable" or "rate-limited" or "timeout";

    public static ModelFailure Classify(Exception ex, DateTimeOffset now)
    {
        switch (ex)
        {
            case ModelCallException m:
                return m.Failure;
            case BrokenCircuitException:
                return new("unavailable", false, null, false);
            case RateLimitWaitTooLongException:
                return new("rate-limited", false, null, false);
            case RateLimiterRejectedException:
                return new("unavailable", false, null, false);
            case TimeoutRejectedException or TimeoutException:
                return new("timeout", true, null, true);
            case ClientResultException cre:
                return FromStatus(cre.Status, RetryAfterOf(cre, now));
            case HttpRequestException hre:
                return hre.StatusCode is { } code ? FromStatus((int)code, null) : new("unavailable", true, null, true);
            case System.IO.IOException or System.Net.Sockets.SocketException:
                return new("unavailable", true, null, true);
            case System.Text.Json.JsonException or FormatException:
                return new("invalid-output", false, null, false);
            default:
                return new("error", false, null, false);
        }
    }

    private static ModelFailure FromStatus(int status, TimeSpan? retryAfter) => status switch
    {
        0 => new("unavailable", true, retryAfter, true),            // no response: the connection failed
        429 => new("rate-limited", true, retryAfter, false),
        408 => new("timeout", true, retryAfter, true),
        >= 500 => new("unavailable", true, retryAfter, true),
        _ => new("refused", false, null, false),                   // 400, 401, 403, 404, 422: the same request fails again
    };

    private static TimeSpan? RetryAfterOf(ClientResultException ex, DateTimeOffset now)
    {
        var response = ex.GetRawResponse();
        if (response is null) return null;
        if (response.Headers.TryGetValue("retry-after-ms", out var ms)
            && double.TryParse(ms, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var millis) && millis >= 0)
            return TimeSpan.FromMilliseconds(millis);
        return response.Headers.TryGetValue("Retry-After", out var value) ? Backoff.ParseRetryAfter(value, now) : null;
    }
}

/// <summary>A model call failed for good (after its retries, or at once: an open breaker, a refusal); names the model and the attempts.</summary>
internal sealed class ModelCallException(string model, ModelFailure failure, int attempts, string message, Exception inner)
    : Exception(message, inner)
{
    public string Model { get; } = model;
    public ModelFailure Failure { get; } = failure;
    public int Attempts { get; } = attempts;
}

/// <summary>The rate limit's wait would pass the model's <c>maxRateLimitWait</c>: the call fails (and may fall back) instead of waiting.</summary>
internal sealed class RateLimitWaitTooLongException(string message) : Exception(message);
