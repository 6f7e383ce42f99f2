using System.Runtime.CompilerServices;
using Microsoft.Extensions.AI;
using Polly;
using Polly.CircuitBreaker;
using Polly.RateLimiting;
using Polly.Retry;

namespace Bureau.Resilience;

/// <summary>
/// Every model's resilience links, built once per process and shared by every run: retry (backoff, jitter,
/// Retry-After, caps on attempts and total time), a circuit breaker, a bulkhead, rate limits, timeouts per attempt
/// and per step, and the fallback chain. The provider's own retries are off (docs/decisions/0012).
/// </summary>
internal sealed class ModelGateway : IDisposable
{
    private readonly BureauDefinitions _definitions;
    private readonly ChatClients _clients;
    private readonly DependencyHealth _health;
    private readonly TimeProvider _time;
    private readonly Func<double> _random;
    private readonly Dictionary<string, ModelLink> _links = new(StringComparer.Ordinal);
    private readonly Dictionary<string, ResilientChatClient> _agentClients = new(StringComparer.Ordinal);

    public ModelGateway(BureauDeployment deployment, ChatClients clients, DependencyHealth health, ResilienceClock clock)
    {
        _definitions = deployment.Definitions;
        _clients = clients;
        _health = health;
        _time = clock.Time;
        _random = Random.Shared.NextDouble;
    }

    /// <summary>The client an agent on <paramref name="model"/> calls: the model, then its fallbacks, each behind its links.</summary>
    public ResilientChatClient Get(ModelDefinition model)
    {
        lock (_links)
        {
            if (_agentClients.TryGetValue(model.Name, out var client)) return client;
            var chain = new List<ModelLink> { Link(model) };
            foreach (var name in model.Fallback)
            {
                if (name == model.Name || chain.Exists(l => l.Name == name)) continue;
                if (!_definitions.Models.TryGetValue(name, out var fallback))
                    throw new ArgumentException($"model '{model.Name}': fallback model '{name}' is not defined", nameof(model));
                chain.Add(Link(fallback));
            }
            return _agentClients[model.Name] = new ResilientChatClient([.. chain]);
        }
    }

    /// <summary>The model's definition by name (for the price and provider of a fallback that answered).</summary>
    public ModelDefinition? Definition(string name) => _definitions.Models.GetValueOrDefault(name);

    private ModelLink Link(ModelDefinition model)
    {
        if (_links.TryGetValue(model.Name, out var link)) return link;
        return _links[model.Name] = new ModelLink(model, _clients.Get(model), _health, _time, _random);
    }

    public void Dispose()
    {
        lock (_links)
            foreach (var l in _links.Values) l.Dispose();
        _health.Untrack();
    }

    /// <summary>The settings a model's retry link uses.</summary>
    internal static RetrySettings RetryOf(ModelDefinition model)
    {
        if (model.Retry is { } retry) return retry;
        var d = RetrySettings.ModelDefault;
        if (model is not OpenAIModelDefinition openAI) return d;
        return new RetrySettings { MaxAttempts = openAI.MaxRetries + 1, Delay = d.Delay, MaxDelay = d.MaxDelay, MaxTotalTime = d.MaxTotalTime, Jitter = d.Jitter };
    }
}

/// <summary>One model behind its links.</summary>
internal sealed class ModelLink : IDisposable
{
    private static readonly ResiliencePropertyKey<CallState> StateKey = new("bureau.call");

    private readonly IChatClient _client;
    private readonly ResiliencePipeline<ChatResponse> _pipeline;
    private readonly ModelRateLimits _limits;
    private readonly TimeProvider _time;
    private readonly TimeSpan? _attemptTimeout;
    private readonly RetrySettings _retry;

