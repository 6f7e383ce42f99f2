using Microsoft.Playwright;
using Xunit;
using static Microsoft.Playwright.Assertions;

namespace Bureau.Dashboard.Tests;

/// <summary>The Dashboard mounted under a path (an application that owns <c>/</c>) finds its files and the API.</summary>
public sealed class MountedDashboardTests(Chromium chromium) : IAsyncLifetime
{
    private readonly DashboardHost _host = new();
    private IBrowserContext _context = null!;

    public async ValueTask InitializeAsync() => await _host.StartAsync("/bureau");

    public async ValueTask DisposeAsync()
    {
        if (_context is not null) await _context.DisposeAsync();
        await _host.DisposeAsync();
    }

    [Fact]
    public async Task UnderBureau_ListsRuns_AndOpensARunsTimeline()
    {
        var id = await _host.SubmitAsync("echo", "mounted elsewhere");
        await _host.WaitAsync(id);
        (_context, var page, var errors) = await chromium.NewPageAsync();

        await page.GotoAsync(_host.BaseUrl + "/bureau"); // redirected to /bureau/
        await Expect(page.Locator($"#runs tr[data-run='{id}']")).ToContainTextAsync("mounted elsewhere");
        Assert.EndsWith("/bureau/", new Uri(page.Url).AbsolutePath);

        await page.GetByRole(AriaRole.Link, new() { Name = id }).ClickAsync();
        await Expect(page.Locator("#timeline li[data-kind='run.finished']")).ToContainTextAsync("echo: mounted elsewhere");
        Assert.True(errors.Count == 0, "the page threw: " + string.Join("; ", errors));
    }
}
