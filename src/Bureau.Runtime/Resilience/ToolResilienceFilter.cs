using System.Collections.Concurrent;
using Bureau.Tools;
using Polly;
using Polly.CircuitBreaker;
using Polly.RateLimiting;
using Polly.Retry;
using Polly.Timeout;

namespace Bureau.Resilience;

/// <summary>
/// The tool pipeline's retry stage: per tool, shared by every run in the process, a step timeout, retries
/// (backoff, jitter, Retry-After, caps), a circuit breaker and a bulkhead. <c>read</c> and <c>idempotent</c>
/// tools retry timeouts, crashes and unavailability; a <c>write</c> tool retries only a failure before anything
/// was sent, and only when it declares <c>retry: { onlyBefore: send }</c>. Every retried attempt is journaled,
/// with the call's idempotency key, which never changes between attempts.
/// </summary>
internal sealed class ToolResilienceFilter : IToolCallFilter
{
    private readonly DependencyHealth _health;
    private readonly TimeProvider _time;
    private readonly ConcurrentDictionary<string, ToolLink> _links = new(StringComparer.Ordinal);

    private readonly BureauDeployment _deployment;

    public ToolResilienceFilter(BureauDeployment deployment, DependencyHealth health, ResilienceClock clock)
    {
        _deployment = deployment;
        _health = health;
        _time = clock.Time;
        // Built at start, so that invalid settings given in C# stop the start instead of a run.
        foreach (var tool in deployment.Definitions.Tools.Values) _links[tool.Name] = new ToolLink(tool, health, _time);
    }

    public ToolFilterStage Stage => ToolFilterStage.Retry;

    public ValueTask<ToolOutcome> InvokeAsync(ToolCall call, ToolCallHandler next)
    {
        var link = _links.GetOrAdd(call.Tool.Name, static (_, s) => new ToolLink(s.Definition, s.Health, s.Time), (call.Tool.Definition, Health: _health, Time: _time));
        if (!ReferenceEquals(link.Definition, call.Tool.Definition)
            && ReferenceEquals(_deployment.Definitions.Tools.GetValueOrDefault(call.Tool.Name), call.Tool.Definition))
        {
            // The tool was deployed again (an MCP server listed after start, or its tool list changed): its effect and
            // settings are the new definition's, with a fresh breaker and counters. A call of a run that started
            // before (it holds the earlier definition) goes through the current link, so the two never take turns.
            lock (_links)
            {
                link = _links[call.Tool.Name];
                if (!ReferenceEquals(link.Definition, call.Tool.Definition))
                    _links[call.Tool.Name] = link = new ToolLink(call.Tool.Definition, _health, _time, replace: true);
            }
        }
        return link.InvokeAsync(call, next);
    }
}

/// <summary>One tool behind its links.</summary>
internal sealed class ToolLink
{
    private static readonly ResiliencePropertyKey<CallState> StateKey = new("bureau.toolcall");

    private readonly ToolDefinition _tool;
    private readonly ResiliencePipeline<ToolOutcome> _pipeline;
    private readonly RetrySettings _retry;
    private readonly TimeProvider _time;

