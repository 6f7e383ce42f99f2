using System.ClientModel.Primitives;

namespace Bureau.Models.OpenAICompatible;

/// <summary>
/// The System.ClientModel retry policy (429, 408 and 5xx answers and network errors are retried, with
/// exponential backoff, honouring <c>Retry-After</c>) whose waits run on a <see cref="TimeProvider"/>,
/// so that the waits are testable and follow the host's clock.
/// </summary>
internal sealed class TimeProviderRetryPolicy : ClientRetryPolicy
{
    private readonly TimeProvider _time;

    public TimeProviderRetryPolicy(int maxRetries, TimeProvider time)
        : base(maxRetries)
    {
        _time = time;
    }

    /// <inheritdoc />
    protected override Task WaitAsync(TimeSpan time, CancellationToken cancellationToken) => Task.Delay(time, _time, cancellationToken);
}
