using System.Text.Json;
using Microsoft.Extensions.AI;

namespace Bureau.Tests.Support;

/// <summary>
/// A test model: answers through a function of the conversation and the turn, and records every
/// request it received. (The scripted model is tested on its own in Bureau.Models.Tests.)
/// </summary>
public sealed class FakeModel(Func<IReadOnlyList<ChatMessage>, int, ChatResponse> answer) : IChatClient
{
    private int _calls;
    private readonly List<IReadOnlyList<ChatMessage>> _requests = [];

    public Func<IReadOnlyList<ChatMessage>, int, CancellationToken, Task>? BeforeAnswer { get; set; }

    public int Calls => Volatile.Read(ref _calls);

    /// <summary>The names of the tools declared to the model in its latest request.</summary>
    public IReadOnlyList<string> LastToolNames { get; private set; } = [];

    public IReadOnlyList<IReadOnlyList<ChatMessage>> Requests
    {
        get { lock (_requests) return [.. _requests]; }
    }

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var list = messages.ToList();
        Interlocked.Increment(ref _calls);
        lock (_requests) _requests.Add(list);
        LastToolNames = [.. options?.Tools?.Select(t => t.Name) ?? []];
        var turn = list.Count(m => m.Role == ChatRole.Assistant) + 1;
        if (BeforeAnswer is not null) await BeforeAnswer(list, turn, cancellationToken);
        var r = answer(list, turn);
        r.Usage ??= new UsageDetails { InputTokenCount = 10, OutputTokenCount = 5 };
        r.ModelId ??= "fake-model";
        return r;
    }

    public IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
        throw new NotSupportedException("the engine does not stream");

    public object? GetService(Type serviceType, object? serviceKey = null) => null;

    public void Dispose() { }

    public static ChatResponse Text(string text) => new(new ChatMessage(ChatRole.Assistant, text));

    public static ChatResponse Call(string tool, string argumentsJson, string? callId = null) =>
        new(new ChatMessage(ChatRole.Assistant, [new FunctionCallContent(callId ?? "call_" + Guid.NewGuid().ToString("n")[..8], tool, Args(argumentsJson))]));

    public static Dictionary<string, object?> Args(string json)
    {
        var d = new Dictionary<string, object?>();
        using var doc = JsonDocument.Parse(json);
        foreach (var p in doc.RootElement.EnumerateObject()) d[p.Name] = p.Value.Clone();
        return d;
    }

    /// <summary>The text of the latest tool result in a conversation.</summary>
    public static string? LastToolResult(IReadOnlyList<ChatMessage> messages) =>
        messages.LastOrDefault(m => m.Role == ChatRole.Tool)?.Contents.OfType<FunctionResultContent>().LastOrDefault()?.Result?.ToString();
}
