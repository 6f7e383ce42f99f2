using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;
using Xunit;

namespace Bureau.Packaging.Tests;

/// <summary>
/// Bureau as a user adopts it: <c>dotnet tool install bureau</c> from a folder feed, then <c>bureau --version</c> and a
/// run of the sample; and <c>dotnet add package</c> into a fresh <c>dotnet new web</c> app that adds an agent as the
/// README shows (samples/01-embed-in-aspnetcore's Program.cs), started and asked over HTTP.
/// </summary>
public sealed class InstallTests(PackagesFixture packages) : IClassFixture<PackagesFixture>
{
    private static readonly TimeSpan Long = TimeSpan.FromMinutes(5);

    [Fact]
    public async Task Tool_InstalledFromTheFeed_SaysItsVersionAndRunsTheSample()
    {
        var tools = Path.Combine(packages.Work, "tools");
        var (code, output) = await Dotnet.RunAsync(packages.Work, Long,
            "tool", "install", "bureau", "--tool-path", tools, "--add-source", packages.Feed, "--version", packages.PackageVersion);
        Assert.True(code == 0, $"dotnet tool install (exit {code}):\n{output}");
        var bureau = Path.Combine(tools, "bureau");

        (code, output) = await Dotnet.ProgramAsync(bureau, packages.Work, Long, "--version");
        Assert.True(code == 0, output);
        Assert.StartsWith(PackagesFixture.ProductVersion, output.Trim(), StringComparison.Ordinal);

        var sample = Path.Combine(PackagesFixture.Root, "samples", "support-desk", "bureau.yaml");
        (code, output) = await Dotnet.ProgramAsync(bureau, packages.Work, Long,
            "run", sample, "--db", Path.Combine(packages.Work, "tool.db"), "--agent", "triage",
            "--input", "Ticket from ada@example.com: I was charged twice for order 1042, please refund 30 EUR");
        Assert.True(code == 0, $"bureau run (exit {code}):\n{output}");
        Assert.Contains("run.finished    succeeded", output);
        Assert.Contains("[scripted model]", output);   // the sample's model says what it is
    }

    [Fact]
    public async Task Packages_AddedToANewWebApp_ServeAnAgentThatRuns()
    {
        var app = Path.Combine(packages.Work, "ShopApp");
        var (code, output) = await Dotnet.RunAsync(packages.Work, Long, "new", "web", "-o", app, "-n", "ShopApp");
        Assert.True(code == 0, $"dotnet new web (exit {code}):\n{output}");
        // The folder feed beside the machine's own sources (nuget.org), as a team would add its artifacts folder.
        await File.WriteAllTextAsync(Path.Combine(app, "nuget.config"), $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <packageSources>
                <add key="bureau-artifacts" value="{packages.Feed}" />
              </packageSources>
            </configuration>
            """, TestContext.Current.CancellationToken);
        foreach (var package in new[] { "Bureau.Hosting", "Bureau.Storage.Sqlite" })
        {
            (code, output) = await Dotnet.RunAsync(app, Long, "add", "package", package, "--version", packages.PackageVersion);
            Assert.True(code == 0, $"dotnet add package {package} (exit {code}):\n{output}");
        }
        File.Copy(Path.Combine(PackagesFixture.Root, "samples", "01-embed-in-aspnetcore", "Program.cs"), Path.Combine(app, "Program.cs"), overwrite: true);
        (code, output) = await Dotnet.RunAsync(app, Long, "build", "-c", "Release", "-nologo", "-v", "quiet");
        Assert.True(code == 0, $"dotnet build of the app (exit {code}):\n{output}");

        var port = FreePort();
        var log = new StringBuilder();
        using var process = Dotnet.Start("dotnet", app, "run", "-c", "Release", "--no-build", "--no-launch-profile", "--urls", $"http://127.0.0.1:{port}");
        var pumps = Task.WhenAll(Dotnet.Pump(process.StandardOutput, log), Dotnet.Pump(process.StandardError, log));
        try
        {
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(30) };
            await UntilAsync(async () => (await http.GetAsync("/readyz")).IsSuccessStatusCode, process, log);
            Assert.Equal("The shop's own API", await http.GetStringAsync("/"));   // the app's own route is untouched

            using var submitted = await http.PostAsync("/v1/runs",
                new StringContent("""{"agent":"orders","input":"Where is order 1042?"}""", Encoding.UTF8, "application/json"));
            Assert.Equal(HttpStatusCode.Accepted, submitted.StatusCode);
            var id = (string)JsonNode.Parse(await submitted.Content.ReadAsStringAsync())!["id"]!;
            JsonNode? run = null;
            await UntilAsync(async () =>
            {
                run = JsonNode.Parse(await http.GetStringAsync($"/v1/runs/{id}"));
                return (string?)run!["status"] is "succeeded" or "failed" or "canceled";
            }, process, log);
            Assert.Equal("succeeded", (string?)run!["status"]);
            Assert.Equal("Order status: shipped on 2026-11-20", (string?)run["output"]);
        }
        finally
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
            await pumps;
        }
    }

    private static async Task UntilAsync(Func<Task<bool>> condition, Process process, StringBuilder log)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(2);
        while (true)
        {
            if (process.HasExited) throw new InvalidOperationException($"the app exited ({process.ExitCode}):\n{log}");
            try
            {
                if (await condition()) return;
            }
            catch (HttpRequestException) { /* not listening yet */ }
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"the app did not get there within 2 minutes:\n{log}");
            await Task.Delay(250);
        }
    }

    private static int FreePort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }
}
