using Bureau;
using Microsoft.Agents.AI;
using Microsoft.Agents.AI.Workflows;
using Microsoft.Extensions.AI;

namespace InteropSample;

/// <summary>The Microsoft Agent Framework, both ways: a MAF agent hosted in Bureau, and a Bureau agent in a MAF workflow.</summary>
public static class AgentFrameworkSamples
{
    /// <summary>
    /// The MAF agent <c>maf-orders</c> (deployed with <c>AddAgentFrameworkAgent</c> in <see cref="InteropHost"/>) runs as a
    /// durable Bureau run: its model answers and tool calls are in the run's journal.
    /// </summary>
    public static async Task<string> RunHostedAsync(IServiceProvider services, string question, CancellationToken cancellationToken = default)
    {
        var engine = services.GetRequiredService<BureauEngine>();
        var run = (await engine.SubmitAsync(new RunRequest("maf-orders", question), cancellationToken)).Run;
        var done = await engine.WaitAsync(run.Id, cancellationToken);
        var steps = (await engine.ReadJournalAsync(run.Id, cancellationToken: cancellationToken)).Select(r => r.Entry.Kind);
        return $"{done.Output} (run {run.Id}: {string.Join(", ", steps)})";
    }

    /// <summary>
    /// A MAF sequential workflow whose first agent is the Bureau agent <c>orders</c> (<c>engine.AsAIAgent</c>: each call a
    /// durable run) and whose second is a plain MAF agent that writes the reply to the customer.
    /// </summary>
    public static async Task<string> RunWorkflowAsync(IServiceProvider services, string question, CancellationToken cancellationToken = default)
    {
        var engine = services.GetRequiredService<BureauEngine>();
        AIAgent orders = engine.AsAIAgent("orders");
        AIAgent writer = new ChatClientAgent(new ReplyWriter(), instructions: "Write the reply to the customer.", name: "writer");
        var workflow = AgentWorkflowBuilder.BuildSequential(orders, writer);

        await using var run = await InProcessExecution.RunStreamingAsync(workflow, new List<ChatMessage> { new(ChatRole.User, question) }, cancellationToken: cancellationToken);
        await run.TrySendMessageAsync(new TurnToken(emitEvents: true));
        await foreach (var e in run.WatchStreamAsync(cancellationToken))
        {
            if (e is WorkflowOutputEvent output && output.As<List<ChatMessage>>() is { } messages)
                return string.Join(" | ", messages.Where(m => m.Role == ChatRole.Assistant).Select(m => $"{m.AuthorName}: {m.Text}"));
        }
        throw new InvalidOperationException("the workflow ended without an output");
    }

    /// <summary>The writer's model in this offline sample: a scripted client that wraps the previous agent's answer (labelled scripted).</summary>
    private sealed class ReplyWriter : IChatClient
    {
        public Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
        {
            var last = messages.LastOrDefault()?.Text ?? "(nothing)"; // the workflow hands it the previous agent's answer
            return Task.FromResult(new ChatResponse(new ChatMessage(ChatRole.Assistant, $"(scripted) Dear customer, {last}")));
        }

        public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
            [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken = default)
        {
            foreach (var update in (await GetResponseAsync(messages, options, cancellationToken)).ToChatResponseUpdates()) yield return update;
        }

        public object? GetService(Type serviceType, object? serviceKey = null) => null;

        public void Dispose() { }
    }
}
