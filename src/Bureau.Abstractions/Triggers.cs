using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.RegularExpressions;

namespace Bureau;

/// <summary>
/// Something that starts runs of an agent (or a team) from outside: a signed webhook, a schedule, a topic of
/// the internal event bus. Every trigger starts its runs with an idempotency key derived from the event's id
/// (<c>trigger:NAME:ID</c>, <c>schedule:NAME:TICK</c>, <c>event:ID:NAME</c>), so an event delivered twice starts
/// one run, and with the actor <c>trigger:NAME</c> (policies may match on it).
/// </summary>
public abstract class TriggerDefinition
{
    /// <summary>The trigger's name, unique among triggers (letters, digits, <c>_</c> and <c>-</c>, at most 64).</summary>
    public required string Name { get; init; }

    /// <summary>The agent or team each event starts; empty when the trigger targets the workforce (<see cref="Workforce"/>) instead.</summary>
    public string Agent { get; init; } = "";

    /// <summary>
    /// When set, each event puts a task in the workforce's inbox instead of starting <see cref="Agent"/>: the task's input is
    /// the rendered <see cref="Input"/>, its id is the event's idempotency key, so an event delivered twice adds one task.
    /// </summary>
    public TriggerWorkforceTarget? Workforce { get; init; }

    /// <summary>
    /// The run's input: a template whose <c>{{$.path}}</c> placeholders are read from the event (a webhook's JSON
    /// body, a schedule's <c>{"schedule", "tick"}</c>, a CloudEvent's envelope). A missing value renders as empty;
    /// a string as itself; anything else as JSON. Null: the event itself (a webhook's body, a CloudEvent's data).
    /// </summary>
    public string? Input { get; init; }

    /// <summary>The priority of this trigger's runs among the runs ready to execute (higher first). Default 0.</summary>
    public int Priority { get; init; }

    /// <summary>
    /// A template rendered from the event like <see cref="Input"/> (<c>{{$.issue.number}}</c>): this trigger's runs with
    /// the same rendered key execute one at a time, in arrival order. Null: no ordering. An empty rendering: no ordering
    /// for that event.
    /// </summary>
    public string? OrderingKey { get; init; }

    /// <summary>The ordering key of the run started for <paramref name="data"/> (prefixed with the trigger's name), or null.</summary>
    internal string? OrderingKeyFor(JsonElement data) =>
        OrderingKey is { } template && TriggerTemplate.Render(template, data) is { Length: > 0 } key ? Name + ":" + key : null;

    /// <summary>The kind: <c>webhook</c>, <c>schedule</c>, <c>topic</c> or <c>poll</c>.</summary>
    public abstract string Kind { get; }

    /// <summary>What runs started by this trigger record as their actor: <c>trigger:NAME</c>.</summary>
    public string Actor => "trigger:" + Name;
}

/// <summary>A trigger's events as tasks of the workforce (docs/workforce.md): routed by skill and load to a member.</summary>
public sealed class TriggerWorkforceTarget
{
    /// <summary>
    /// The skill the task needs: a name (<c>billing</c>) or a template read from the event like <see cref="TriggerDefinition.Input"/>
    /// (<c>{{$.category}}</c>). An event whose skill renders empty or names no member's skill is dead-lettered.
    /// </summary>
    public required string Skill { get; init; }

    /// <summary>The skill of the task added for <paramref name="data"/>.</summary>
    internal string SkillFor(System.Text.Json.JsonElement data) => TriggerTemplate.Render(Skill, data).Trim();

    /// <summary>
    /// The id of the task added for the event with idempotency key <paramref name="key"/>: the key itself when it is a valid task id
    /// (at most 100 letters, digits, <c>-</c>, <c>_</c>, <c>.</c>, <c>:</c>), else <c>k-</c> and the key's SHA-256 in hex.
    /// </summary>
    public static string TaskIdOf(string key)
    {
        ArgumentNullException.ThrowIfNull(key);
        return key.Length is > 0 and <= 100 && key.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' or ':')
            ? key
            : "k-" + Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes(key)));
    }
}

/// <summary>How a webhook's sender signs its requests.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<WebhookSource>))]
public enum WebhookSource
{
    /// <summary>GitHub: <c>X-Hub-Signature-256: sha256=HEX</c>, <c>X-GitHub-Event</c>, <c>X-GitHub-Delivery</c>.</summary>
    [JsonStringEnumMemberName("github")] GitHub,
    /// <summary>Slack Events API: <c>X-Slack-Signature: v0=HEX</c> over <c>v0:TIMESTAMP:BODY</c>, <c>X-Slack-Request-Timestamp</c>.</summary>
    [JsonStringEnumMemberName("slack")] Slack,
    /// <summary>Standard Webhooks: <c>webhook-id</c>, <c>webhook-timestamp</c>, <c>webhook-signature: v1,BASE64</c> over <c>ID.TIMESTAMP.BODY</c>.</summary>
    [JsonStringEnumMemberName("standard")] Standard,
    /// <summary>HMAC-SHA256 of the body, hex (optionally <c>sha256=</c>), in a configurable header.</summary>
    [JsonStringEnumMemberName("hmac")] Hmac,
}

