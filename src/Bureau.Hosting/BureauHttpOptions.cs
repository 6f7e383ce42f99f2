using Microsoft.Extensions.Options;

namespace Bureau;

/// <summary>
/// Options of Bureau's HTTP API, bound from the configuration section <c>Bureau</c> (beside
/// <see cref="BureauOptions"/>) and validated when the host starts; an invalid value stops the start
/// with an error naming its key.
/// </summary>
public sealed class BureauHttpOptions
{
    /// <summary>Largest request body the API accepts, in bytes; larger ones get 413 and change nothing. Default 1 MiB.</summary>
    public long MaxRequestBodyBytes { get; set; } = 1024 * 1024;

    /// <summary>How often an idle event stream sends a <c>: ping</c> comment. Default 15 s.</summary>
    public TimeSpan HeartbeatInterval { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>Whether <c>MapBureau()</c> also maps the OpenAPI document at <c>/openapi/v1.json</c>. Default true.</summary>
    public bool MapOpenApi { get; set; } = true;

    /// <summary>Longest <c>Idempotency-Key</c> header accepted, in characters. Default 200.</summary>
    public int MaxIdempotencyKeyLength { get; set; } = 200;

    /// <summary>Whether <c>MapBureau()</c> also serves the deployed agents as MCP tools at <c>/mcp</c> (streamable HTTP, same keys and roles). Default true.</summary>
    public bool MapMcp { get; set; } = true;
}

/// <summary>Checks <see cref="BureauHttpOptions"/>; each failure names its configuration key.</summary>
internal sealed class BureauHttpOptionsValidator : IValidateOptions<BureauHttpOptions>
{
    public ValidateOptionsResult Validate(string? name, BureauHttpOptions o)
    {
        var errors = new List<string>();
        if (o.MaxRequestBodyBytes < 1024) errors.Add($"Bureau:MaxRequestBodyBytes must be at least 1024 (is {o.MaxRequestBodyBytes})");
        if (o.HeartbeatInterval <= TimeSpan.Zero) errors.Add($"Bureau:HeartbeatInterval must be positive (is {o.HeartbeatInterval})");
        if (o.MaxIdempotencyKeyLength < 1) errors.Add($"Bureau:MaxIdempotencyKeyLength must be at least 1 (is {o.MaxIdempotencyKeyLength})");
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
