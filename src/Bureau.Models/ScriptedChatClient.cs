using System.Buffers;
using System.Runtime.CompilerServices;
using Bureau.Models.Scripted;
using Microsoft.Extensions.AI;

namespace Bureau.Models;

/// <summary>
/// The scripted model: a deterministic <see cref="IChatClient"/> that answers from the rules of a
/// <see cref="ScriptedModelDefinition"/>. Rules are tried in order and the first that matches the
/// conversation answers with text, tool calls or both. Token usage is estimated (characters / 4) and
/// latency is an awaited delay on the given <see cref="TimeProvider"/>.
/// </summary>
/// <remarks>
/// Every answer says it is scripted: its model id is <c>scripted:&lt;name&gt;</c> and its additional
/// properties carry <c>bureau.scripted = true</c>. The client is immutable once built and safe to share
/// across any number of concurrent runs.
/// </remarks>
public sealed class ScriptedChatClient : IChatClient
{
    /// <summary>The additional property set to <see langword="true"/> on every response of a scripted model.</summary>
    public const string ScriptedProperty = "bureau.scripted";

    /// <summary>The provider name reported in <see cref="ChatClientMetadata"/>.</summary>
    public const string ProviderName = "scripted";

    private const int NoMatchExcerpt = 200;

    private readonly CompiledRule[] _rules;
    private readonly TimeProvider _time;
    private readonly TimeSpan _latency;
    private readonly string _name;
    private readonly ChatClientMetadata _metadata;

    /// <summary>Builds the client, compiling every rule's regexes and templates once.</summary>
    /// <param name="model">The scripted model.</param>
    /// <param name="timeProvider">The clock used for the simulated latency; <see cref="TimeProvider.System"/> when null.</param>
    /// <exception cref="ArgumentException">A rule is invalid (a bad regex, an empty turn range, no reply and no calls); the message names the model and the rule.</exception>
    public ScriptedChatClient(ScriptedModelDefinition model, TimeProvider? timeProvider = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (string.IsNullOrWhiteSpace(model.Name)) throw new ArgumentException("A scripted model needs a name.", nameof(model));
        if (model.Latency < TimeSpan.Zero) throw new ArgumentException($"scripted model '{model.Name}': latency must not be negative ({model.Latency}).", nameof(model));
        _name = model.Name;
        _latency = model.Latency;
        _time = timeProvider ?? TimeProvider.System;
        ModelId = "scripted:" + model.Name;
        _metadata = new ChatClientMetadata(ProviderName, null, ModelId);
        _rules = new CompiledRule[model.Rules.Count];
        for (var i = 0; i < _rules.Length; i++)
        {
            _rules[i] = new CompiledRule(model.Name, model.Rules[i] ?? throw new ArgumentException($"scripted model '{model.Name}': rule {i + 1} is null.", nameof(model)), i);
        }
    }

    /// <summary>The model id every response carries: <c>scripted:&lt;name&gt;</c>.</summary>
    public string ModelId { get; }

    /// <inheritdoc />
    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(messages);
        if (_latency > TimeSpan.Zero) await Task.Delay(_latency, _time, cancellationToken);
        cancellationToken.ThrowIfCancellationRequested();

