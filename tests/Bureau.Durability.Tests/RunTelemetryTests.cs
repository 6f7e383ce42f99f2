using System.Collections.Concurrent;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Xunit;

namespace Bureau.Durability.Tests;

/// <summary>
/// `bureau run --otlp URL --otlp-protocol http`: a one-off run sends its spans to an OTLP/HTTP collector
/// (a loopback receiver here) before the process exits; without the option nothing is sent.
/// </summary>
public sealed class RunTelemetryTests : IAsyncDisposable
{
    private static readonly TimeSpan ProcessTimeout = TimeSpan.FromSeconds(90);
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bureau-run-otlp", Guid.NewGuid().ToString("n"));
    private readonly ConcurrentQueue<(string Path, string ContentType, byte[] Body)> _received = new();
    private WebApplication? _collector;

    public RunTelemetryTests()
    {
        Directory.CreateDirectory(_dir);
        File.WriteAllText(Path.Combine(_dir, "bureau.yaml"), """
            models:
              script:
                provider: scripted
                rules:
                  - reply: "hello {{input}}"
            agents:
              greeter:
                model: script
            """);
    }

    private async Task<string> StartCollectorAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls($"http://127.0.0.1:{ServeSupport.FreePort()}");
        _collector = builder.Build();
        _collector.MapPost("/{**path}", async (HttpContext ctx) =>
        {
            using var body = new MemoryStream();
            await ctx.Request.Body.CopyToAsync(body);
            _received.Enqueue((ctx.Request.Path.Value ?? "", ctx.Request.ContentType ?? "", body.ToArray()));
            return Results.Ok();
        });
        await _collector.StartAsync(TestContext.Current.CancellationToken);
        return _collector.Urls.First();
    }

    public async ValueTask DisposeAsync()
    {
        if (_collector is not null) await _collector.DisposeAsync();
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private async Task RunAsync(params string[] extra)
    {
        using var p = BureauProcess.Start(_dir, new Dictionary<string, string> { ["OTEL_EXPORTER_OTLP_ENDPOINT"] = "" },
            ["run", "bureau.yaml", "--agent", "greeter", "--input", "ada", "--db", Path.Combine(_dir, "runs.db"), .. extra]);
        var exit = await p.WaitAsync(ProcessTimeout);
        Assert.True(exit == 0, $"exit {exit}\n{p.Stdout}\n{p.Stderr}");
    }

    [Fact]
    public async Task Run_WithOtlp_SendsTheRunsSpansBeforeItExits_WithoutItNothing()
    {
        var url = await StartCollectorAsync();

        await RunAsync();
        Assert.Empty(_received);

        await RunAsync("--otlp", url, "--otlp-protocol", "http");
        var traces = _received.Where(r => r.Path == "/v1/traces").ToList();
        Assert.NotEmpty(traces);
        Assert.All(traces, t => Assert.Equal("application/x-protobuf", t.ContentType));
        var bytes = traces.SelectMany(t => t.Body).ToArray();
        Assert.Contains("invoke_agent greeter", System.Text.Encoding.UTF8.GetString(bytes)); // the run's span, by name
    }
}