    public ModelLink(ModelDefinition model, IChatClient client, DependencyHealth health, TimeProvider time, Func<double> random)
    {
        Name = model.Name;
        Dependency = "model:" + model.Name;
        Definition = model;
        _client = client;
        _time = time;
        // An OpenAI-compatible model's own timeout (the SDK's network timeout) already bounds each attempt.
        _attemptTimeout = model.AttemptTimeout;
        _retry = ModelGateway.RetryOf(model);
        var breaker = model.CircuitBreaker ?? CircuitBreakerSettings.Default;
        Monitor = health.GetOrAdd(Dependency, n => new DependencyMonitor(n, time, breaker.Enabled, model.MaxConcurrency));
        _limits = new ModelRateLimits(Monitor, model, time);

        try
        {
            var builder = new ResiliencePipelineBuilder<ChatResponse> { TimeProvider = time };
            if (model.StepTimeout is { } step) builder.AddTimeout(step);
            if (_retry.MaxAttempts > 1)
            {
                var retry = _retry;
                var dependency = Dependency;
                builder.AddRetry(new RetryStrategyOptions<ChatResponse>
                {
                    MaxRetryAttempts = retry.MaxAttempts - 1,
                    BackoffType = DelayBackoffType.Constant,
                    UseJitter = false,
                    ShouldHandle = args => ValueTask.FromResult(ShouldRetry(args.Outcome.Exception, args.Context, retry, time, random)),
                    DelayGenerator = args => ValueTask.FromResult(args.Context.Properties.GetValue(StateKey, null!)?.NextDelay),
                    OnRetry = args =>
                    {
                        var state = args.Context.Properties.GetValue(StateKey, null!);
                        var failure = state.LastFailure ?? ModelFailure.Classify(args.Outcome.Exception!, time.GetUtcNow());
                        return ResilienceScope.RecordAsync(new AttemptFailed(dependency, state.Count, Message(args.Outcome.Exception), failure.Class,
                            Math.Round(args.RetryDelay.TotalMilliseconds, 3)));
                    },
                });
            }
            if (breaker.Enabled)
            {
                var monitor = Monitor;
                builder.AddCircuitBreaker(new CircuitBreakerStrategyOptions<ChatResponse>
                {
                    FailureRatio = breaker.FailureRatio,
                    MinimumThroughput = breaker.MinimumThroughput,
                    SamplingDuration = breaker.SamplingDuration,
                    BreakDuration = breaker.BreakDuration,
                    StateProvider = monitor.Breaker,
                    ShouldHandle = args => ValueTask.FromResult(args.Outcome.Exception is { } ex
                        && !(ex is OperationCanceledException && args.Context.CancellationToken.IsCancellationRequested)
                        && ModelFailure.Classify(ex, time.GetUtcNow()).CountsAsOutage),
                    OnOpened = args => { monitor.Opened(args.BreakDuration); return ValueTask.CompletedTask; },
                    OnClosed = _ => { monitor.Closed(); return ValueTask.CompletedTask; },
                });
            }
            if (model.MaxConcurrency is { } max and > 0) builder.AddConcurrencyLimiter(max, model.MaxQueue ?? max);
            _pipeline = builder.Build();
        }
        catch (System.ComponentModel.DataAnnotations.ValidationException ex)
        {
            throw new InvalidOperationException($"model '{model.Name}': invalid resilience settings (retry, circuitBreaker, maxConcurrency, stepTimeout): {ex.Message}", ex);
        }
    }

    internal ResiliencePipeline<ChatResponse> Pipeline => _pipeline;

    public string Name { get; }
    public string Dependency { get; }
    public ModelDefinition Definition { get; }
    public DependencyMonitor Monitor { get; }
    public IChatClient Client => _client;

    private static bool ShouldRetry(Exception? ex, ResilienceContext context, RetrySettings retry, TimeProvider time, Func<double> random)
    {
        if (ex is null) return false;
        if (ex is OperationCanceledException && context.CancellationToken.IsCancellationRequested) return false;
        var state = context.Properties.GetValue(StateKey, null!);
        var failure = ModelFailure.Classify(ex, time.GetUtcNow());
        state.LastFailure = failure;
        if (!failure.Retriable)
        {
            state.GaveUp = $"not retriable ({failure.Class})";
            return false;
        }
        if (state.Count >= retry.MaxAttempts)
        {
            state.GaveUp = $"all {retry.MaxAttempts} attempts failed";
            return false;
        }
        var delay = Backoff.Delay(retry, state.Count, failure.RetryAfter, random);
        if (time.GetElapsedTime(state.Started) + delay > retry.MaxTotalTime)
        {
            state.GaveUp = $"the next wait ({Backoff.Format(delay)}) would pass maxTotalTime ({Backoff.Format(retry.MaxTotalTime)})";
            return false;
        }
        state.NextDelay = delay;
        return true;
    }

    internal static string Message(Exception? ex) => ex switch
    {
        null => "",
        System.ClientModel.ClientResultException cre => $"HTTP {cre.Status}: {FirstLine(cre.Message)}",
        _ => FirstLine(ex.Message),
    };

    private static string FirstLine(string text)
    {
        var line = text.Split('\n', 2)[0].Trim();
        return line.Length > 300 ? line[..300] + "…" : line;
    }

