using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Polly.CircuitBreaker;

namespace Bureau.Resilience;

/// <summary>A dependency's state as <c>bureau health</c> and <c>GET /v1/health/dependencies</c> show it.</summary>
/// <param name="Name"><c>model:name</c> or <c>tool:name</c>.</param>
/// <param name="Circuit"><c>closed</c>, <c>open</c>, <c>half-open</c>, <c>isolated</c>, or <c>none</c> when it has no breaker.</param>
/// <param name="RetryAt">While open: when a trial call will be let through.</param>
/// <param name="Calls">Attempts made since the process started.</param>
/// <param name="Failures">Attempts that failed.</param>
/// <param name="Rejected">Calls refused at once (open breaker, full bulkhead, rate limit wait too long).</param>
/// <param name="InFlight">Attempts running now.</param>
/// <param name="Waiting">Calls waiting for a rate limit now.</param>
/// <param name="MaxConcurrency">Its bulkhead, if any.</param>
/// <param name="LastError">The latest failure.</param>
/// <param name="LastFailureAt">When it happened.</param>
public sealed record DependencyStatus(
    string Name, string Circuit, DateTimeOffset? RetryAt, long Calls, long Failures, long Rejected, int InFlight, int Waiting,
    int? MaxConcurrency, string? LastError, DateTimeOffset? LastFailureAt)
{
    /// <summary>
    /// For a connection Bureau keeps open (an MCP server, <c>mcp:name</c>): <c>connected</c>, or <c>connecting</c> while it
    /// could not be reached (since start, calls of its tools fail at once until then); null for models and tools.
    /// </summary>
    public string? Connection { get; init; }

    /// <summary>While <see cref="Connection"/> is <c>connecting</c>: when Bureau tries again.</summary>
    public DateTimeOffset? NextAttemptAt { get; init; }

    /// <summary>What of the dependency's settings this machine does not apply (a sandboxed tool's limits), as said at start; null when everything is.</summary>
    public IReadOnlyList<string>? NotApplied { get; init; }
}

/// <summary>One model's or tool's counters and breaker, shared by every run of the process.</summary>
internal sealed class DependencyMonitor
{
    private readonly TimeProvider _time;
    private readonly Lock _gate = new();
    private long _calls, _failures, _rejected;
    private int _inFlight, _waiting;
    private volatile string? _lastError;
    private DateTimeOffset? _lastFailureAt;
    private DateTimeOffset? _openUntil;

    public DependencyMonitor(string name, TimeProvider time, bool hasBreaker, int? maxConcurrency)
    {
        Name = name;
        _time = time;
        Breaker = hasBreaker ? new CircuitBreakerStateProvider() : null;
        MaxConcurrency = maxConcurrency;
        DependencyHealth.Track(this);
    }

    public string Name { get; }
    public CircuitBreakerStateProvider? Breaker { get; }
    public int? MaxConcurrency { get; }
    public int InFlight => Volatile.Read(ref _inFlight);
    public long Calls => Interlocked.Read(ref _calls);
    public long Failures => Interlocked.Read(ref _failures);
    public int Waiting => Volatile.Read(ref _waiting);

    public void WaitStarted() => Interlocked.Increment(ref _waiting);

    public void WaitEnded() => Interlocked.Decrement(ref _waiting);
    public string? LastError => _lastError;

    /// <summary>When the open breaker lets a trial call through.</summary>
    public DateTimeOffset? RetryAt
    {
        get { lock (_gate) return _openUntil; }
    }

    public void AttemptStarted()
    {
        Interlocked.Increment(ref _calls);
        Interlocked.Increment(ref _inFlight);
    }

    public void AttemptEnded(string? error)
    {
        Interlocked.Decrement(ref _inFlight);
        if (error is null) return;
        Interlocked.Increment(ref _failures);
        _lastError = error.Length > 300 ? error[..300] + "…" : error;
        lock (_gate) _lastFailureAt = _time.GetUtcNow();
    }

    public void Rejected(string reason)
    {
        Interlocked.Increment(ref _rejected);
        BureauTelemetry.DependencyRejections.Add(1,
            new KeyValuePair<string, object?>("bureau.dependency", Name), new KeyValuePair<string, object?>("bureau.reason", reason));
    }

    public void Opened(TimeSpan breakDuration)
    {
        lock (_gate) _openUntil = _time.GetUtcNow() + breakDuration;
    }

    public void Closed()
    {
        lock (_gate) _openUntil = null;
    }

    private string? _connection;
    private DateTimeOffset? _nextAttemptAt;

    /// <summary>A kept connection's state (an MCP server): <c>connected</c>, or <c>connecting</c> with the next attempt and why the last one failed.</summary>
    public void SetConnection(string state, DateTimeOffset? nextAttemptAt, string? error)
    {
        lock (_gate)
        {
            _connection = state;
            _nextAttemptAt = nextAttemptAt;
            if (error is not null)
            {
                _lastError = error.Length > 300 ? error[..300] + "…" : error;
                _lastFailureAt = _time.GetUtcNow();
            }
        }
    }

