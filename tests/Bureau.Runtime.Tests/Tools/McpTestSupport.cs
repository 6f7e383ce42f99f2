using System.Runtime.InteropServices;
using Bureau.McpTestServer;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Bureau.Tests.Support;
using Microsoft.Extensions.Logging;

namespace Bureau.Tests.Tools;

/// <summary>Real MCP servers for the client tests: the C# SDK's test server (stdio, or HTTP in-process) and the npm filesystem server.</summary>
internal static class McpTestSupport
{
    /// <summary>The dotnet host that runs the test server's dll.</summary>
    public static string Dotnet { get; } = FindDotnet();

    private static string FindDotnet()
    {
        // .../dotnet/shared/Microsoft.NETCore.App/10.0.x/ → .../dotnet/dotnet
        var root = Path.GetFullPath(Path.Combine(RuntimeEnvironment.GetRuntimeDirectory(), "..", "..", ".."));
        var candidate = Path.Combine(root, OperatingSystem.IsWindows() ? "dotnet.exe" : "dotnet");
        return File.Exists(candidate) ? candidate : "dotnet";
    }

    /// <summary>The C# test server (tests/Bureau.McpTestServer) over stdio.</summary>
    public static McpServerToolDefinition StdioServer(string name = "test", IReadOnlyList<string>? include = null, IReadOnlyList<string>? exclude = null,
        IReadOnlyDictionary<string, ToolEffect>? effects = null, IReadOnlyDictionary<string, string?>? env = null, string? prefix = null) => new()
    {
        Name = name,
        Command = [Dotnet, typeof(TestTools).Assembly.Location],
        Environment = env ?? new Dictionary<string, string?>(),
        Include = include ?? [],
        Exclude = exclude ?? [],
        Effects = effects ?? new Dictionary<string, ToolEffect>(),
        Prefix = prefix,
        ConnectTimeout = TimeSpan.FromSeconds(60),
        Timeout = TimeSpan.FromSeconds(60),
    };

    /// <summary>The folder the npm servers are installed in (tests/mcp-servers; test.sh runs npm install there).</summary>
    public static string NpmFilesystemServer()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Bureau.slnx"))) dir = dir.Parent;
        var root = dir?.FullName ?? throw new InvalidOperationException("Bureau.slnx not found above " + AppContext.BaseDirectory);
        var script = Path.Combine(root, "tests", "mcp-servers", "node_modules", "@modelcontextprotocol", "server-filesystem", "dist", "index.js");
        if (!File.Exists(script))
            throw new InvalidOperationException($"the npm MCP server is not installed ({script} is missing): run 'npm install' in tests/mcp-servers (test.sh does it)");
        return script;
    }

    /// <summary>
    /// The test server's tools over streamable HTTP on 127.0.0.1 and a free port, at /mcp, requiring <c>Bearer {token}</c>
    /// when a token is given; with <paramref name="changing"/>, also its changing tools (the test changes them while it runs).
    /// </summary>
    public static async Task<WebApplication> StartHttpServerAsync(string? token, int port = 0, ChangingTools? changing = null)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls($"http://127.0.0.1:{port}");
        builder.Logging.ClearProviders();
        var server = builder.Services.AddMcpServer().WithHttpTransport().WithTools<TestTools>();
        changing?.AddToHttp(server);
        var app = builder.Build();
        if (token is not null)
        {
            app.Use(async (context, next) =>
            {
                if (context.Request.Headers.Authorization.ToString() != "Bearer " + token)
                {
                    context.Response.StatusCode = StatusCodes.Status401Unauthorized;
                    return;
                }
                await next(context);
            });
        }
        app.MapMcp("/mcp");
        await app.StartAsync();
        return app;
    }

    /// <summary>A loopback port free now (bound to port 0, then released), for a server started later.</summary>
    public static int FreePort()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }

    public static Uri McpAddress(WebApplication app) => new(app.Urls.First().TrimEnd('/') + "/mcp");

    /// <summary>Submits a run of agent <c>a</c> with input <c>go</c>, waits for its end and returns it with its journal's entries.</summary>
    public static async Task<(RunRecord Run, IReadOnlyList<JournalEntry> Journal)> RunAsync(BureauEngine engine, CancellationToken ct)
    {
        var id = (await engine.SubmitAsync(new RunRequest("a", "go"), ct)).Run.Id;
        var run = await EngineFixture.WaitAsync(engine, id, 120);
        return (run, [.. (await engine.ReadJournalAsync(id, cancellationToken: ct)).Select(r => r.Entry)]);
    }

    /// <summary>Waits up to 90 s for <paramref name="condition"/>, checking every 50 ms; the timeout names <paramref name="what"/>.</summary>
    public static async Task WaitForAsync(Func<bool> condition, string what, CancellationToken ct = default)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(90);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException("waited 90s for " + what);
            await Task.Delay(50, ct);
        }
    }
}