    /// <summary>Calls the model through its links; throws <see cref="ModelCallException"/> when it failed for good.</summary>
    public async Task<(ChatResponse Response, int Attempts)> CallAsync(IList<ChatMessage> messages, ChatOptions? options, CancellationToken cancellationToken)
    {
        // Continue on the caller's scheduler (a run grain's), as engine code does: no ConfigureAwait(false) inside Polly either.
        var context = ResilienceContextPool.Shared.Get(continueOnCapturedContext: true, cancellationToken);
        var state = new CallState { Started = _time.GetTimestamp() };
        context.Properties.Set(StateKey, state);
        try
        {
            var response = await _pipeline.ExecuteAsync(static (ctx, s) => s.Link.AttemptAsync(s.Messages, s.Options, s.State, ctx.CancellationToken),
                context, (Link: this, Messages: messages, Options: options, State: state));
            return (response, state.Count);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            var now = _time.GetUtcNow();
            var failure = ModelFailure.Classify(ex, now);
            string message;
            switch (ex)
            {
                case BrokenCircuitException bce:
                    Monitor.Rejected("circuit-open");
                    var retryAt = Monitor.RetryAt ?? (bce.RetryAfter is { } ra ? now + ra : (DateTimeOffset?)null);
                    message = $"model '{Name}' is unavailable: its circuit breaker is open after repeated failures"
                        + (Monitor.LastError is { } last ? $" (latest: {last})" : "")
                        + (retryAt is { } at ? $"; it will be tried again at {at:u} (in {Backoff.Format(at - now)})" : "");
                    break;
                case RateLimiterRejectedException:
                    Monitor.Rejected("bulkhead-full");
                    message = $"model '{Name}' is busy: {Definition.MaxConcurrency} calls in flight and its queue of {Definition.MaxQueue ?? Definition.MaxConcurrency} full (bulkhead)";
                    break;
                case RateLimitWaitTooLongException:
                    Monitor.Rejected("rate-limit");
                    message = ex.Message;
                    break;
                case Polly.Timeout.TimeoutRejectedException:
                    failure = failure with { Retriable = false };
                    message = $"model '{Name}' did not answer within its step timeout ({Backoff.Format(Definition.StepTimeout ?? TimeSpan.Zero)}) over {state.Count} attempt(s)";
                    break;
                default:
                    message = $"model '{Name}' failed after {state.Count} attempt(s): {Message(ex)}"
                        + (state.GaveUp is { } why && state.Count > 0 ? $" ({why})" : "");
                    // The last attempt, and why no retry followed it, when the retry link looked at it.
                    if (state.GaveUp is { } gaveUp && state.Count > 0)
                        await ResilienceScope.RecordAsync(new AttemptFailed(Dependency, state.Count, Message(ex), failure.Class, null, GaveUp: gaveUp));
                    break;
            }
            throw new ModelCallException(Name, failure, state.Count, message, ex);
        }
        finally
        {
            ResilienceContextPool.Shared.Return(context);
        }
    }

    private async ValueTask<ChatResponse> AttemptAsync(IList<ChatMessage> messages, ChatOptions? options, CallState state, CancellationToken cancellationToken)
    {
        state.Count++;
        if (_limits.Any) await _limits.AcquireAsync(messages, cancellationToken);
        Monitor.AttemptStarted();
        using var attemptLimit = _attemptTimeout is { } t ? new CancellationTokenSource(t, _time) : null;
        using var linked = attemptLimit is null ? null : CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, attemptLimit.Token);
        try
        {
            var response = await _client.GetResponseAsync(messages, options, linked?.Token ?? cancellationToken);
            Monitor.AttemptEnded(null);
            _limits.Charge(messages, response.Usage);
            return response;
        }
        catch (OperationCanceledException ex) when (attemptLimit?.IsCancellationRequested == true && !cancellationToken.IsCancellationRequested)
        {
            var timeout = new TimeoutException($"model '{Name}' did not answer within {Backoff.Format(_attemptTimeout!.Value)}", ex);
            Monitor.AttemptEnded(timeout.Message);
            throw timeout;
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            Monitor.AttemptEnded(Message(ex));
            throw;
        }
        catch
        {
            Monitor.AttemptEnded(null);
            throw;
        }
    }

    public void Dispose() => _limits.Dispose();

    private sealed class CallState
    {
        public int Count;
        public long Started;
        public TimeSpan? NextDelay;
        public ModelFailure? LastFailure;
        public string? GaveUp;
    }
}

/// <summary>
/// What an agent calls: its model behind the resilience links, then each fallback in order when the model
/// failed in a retriable way or its breaker was open. The response says which model answered.
/// </summary>
internal sealed class ResilientChatClient : IChatClient
{
    /// <summary>The <see cref="ChatResponse.AdditionalProperties"/> key naming the deployed model that answered.</summary>
    public const string AnsweredByKey = "bureau.answeredBy";

    /// <summary>The key of the number of attempts the answer took.</summary>
    public const string AttemptsKey = "bureau.attempts";

    private readonly ModelLink[] _chain;

    public ResilientChatClient(ModelLink[] chain) => _chain = chain;

    /// <summary>The model, then its fallbacks.</summary>
    internal IReadOnlyList<ModelLink> Chain => _chain;

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var list = messages as IList<ChatMessage> ?? [.. messages];
        for (var i = 0; ; i++)
        {
            var link = _chain[i];
            try
            {
                var (response, attempts) = await link.CallAsync(list, options, cancellationToken);
                response.AdditionalProperties ??= [];
                response.AdditionalProperties[AnsweredByKey] = link.Name;
                response.AdditionalProperties[AttemptsKey] = attempts;
                return response;
            }
            catch (ModelCallException ex) when (i + 1 < _chain.Length && ex.Failure.FallbackEligible)
            {
                await ResilienceScope.RecordAsync(new ModelFallback(link.Name, _chain[i + 1].Name, ex.Message));
            }
        }
    }

    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        // The engine does not stream; streaming callers get the primary model without retries.
        await foreach (var update in _chain[0].Client.GetStreamingResponseAsync(messages, options, cancellationToken)) yield return update;
    }

    public object? GetService(Type serviceType, object? serviceKey = null) => _chain[0].Client.GetService(serviceType, serviceKey);

    public void Dispose() { }
}
