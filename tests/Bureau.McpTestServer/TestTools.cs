using System.ComponentModel;
using ModelContextProtocol;
using ModelContextProtocol.Protocol;
using ModelContextProtocol.Server;

namespace Bureau.McpTestServer;

/// <summary>The test server's tools.</summary>
[McpServerToolType]
public sealed class TestTools
{
    /// <summary>Every call the server answered, as "tool|idempotency key|arguments" (the in-process HTTP server's tests read it).</summary>
    public static System.Collections.Concurrent.ConcurrentQueue<string> Calls { get; } = new();

    /// <summary>Echoes its text.</summary>
    [McpServerTool(Name = "echo", ReadOnly = true), Description("Returns the text it was given, prefixed with 'echo: '.")]
    public static string Echo([Description("The text to echo.")] string text) => "echo: " + text;

    /// <summary>The server's process id (so that a test can kill it).</summary>
    [McpServerTool(Name = "pid", ReadOnly = true), Description("Returns the server's process id.")]
    public static int Pid() => Environment.ProcessId;

    /// <summary>A destructive tool that reports the idempotency key it was called with.</summary>
    [McpServerTool(Name = "save_note", Destructive = true, ReadOnly = false), Description("Saves a note.")]
    public static string SaveNote(RequestContext<CallToolRequestParams> context, [Description("The note.")] string text)
    {
        var key = context.Params?.Meta?["bureau/idempotencyKey"]?.ToString() ?? "(none)";
        Calls.Enqueue($"save_note|{key}|{text}");
        return $"saved '{text}' with key {key}";
    }

    /// <summary>Fails with a tool error the model sees.</summary>
    [McpServerTool(Name = "fail"), Description("Always fails with the reason given.")]
    public static string Fail(string why) => throw new McpException("failed on purpose: " + why);

    /// <summary>An environment variable of the server (to show what a stdio server is given).</summary>
    [McpServerTool(Name = "env", ReadOnly = true), Description("Returns an environment variable of the server.")]
    public static string Env(string name) => Environment.GetEnvironmentVariable(name) ?? "(unset)";
}
