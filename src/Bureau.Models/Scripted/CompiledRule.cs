using System.Buffers;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Bureau.Models.Scripted;

/// <summary>A <see cref="ScriptRule"/> with its regexes built and its templates parsed, ready to be matched.</summary>
internal sealed class CompiledRule
{
    /// <summary>How long one regex may run on one text.</summary>
    internal static readonly TimeSpan RegexTimeout = TimeSpan.FromSeconds(1);

    private const RegexOptions Options = RegexOptions.CultureInvariant;

    public CompiledRule(string model, ScriptRule rule, int index)
    {
        Where = rule.Source is { Length: > 0 } source ? $"rule {index + 1} ({source})" : $"rule {index + 1}";
        var when = rule.When;
        if (when is not null)
        {
            if (when.TurnFrom is < 1) throw Invalid(model, $"turn must be 1 or more, not {when.TurnFrom}");
            if (when.TurnTo is < 1) throw Invalid(model, $"the last turn must be 1 or more, not {when.TurnTo}");
            if (when.TurnFrom is { } f && when.TurnTo is { } t && t < f) throw Invalid(model, $"turn range {f}-{t} is empty");
            TurnFrom = when.TurnFrom ?? 1;
            TurnTo = when.TurnTo ?? int.MaxValue;
            Input = Build(model, "input", when.Input);
            User = Build(model, "user", when.User);
            Match = Build(model, "match", when.Match);
            if (when.Tool is { Length: 0 }) throw Invalid(model, "tool must not be empty");
            Tool = when.Tool;
        }
        else
        {
            TurnFrom = 1;
            TurnTo = int.MaxValue;
        }

        if (rule.Reply is null && rule.Calls.Count == 0) throw Invalid(model, "has neither a reply nor calls");
        Reply = rule.Reply is null ? null : ScriptTemplate.Parse(rule.Reply);
        var calls = new (string, ScriptJsonTemplate)[rule.Calls.Count];
        for (var i = 0; i < calls.Length; i++)
        {
            var call = rule.Calls[i];
            if (string.IsNullOrWhiteSpace(call.Tool)) throw Invalid(model, $"call {i + 1} has no tool name");
            calls[i] = (call.Tool, ScriptJsonTemplate.Compile(call.Arguments));
        }
        Calls = calls;
    }

    /// <summary>The rule's position and source, for messages.</summary>
    public string Where { get; }
    public int TurnFrom { get; }
    public int TurnTo { get; }
    public Regex? Input { get; }
    public Regex? User { get; }
    public Regex? Match { get; }
    public string? Tool { get; }
    public ScriptTemplate? Reply { get; }
    public (string Tool, ScriptJsonTemplate Arguments)[] Calls { get; }

    /// <summary>Matches the rule against the conversation; on success, <paramref name="context"/> holds its captures.</summary>
    public bool TryMatch(string model, ScriptConversation conversation, out ScriptContext context)
    {
        context = default;
        var turn = conversation.Turn;
        if (turn < TurnFrom || turn > TurnTo) return false;

        string? toolText = null;
        if (Tool is not null && (toolText = conversation.LatestResultOf(Tool)) is null) return false;

        System.Text.RegularExpressions.Match? input = null, user = null, text = null;
        if (Input is not null && !(input = Run(model, "input", Input, conversation.Input)).Success) return false;
        if (User is not null && !(user = Run(model, "user", User, conversation.LatestUser)).Success) return false;
        if (Match is not null && !(text = Run(model, "match", Match, toolText ?? conversation.Last)).Success) return false;

        context = new ScriptContext(conversation.Input, turn, conversation.Last, input, user, text);
        return true;
    }

    /// <summary>Writes the arguments of call <paramref name="index"/> and returns them as a JSON object.</summary>
    public JsonElement RenderArguments(int index, in ScriptContext context, ArrayBufferWriter<byte> buffer)
    {
        buffer.ResetWrittenCount();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            Calls[index].Arguments.Write(writer, context);
        }
        var reader = new Utf8JsonReader(buffer.WrittenSpan);
        return JsonElement.ParseValue(ref reader);
    }

    private System.Text.RegularExpressions.Match Run(string model, string key, Regex regex, string text)
    {
        try
        {
            return regex.Match(text);
        }
        catch (RegexMatchTimeoutException ex)
        {
            throw new InvalidOperationException(
                $"scripted model '{model}': the '{key}' regex of {Where} took longer than {RegexTimeout.TotalSeconds:0}s on a text of {text.Length} characters", ex);
        }
    }

    private Regex? Build(string model, string key, string? pattern)
    {
        if (pattern is null) return null;
        try
        {
            return new Regex(pattern, Options, RegexTimeout);
        }
        catch (ArgumentException ex)
        {
            throw Invalid(model, $"has an invalid '{key}' regex '{pattern}': {ex.Message}");
        }
    }

    private ArgumentException Invalid(string model, string problem) =>
        new($"scripted model '{model}': {Where} {problem}", "model");
}
