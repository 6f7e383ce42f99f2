using Bureau.Engine;
using Microsoft.Agents.AI;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;

namespace Bureau;

/// <summary>Microsoft Agent Framework agents hosted in Bureau: their runs durable, journaled and governed like a native agent's.</summary>
public static class AgentFrameworkHostingExtensions
{
    /// <summary>
    /// Deploys <paramref name="agent"/> (its model, tools, budgets, loop detection) and runs it as the MAF <see cref="AIAgent"/>
    /// <paramref name="create"/> makes: see <see cref="AddAgentFrameworkAgent(BureauBuilder, string, Func{IChatClient, IReadOnlyList{AITool}, AIAgent})"/>.
    /// </summary>
    public static BureauBuilder AddAgentFrameworkAgent(this BureauBuilder builder, AgentDefinition agent, Func<IChatClient, IReadOnlyList<AITool>, AIAgent> create)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(agent);
        builder.AddAgent(agent);
        return builder.AddAgentFrameworkAgent(agent.Name, create);
    }

    /// <summary>
    /// Runs the agent <paramref name="name"/> (defined in a manifest or with <c>AddAgent</c>: its model, tools, budgets) as the
    /// MAF <see cref="AIAgent"/> that <paramref name="create"/> makes from Bureau's durable chat client and tools, for example
    /// <c>(chat, tools) =&gt; new ChatClientAgent(chat, instructions, name, tools: [.. tools])</c>. It is an agent like any
    /// other (submitted by name, over every protocol); each execution of a run calls <paramref name="create"/> and runs the
    /// agent on the run's input, and its answer is the run's output. Every model call goes through the model's pipeline
    /// (resilience, fallbacks, rate limits) and is journaled before the agent sees it; every tool call through the tool
    /// pipeline (validation, policies and approvals, intents with idempotency keys, retries). A resumed run (after a
    /// crash, a restart, an approval) runs the agent again from the start: it is answered the journaled model answers and
    /// tool results, so no journaled model or tool call is made twice. The agent must therefore call the model and the
    /// tools as it did before (a <c>ChatClientAgent</c> does, given the same answers); tools other than those handed to it
    /// fail the run, as they would be neither journaled nor governed. docs/decisions/0042.
    /// </summary>
    public static BureauBuilder AddAgentFrameworkAgent(this BureauBuilder builder, string name, Func<IChatClient, IReadOnlyList<AITool>, AIAgent> create)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(create);
        builder.Services.AddSingleton(new HostedAgentLoop(name, async (chat, tools, input, cancellationToken) =>
        {
            var agent = create(chat, tools) ?? throw new InvalidOperationException($"the factory of agent '{name}' (AddAgentFrameworkAgent) returned no AIAgent");
            var response = await agent.RunAsync(input, cancellationToken: cancellationToken).ConfigureAwait(false);
            return response.Text;
        }));
        return builder;
    }
}