/// <summary>A trigger started by a signed HTTP request: <c>POST /v1/hooks/NAME</c>.</summary>
public sealed class WebhookTriggerDefinition : TriggerDefinition
{
    /// <inheritdoc />
    public override string Kind => "webhook";

    /// <summary>Who sends it, which decides how the signature is checked and where the event's id comes from.</summary>
    public required WebhookSource Source { get; init; }

    /// <summary>The shared secret (for <see cref="WebhookSource.Standard"/> the <c>whsec_...</c> string). Never logged or journaled.</summary>
    public required string Secret { get; init; }

    /// <summary>
    /// Which events start a run; empty: every event. GitHub: <c>issues</c>, <c>issues.opened</c>, <c>pull_request.*</c>
    /// (event and action); Slack: the inner event's type (<c>app_mention</c>); standard and hmac: the body's <c>type</c>.
    /// </summary>
    public IReadOnlyList<string> Events { get; init; } = [];

    /// <summary><see cref="WebhookSource.Hmac"/>: the header holding the signature. Default <see cref="DefaultSignatureHeader"/>.</summary>
    public string SignatureHeader { get; init; } = DefaultSignatureHeader;

    /// <summary>The signature header used when none is set.</summary>
    public const string DefaultSignatureHeader = "X-Signature";

    /// <summary><see cref="WebhookSource.Hmac"/>: the header holding the event's id; null (or absent from a request): the SHA-256 of the body.</summary>
    public string? IdHeader { get; init; }

    /// <summary>Slack and standard: requests signed longer ago (or further ahead) than this are refused. Default 5 minutes.</summary>
    public TimeSpan Tolerance { get; init; } = DefaultTolerance;

    /// <summary>The timestamp tolerance used when none is set.</summary>
    public static readonly TimeSpan DefaultTolerance = TimeSpan.FromMinutes(5);

    /// <summary>Whether an event (GitHub: <c>event</c> and <c>action</c>; others: a type and null) passes <see cref="Events"/>.</summary>
    public bool Accepts(string eventName, string? action)
    {
        if (Events.Count == 0) return true;
        foreach (var filter in Events)
        {
            if (filter == "*") return true;
            var dot = filter.IndexOf('.', StringComparison.Ordinal);
            if (Source != WebhookSource.GitHub || dot < 0)
            {
                if (string.Equals(filter, eventName, StringComparison.Ordinal)) return true;
                if (Source == WebhookSource.GitHub) continue;
                if (filter.EndsWith(".*", StringComparison.Ordinal) && eventName.StartsWith(filter[..^1], StringComparison.Ordinal)) return true;
                continue;
            }
            if (!string.Equals(filter[..dot], eventName, StringComparison.Ordinal)) continue;
            var wanted = filter[(dot + 1)..];
            if (wanted == "*" || string.Equals(wanted, action, StringComparison.Ordinal)) return true;
        }
        return false;
    }
}

/// <summary>What a schedule does with ticks that passed while no host was running.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<CatchUpPolicy>))]
public enum CatchUpPolicy
{
    /// <summary>Fire none of them; wait for the next tick. The default.</summary>
    [JsonStringEnumMemberName("skip")] Skip,
    /// <summary>Fire the latest missed tick once.</summary>
    [JsonStringEnumMemberName("once")] Once,
    /// <summary>Fire every missed tick, oldest first, but at most <see cref="ScheduleTriggerDefinition.MaxCatchUp"/> (the latest ones).</summary>
    [JsonStringEnumMemberName("all")] All,
}

/// <summary>What a schedule does when its tick comes while its previous run is unfinished.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<OverlapPolicy>))]
public enum OverlapPolicy
{
    /// <summary>Skip this tick (nothing is started). The default.</summary>
    [JsonStringEnumMemberName("skip")] Skip,
    /// <summary>Start a run anyway.</summary>
    [JsonStringEnumMemberName("allow")] Allow,
    /// <summary>
    /// Start one run that waits behind the unfinished one (it executes once the previous execution ends: the
    /// schedule's runs share an ordering key); while that run has not started, further ticks are skipped.
    /// </summary>
    [JsonStringEnumMemberName("queue-one")] QueueOne,
}

