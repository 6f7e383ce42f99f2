using System.Diagnostics;

namespace Bureau;

/// <summary>Bureau's telemetry names: one <see cref="ActivitySource"/> and one <see cref="System.Diagnostics.Metrics.Meter"/>, <c>Bureau</c>.</summary>
public static class BureauTelemetry
{
    /// <summary>The name of Bureau's activity source and meter (add it to OpenTelemetry's tracer and meter providers).</summary>
    public const string Name = "Bureau";

    /// <summary>Spans: <c>invoke_agent</c> per run execution, <c>execute_tool</c> per tool call (GenAI semantic conventions).</summary>
    public static readonly ActivitySource ActivitySource = new(Name, typeof(BureauTelemetry).Assembly.GetName().Version?.ToString());

    /// <summary>Metrics of the runtime.</summary>
    public static readonly System.Diagnostics.Metrics.Meter Meter = new(Name, typeof(BureauTelemetry).Assembly.GetName().Version?.ToString());

    internal static readonly System.Diagnostics.Metrics.Counter<long> RunsStarted =
        Meter.CreateCounter<long>("bureau.runs.started", "{run}", "Runs accepted.");

    internal static readonly System.Diagnostics.Metrics.Counter<long> RunsFinished =
        Meter.CreateCounter<long>("bureau.runs.finished", "{run}", "Runs that ended, by status.");

    internal static readonly System.Diagnostics.Metrics.Counter<long> JournalEntries =
        Meter.CreateCounter<long>("bureau.journal.entries", "{entry}", "Journal entries appended.");

    internal static readonly System.Diagnostics.Metrics.Counter<long> WaitsExpired =
        Meter.CreateCounter<long>("bureau.waits.expired", "{wait}", "Waits whose deadline passed with no answer.");

    internal static readonly System.Diagnostics.Metrics.Counter<long> DependencyAttempts =
        Meter.CreateCounter<long>("bureau.dependency.attempts", "{attempt}", "Attempts of model and tool calls, by dependency.");

    internal static readonly System.Diagnostics.Metrics.Counter<long> DependencyFailures =
        Meter.CreateCounter<long>("bureau.dependency.failures", "{attempt}", "Failed attempts of model and tool calls, by dependency.");

    internal static readonly System.Diagnostics.Metrics.Counter<long> DependencyRejections =
        Meter.CreateCounter<long>("bureau.dependency.rejections", "{call}", "Calls refused at once (open breaker, full bulkhead, rate limit), by dependency and reason.");
}
