using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry.Trace;
using Xunit;

namespace Bureau.Hosting.Tests;

/// <summary>
/// <c>UseOpenTelemetry()</c> end to end through the OpenTelemetry SDK (in-memory exporter): a run submitted over HTTP
/// with a <c>traceparent</c> is traced under that request, in the caller's trace.
/// </summary>
public sealed class TelemetryTests : IAsyncDisposable
{
    private readonly TestHost _host = new();

    public ValueTask DisposeAsync() => _host.DisposeAsync();

    [Fact]
    public async Task PostRun_WithTraceparent_TheRunsSpansAreInTheCallersTrace_UnderTheRequest()
    {
        var exported = new List<Activity>();
        await _host.StartAsync(b =>
        {
            b.UseOpenTelemetry(o => o.ExportOtlp = false);
            b.Services.ConfigureOpenTelemetryTracerProvider(t => t.AddInMemoryExporter(exported));
        });
        var traceId = ActivityTraceId.CreateRandom();
        var callerSpan = ActivitySpanId.CreateRandom();
        var request = Http.Json(HttpMethod.Post, "/v1/runs", """{"agent":"echo","input":"hi"}""");
        request.Headers.Add("traceparent", $"00-{traceId}-{callerSpan}-01");

        var response = await _host.Client.SendAsync(request, TestContext.Current.CancellationToken);
        Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken));
        var id = (string)(await Http.BodyAsync(response))["id"]!;
        Assert.Equal(RunStatus.Succeeded, (await _host.WaitAsync(id)).Status);
        await _host.App.StopAsync(TestContext.Current.CancellationToken); // flushes the SDK

        Activity[] spans;
        lock (exported) spans = [.. exported];
        var server = Assert.Single(spans, s => s.Source.Name == "Microsoft.AspNetCore" && s.TraceId == traceId);
        Assert.Equal(callerSpan, server.ParentSpanId);
        var ours = spans.Where(s => (string?)s.GetTagItem("bureau.run.id") == id).ToList();
        var agent = Assert.Single(ours, s => s.OperationName == "invoke_agent echo");
        Assert.Equal((traceId, server.SpanId), (agent.TraceId, agent.ParentSpanId));
        var chat = Assert.Single(ours, s => s.OperationName == "chat echo");
        Assert.Equal((agent.SpanId, 3L, 2L), (chat.ParentSpanId, (long)chat.GetTagItem("gen_ai.usage.input_tokens")!, (long)chat.GetTagItem("gen_ai.usage.output_tokens")!));

        var started = Assert.IsType<RunStarted>((await _host.Engine.ReadJournalAsync(id, 0, TestContext.Current.CancellationToken))[0].Entry);
        Assert.Equal($"00-{traceId}-{server.SpanId}-01", started.TraceParent);
    }

    [Fact]
    public async Task DocsSnippet_UseOpenTelemetry_RegistersTheSdkWithOtlp_ContentCaptureOnlyWhenAsked()
    {
        var services = new ServiceCollection();
        services.AddLogging();
        // docs/observability.md, "Enabling it"
        services.AddBureau()
            .UseOpenTelemetry(o =>
            {
                o.OtlpEndpoint = new Uri("http://localhost:4317");
                o.ServiceName = "support-desk";
                o.CaptureContent = false;
            });
        await using (var provider = services.BuildServiceProvider())
        {
            Assert.NotNull(provider.GetService<TracerProvider>());
            Assert.NotNull(provider.GetService<OpenTelemetry.Metrics.MeterProvider>());
            Assert.False(provider.GetRequiredService<Microsoft.Extensions.Options.IOptions<BureauOptions>>().Value.Telemetry.CaptureContent);
        }

        var capturing = new ServiceCollection();
        capturing.AddLogging();
        capturing.AddBureau().UseOpenTelemetry(o => (o.ExportOtlp, o.CaptureContent) = (false, true));
        await using var withContent = capturing.BuildServiceProvider();
        Assert.True(withContent.GetRequiredService<Microsoft.Extensions.Options.IOptions<BureauOptions>>().Value.Telemetry.CaptureContent);
    }

    [Theory]
    [InlineData("http://localhost:4317", null, true, "http://localhost:4317/")]
    [InlineData(null, "http://collector:4317", true, null)]
    [InlineData(null, null, false, null)]
    [InlineData("", "  ", false, null)]
    public void ResolveEndpoint_TheOptionWins_TheEnvironmentVariableEnables_NeitherLeavesItOff(string? option, string? env, bool enabled, string? endpoint)
    {
        var r = BureauOpenTelemetryExtensions.ResolveEndpoint(option, env);
        Assert.Equal((enabled, endpoint, (string?)null), (r.Enabled, r.Endpoint?.ToString(), r.Error));
    }

    [Fact]
    public void ResolveEndpoint_NotAnHttpAddress_IsAnErrorNamingTheOption()
    {
        var r = BureauOpenTelemetryExtensions.ResolveEndpoint("localhost:4317", null);
        Assert.False(r.Enabled);
        Assert.StartsWith("--otlp must be an absolute http or https address", r.Error);
    }

    [Fact]
    public async Task WithoutUseOpenTelemetry_NothingListensToBureausSpans()
    {
        await _host.StartAsync();
        // Other tests of this process may enable telemetry; this host registered no tracer provider.
        Assert.Null(_host.App.Services.GetService<TracerProvider>());
    }
}
