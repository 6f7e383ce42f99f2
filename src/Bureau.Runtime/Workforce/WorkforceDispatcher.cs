using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Bureau.Workforce;

/// <summary>
/// Runs the workforce's dispatcher in the host (nothing happens without a workforce). The workforce (and so the engine) is
/// resolved when the dispatcher starts, after the host's start checked the deployment: building the engine while the host
/// resolves its hosted services would throw from there, and a host whose start failed that way cannot even stop.
/// </summary>
internal sealed class WorkforceDispatcher(IServiceProvider services) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        await Task.Yield();
        await services.GetRequiredService<BureauWorkforce>().RunAsync(stoppingToken);
    }
}

/// <summary>Checks a deployment's workforce at start: every member is a deployed agent with at least one skill and a limit of 1 or more.</summary>
internal static class WorkforceChecks
{
    public static void Check(BureauDefinitions definitions)
    {
        foreach (var m in definitions.Workforce.Members.Values.OrderBy(m => m.Name, StringComparer.Ordinal))
        {
            if (!definitions.Agents.ContainsKey(m.Name))
                throw new InvalidOperationException($"workforce member '{m.Name}' is not a deployed agent{Suggestions.Hint(m.Name, [.. definitions.Agents.Keys.Order(StringComparer.Ordinal)])}");
            if (m.Skills.Count == 0 || m.Skills.Any(string.IsNullOrWhiteSpace))
                throw new InvalidOperationException($"workforce member '{m.Name}' needs at least one skill, none empty");
            if (m.Concurrency < 1)
                throw new InvalidOperationException($"workforce member '{m.Name}': concurrency must be 1 or more, not {m.Concurrency}");
        }
        if (string.IsNullOrWhiteSpace(definitions.Workforce.Board))
            throw new InvalidOperationException("the workforce's board must have a name");
    }
}