/// <summary>
/// A trigger that starts a run per tick: a cron expression (five fields, or six with seconds first; in
/// <see cref="TimeZone"/>) or a fixed interval (<see cref="Every"/>, ticks aligned on the Unix epoch). A tick
/// fires once (its idempotency key is <c>schedule:NAME:TICK</c>, the tick in UTC), also with several hosts.
/// </summary>
public sealed class ScheduleTriggerDefinition : TriggerDefinition
{
    /// <inheritdoc />
    public override string Kind => "schedule";

    /// <summary>A cron expression (<c>0 9 * * MON-FRI</c>, or <c>*/30 * * * * *</c> with seconds). Either this or <see cref="Every"/>.</summary>
    public string? Cron { get; init; }

    /// <summary>An interval of whole seconds, at least one (ticks at multiples of it since the Unix epoch, UTC). Either this or <see cref="Cron"/>.</summary>
    public TimeSpan? Every { get; init; }

    /// <summary>The IANA (or Windows) time zone id the cron expression is read in; null: UTC.</summary>
    public string? TimeZone { get; init; }

    /// <summary>Missed ticks after downtime.</summary>
    public CatchUpPolicy CatchUp { get; init; } = CatchUpPolicy.Skip;

    /// <summary>With <see cref="CatchUpPolicy.All"/>: most missed ticks fired after a downtime (the latest ones). Default 10.</summary>
    public int MaxCatchUp { get; init; } = DefaultMaxCatchUp;

    /// <summary>The catch-up cap used when none is set.</summary>
    public const int DefaultMaxCatchUp = 10;

    /// <summary>When the previous run of this schedule is unfinished.</summary>
    public OverlapPolicy Overlap { get; init; } = OverlapPolicy.Skip;

    /// <summary>The prefix of the idempotency keys of this schedule's runs: <c>schedule:NAME:</c>.</summary>
    public string KeyPrefix => "schedule:" + Name + ":";

    /// <summary>The idempotency key of a tick: <c>schedule:NAME:yyyy-MM-ddTHH:mm:ssZ</c> (sorts as the ticks do).</summary>
    public string KeyOf(DateTimeOffset tick) => KeyPrefix + tick.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);

    /// <summary>The tick a key of this schedule names, or null.</summary>
    public DateTimeOffset? TickOf(string? key) =>
        key is not null && key.StartsWith(KeyPrefix, StringComparison.Ordinal)
        && DateTimeOffset.TryParseExact(key[KeyPrefix.Length..], "yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture,
            DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var t) ? t : null;
}

/// <summary>A trigger subscribed to a topic of the internal event bus: every CloudEvent of that <c>type</c> posted to <c>/v1/events</c> starts a run.</summary>
public sealed class TopicTriggerDefinition : TriggerDefinition
{
    /// <inheritdoc />
    public override string Kind => "topic";

    /// <summary>The CloudEvents <c>type</c> subscribed to (<c>ticket.escalated</c>).</summary>
    public required string Topic { get; init; }
}

/// <summary>
/// A trigger that watches a database table: every <see cref="Every"/> it runs <see cref="Query"/> through ADO.NET (the
/// provider registered under <see cref="Provider"/>), with the parameter <c>@cursor</c> set to the last cursor value
/// accepted, and starts a run per row returned, in order, as a CloudEvent (<c>data</c>: the row as a JSON object) with
/// the key <c>poll:NAME:CURSOR</c>. The cursor (the row's <see cref="CursorColumn"/>) is stored after the rows' runs are
/// accepted, so no row starts two runs, across restarts too.
/// </summary>
public sealed class PollTriggerDefinition : TriggerDefinition
{
    /// <inheritdoc />
    public override string Kind => "poll";

    /// <summary>The ADO.NET provider's invariant name: <c>Microsoft.Data.Sqlite</c> (registered by <c>UseSqliteStorage</c>), <c>Npgsql</c> (register <c>NpgsqlFactory.Instance</c> with <c>DbProviderFactories.RegisterFactory</c>).</summary>
    public required string Provider { get; init; }

    /// <summary>The connection string. Never logged or journaled.</summary>
    public required string ConnectionString { get; init; }

    /// <summary>The query: it returns the rows after <c>@cursor</c>, ordered by the cursor column, e.g. <c>SELECT id, title FROM tickets WHERE id &gt; @cursor ORDER BY id LIMIT 100</c>.</summary>
    public required string Query { get; init; }

    /// <summary>The column whose value orders the rows and becomes the cursor (and part of the run's key).</summary>
    public required string CursorColumn { get; init; }

