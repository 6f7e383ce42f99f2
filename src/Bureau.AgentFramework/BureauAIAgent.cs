using System.Runtime.CompilerServices;
using System.Text.Json;
using Bureau.Engine;
using Microsoft.Agents.AI;
using Microsoft.Extensions.AI;

namespace Bureau;

/// <summary>
/// A deployed Bureau agent or team as a Microsoft Agent Framework <see cref="AIAgent"/>, for MAF workflows and
/// orchestrations: each call starts a durable run through <see cref="BureauEngine.SubmitAsync"/> (journaled, governed,
/// resumed after a restart like any run) and answers with its output. The conversation maps to the run's input as
/// the OpenAI-compatible API maps it (docs/decisions/0026): the last message is the user's and is answered, earlier
/// ones (the session's history, then the call's) are context. A run that waits for a person (an approval) answers
/// with a message naming the run and the approval, and <see cref="RunIdProperty"/>, <see cref="StatusProperty"/> and
/// <see cref="WaitingForProperty"/> in <see cref="AgentResponse.AdditionalProperties"/>; a run that fails or is
/// canceled throws <see cref="BureauRunFailedException"/>. Canceling a call stops the waiting, not the run.
/// </summary>
public sealed class BureauAIAgent : AIAgent
{
    /// <summary>The key of the run's id in <see cref="AgentResponse.AdditionalProperties"/>.</summary>
    public const string RunIdProperty = "bureau.runId";

    /// <summary>The key of the run's status (<c>succeeded</c>, <c>waiting</c>) in <see cref="AgentResponse.AdditionalProperties"/>.</summary>
    public const string StatusProperty = "bureau.status";

    /// <summary>The key of the approval id (<c>RUN:STEP</c>) a waiting run waits on, in <see cref="AgentResponse.AdditionalProperties"/>.</summary>
    public const string WaitingForProperty = "bureau.waitingFor";

    private const string HistoryKey = "bureau.history";
    private readonly BureauEngine _engine;
    private readonly string _target;
    private readonly string? _actor;

    internal BureauAIAgent(BureauEngine engine, string agentOrTeam, string? actor)
    {
        _engine = engine;
        _target = agentOrTeam;
        _actor = actor;
    }

    /// <inheritdoc />
    protected override string? IdCore => "bureau:" + _target;

    /// <inheritdoc />
    public override string? Name => _target;

    /// <inheritdoc />
    public override string? Description =>
        _engine.Definitions.Agents.TryGetValue(_target, out var a) ? a.Description
        : _engine.Definitions.Teams.TryGetValue(_target, out var t) ? t.Description : null;

    /// <inheritdoc />
    protected override ValueTask<AgentSession> CreateSessionCoreAsync(CancellationToken cancellationToken = default) =>
        ValueTask.FromResult<AgentSession>(new BureauAgentSession(new AgentSessionStateBag()));

    /// <inheritdoc />
    protected override ValueTask<JsonElement> SerializeSessionCoreAsync(AgentSession session, JsonSerializerOptions? jsonSerializerOptions = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(session);
        return ValueTask.FromResult(session.StateBag.Serialize());
    }

    /// <inheritdoc />
    protected override ValueTask<AgentSession> DeserializeSessionCoreAsync(JsonElement serializedState, JsonSerializerOptions? jsonSerializerOptions = null, CancellationToken cancellationToken = default) =>
        ValueTask.FromResult<AgentSession>(new BureauAgentSession(AgentSessionStateBag.Deserialize(serializedState)));

    /// <inheritdoc />
    protected override async Task<AgentResponse> RunCoreAsync(IEnumerable<ChatMessage> messages, AgentSession? session = null, AgentRunOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        var (run, end) = await RunToEndAsync(messages, session, cancellationToken);
        var answer = new ChatMessage(ChatRole.Assistant, Answer(end)) { AuthorName = _target, MessageId = run.Id };
        Remember(session, messages, answer);
        return new AgentResponse(answer)
        {
            AgentId = Id,
            ResponseId = run.Id,
            CreatedAt = run.CreatedAt,
            FinishReason = ChatFinishReason.Stop,
            Usage = Usage(end.Run),
            AdditionalProperties = Properties(end),
        };
    }

    /// <inheritdoc />
    protected override async IAsyncEnumerable<AgentResponseUpdate> RunCoreStreamingAsync(IEnumerable<ChatMessage> messages, AgentSession? session = null,
        AgentRunOptions? options = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        // The journal's granularity: the answer is one update, once it is durable (the engine does not stream tokens).
        var (run, end) = await RunToEndAsync(messages, session, cancellationToken);
        var text = Answer(end);
        Remember(session, messages, new ChatMessage(ChatRole.Assistant, text) { AuthorName = _target, MessageId = run.Id });
        yield return new AgentResponseUpdate(ChatRole.Assistant, text)
        {
            AgentId = Id, ResponseId = run.Id, MessageId = run.Id, AuthorName = _target, CreatedAt = run.CreatedAt,
            AdditionalProperties = Properties(end),
        };
        yield return new AgentResponseUpdate(ChatRole.Assistant, [new UsageContent(Usage(end.Run))])
        {
            AgentId = Id, ResponseId = run.Id, MessageId = run.Id, FinishReason = ChatFinishReason.Stop,
        };
    }

