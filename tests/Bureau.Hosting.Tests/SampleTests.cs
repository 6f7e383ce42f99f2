using System.Net;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Bureau.Hosting.Tests;

/// <summary>samples/01-embed-in-aspnetcore, started as it is with WebApplicationFactory.</summary>
public sealed class SampleTests
{
    [Fact]
    public async Task EmbedSample_AgentRunsBesideTheAppsOwnRoutes()
    {
        var ct = TestContext.Current.CancellationToken;
        var dir = Path.Combine(Path.GetTempPath(), "bureau-sample-tests", Guid.NewGuid().ToString("n"));
        Directory.CreateDirectory(dir);
        try
        {
            await using (var factory = new WebApplicationFactory<Program>().WithWebHostBuilder(b =>
                b.ConfigureServices(s => s.Configure<Bureau.Storage.Sqlite.SqliteStoreOptions>(o => o.Path = Path.Combine(dir, "sample.db")))))
            {
                using var client = factory.CreateClient();
                Assert.Equal("The shop's own API", await client.GetStringAsync("/", ct));
                using var res = await client.SendAsync(Http.Json(HttpMethod.Post, "/v1/runs", """{"agent":"orders","input":"Where is order 1042?"}"""), ct);
                Assert.Equal(HttpStatusCode.Accepted, res.StatusCode);
                var id = (string)(await Http.BodyAsync(res))["id"]!;
                var engine = factory.Services.GetRequiredService<BureauEngine>();
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
                timeout.CancelAfter(TimeSpan.FromSeconds(20));
                await foreach (var _ in engine.WatchAsync(id, 0, untilWaiting: true, cancellationToken: timeout.Token)) { }
                var run = await engine.GetRunAsync(id, ct);
                Assert.True(run!.Status == RunStatus.Succeeded, $"{run.Status}: {run.Error}");
                Assert.Contains("shipped on 2026-11-20", run.Output);
            }
        }
        finally
        {
            try { Directory.Delete(dir, recursive: true); } catch (IOException) { }
        }
    }
}