    /// <summary>How often the query runs. Default 30 s.</summary>
    public TimeSpan Every { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>The cursor before any row was accepted. Default <c>0</c>. A cursor that reads as an integer is passed as one.</summary>
    public string InitialCursor { get; init; } = "0";

    /// <summary>The CloudEvents <c>type</c> of the rows' events (what <c>{{$.type}}</c> reads). Default <c>bureau.poll.row</c>.</summary>
    public string EventType { get; init; } = "bureau.poll.row";

    /// <summary>The prefix of this trigger's run keys: <c>poll:NAME:</c>.</summary>
    public string KeyPrefix => "poll:" + Name + ":";
}

/// <summary>
/// Trigger input templates: text with <c>{{$.path}}</c> placeholders, a path being <c>$</c> followed by
/// <c>.name</c>, <c>['name']</c> or <c>[index]</c> segments.
/// </summary>
internal static partial class TriggerTemplate
{
    [GeneratedRegex(@"\{\{\s*(.*?)\s*\}\}", RegexOptions.CultureInvariant | RegexOptions.Singleline)]
    private static partial Regex Placeholder();

    [GeneratedRegex(@"\G(?:\.([A-Za-z_][A-Za-z0-9_\-]*)|\['((?:[^'\\]|\\.)*)'\]|\[(\d{1,9})\])", RegexOptions.CultureInvariant)]
    private static partial Regex Segment();

    /// <summary>The first problem of a template (a placeholder that is not a path), or null.</summary>
    public static string? Check(string template)
    {
        foreach (Match m in Placeholder().Matches(template))
            if (Parse(m.Groups[1].Value) is null)
                return $"placeholder '{m.Value}' is not a path such as {{{{$.issue.title}}}}, {{{{$.items[0].id}}}} or {{{{$['odd key']}}}}";
        return null;
    }

    /// <summary>The template with each placeholder replaced by the value at its path in <paramref name="data"/>.</summary>
    public static string Render(string template, JsonElement data) =>
        Placeholder().Replace(template, m =>
        {
            var path = Parse(m.Groups[1].Value);
            if (path is null) return m.Value;
            var value = Select(data, path);
            return value is not { } v ? "" : v.ValueKind switch
            {
                JsonValueKind.String => v.GetString()!,
                JsonValueKind.Null or JsonValueKind.Undefined => "",
                _ => v.GetRawText(),
            };
        });

    /// <summary>The value at <paramref name="path"/> (<c>$.a.b[0]</c>) in <paramref name="data"/>, or null when absent or not a path.</summary>
    public static JsonElement? Select(JsonElement data, string path) => Parse(path) is { } p ? Select(data, p) : null;

    private static JsonElement? Select(JsonElement data, List<object> path)
    {
        var current = data;
        foreach (var segment in path)
        {
            if (segment is string name)
            {
                if (current.ValueKind != JsonValueKind.Object || !current.TryGetProperty(name, out current)) return null;
            }
            else
            {
                var index = (int)segment;
                if (current.ValueKind != JsonValueKind.Array || index >= current.GetArrayLength()) return null;
                current = current[index];
            }
        }
        return current;
    }

    private static List<object>? Parse(string path)
    {
        if (!path.StartsWith('$')) return null;
        var segments = new List<object>();
        var at = 1;
        while (at < path.Length)
        {
            var m = Segment().Match(path, at);
            if (!m.Success || m.Index != at) return null;
            if (m.Groups[1].Success) segments.Add(m.Groups[1].Value);
            else if (m.Groups[2].Success) segments.Add(Regex.Unescape(m.Groups[2].Value));
            else segments.Add(int.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture));
            at += m.Length;
        }
        return segments;
    }

    /// <summary>The event as a run's input when no template is given: a string as itself, anything else as JSON.</summary>
    public static string Default(JsonElement data) => data.ValueKind == JsonValueKind.String ? data.GetString()! : data.GetRawText();

    /// <summary>The input of a run started by <paramref name="trigger"/> for <paramref name="data"/>.</summary>
    public static string InputFor(TriggerDefinition trigger, JsonElement data, JsonElement? defaultData = null) =>
        trigger.Input is { } t ? Render(t, data) : Default(defaultData ?? data);

    /// <summary>A JSON string element holding <paramref name="text"/> (a body that is not JSON, as an event).</summary>
    public static JsonElement StringElement(string text)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(text.Length + 16);
        using (var writer = new Utf8JsonWriter(buffer)) writer.WriteStringValue(text);
        using var doc = JsonDocument.Parse(buffer.WrittenMemory);
        return doc.RootElement.Clone();
    }
}
