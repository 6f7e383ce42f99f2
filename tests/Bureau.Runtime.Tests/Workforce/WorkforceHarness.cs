using Bureau.Tests.Support;
using Microsoft.Extensions.DependencyInjection;

namespace Bureau.Tests.Workforce;

/// <summary>An engine with a workforce for the tests: members, the stores initialized as the host's start does, and an optional dispatcher.</summary>
internal sealed class WorkforceHarness : IAsyncDisposable
{
    /// <summary>How long a test waits for a state.</summary>
    public static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);

    private CancellationTokenSource? _dispatching;
    private Task? _dispatcher;

    public EngineFixture Fixture { get; } = new();

    /// <summary>Completed when the test ends: what a held model waits for.</summary>
    public TaskCompletionSource Release { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public async ValueTask DisposeAsync()
    {
        Release.TrySetResult();
        if (_dispatching is not null)
        {
            await _dispatching.CancelAsync();
            await _dispatcher!;
        }
        await Fixture.DisposeAsync();
    }

    /// <summary>A member: an agent named <paramref name="name"/> (its instructions are its name) with skills and a limit.</summary>
    public void AddMember(string name, int concurrency, bool delegates, params string[] skills)
    {
        Fixture.Definitions.Add(new AgentDefinition { Name = name, Model = "m", Instructions = name });
        Fixture.Definitions.Workforce.Add(new WorkforceMember { Name = name, Skills = skills, Concurrency = concurrency, CanDelegate = delegates });
    }

    public async Task<(BureauEngine Engine, BureauWorkforce Workforce, IWorkforceStore Store)> StartAsync(bool dispatch, Action<BureauOptions>? options = null)
    {
        if (options is not null) Fixture.Configure = b => b.Services.Configure(options);
        var engine = await Fixture.StartAsync();
        var store = Fixture.Services.GetRequiredService<IWorkforceStore>();
        await store.InitializeAsync();
        await Fixture.Services.GetRequiredService<IBoardStore>().InitializeAsync(); // as the host's start does
        var workforce = Fixture.Services.GetRequiredService<BureauWorkforce>();
        workforce.PollInterval = TimeSpan.FromMilliseconds(200);
        if (dispatch) StartDispatching(workforce);
        return (engine, workforce, store);
    }

    /// <summary>Starts the dispatcher (stopped when the test ends).</summary>
    public void StartDispatching(BureauWorkforce workforce)
    {
        _dispatching = new CancellationTokenSource();
        _dispatcher = workforce.RunAsync(_dispatching.Token);
    }

    /// <summary>Reads until <paramref name="done"/> holds, for up to <see cref="Deadline"/>; the timeout says what was awaited and the last value.</summary>
    public static async Task<T> UntilAsync<T>(Func<Task<T>> read, Func<T, bool> done, string what)
    {
        var deadline = DateTime.UtcNow + Deadline;
        while (true)
        {
            var value = await read();
            if (done(value)) return value;
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"not within {Deadline.TotalSeconds}s: {what}; last seen: {value}");
            await Task.Delay(25);
        }
    }
}
