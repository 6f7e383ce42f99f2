using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Bureau.Engine;
using Message = Bureau.Engine.ConversationMessage;

namespace Bureau.Hosting;

/// <summary>
/// Reads OpenAI-style conversations (chat completions' <c>messages</c>, the Responses API's <c>input</c>) with errors
/// that name the field; <see cref="ConversationInput"/> turns them into a run's input (docs/decisions/0026).
/// </summary>
internal static class OpenAiConversation
{
    /// <summary>The run's input for <paramref name="messages"/> (the last is the user's, checked by the readers).</summary>
    public static string ToInput(IReadOnlyList<Message> messages) => ConversationInput.ToInput(messages);

    /// <summary>Reads chat completions' <c>messages</c>; errors name the field (<c>messages[2].content</c>).</summary>
    public static List<Message> ReadChatMessages(JsonObject body)
    {
        if (!body.TryGetPropertyValue("messages", out var node) || node is null)
            throw ApiException.BadField("messages", "'messages' is required: an array of {role, content}, the last one the user's");
        if (node is not JsonArray array) throw ApiException.BadField("messages", $"'messages' must be an array, not {Describe(node)}");
        if (array.Count == 0) throw ApiException.BadField("messages", "'messages' is empty; send at least the user's message");
        var messages = new List<Message>(array.Count);
        for (var i = 0; i < array.Count; i++)
        {
            var path = $"messages[{i}]";
            if (array[i] is not JsonObject m) throw ApiException.BadField(path, $"'{path}' must be an object {{role, content}}, not {Describe(array[i])}");
            var role = String(m, "role", path) ?? throw ApiException.BadField(path + ".role", $"'{path}.role' is required (system, developer, user, assistant or tool)");
            if (role is not ("system" or "developer" or "user" or "assistant" or "tool"))
                throw ApiException.BadField(path + ".role", $"'{path}.role' must be system, developer, user, assistant or tool, not '{role}'");
            var text = Content(m, path, role, allowMissing: role == "assistant");
            if (role == "assistant" && m["tool_calls"] is JsonArray calls && calls.Count > 0)
            {
                var named = calls.OfType<JsonObject>().Select(c => (string?)(c["function"] as JsonObject)?["name"]).Where(n => n is not null);
                text = (text.Length > 0 ? text + " " : "") + $"(asked for the tools: {string.Join(", ", named)})";
            }
            if (role == "tool" && String(m, "tool_call_id", path) is { } callId) role = $"tool {callId}";
            messages.Add(new Message(role, text));
        }
        if (messages[^1].Role != "user")
        {
            throw ApiException.BadField($"messages[{array.Count - 1}].role",
                $"the last message must be the user's (it is the run's input; earlier messages are context), not '{messages[^1].Role}'");
        }
        return messages;
    }

    /// <summary>Reads the Responses API's <c>instructions</c> and <c>input</c> (a string, or message items).</summary>
    public static List<Message> ReadResponsesInput(JsonObject body)
    {
        var messages = new List<Message>();
        if (String(body, "instructions", null) is { Length: > 0 } instructions) messages.Add(new Message("system", instructions));
        if (!body.TryGetPropertyValue("input", out var node) || node is null)
            throw ApiException.BadField("input", "'input' is required: a string, or an array of messages {role, content}, the last one the user's");
        if (node is JsonValue v && v.GetValueKind() == JsonValueKind.String)
        {
            messages.Add(new Message("user", v.GetValue<string>()));
            return messages;
        }
        if (node is not JsonArray array) throw ApiException.BadField("input", $"'input' must be a string or an array of messages, not {Describe(node)}");
        if (array.Count == 0) throw ApiException.BadField("input", "'input' is empty; send at least the user's message");
        for (var i = 0; i < array.Count; i++)
        {
            var path = $"input[{i}]";
            if (array[i] is not JsonObject m) throw ApiException.BadField(path, $"'{path}' must be a message {{role, content}}, not {Describe(array[i])}");
            var type = String(m, "type", path) ?? "message";
            if (type != "message")
            {
                throw ApiException.BadField(path + ".type",
                    $"'{path}.type' is '{type}'; only message items are supported (Bureau's agents call their own tools: client-side function calls are not)");
            }
            var role = String(m, "role", path) ?? throw ApiException.BadField(path + ".role", $"'{path}.role' is required (system, developer, user or assistant)");
            if (role is not ("system" or "developer" or "user" or "assistant"))
                throw ApiException.BadField(path + ".role", $"'{path}.role' must be system, developer, user or assistant, not '{role}'");
            messages.Add(new Message(role, Content(m, path, role, allowMissing: false)));
        }
        if (messages[^1].Role != "user")
            throw ApiException.BadField($"input[{array.Count - 1}].role", $"the last message must be the user's (it is the run's input; earlier messages are context), not '{messages[^1].Role}'");
        return messages;
    }

