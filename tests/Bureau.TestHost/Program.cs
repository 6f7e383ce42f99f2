using System.Diagnostics;
using System.Globalization;
using Bureau.Cli;
using Bureau.Engine;
using Microsoft.Extensions.DependencyInjection;

// The `bureau` command line, plus crash points armed by BUREAU_CRASH_AT (this test host only:
// the bureau executable has no such variable). `after-intent` kills at the first hit, `after-intent:3`
// at the third; several points may be given, comma-separated.
var armed = KillingCrashPoints.Parse(Environment.GetEnvironmentVariable("BUREAU_CRASH_AT"));
if (armed is not null) CliComposition.ConfigureServices = services => services.AddSingleton<ICrashPoints>(new KillingCrashPoints(armed));
return await BureauCli.RunAsync(args);

internal sealed class KillingCrashPoints(Dictionary<string, int> armed) : ICrashPoints
{
    private readonly Dictionary<string, int> _hits = new(StringComparer.Ordinal);

    public void Hit(string name)
    {
        if (!armed.TryGetValue(name, out var at)) return;
        int count;
        lock (_hits) count = _hits[name] = _hits.GetValueOrDefault(name) + 1;
        if (count != at) return;
        Console.Error.WriteLine($"bureau: crash point '{name}' reached (hit {count}); killing the process");
        Console.Error.Flush();
        Process.GetCurrentProcess().Kill();
        Thread.Sleep(Timeout.Infinite);
    }

    public static Dictionary<string, int>? Parse(string? value)
    {
        if (string.IsNullOrWhiteSpace(value)) return null;
        var d = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var part in value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var i = part.IndexOf(':');
            d[i < 0 ? part : part[..i]] = i < 0 ? 1 : int.Parse(part[(i + 1)..], CultureInfo.InvariantCulture);
        }
        return d;
    }
}
