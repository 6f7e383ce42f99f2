using Bureau.Tools;
using Microsoft.Extensions.AI;

namespace Bureau.Engine;

/// <summary>An agent ready to run: its model client, tool declarations and validator, built once.</summary>
internal sealed class AgentRuntime
{
    public AgentRuntime(AgentDefinition definition, ModelDefinition model, IChatClient client, IReadOnlyList<BureauTool> tools, ToolCallValidator validator,
        IReadOnlyList<AITool>? delegates = null)
    {
        Tools = tools;
        Delegates = delegates ?? [];
        Definition = definition;
        Model = model;
        FallbackCount = model.Fallback.Count;
        ModelName = model.Name;
        Provider = model.Provider;
        ModelLabel = model switch
        {
            ScriptedModelDefinition => "scripted:" + model.Name,
            OpenAIModelDefinition o => o.Model,
            _ => model.Name,
        };
        Client = client;
        Validator = validator;
        ChatOptions = new ChatOptions
        {
            Tools = tools.Count + Delegates.Count == 0 ? null : [.. tools.Select(t => definition.StateConfidence ? Governance.Confidence.Declaration(t) : t.ToDeclaration()), .. Delegates],
            ToolMode = tools.Count + Delegates.Count == 0 ? null : ChatToolMode.Auto,
        };
    }

    public AgentDefinition Definition { get; }
    public ModelDefinition Model { get; }
    public int FallbackCount { get; }
    public string ModelName { get; }
    public string ModelLabel { get; }
    public string Provider { get; }
    public IChatClient Client { get; }
    public ChatOptions ChatOptions { get; }
    public ToolCallValidator Validator { get; }
    public IReadOnlyList<BureauTool> Tools { get; }
    public IReadOnlyList<AITool> Delegates { get; }

    /// <summary>The same agent allowed only <paramref name="allowed"/> of its tools (a delegate's intersection with its caller's).</summary>
    public AgentRuntime Restricted(IReadOnlyList<string> allowed) =>
        new(Definition.WithTools(allowed), Model, Client, [.. Tools.Where(t => allowed.Contains(t.Name))], Validator, Delegates);

    /// <summary>The same agent with other budgets.</summary>
    public AgentRuntime WithBudgets(AgentBudgets budgets) => new(Definition.WithBudgets(budgets), Model, Client, Tools, Validator, Delegates);
}