    private async Task<(RunRecord Run, RunEnd End)> RunToEndAsync(IEnumerable<ChatMessage> messages, AgentSession? session, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var conversation = new List<ConversationMessage>();
        if (session is not null && session.TryGetInMemoryChatHistory(out var history, HistoryKey) && history is not null)
            conversation.AddRange(history.Select(ToConversation));
        var added = messages.ToList();
        if (added.Count == 0 || added[^1].Role != ChatRole.User)
            throw new ArgumentException($"the last message must be the user's: it is what agent '{_target}' answers (earlier messages are context)", nameof(messages));
        conversation.AddRange(added.Select(ToConversation));
        var input = ConversationInput.ToInput(conversation);
        _engine.EnsureQueueRoom(_target);
        var submitted = await _engine.SubmitAsync(new RunRequest(_target, input, Actor: _actor), cancellationToken);
        var end = await RunFollower.FollowAsync(_engine, submitted.Run.Id, null, null, Timeout.InfiniteTimeSpan, TimeProvider.System, cancellationToken);
        if (!end.Waiting && end.Run.Status != RunStatus.Succeeded)
            throw new BureauRunFailedException(end.Run);
        return (submitted.Run, end);
    }

    private static ConversationMessage ToConversation(ChatMessage m) => new(m.Role.Value, m.Text);

    private static string Answer(RunEnd end) => end.Waiting ? RunFollower.WaitingMessage(end) : end.Run.Output ?? "";

    private static UsageDetails Usage(RunRecord run) => new()
    {
        InputTokenCount = run.Usage.InputTokens,
        OutputTokenCount = run.Usage.OutputTokens,
        TotalTokenCount = run.Usage.TotalTokens,
    };

    private static AdditionalPropertiesDictionary Properties(RunEnd end)
    {
        var properties = new AdditionalPropertiesDictionary { [RunIdProperty] = end.Run.Id, [StatusProperty] = end.Run.Status.ToWireName() };
        if (end.WaitingRun is { WaitingFor: { } w } waiting) properties[WaitingForProperty] = $"{waiting.Id}:{w.Step}";
        return properties;
    }

    /// <summary>The session keeps the conversation (the call's messages and the answer) for the next call's context.</summary>
    private static void Remember(AgentSession? session, IEnumerable<ChatMessage> messages, ChatMessage answer)
    {
        if (session is null) return;
        var history = session.TryGetInMemoryChatHistory(out var h, HistoryKey) && h is not null ? h : [];
        history.AddRange(messages);
        history.Add(answer);
        session.SetInMemoryChatHistory(history, HistoryKey);
    }
}

/// <summary>A <see cref="BureauAIAgent"/>'s session: the conversation so far, in its state bag (serializable).</summary>
internal sealed class BureauAgentSession(AgentSessionStateBag state) : AgentSession(state);

/// <summary>A run started by a <see cref="BureauAIAgent"/> failed or was canceled; it is durable and can be read by its id.</summary>
public sealed class BureauRunFailedException : Exception
{
    internal BureauRunFailedException(RunRecord run)
        : base($"run {run.Id} of '{run.Agent}' {run.Status.ToWireName()}{(run.Outcome is null ? "" : $" ({run.Outcome})")}: {run.Error ?? "no error recorded"}")
    {
        RunId = run.Id;
        Status = run.Status;
        Outcome = run.Outcome;
    }

    /// <summary>The run.</summary>
    public string RunId { get; }

    /// <summary>How it ended: failed or canceled.</summary>
    public RunStatus Status { get; }

    /// <summary>Its outcome (<c>budget</c>, <c>loop</c>, <c>error</c>, <c>canceled</c>), or null.</summary>
    public string? Outcome { get; }
}

/// <summary>Bureau's agents and teams for the Microsoft Agent Framework.</summary>
public static class BureauAgentFrameworkExtensions
{
    /// <summary>
    /// The deployed agent or team <paramref name="agentOrTeam"/> as a MAF <see cref="AIAgent"/>: each call is a durable run
    /// started by <paramref name="actor"/> (recorded in its journal; default <c>maf</c>).
    /// </summary>
    /// <exception cref="UnknownAgentException">Nothing of that name is deployed.</exception>
    public static AIAgent AsAIAgent(this BureauEngine engine, string agentOrTeam, string? actor = "maf")
    {
        ArgumentNullException.ThrowIfNull(engine);
        ArgumentException.ThrowIfNullOrWhiteSpace(agentOrTeam);
        var defs = engine.Definitions;
        if (!defs.Agents.ContainsKey(agentOrTeam) && !defs.Teams.ContainsKey(agentOrTeam))
            throw new UnknownAgentException(agentOrTeam, defs.Agents.Keys.Concat(defs.Teams.Keys));
        return new BureauAIAgent(engine, agentOrTeam, actor);
    }
}
