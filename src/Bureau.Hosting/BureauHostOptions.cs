using Bureau.Storage.Sqlite;
using Microsoft.Extensions.Options;

namespace Bureau;

/// <summary>
/// Options of a Bureau host, bound from the configuration section <c>Bureau</c>
/// (<c>appsettings.json</c>, environment variables such as <c>Bureau__MaxConcurrentRuns</c>) and
/// validated when the host starts; an invalid value stops the start with an error naming its key.
/// </summary>
public sealed class BureauHostOptions
{
    /// <summary>The configuration section the options are bound from.</summary>
    public const string SectionName = "Bureau";

    /// <summary>Manifest files (YAML) whose models, tools and agents are deployed, besides those added in code. Key <c>Bureau:Manifests:0</c>, ...</summary>
    public List<string> Manifests { get; set; } = [];

    /// <summary>The embedded SQLite store (key <c>Bureau:Sqlite:Path</c>, <c>Bureau:Sqlite:Durability</c>, ...).</summary>
    public SqliteStoreOptions Sqlite { get; set; } = new();

    /// <summary>Most runs executing at once in this process; more wait in the queue. Default 64.</summary>
    public int MaxConcurrentRuns { get; set; } = 64;

    /// <summary>On shutdown, how long in-flight steps get to reach the journal. Default 10 s.</summary>
    public TimeSpan ShutdownGrace { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Largest request body the API accepts, in bytes; larger ones get 413 and change nothing. Default 1 MiB.</summary>
    public long MaxRequestBodyBytes { get; set; } = 1024 * 1024;

    /// <summary>How often an idle event stream sends a <c>: ping</c> comment. Default 15 s.</summary>
    public TimeSpan HeartbeatInterval { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>Whether <c>MapBureau()</c> also maps the OpenAPI document at <c>/openapi/v1.json</c>. Default true.</summary>
    public bool MapOpenApi { get; set; } = true;

    /// <summary>Longest <c>Idempotency-Key</c> header accepted, in characters. Default 200.</summary>
    public int MaxIdempotencyKeyLength { get; set; } = 200;
}

/// <summary>Checks <see cref="BureauHostOptions"/>; each failure names its configuration key.</summary>
internal sealed class BureauHostOptionsValidator : IValidateOptions<BureauHostOptions>
{
    public ValidateOptionsResult Validate(string? name, BureauHostOptions o)
    {
        var errors = new List<string>();
        if (o.MaxConcurrentRuns < 1) errors.Add($"Bureau:MaxConcurrentRuns must be at least 1 (is {o.MaxConcurrentRuns})");
        if (o.ShutdownGrace < TimeSpan.Zero) errors.Add($"Bureau:ShutdownGrace must not be negative (is {o.ShutdownGrace})");
        if (o.MaxRequestBodyBytes < 1024) errors.Add($"Bureau:MaxRequestBodyBytes must be at least 1024 (is {o.MaxRequestBodyBytes})");
        if (o.HeartbeatInterval <= TimeSpan.Zero) errors.Add($"Bureau:HeartbeatInterval must be positive (is {o.HeartbeatInterval})");
        if (o.MaxIdempotencyKeyLength < 1) errors.Add($"Bureau:MaxIdempotencyKeyLength must be at least 1 (is {o.MaxIdempotencyKeyLength})");
        if (o.Sqlite is null) errors.Add("Bureau:Sqlite must be an object");
        else
        {
            if (string.IsNullOrWhiteSpace(o.Sqlite.Path)) errors.Add("Bureau:Sqlite:Path must name a database file");
            if (o.Sqlite.MaxBatchSize < 1) errors.Add($"Bureau:Sqlite:MaxBatchSize must be at least 1 (is {o.Sqlite.MaxBatchSize})");
            if (o.Sqlite.BusyTimeout < TimeSpan.Zero) errors.Add($"Bureau:Sqlite:BusyTimeout must not be negative (is {o.Sqlite.BusyTimeout})");
        }
        for (var i = 0; i < o.Manifests.Count; i++)
        {
            if (string.IsNullOrWhiteSpace(o.Manifests[i])) errors.Add($"Bureau:Manifests:{i} must name a manifest file");
        }
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
