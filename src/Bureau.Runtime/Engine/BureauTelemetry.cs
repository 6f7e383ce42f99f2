using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Bureau;

/// <summary>Bureau's telemetry names: one <see cref="ActivitySource"/> and one <see cref="System.Diagnostics.Metrics.Meter"/>, <c>Bureau</c>.</summary>
/// <remarks>
/// Nothing is recorded unless a listener subscribes (the OpenTelemetry SDK through <c>UseOpenTelemetry()</c> in
/// Bureau.Hosting, or any <see cref="ActivityListener"/>/<see cref="MeterListener"/>): every span is started behind
/// <see cref="ActivitySource.HasListeners"/> and every measurement behind its instrument's <see cref="Instrument.Enabled"/>.
/// Spans follow the OpenTelemetry GenAI semantic conventions; see docs/observability.md for the reference.
/// </remarks>
public static class BureauTelemetry
{
    /// <summary>The name of Bureau's activity source and meter (add it to OpenTelemetry's tracer and meter providers).</summary>
    public const string Name = "Bureau";

    /// <summary>Spans: <c>invoke_agent</c>/<c>invoke_workflow</c> per run execution, <c>chat</c> per model call, <c>execute_tool</c> per tool call, <c>wait</c> and <c>queue</c>.</summary>
    public static readonly ActivitySource ActivitySource = new(Name, typeof(BureauTelemetry).Assembly.GetName().Version?.ToString());

    /// <summary>Metrics of the runtime.</summary>
    public static readonly Meter Meter = new(Name, typeof(BureauTelemetry).Assembly.GetName().Version?.ToString());

    internal static readonly Counter<long> RunsStarted =
        Meter.CreateCounter<long>("bureau.runs.started", "{run}", "Runs accepted.");

    internal static readonly Counter<long> RunsFinished =
        Meter.CreateCounter<long>("bureau.runs.finished", "{run}", "Runs that ended, by status and outcome.");

    private static long s_journalEntries;

    /// <summary>
    /// Journal entries appended by this process: an observable counter read at each export, so an append adds one
    /// <see cref="Interlocked.Add(ref long, long)"/> rather than a measurement through every listener.
    /// </summary>
    private static readonly ObservableCounter<long> JournalEntriesObserved =
        Meter.CreateObservableCounter("bureau.journal.entries", static () => Volatile.Read(ref s_journalEntries), "{entry}", "Journal entries appended.");

    /// <summary>Counts <paramref name="count"/> appended entries (read by the <c>bureau.journal.entries</c> counter).</summary>
    internal static void JournalEntriesAppended(int count) => Interlocked.Add(ref s_journalEntries, count);

    internal static readonly Counter<long> WaitsExpired =
        Meter.CreateCounter<long>("bureau.waits.expired", "{wait}", "Waits whose deadline passed with no answer.");

    internal static readonly Counter<long> DependencyRejections =
        Meter.CreateCounter<long>("bureau.dependency.rejections", "{call}", "Calls refused at once (open breaker, full bulkhead, rate limit), by dependency and reason.");

    /// <summary>GenAI convention: tokens per model call, by <c>gen_ai.token.type</c> (<c>input</c>, <c>output</c>).</summary>
    internal static readonly Histogram<long> TokenUsage =
        Meter.CreateHistogram<long>("gen_ai.client.token.usage", "{token}", "Tokens used per model call.",
            advice: new InstrumentAdvice<long> { HistogramBucketBoundaries = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304] });

    /// <summary>GenAI convention: the duration of a model call (all its attempts and fallbacks).</summary>
    internal static readonly Histogram<double> OperationDuration =
        Meter.CreateHistogram<double>("gen_ai.client.operation.duration", "s", "Duration of model calls.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92] });

    internal static readonly Counter<double> ModelCost =
        Meter.CreateCounter<double>("bureau.model.cost", "USD", "Cost of model calls, from the models' prices (calls of models without a price are not counted).");

    /// <summary>Latency of one step of the agent loop: a model call or a tool call (<c>bureau.step.kind</c>).</summary>
    internal static readonly Histogram<double> StepDuration =
        Meter.CreateHistogram<double>("bureau.step.duration", "s", "Duration of agent-loop steps: model calls and tool calls.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] });

    internal static readonly Counter<long> ToolErrors =
        Meter.CreateCounter<long>("bureau.tool.errors", "{call}", "Tool calls that ended in an error, by tool and error.type.");

    /// <summary>True when a model call's span or any of its measurements is wanted.</summary>
    internal static bool ObservesModelCalls =>
        ActivitySource.HasListeners() || TokenUsage.Enabled || OperationDuration.Enabled || StepDuration.Enabled || ModelCost.Enabled;

    /// <summary>True when a tool call's span or any of its measurements is wanted.</summary>
    internal static bool ObservesToolCalls => ActivitySource.HasListeners() || StepDuration.Enabled || ToolErrors.Enabled;
}
