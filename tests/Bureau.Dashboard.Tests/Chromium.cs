using Microsoft.Playwright;
using Xunit;

[assembly: AssemblyFixture(typeof(Bureau.Dashboard.Tests.Chromium))]
// One browser and a few hosts on a small machine: the tests take turns.
[assembly: CollectionBehavior(DisableTestParallelization = true)]

namespace Bureau.Dashboard.Tests;

/// <summary>
/// Debian's chromium driven by Playwright, once for all tests. Playwright never downloads a browser here:
/// it launches the executable at <c>/usr/bin/chromium</c> (or <c>BUREAU_CHROMIUM</c>). Without it the tests
/// fail, saying how to install it; they are never skipped.
/// </summary>
public sealed class Chromium : IAsyncLifetime
{
    /// <summary>Playwright's waits and expectations: generous, for a slow, loaded machine.</summary>
    public const float TimeoutMs = 30_000;

    private IPlaywright? _playwright;

    public IBrowser Browser { get; private set; } = null!;

    public static string ExecutablePath => Environment.GetEnvironmentVariable("BUREAU_CHROMIUM") is { Length: > 0 } p ? p : "/usr/bin/chromium";

    /// <summary>Where the tests save screenshots for review: BUREAU_SCREENSHOTS, or TestResults/screenshots beside the test assembly.</summary>
    public static string ScreenshotDir => Environment.GetEnvironmentVariable("BUREAU_SCREENSHOTS") is { Length: > 0 } d
        ? d : Path.Combine(AppContext.BaseDirectory, "TestResults", "screenshots");

    public async ValueTask InitializeAsync()
    {
        if (!File.Exists(ExecutablePath))
        {
            throw new InvalidOperationException(
                $"The dashboard tests drive Debian's chromium, and there is none at {ExecutablePath}: install it with " +
                "'apt-get install chromium' (test.sh does when it is missing), or point BUREAU_CHROMIUM at a Chromium executable.");
        }
        Environment.SetEnvironmentVariable("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1");
        Assertions.SetDefaultExpectTimeout(TimeoutMs);
        _playwright = await Playwright.CreateAsync();
        Browser = await _playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = ExecutablePath,
            Headless = true,
            Timeout = 60_000,
            Args =
            [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
            ],
        });
        Directory.CreateDirectory(ScreenshotDir);
    }

    /// <summary>A fresh page (its own session storage) with long default timeouts; uncaught page errors are collected.</summary>
    public async Task<(IBrowserContext Context, IPage Page, List<string> Errors)> NewPageAsync()
    {
        var context = await Browser.NewContextAsync(new BrowserNewContextOptions { ViewportSize = new ViewportSize { Width = 1280, Height = 860 }, Locale = "en-GB", TimezoneId = "UTC" });
        context.SetDefaultTimeout(TimeoutMs);
        context.SetDefaultNavigationTimeout(TimeoutMs);
        var page = await context.NewPageAsync();
        var errors = new List<string>();
        page.PageError += (_, e) => { lock (errors) errors.Add(e); };
        // Errors the page logs itself (not the browser's own lines about a 401 or 403 answer).
        page.Console += (_, m) => { if (m.Type == "error" && !m.Text.StartsWith("Failed to load resource", StringComparison.Ordinal)) lock (errors) errors.Add(m.Text); };
        return (context, page, errors);
    }

    public static async Task ScreenshotAsync(IPage page, string name) =>
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = Path.Combine(ScreenshotDir, name + ".png"), FullPage = false });

    public async ValueTask DisposeAsync()
    {
        if (Browser is not null) await Browser.DisposeAsync();
        _playwright?.Dispose();
    }
}
