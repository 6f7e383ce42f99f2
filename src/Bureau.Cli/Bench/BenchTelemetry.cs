using System.Diagnostics;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;

namespace Bureau.Cli.Bench;

/// <summary>
/// <c>--telemetry</c> of the benches: the OpenTelemetry SDK listening to Bureau's spans and metrics as
/// <c>UseOpenTelemetry()</c> sets it up (every span sampled, batched, metrics read every second), with exporters that
/// drop what they get, so the cost measured is Bureau's instrumentation and the SDK's, not a network's.
/// </summary>
internal sealed class BenchTelemetry : IDisposable
{
    private readonly TracerProvider _tracing;
    private readonly MeterProvider _metrics;
    private readonly CountingSpans _spans = new();

    public BenchTelemetry()
    {
        _tracing = Sdk.CreateTracerProviderBuilder()
            .AddSource(BureauTelemetry.Name)
            .SetSampler(new AlwaysOnSampler())
            .AddProcessor(new BatchActivityExportProcessor(_spans))
            .Build();
        _metrics = Sdk.CreateMeterProviderBuilder()
            .AddMeter(BureauTelemetry.Name)
            .AddReader(new PeriodicExportingMetricReader(new DroppedMetrics(), exportIntervalMilliseconds: 1000))
            .Build();
    }

    /// <summary>Spans exported so far.</summary>
    public long Spans => Interlocked.Read(ref _spans.Count);

    public void Dispose()
    {
        _tracing.Dispose();
        _metrics.Dispose();
    }

    private sealed class CountingSpans : BaseExporter<Activity>
    {
        public long Count;

        public override ExportResult Export(in Batch<Activity> batch)
        {
            Interlocked.Add(ref Count, batch.Count);
            return ExportResult.Success;
        }
    }

    private sealed class DroppedMetrics : BaseExporter<Metric>
    {
        public override ExportResult Export(in Batch<Metric> batch) => ExportResult.Success;
    }
}
