using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry;
using OpenTelemetry.Exporter;
using OpenTelemetry.Logs;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace Bureau;

/// <summary>What <see cref="BureauOpenTelemetryExtensions.UseOpenTelemetry{TBuilder}"/> sets up.</summary>
public sealed class BureauOpenTelemetryOptions
{
    /// <summary>
    /// The OTLP endpoint (the collector's base address: <c>http://localhost:4317</c> for gRPC, <c>http://localhost:4318</c>
    /// for HTTP). Null: the standard variables <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> and <c>OTEL_EXPORTER_OTLP_PROTOCOL</c>
    /// if set, else <c>http://localhost:4317</c> over gRPC.
    /// </summary>
    public Uri? OtlpEndpoint { get; set; }

    /// <summary>The OTLP protocol when <see cref="OtlpEndpoint"/> is set: gRPC (default) or HTTP/protobuf.</summary>
    public OtlpExportProtocol OtlpProtocol { get; set; } = OtlpExportProtocol.Grpc;

    /// <summary>Export over OTLP. Default true; false keeps the SDK (and the exporters you add) without OTLP, as tests and benches do.</summary>
    public bool ExportOtlp { get; set; } = true;

    /// <summary>The <c>service.name</c> resource attribute. Default <c>bureau</c>; <c>OTEL_SERVICE_NAME</c> overrides it.</summary>
    public string ServiceName { get; set; } = "bureau";

    /// <summary>Put model answers and tool arguments and results on spans (<see cref="BureauTelemetryOptions.CaptureContent"/>). Default false.</summary>
    public bool CaptureContent { get; set; }

    /// <summary>Also trace ASP.NET Core requests and outgoing HttpClient requests (the built-in <c>Microsoft.AspNetCore</c> and <c>System.Net.Http</c> sources), so a run nests under the request that submitted it. Default true.</summary>
    public bool TraceHttp { get; set; } = true;

    /// <summary>Send logs through OpenTelemetry too (with their scopes: run id, agent, step). Default true.</summary>
    public bool ExportLogs { get; set; } = true;
}

/// <summary>Turns on Bureau's telemetry: the OpenTelemetry SDK with Bureau's spans, metrics and logs, exported over OTLP.</summary>
public static class BureauOpenTelemetryExtensions
{
    /// <summary>
    /// Enables telemetry (off by default): traces of the <c>Bureau</c> activity source (GenAI semantic conventions), the
    /// <c>Bureau</c> meter's metrics and the logs, exported over OTLP (docs/observability.md). Other exporters and
    /// instrumentation can be added with <c>services.ConfigureOpenTelemetryTracerProvider(...)</c> and
    /// <c>ConfigureOpenTelemetryMeterProvider(...)</c>.
    /// </summary>
    /// <example><code>builder.Services.AddBureau().UseSqliteStorage("bureau.db").UseOpenTelemetry();</code></example>
    public static TBuilder UseOpenTelemetry<TBuilder>(this TBuilder builder, Action<BureauOpenTelemetryOptions>? configure = null) where TBuilder : IBureauBuilder
    {
        ArgumentNullException.ThrowIfNull(builder);
        var options = new BureauOpenTelemetryOptions();
        configure?.Invoke(options);
        var services = builder.Services;
        if (options.CaptureContent) services.Configure<BureauOptions>(o => o.Telemetry.CaptureContent = true);

        var otel = services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddService(options.ServiceName, serviceVersion: typeof(BureauTelemetry).Assembly.GetName().Version?.ToString()))
            .WithTracing(t =>
            {
                t.AddSource(BureauTelemetry.Name);
                if (options.TraceHttp) t.AddSource("Microsoft.AspNetCore", "System.Net.Http");
            })
            .WithMetrics(m => m.AddMeter(BureauTelemetry.Name));
        if (options.ExportLogs) otel.WithLogging(_ => { }, o => o.IncludeScopes = true);
        if (options.ExportOtlp)
        {
            if (options.OtlpEndpoint is { } endpoint) otel.UseOtlpExporter(options.OtlpProtocol, endpoint);
            else otel.UseOtlpExporter(); // OTEL_EXPORTER_OTLP_ENDPOINT / _PROTOCOL, else http://localhost:4317 over gRPC
        }
        return builder;
    }

    /// <summary>
    /// The endpoint of <c>bureau serve --otlp</c>: the option's value, else <c>OTEL_EXPORTER_OTLP_ENDPOINT</c>; null when
    /// neither is set (telemetry stays off). An error names what is wrong.
    /// </summary>
    internal static (bool Enabled, Uri? Endpoint, string? Error) ResolveEndpoint(string? option, string? environment)
    {
        if (!string.IsNullOrWhiteSpace(option))
        {
            return Uri.TryCreate(option.Trim(), UriKind.Absolute, out var uri) && (uri.Scheme == Uri.UriSchemeHttp || uri.Scheme == Uri.UriSchemeHttps)
                ? (true, uri, null)
                : (false, null, $"--otlp must be an absolute http or https address (the collector's OTLP endpoint, e.g. http://localhost:4317), not '{option}'");
        }
        return string.IsNullOrWhiteSpace(environment) ? (false, null, null) : (true, null, null);
    }
}
