using System.Net.Http;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using ModelContextProtocol;
using ModelContextProtocol.Client;
using ModelContextProtocol.Protocol;

namespace Bureau.Tools.Mcp;

/// <summary>
/// Calls one tool of an MCP server (<c>tools/call</c>) with the validated arguments. The call's idempotency key,
/// run and step go in the request's <c>_meta</c> (<see cref="IdempotencyKeyMeta"/>, <see cref="RunIdMeta"/>,
/// <see cref="StepMeta"/>) for servers that honour them. The result's text blocks (other blocks described, and
/// the structured content when there is no text) are the result; <c>isError</c> is a tool error the model sees.
/// A transport that failed (a stdio server that died, an HTTP server that cannot be reached) fails the call as a
/// crash, or as not sent when the connection was refused, which the retry and breaker links count; the next
/// call connects again. A tool the server no longer offers (its last listing, after a
/// <c>notifications/tools/list_changed</c>, lacks it) fails at once as an <c>error</c>, naming the server and the tool.
/// </summary>
internal sealed class McpTool : BureauTool
{
    /// <summary>The <c>_meta</c> key of the call's idempotency key.</summary>
    public const string IdempotencyKeyMeta = "bureau/idempotencyKey";
    /// <summary>The <c>_meta</c> key of the run's id.</summary>
    public const string RunIdMeta = "bureau/runId";
    /// <summary>The <c>_meta</c> key of the call's step.</summary>
    public const string StepMeta = "bureau/step";

    private const int MaxResultBytes = 1024 * 1024;

    private readonly McpToolDefinition _definition;
    private readonly McpServerConnection _connection;

    public McpTool(McpToolDefinition definition, McpConnections connections) : base(definition)
    {
        _definition = definition;
        _connection = connections.For(definition.Server);
    }

    /// <inheritdoc />
    protected override bool HonoursCancellation => true;

    protected override async Task<ToolOutcome> InvokeCoreAsync(ToolInvocation invocation, CancellationToken cancellationToken)
    {
        // A run that started before the server withdrew the tool (notifications/tools/list_changed, decision 0051)
        // still has it in its list: its call fails here, clearly, before anything is sent. The same call would fail
        // again (an error, not retried, not counted for the breaker: the server is fine).
        if (_connection.NotOffered(_definition.RemoteName) is { } withdrawn)
            return ToolOutcome.Error($"tool '{Name}': {withdrawn}", ToolFailure.Error);

        McpClient client;
        try
        {
            client = await _connection.GetClientAsync(cancellationToken);
        }
        catch (McpConnectException ex)
        {
            return ToolOutcome.Error($"tool '{Name}': {ex.Message}", ex.NothingSent || ex.InnerException is { } inner && NothingSent(inner) ? ToolFailure.NotSent : ToolFailure.Unavailable);
        }

        var arguments = new Dictionary<string, object?>(StringComparer.Ordinal);
        foreach (var property in invocation.Arguments.EnumerateObject()) arguments[property.Name] = property.Value;
        var options = new RequestOptions
        {
            Meta = new JsonObject
            {
                [IdempotencyKeyMeta] = invocation.IdempotencyKey,
                [RunIdMeta] = invocation.RunId,
                [StepMeta] = invocation.Step,
            },
        };

        CallToolResult result;
        try
        {
            result = await client.CallToolAsync(_definition.RemoteName, arguments, progress: null, options, cancellationToken);
        }
        catch (McpProtocolException ex)
        {
            // The server answered with a JSON-RPC error (unknown tool, invalid params, an internal error).
            return ToolOutcome.Error($"MCP server '{_definition.Server.Name}' refused the call of '{_definition.RemoteName}': {ex.Message}", ToolFailure.Error);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || client.Completion.IsCompleted)
        {
            // The transport failed: forget this client so that the next call connects (a stdio server is started) again.
            await _connection.ForgetAsync(client);
            var failure = NothingSent(ex) ? ToolFailure.NotSent : ex is HttpRequestException { StatusCode: { } s } && (int)s is 408 or 429 or >= 500 ? ToolFailure.Unavailable : ToolFailure.Crash;
            return ToolOutcome.Error($"tool '{Name}': the MCP server '{_definition.Server.Name}' failed during the call: {McpServerConnection.Reason(ex)}", failure);
        }

        var text = ResultText(result);
        if (Encoding.UTF8.GetByteCount(text) > MaxResultBytes)
            text = ToolOutput.Text(new ToolOutput.Captured(Encoding.UTF8.GetBytes(text)[..MaxResultBytes], true), MaxResultBytes);
        return result.IsError == true ? ToolOutcome.Error(text.Length == 0 ? $"MCP tool '{_definition.RemoteName}' reported an error (no text)" : text, ToolFailure.Error) : ToolOutcome.Success(text);
    }

    /// <summary>The result as text: text blocks joined by line breaks, other blocks described; the structured content when there is no text.</summary>
    internal static string ResultText(CallToolResult result)
    {
        var parts = new List<string>();
        foreach (var block in result.Content)
        {
            parts.Add(block switch
            {
                TextContentBlock t => t.Text,
                ImageContentBlock i => $"[image {i.MimeType}, {i.Data.Length} base64 characters]",
                AudioContentBlock a => $"[audio {a.MimeType}, {a.Data.Length} base64 characters]",
                EmbeddedResourceBlock e => e.Resource is TextResourceContents tr ? tr.Text : $"[resource {e.Resource.Uri}]",
                ResourceLinkBlock l => $"[resource link {l.Uri}{(l.Name is { Length: > 0 } n ? " " + n : string.Empty)}]",
                _ => $"[{block.Type} content]",
            });
        }
        if (parts.Count == 0 && result.StructuredContent is { } structured && structured.ValueKind is not (JsonValueKind.Undefined or JsonValueKind.Null))
            return structured.GetRawText();
        return string.Join("\n", parts);
    }
}