    /// <summary>0 closed (or no breaker), 1 half-open, 2 open, 3 isolated: the metric's value.</summary>
    public int CircuitCode => Breaker?.CircuitState switch
    {
        CircuitState.Open => 2,
        CircuitState.HalfOpen => 1,
        CircuitState.Isolated => 3,
        _ => 0,
    };

    public DependencyStatus Snapshot()
    {
        var circuit = Breaker is null ? "none" : Breaker.CircuitState switch
        {
            CircuitState.Open => "open",
            CircuitState.HalfOpen => "half-open",
            CircuitState.Isolated => "isolated",
            _ => "closed",
        };
        DateTimeOffset? retryAt, lastAt, nextAttempt;
        string? connection;
        lock (_gate) (retryAt, lastAt, connection, nextAttempt) = (_openUntil, _lastFailureAt, _connection, _nextAttemptAt);
        return new DependencyStatus(Name, circuit, circuit == "open" ? retryAt : null, Interlocked.Read(ref _calls), Interlocked.Read(ref _failures),
            Interlocked.Read(ref _rejected), InFlight, Waiting, MaxConcurrency, _lastError, lastAt)
        {
            Connection = connection,
            NextAttemptAt = connection == "connecting" ? nextAttempt : null,
        };
    }
}

/// <summary>
/// The models and tools this process calls, with their breakers' states and counters: what <c>bureau health</c>,
/// <c>GET /v1/health/dependencies</c> and the <c>bureau.dependency.*</c> metrics show.
/// </summary>
public sealed class DependencyHealth
{
    private static readonly ConcurrentDictionary<DependencyMonitor, byte> s_live = new(ReferenceEqualityComparer.Instance);
    private readonly ConcurrentDictionary<string, DependencyMonitor> _monitors = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, IReadOnlyList<string>> _notApplied = new(StringComparer.Ordinal);

    static DependencyHealth()
    {
        BureauTelemetry.Meter.CreateObservableGauge("bureau.dependency.circuit.state", ObserveCircuits, "{state}",
            "Circuit breaker state per dependency: 0 closed, 1 half-open, 2 open, 3 isolated.");
        BureauTelemetry.Meter.CreateObservableGauge("bureau.dependency.in_flight", ObserveInFlight, "{call}",
            "Attempts in flight per dependency.");
        // Attempts and failures are counted by the monitors anyway (bureau health shows them): the counters read them at
        // each export instead of adding a measurement per attempt on the hot path.
        BureauTelemetry.Meter.CreateObservableCounter("bureau.dependency.attempts", () => ObserveTotals(static m => m.Calls), "{attempt}",
            "Attempts of model and tool calls, by dependency.");
        BureauTelemetry.Meter.CreateObservableCounter("bureau.dependency.failures", () => ObserveTotals(static m => m.Failures), "{attempt}",
            "Failed attempts of model and tool calls, by dependency.");
    }

    /// <summary>A count per dependency name, summed over the live monitors of that name (several hosts in one process).</summary>
    private static IEnumerable<Measurement<long>> ObserveTotals(Func<DependencyMonitor, long> count) =>
        s_live.Keys.GroupBy(m => m.Name, StringComparer.Ordinal)
            .Select(g => new Measurement<long>(g.Sum(count), new KeyValuePair<string, object?>("bureau.dependency", g.Key)));

    internal static void Track(DependencyMonitor monitor) => s_live.TryAdd(monitor, 0);

    private static IEnumerable<Measurement<int>> ObserveCircuits() =>
        s_live.Keys.Select(m => new Measurement<int>(m.CircuitCode, new KeyValuePair<string, object?>("bureau.dependency", m.Name)));

    private static IEnumerable<Measurement<int>> ObserveInFlight() =>
        s_live.Keys.Select(m => new Measurement<int>(m.InFlight, new KeyValuePair<string, object?>("bureau.dependency", m.Name)));

    internal DependencyMonitor GetOrAdd(string name, Func<string, DependencyMonitor> create) => _monitors.GetOrAdd(name, create);

    internal DependencyMonitor? Find(string name) => _monitors.GetValueOrDefault(name);

    /// <summary>Replaces <paramref name="name"/>'s monitor by a fresh one (a tool whose definition changed: an MCP tool listed after start).</summary>
    internal DependencyMonitor Replace(string name, Func<string, DependencyMonitor> create)
    {
        if (_monitors.TryRemove(name, out var old)) s_live.TryRemove(old, out _);
        return _monitors.GetOrAdd(name, create);
    }

    /// <summary>Records what of <paramref name="name"/>'s settings this machine does not apply (said at start).</summary>
    internal void SetNotApplied(string name, IReadOnlyList<string> lines) => _notApplied[name] = lines;

    /// <summary>Every dependency called (or set up) so far, by name.</summary>
    public IReadOnlyList<DependencyStatus> Snapshot() =>
        [.. _monitors.Values.Select(m => m.Snapshot() is var s && _notApplied.TryGetValue(s.Name, out var lines) ? s with { NotApplied = lines } : s).OrderBy(s => s.Name, StringComparer.Ordinal)];

    /// <summary>Stops reporting this registry's dependencies in the metrics (the host is stopping).</summary>
    internal void Untrack()
    {
        foreach (var m in _monitors.Values) s_live.TryRemove(m, out _);
    }
}