    public ToolLink(ToolDefinition tool, DependencyHealth health, TimeProvider time, bool replace = false)
    {
        _tool = tool;
        _time = time;
        Dependency = "tool:" + tool.Name;
        _retry = tool.Retry ?? RetrySettings.ToolDefault;
        var breaker = tool.CircuitBreaker ?? CircuitBreakerSettings.Default;
        Monitor = replace
            ? health.Replace(Dependency, n => new DependencyMonitor(n, time, breaker.Enabled, tool.MaxConcurrency))
            : health.GetOrAdd(Dependency, n => new DependencyMonitor(n, time, breaker.Enabled, tool.MaxConcurrency));

        try
        {
            var builder = new ResiliencePipelineBuilder<ToolOutcome> { TimeProvider = time };
            if (tool.StepTimeout is { } step) builder.AddTimeout(step);
            if (_retry.MaxAttempts > 1 && MayRetryAtAll(tool, _retry))
            {
                var retry = _retry;
                var dependency = Dependency;
                builder.AddRetry(new RetryStrategyOptions<ToolOutcome>
                {
                    MaxRetryAttempts = retry.MaxAttempts - 1,
                    BackoffType = DelayBackoffType.Constant,
                    UseJitter = false,
                    ShouldHandle = args => ValueTask.FromResult(ShouldRetry(args.Outcome, args.Context, tool, retry, time)),
                    DelayGenerator = args => ValueTask.FromResult(args.Context.Properties.GetValue(StateKey, null!)?.NextDelay),
                    OnRetry = args =>
                    {
                        var state = args.Context.Properties.GetValue(StateKey, null!);
                        var o = args.Outcome.Result;
                        return ResilienceScope.RecordAsync(new AttemptFailed(dependency, state.Count, o?.Content ?? args.Outcome.Exception?.Message ?? "",
                            ToolFailureNames.Of(o?.Failure ?? ToolFailure.Crash) ?? "error", Math.Round(args.RetryDelay.TotalMilliseconds, 3), state.Key));
                    },
                });
            }
            if (breaker.Enabled)
            {
                var monitor = Monitor;
                builder.AddCircuitBreaker(new CircuitBreakerStrategyOptions<ToolOutcome>
                {
                    FailureRatio = breaker.FailureRatio,
                    MinimumThroughput = breaker.MinimumThroughput,
                    SamplingDuration = breaker.SamplingDuration,
                    BreakDuration = breaker.BreakDuration,
                    StateProvider = monitor.Breaker,
                    ShouldHandle = args => ValueTask.FromResult(args.Outcome.Result is { } o
                        ? o.Failure is ToolFailure.Timeout or ToolFailure.Crash or ToolFailure.Unavailable or ToolFailure.NotSent
                        : args.Outcome.Exception is { } ex && !(ex is OperationCanceledException && args.Context.CancellationToken.IsCancellationRequested)),
                    OnOpened = args => { monitor.Opened(args.BreakDuration); return ValueTask.CompletedTask; },
                    OnClosed = _ => { monitor.Closed(); return ValueTask.CompletedTask; },
                });
            }
            if (tool.MaxConcurrency is { } max and > 0) builder.AddConcurrencyLimiter(max, tool.MaxQueue ?? 0);
            _pipeline = builder.Build();
        }
        catch (System.ComponentModel.DataAnnotations.ValidationException ex)
        {
            throw new InvalidOperationException($"tool '{tool.Name}': invalid resilience settings (retry, circuitBreaker, maxConcurrency, stepTimeout): {ex.Message}", ex);
        }
    }

    internal ResiliencePipeline<ToolOutcome> Pipeline => _pipeline;

    public string Dependency { get; }
    public DependencyMonitor Monitor { get; }

    /// <summary>The definition the link was built for.</summary>
    public ToolDefinition Definition => _tool;

    /// <summary>A write tool retries only when it declares which failures are safe to retry.</summary>
    internal static bool MayRetryAtAll(ToolDefinition tool, RetrySettings retry) =>
        tool.Effect != ToolEffect.Write || retry.OnlyBefore is not null;

    /// <summary>Whether a failure of this tool may be retried: the effect-class rule of docs/resilience.md.</summary>
    internal static bool Retriable(ToolDefinition tool, RetrySettings retry, ToolFailure failure) => tool.Effect switch
    {
        ToolEffect.Write => retry.OnlyBefore == RetryBoundary.Send && failure == ToolFailure.NotSent,
        _ => failure is ToolFailure.Timeout or ToolFailure.Crash or ToolFailure.Unavailable or ToolFailure.NotSent,
    };

    private static bool ShouldRetry(Outcome<ToolOutcome> outcome, ResilienceContext context, ToolDefinition tool, RetrySettings retry, TimeProvider time)
    {
        if (outcome.Result is not { IsError: true } result) return false;   // success, or an exception (run canceled, breaker open)
        var state = context.Properties.GetValue(StateKey, null!);
        if (!Retriable(tool, retry, result.Failure))
        {
            state.GaveUp = tool.Effect == ToolEffect.Write && result.Failure is not ToolFailure.Error
                ? (retry.OnlyBefore is null
                    ? "a write tool is not retried automatically (declare retry: { onlyBefore: send } to retry failures before anything was sent)"
                    : "a write tool is retried only when nothing was sent")
                : null;
            return false;
        }
        if (state.Count >= retry.MaxAttempts)
        {
            state.GaveUp = $"all {retry.MaxAttempts} attempts failed";
            return false;
        }
        var delay = Backoff.Delay(retry, state.Count, result.RetryAfter, Random.Shared.NextDouble);
        if (time.GetElapsedTime(state.Started) + delay > retry.MaxTotalTime)
        {
            state.GaveUp = $"the next wait ({Backoff.Format(delay)}) would pass maxTotalTime ({Backoff.Format(retry.MaxTotalTime)})";
            return false;
        }
        state.NextDelay = delay;
        return true;
    }