        var answer = Answer(messages, options);
        var contents = new List<AIContent>(answer.Calls.Length + 1);
        if (answer.Text is not null) contents.Add(new TextContent(answer.Text));
        contents.AddRange(answer.Calls);
        return new ChatResponse(new ChatMessage(ChatRole.Assistant, contents))
        {
            ModelId = ModelId,
            CreatedAt = _time.GetUtcNow(),
            FinishReason = answer.Calls.Length > 0 ? ChatFinishReason.ToolCalls : ChatFinishReason.Stop,
            Usage = answer.Usage,
            AdditionalProperties = Labels(),
        };
    }

    /// <inheritdoc />
    /// <remarks>Yields the reply text a word at a time, then the tool calls, then the usage.</remarks>
    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(
        IEnumerable<ChatMessage> messages, ChatOptions? options = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(messages);
        if (_latency > TimeSpan.Zero) await Task.Delay(_latency, _time, cancellationToken);
        cancellationToken.ThrowIfCancellationRequested();

        var answer = Answer(messages, options);
        var created = _time.GetUtcNow();
        var labels = Labels();
        if (answer.Text is { } text)
        {
            var start = 0;
            while (start < text.Length)
            {
                var end = WordEnd(text, start);
                yield return Update([new TextContent(text[start..end])], null);
                start = end;
            }
        }
        if (answer.Calls.Length > 0) yield return Update([.. answer.Calls], null);
        yield return Update([new UsageContent(answer.Usage)], answer.Calls.Length > 0 ? ChatFinishReason.ToolCalls : ChatFinishReason.Stop);

        ChatResponseUpdate Update(IList<AIContent> contents, ChatFinishReason? finish) => new(ChatRole.Assistant, contents)
        {
            ModelId = ModelId,
            CreatedAt = created,
            FinishReason = finish,
            AdditionalProperties = labels,
        };
    }

    /// <inheritdoc />
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(ChatClientMetadata)) return _metadata;
        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    /// <inheritdoc />
    public void Dispose()
    {
    }

    private static readonly object s_true = true;

    private static AdditionalPropertiesDictionary Labels() => new() { [ScriptedProperty] = s_true };

    private readonly record struct ScriptAnswer(string? Text, FunctionCallContent[] Calls, UsageDetails Usage);

    /// <summary>Finds the first matching rule and renders its answer (or the no-match reply).</summary>
    private ScriptAnswer Answer(IEnumerable<ChatMessage> messages, ChatOptions? options)
    {
        var list = messages as IReadOnlyList<ChatMessage> ?? [.. messages];
        var conversation = new ScriptConversation(list);
        string? text = null;
        FunctionCallContent[] calls = [];
        long answerChars = 0;
        var matched = false;
        foreach (var rule in _rules)
        {
            if (!rule.TryMatch(_name, conversation, out var context)) continue;
            matched = true;
            text = rule.Reply?.Render(context);
            answerChars = text?.Length ?? 0;
            if (rule.Calls.Length > 0)
            {
                calls = new FunctionCallContent[rule.Calls.Length];
                var buffer = new ArrayBufferWriter<byte>(256);
                for (var i = 0; i < calls.Length; i++)
                {
                    var args = rule.RenderArguments(i, context, buffer);
                    answerChars += rule.Calls[i].Tool.Length + buffer.WrittenCount;
                    var dictionary = new Dictionary<string, object?>(StringComparer.Ordinal);
                    foreach (var property in args.EnumerateObject()) dictionary[property.Name] = property.Value;
                    calls[i] = new FunctionCallContent($"call_{context.Turn}_{i}", rule.Calls[i].Tool, dictionary);
                }
            }
            break;
        }
        if (!matched)
        {
            text = NoMatchText(conversation);
            answerChars = text.Length;
        }

        var input = Tokens(conversation.PromptChars(options));
        var output = Tokens(answerChars);
        return new ScriptAnswer(text, calls, new UsageDetails { InputTokenCount = input, OutputTokenCount = output, TotalTokenCount = input + output });
    }

    private string NoMatchText(ScriptConversation conversation)
    {
        var last = conversation.Last;
        var excerpt = last.Length > NoMatchExcerpt ? string.Concat(last.AsSpan(0, NoMatchExcerpt), "…") : last;
        excerpt = excerpt.ReplaceLineEndings(" ");
        return $"scripted model '{_name}': no rule matched turn {conversation.Turn} (latest message: '{excerpt}')";
    }

    /// <summary>Estimated tokens for a number of characters: ceil(chars / 4).</summary>
    internal static long Tokens(long chars) => (chars + 3) / 4;

    /// <summary>The end of the word starting at <paramref name="start"/>, including the white space after it.</summary>
    private static int WordEnd(string text, int start)
    {
        var i = start;
        while (i < text.Length && char.IsWhiteSpace(text[i])) i++;
        while (i < text.Length && !char.IsWhiteSpace(text[i])) i++;
        while (i < text.Length && char.IsWhiteSpace(text[i])) i++;
        return i;
    }
}
