using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.AI;

namespace Bureau.Models.Scripted;

/// <summary>The facts about one conversation that the scripted model's rules look at, computed lazily once per call.</summary>
internal sealed class ScriptConversation
{
    private readonly IReadOnlyList<ChatMessage> _messages;
    private string? _input;
    private string? _user;
    private string? _last;
    private List<(string Tool, string Text)>? _toolResults;

    public ScriptConversation(IReadOnlyList<ChatMessage> messages)
    {
        _messages = messages;
        var assistants = 0;
        for (var i = 0; i < messages.Count; i++)
        {
            if (messages[i].Role == ChatRole.Assistant) assistants++;
        }
        Turn = assistants + 1;
    }

    /// <summary>1-based number of this model call in the run: assistant messages so far + 1.</summary>
    public int Turn { get; }

    /// <summary>The run's input: the text of the first user message ("" when there is none).</summary>
    public string Input => _input ??= FirstText(ChatRole.User, fromEnd: false);

    /// <summary>The text of the latest user message ("" when there is none).</summary>
    public string LatestUser => _user ??= FirstText(ChatRole.User, fromEnd: true);

    /// <summary>The text of the latest message, whatever its role (a tool result's content included).</summary>
    public string Last => _last ??= _messages.Count == 0 ? "" : MessageText(_messages[^1]);

    /// <summary>
    /// The text of the latest result of <paramref name="tool"/> among the tool results that end the
    /// conversation, or null when the conversation does not end with a result of that tool.
    /// </summary>
    public string? LatestResultOf(string tool)
    {
        var results = _toolResults ??= TrailingToolResults();
        for (var i = results.Count - 1; i >= 0; i--)
        {
            if (string.Equals(results[i].Tool, tool, StringComparison.Ordinal)) return results[i].Text;
        }
        return null;
    }

    /// <summary>Estimated prompt size in characters: every message's text, tool results and tool calls.</summary>
    public long PromptChars(ChatOptions? options)
    {
        long chars = options?.Instructions?.Length ?? 0;
        for (var i = 0; i < _messages.Count; i++)
        {
            var contents = _messages[i].Contents;
            for (var j = 0; j < contents.Count; j++)
            {
                chars += contents[j] switch
                {
                    TextContent t => t.Text.Length,
                    FunctionResultContent r => ResultChars(r.Result),
                    FunctionCallContent c => c.Name.Length + ArgumentsChars(c.Arguments),
                    _ => 0,
                };
            }
        }
        return chars;
    }

    private string FirstText(ChatRole role, bool fromEnd)
    {
        if (fromEnd)
        {
            for (var i = _messages.Count - 1; i >= 0; i--)
            {
                if (_messages[i].Role == role) return MessageText(_messages[i]);
            }
        }
        else
        {
            for (var i = 0; i < _messages.Count; i++)
            {
                if (_messages[i].Role == role) return MessageText(_messages[i]);
            }
        }
        return "";
    }

    /// <summary>The results in the run of tool messages at the end of the conversation, with the tool each answers.</summary>
    private List<(string Tool, string Text)> TrailingToolResults()
    {
        var results = new List<(string, string)>();
        var start = _messages.Count;
        while (start > 0 && _messages[start - 1].Role == ChatRole.Tool) start--;
        for (var i = start; i < _messages.Count; i++)
        {
            foreach (var content in _messages[i].Contents)
            {
                if (content is FunctionResultContent r && ToolNameOf(r.CallId, start) is { } name)
                    results.Add((name, ResultText(r.Result)));
            }
        }
        return results;
    }

    /// <summary>The name of the tool of the call with id <paramref name="callId"/>, searched backwards from <paramref name="before"/>.</summary>
    private string? ToolNameOf(string callId, int before)
    {
        for (var i = before - 1; i >= 0; i--)
        {
            foreach (var content in _messages[i].Contents)
            {
                if (content is FunctionCallContent c && string.Equals(c.CallId, callId, StringComparison.Ordinal)) return c.Name;
            }
        }
        return null;
    }

    /// <summary>A message's text: its text parts and its tool results' contents, joined by new lines.</summary>
    internal static string MessageText(ChatMessage message)
    {
        var contents = message.Contents;
        if (contents.Count == 1)
        {
            return contents[0] switch
            {
                TextContent t => t.Text,
                FunctionResultContent r => ResultText(r.Result),
                _ => "",
            };
        }
        StringBuilder? sb = null;
        foreach (var content in contents)
        {
            var part = content switch
            {
                TextContent t => t.Text,
                FunctionResultContent r => ResultText(r.Result),
                _ => null,
            };
            if (part is null) continue;
            if (sb is null) sb = new StringBuilder();
            else sb.Append('\n');
            sb.Append(part);
        }
        return sb?.ToString() ?? "";
    }

    /// <summary>A tool result as text: strings as they are, JSON as JSON.</summary>
    internal static string ResultText(object? result) => result switch
    {
        null => "",
        string s => s,
        JsonElement { ValueKind: JsonValueKind.String } e => e.GetString()!,
        JsonElement e => e.GetRawText(),
        JsonNode n => n.ToJsonString(),
        _ => JsonSerializer.Serialize(result, AIJsonUtilities.DefaultOptions.GetTypeInfo(result.GetType())),
    };

    private static int ArgumentsChars(IDictionary<string, object?>? arguments)
    {
        if (arguments is null || arguments.Count == 0) return 2;
        var chars = 2;
        if (arguments is Dictionary<string, object?> dictionary)
        {
            foreach (var (key, value) in dictionary) chars += key.Length + 4 + (value is string s ? s.Length + 2 : ResultChars(value));
            return chars;
        }
        foreach (var (key, value) in arguments) chars += key.Length + 4 + (value is string s ? s.Length + 2 : ResultChars(value));
        return chars;
    }

    /// <summary>The length of <see cref="ResultText"/>, without making the text where it is already there.</summary>
    private static int ResultChars(object? result) => result switch
    {
        null => 0,
        string s => s.Length,
        JsonElement { ValueKind: JsonValueKind.String } e => e.GetString()!.Length,
        JsonElement e => System.Text.Encoding.UTF8.GetCharCount(System.Runtime.InteropServices.JsonMarshal.GetRawUtf8Value(e)),
        _ => ResultText(result).Length,
    };
}