    public async ValueTask<ToolOutcome> InvokeAsync(ToolCall call, ToolCallHandler next)
    {
        // Continue on the caller's scheduler (a run grain's), as engine code does: no ConfigureAwait(false) inside Polly either.
        var context = ResilienceContextPool.Shared.Get(continueOnCapturedContext: true, call.CancellationToken);
        var state = new CallState { Started = _time.GetTimestamp(), Key = call.IdempotencyKey };
        context.Properties.Set(StateKey, state);
        try
        {
            var outcome = await _pipeline.ExecuteAsync(static async (ctx, s) =>
            {
                s.State.Count++;
                s.Link.Monitor.AttemptStarted();
                try
                {
                    var o = await s.Next(s.Call.WithCancellation(ctx.CancellationToken));
                    s.Link.Monitor.AttemptEnded(o.IsError && o.Failure != ToolFailure.Error ? o.Content : null);
                    return o;
                }
                catch
                {
                    s.Link.Monitor.AttemptEnded(null);
                    throw;
                }
            }, context, (Link: this, Call: call, Next: next, State: state));
            if (outcome.IsError && state.GaveUp is null && !MayRetryAtAll(_tool, _retry) && outcome.Failure is not (ToolFailure.Error or ToolFailure.None))
                state.GaveUp = "a write tool is not retried automatically (declare retry: { onlyBefore: send } to retry failures before anything was sent)";
            if (outcome.IsError && state.GaveUp is { } why)
            {
                await ResilienceScope.RecordAsync(new AttemptFailed(Dependency, state.Count, outcome.Content,
                    ToolFailureNames.Of(outcome.Failure) ?? "error", null, call.IdempotencyKey, why));
            }
            return state.Count > 1 ? outcome with { Attempts = state.Count } : outcome;
        }
        catch (BrokenCircuitException ex)
        {
            Monitor.Rejected("circuit-open");
            var now = _time.GetUtcNow();
            var retryAt = Monitor.RetryAt ?? (ex.RetryAfter is { } ra ? now + ra : (DateTimeOffset?)null);
            return ToolOutcome.Error($"tool '{_tool.Name}' is unavailable: its circuit breaker is open after repeated failures"
                + (Monitor.LastError is { } last ? $" (latest: {last})" : "")
                + (retryAt is { } at ? $"; it will be tried again at {at:u} (in {Backoff.Format(at - now)})" : ""), ToolFailure.Unavailable)
                with { Attempts = Math.Max(state.Count, 1) };
        }
        catch (RateLimiterRejectedException)
        {
            Monitor.Rejected("bulkhead-full");
            return ToolOutcome.Error($"tool '{_tool.Name}' is busy: {_tool.MaxConcurrency} calls in flight and {_tool.MaxQueue ?? 0} waiting (bulkhead full); try again later", ToolFailure.Unavailable);
        }
        catch (TimeoutRejectedException) when (!call.CancellationToken.IsCancellationRequested)
        {
            return ToolOutcome.Error($"tool '{_tool.Name}' did not finish within its step timeout ({Backoff.Format(_tool.StepTimeout ?? TimeSpan.Zero)}) over {state.Count} attempt(s)", ToolFailure.Timeout)
                with { Attempts = Math.Max(state.Count, 1) };
        }
        finally
        {
            ResilienceContextPool.Shared.Return(context);
        }
    }

    private sealed class CallState
    {
        public int Count;
        public long Started;
        public TimeSpan? NextDelay;
        public string? GaveUp;
        public string Key = "";
    }
}
