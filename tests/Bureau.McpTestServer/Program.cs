using Bureau.McpTestServer;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

// stdout is the protocol: every log line goes to stderr.
var builder = Host.CreateApplicationBuilder(args);
builder.Logging.ClearProviders();
builder.Logging.AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
builder.Logging.SetMinimumLevel(LogLevel.Warning);
var server = builder.Services.AddMcpServer(o => o.ServerInfo = new() { Name = "bureau-test-server", Version = "1.0" })
    .WithStdioServerTransport()
    .WithTools<TestTools>();
if (Environment.GetEnvironmentVariable("BUREAU_TEST_CHANGING_TOOLS") is { Length: > 0 } changingTools)
{
    // The client may change this server's tools through the tool change_tools (tests of notifications/tools/list_changed);
    // the value names the tools to start with ("name:property,..."), or is 1 for none.
    List<(string Name, string Property)> initial = changingTools == "1" ? [] : [.. changingTools.Split(',').Select(t => t.Split(':')).Select(p => (p[0], p[1]))];
    var changing = new ChangingTools();
    changing.AddTo(server, initial).WithTools([changing.ControlTool()]);
}
await builder.Build().RunAsync();