    /// <summary>A message's text: a string, or text parts (<c>text</c>, <c>input_text</c>, <c>output_text</c>, <c>refusal</c>) joined.</summary>
    private static string Content(JsonObject m, string path, string role, bool allowMissing)
    {
        var field = path + ".content";
        if (!m.TryGetPropertyValue("content", out var node) || node is null)
        {
            if (allowMissing) return "";
            throw ApiException.BadField(field, $"'{field}' is required for a {role} message (a string or an array of text parts)");
        }
        if (node is JsonValue v && v.GetValueKind() == JsonValueKind.String) return v.GetValue<string>();
        if (node is not JsonArray parts) throw ApiException.BadField(field, $"'{field}' must be a string or an array of text parts, not {Describe(node)}");
        var sb = new StringBuilder();
        for (var j = 0; j < parts.Count; j++)
        {
            var partPath = $"{field}[{j}]";
            if (parts[j] is not JsonObject part) throw ApiException.BadField(partPath, $"'{partPath}' must be an object {{type, text}}, not {Describe(parts[j])}");
            var type = String(part, "type", partPath) ?? throw ApiException.BadField(partPath + ".type", $"'{partPath}.type' is required");
            var text = type switch
            {
                "text" or "input_text" or "output_text" => String(part, "text", partPath) ?? throw ApiException.BadField(partPath + ".text", $"'{partPath}.text' is required (a string)"),
                "refusal" => String(part, "refusal", partPath) ?? "",
                _ => throw ApiException.BadField(partPath + ".type", $"'{partPath}.type' is '{type}'; only text parts are supported (a run's input is text)"),
            };
            if (sb.Length > 0) sb.Append('\n');
            sb.Append(text);
        }
        return sb.ToString();
    }

    /// <summary>An optional string field; 400 naming it when it is something else.</summary>
    public static string? String(JsonObject o, string name, string? path)
    {
        if (!o.TryGetPropertyValue(name, out var node) || node is null) return null;
        if (node is JsonValue v && v.GetValueKind() == JsonValueKind.String) return v.GetValue<string>();
        var field = path is null ? name : $"{path}.{name}";
        throw ApiException.BadField(field, $"'{field}' must be a string, not {Describe(node)}");
    }

    /// <summary>An optional boolean field.</summary>
    public static bool? Bool(JsonObject o, string name, string? path = null)
    {
        if (!o.TryGetPropertyValue(name, out var node) || node is null) return null;
        if (node is JsonValue v && v.GetValueKind() is JsonValueKind.True or JsonValueKind.False) return v.GetValue<bool>();
        var field = path is null ? name : $"{path}.{name}";
        throw ApiException.BadField(field, $"'{field}' must be true or false, not {Describe(node)}");
    }

    public static string Describe(JsonNode? node) => node switch
    {
        null => "null",
        JsonObject => "an object",
        JsonArray => "an array",
        JsonValue v => v.GetValueKind() switch
        {
            JsonValueKind.String => "a string",
            JsonValueKind.Number => "a number " + v.ToJsonString(),
            JsonValueKind.True or JsonValueKind.False => "a boolean",
            _ => "null",
        },
        _ => "something else",
    };

    /// <summary>Unix seconds, as OpenAI's objects carry time.</summary>
    public static long Unix(DateTimeOffset at) => at.ToUnixTimeSeconds();

    internal static string Invariant(long n) => n.ToString(CultureInfo.InvariantCulture);
}
