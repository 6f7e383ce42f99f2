using System.Text.RegularExpressions;
using Microsoft.Playwright;
using Xunit;
using static Microsoft.Playwright.Assertions;

namespace Bureau.Dashboard.Tests;

/// <summary>
/// The Dashboard in Chromium against the real host: the runs list and a run's timeline update live, the
/// approvals inbox answers a waiting run, the failures view groups a failed run, hostile text stays text,
/// and a host with keys asks for one. Screenshots go to <see cref="Chromium.ScreenshotDir"/>.
/// </summary>
public sealed class DashboardTests(Chromium chromium) : IAsyncLifetime
{
    private readonly DashboardHost _host = new();
    private IBrowserContext _context = null!;
    private IPage _page = null!;
    private List<string> _errors = null!;

    public async ValueTask InitializeAsync()
    {
        await _host.StartAsync();
        (_context, _page, _errors) = await chromium.NewPageAsync();
    }

    public async ValueTask DisposeAsync()
    {
        if (_context is not null) await _context.DisposeAsync();
        await _host.DisposeAsync();
    }

    private ILocator Row(string runId) => _page.Locator($"#runs tr[data-run='{runId}']");

    private void NoPageErrors() => Assert.True(_errors.Count == 0, "the page threw: " + string.Join("; ", _errors));

    [Fact]
    public async Task RunsList_ShowsRuns_AndANewRunAppearsLive_WithoutReloading()
    {
        var first = await _host.SubmitAsync("echo", "hello dashboard");
        await _host.WaitAsync(first);
        var team = await _host.SubmitAsync("pair", "twice please");
        await _host.WaitAsync(team, orWaiting: false);

        await _page.GotoAsync(_host.BaseUrl + "/");
        await Expect(_page.Locator("#live")).ToHaveTextAsync("live");
        await Expect(Row(first)).ToContainTextAsync("succeeded");
        await Expect(Row(first)).ToContainTextAsync("hello dashboard");
        await Expect(Row(first)).ToContainTextAsync("12 in / 5 out");
        await Expect(Row(team)).ToContainTextAsync("pair");
        await _page.EvaluateAsync("() => { window.__sameDocument = true; }");

        var second = await _host.SubmitAsync("echo", "submitted while watching");
        await Expect(Row(second)).ToContainTextAsync("submitted while watching");
        await Expect(Row(second)).ToContainTextAsync("succeeded");
        // Newest first, and the page was not reloaded to get there.
        Assert.Equal(second, await _page.Locator("#runs tbody tr").First.GetAttributeAsync("data-run"));
        Assert.True(await _page.EvaluateAsync<bool>("() => window.__sameDocument === true"));
        await Chromium.ScreenshotAsync(_page, "runs");

        // Filters: a run of another agent or status is not listed, also when it arrives live.
        await _page.GotoAsync(_host.BaseUrl + "/#/runs?agent=pair");
        await Expect(_page.Locator("#live")).ToHaveTextAsync("live");
        await Expect(Row(team)).ToBeVisibleAsync();
        await Expect(Row(first)).ToHaveCountAsync(0);
        var third = await _host.SubmitAsync("echo", "not a pair run");
        var pair2 = await _host.SubmitAsync("pair", "a second pair run");
        await Expect(Row(pair2)).ToBeVisibleAsync();
        await Expect(Row(third)).ToHaveCountAsync(0);
        await _page.SelectOptionAsync("#f-status", "failed");
        await _page.ClickAsync("form.filters button[type=submit]");
        await Expect(_page.Locator("#runs")).ToContainTextAsync("No runs yet.");
        NoPageErrors();
    }

    [Fact]
    public async Task RunTimeline_ShowsTheModelCallAndToolCall_AndFollowsTheRunLive()
    {
        var id = await _host.SubmitAsync("looker", "where is order 7?");

        await _page.GotoAsync($"{_host.BaseUrl}/#/run/{id}");
        var timeline = _page.Locator("#timeline");
        var model = timeline.Locator("li[data-kind='model.response']").First;
        await Expect(model).ToContainTextAsync("lookup");
        await Expect(model).ToContainTextAsync("\"order\": 7");
        await Expect(model).ToContainTextAsync("look-script (scripted)");
        await Expect(_page.Locator("#activity")).ToContainTextAsync("tool");
        await Expect(timeline.Locator("li[data-kind='tool.result']")).ToHaveCountAsync(0);
        await Expect(_page.Locator("#run-h")).ToContainTextAsync("running");

        _host.OpenLookup();
        var result = timeline.Locator("li[data-kind='tool.result']");
        await Expect(result).ToContainTextAsync("order 7 shipped");
        await Expect(result).ToContainTextAsync("ok");
        await Expect(timeline.Locator("li[data-kind='run.finished']")).ToContainTextAsync("found: order 7 shipped");
        await Expect(_page.Locator("#run-h")).ToContainTextAsync("succeeded");
        await Expect(_page.Locator("#run-output")).ToHaveTextAsync("found: order 7 shipped");
        await timeline.Locator("li[data-kind='model.response']").First.ScrollIntoViewIfNeededAsync();
        await _page.EvaluateAsync("() => document.querySelector(\"#timeline li[data-kind='model.response']\").scrollIntoView({ block: 'start' })");
        await Chromium.ScreenshotAsync(_page, "timeline");

        // A team run shows its members as a tree of child runs.
        var team = await _host.SubmitAsync("pair", "twice please");
        await _host.WaitAsync(team, orWaiting: false);
        await _page.GotoAsync($"{_host.BaseUrl}/#/run/{team}");
        await Expect(_page.Locator("ul.tree > li")).ToHaveCountAsync(2);
        await Expect(_page.Locator("#timeline li[data-kind='child.started']")).ToHaveCountAsync(2);
        await Expect(_page.Locator("#timeline li[data-kind='child.finished']")).ToHaveCountAsync(2);
        NoPageErrors();
    }

    [Fact]
    public async Task ApprovingFromTheInbox_ResumesTheWaitingRun()
    {
        var id = await _host.SubmitAsync("refunder", "refund order 7");
        Assert.Equal(RunStatus.Waiting, (await _host.WaitAsync(id)).Status);

        await _page.GotoAsync(_host.BaseUrl + "/#/approvals");
        var card = _page.Locator("article.approval").Filter(new() { HasText = id });
        await Expect(card).ToContainTextAsync("refund");
        await Expect(card).ToContainTextAsync("\"amount\": 250");
        await Expect(card).ToContainTextAsync("big-refunds");
        await Expect(card).ToContainTextAsync("support-leads");
        await card.GetByLabel("Reason").FillAsync("checked the order");
        await Chromium.ScreenshotAsync(_page, "approvals");
        await card.GetByRole(AriaRole.Button, new() { Name = "Approve" }).ClickAsync();

        var run = await _host.WaitAsync(id, orWaiting: false);
        Assert.Equal((RunStatus.Succeeded, "done: refunded 250"), (run.Status, run.Output));
        Assert.Equal(["refund 250"], _host.Refunds);
        await Expect(_page.Locator("#approvals")).ToContainTextAsync("Nothing waits for an answer.");

        // The run's timeline shows the wait and who answered it.
        await _page.GotoAsync($"{_host.BaseUrl}/#/run/{id}");
        await Expect(_page.Locator("#timeline li[data-kind='run.waiting']")).ToContainTextAsync("approval");
        await Expect(_page.Locator("#timeline li[data-kind='tool.result']")).ToContainTextAsync("refunded 250");
        NoPageErrors();
    }

    [Fact]
    public async Task RejectingFromTheInbox_ResumesTheRunWithoutTheToolCall()
    {
        var id = await _host.SubmitAsync("refunder", "refund order 8");
        Assert.Equal(RunStatus.Waiting, (await _host.WaitAsync(id)).Status);

        await _page.GotoAsync(_host.BaseUrl + "/#/approvals");
        var card = _page.Locator("article.approval").Filter(new() { HasText = id });
        await card.GetByLabel("Reason").FillAsync("not eligible");
        await card.GetByRole(AriaRole.Button, new() { Name = "Reject" }).ClickAsync();

        var run = await _host.WaitAsync(id, orWaiting: false);
        Assert.NotEqual(RunStatus.Waiting, run.Status);
        Assert.Empty(_host.Refunds);
        await Expect(_page.Locator("#approvals")).ToContainTextAsync("Nothing waits for an answer.");
        NoPageErrors();
    }

    [Fact]
    public async Task FailuresView_GroupsTheFailedRun_AndTheRunExplainsItsFailure()
    {
        var id = await _host.SubmitAsync("fragile", "try the model");
        Assert.Equal(RunStatus.Failed, (await _host.WaitAsync(id)).Status);

        await _page.GotoAsync(_host.BaseUrl + "/#/failures");
        var group = _page.Locator("#failure-groups tbody tr").Filter(new() { HasText = "model:down" });
        await Expect(group).ToContainTextAsync("model");
        await Expect(group).ToContainTextAsync("unavailable");
        await Expect(group.Locator("td.num")).ToHaveTextAsync("1");
        await Expect(group.GetByRole(AriaRole.Link, new() { Name = id })).ToBeVisibleAsync();
        await Chromium.ScreenshotAsync(_page, "failures");

        await group.GetByRole(AriaRole.Link, new() { Name = id }).ClickAsync();
        await Expect(_page.Locator("#failure")).ToContainTextAsync(new Regex("Failed at step \\d+: model \\(unavailable\\) in model:down"));
        // The retry: the first attempt failed and was retried, the second gave up.
        await Expect(_page.Locator("#failure")).ToContainTextAsync("after 2 attempts");
        await Expect(_page.Locator("#timeline li[data-kind='attempt.failed']")).ToHaveCountAsync(2);
        await Expect(_page.Locator("#timeline li[data-kind='attempt.failed']").First).ToContainTextAsync("model:down");
        await Expect(_page.Locator("#timeline li[data-kind='attempt.failed']").First).ToContainTextAsync(new Regex("Retry in\\s*\\d+ ms"));
        await Expect(_page.Locator("#timeline li[data-kind='attempt.failed']").Last).ToContainTextAsync(new Regex("Retry\\s*none"));
        await Expect(_page.Locator("#timeline li[data-kind='run.finished']")).ToContainTextAsync("failed");
        NoPageErrors();
    }

    [Fact]
    public async Task HostileRunInput_IsShownAsText_NeverAsMarkup()
    {
        const string hostile = "<img src=x onerror=\"window.__xss=1\"><script>window.__xss=2</script><b>bold</b>";
        var id = await _host.SubmitAsync("echo", hostile);
        await _host.WaitAsync(id);

        await _page.GotoAsync(_host.BaseUrl + "/");
        await Expect(Row(id).Locator("td.input")).ToHaveTextAsync(hostile);
        await _page.GotoAsync($"{_host.BaseUrl}/#/run/{id}");
        await Expect(_page.Locator("#run-input")).ToHaveTextAsync(hostile);
        await Expect(_page.Locator("#run-output")).ToHaveTextAsync("echo: " + hostile);
        await Expect(_page.Locator("#timeline li[data-kind='run.finished']")).ToContainTextAsync("echo: " + hostile);

        Assert.Equal(0, await _page.EvaluateAsync<int>("() => document.querySelectorAll('main img, main script, main b').length"));
        Assert.True(await _page.EvaluateAsync<bool>("() => window.__xss === undefined"));
        NoPageErrors();
    }

    [Fact]
    public async Task WithKeys_ThePageAsksForOne_AViewerReadsRuns_ButMayNotAnswerApprovals()
    {
        var viewer = await _host.CreateKeyAsync(ApiKeyRole.Viewer);
        var operatorKey = await _host.CreateKeyAsync(ApiKeyRole.Operator);
        var id = await _host.SubmitAsync("echo", "with keys", operatorKey);
        await _host.WaitAsync(id);

        await _page.GotoAsync(_host.BaseUrl + "/");
        await Expect(_page.Locator("main")).ToContainTextAsync("enter an API key above");

        await _page.FillAsync("#key", viewer);
        await _page.ClickAsync("#key-form button[type=submit]");
        await Expect(Row(id)).ToContainTextAsync("succeeded");
        Assert.Equal(viewer, await _page.EvaluateAsync<string>("() => sessionStorage.getItem('bureau.apiKey')"));
        Assert.Equal("", await _page.InputValueAsync("#key")); // not left on screen

        // Live updates come with the key too (the stream is read with fetch, which sends the header).
        var second = await _host.SubmitAsync("echo", "a second run", operatorKey);
        await Expect(Row(second)).ToContainTextAsync("succeeded");

        await _page.GotoAsync(_host.BaseUrl + "/#/approvals");
        await Expect(_page.Locator("#approvals")).ToContainTextAsync("needs a key with the approver (or admin) role");
        NoPageErrors();
    }

    [Fact]
    public async Task Agents_ListsAgentsAndTeams_WithWhatTheirRunsUsed()
    {
        var id = await _host.SubmitAsync("echo", "count me");
        await _host.WaitAsync(id);

        await _page.GotoAsync(_host.BaseUrl + "/#/agents");
        var echo = _page.Locator("#agents tr[data-agent='echo']");
        await Expect(echo).ToContainTextAsync("Answers with its input.");
        await Expect(echo).ToContainTextAsync("12 in / 5 out");
        await Expect(_page.Locator("#agents tr[data-agent='looker']")).ToContainTextAsync("lookup");
        var team = _page.Locator("#agents tr[data-agent='pair']");
        await Expect(team).ToContainTextAsync("team");
        await Expect(team).ToContainTextAsync("echo, echo");
        await team.GetByRole(AriaRole.Link, new() { Name = "pair" }).ClickAsync();
        await Expect(_page.Locator("#f-agent")).ToHaveValueAsync("pair");
        NoPageErrors();
    }

    [Fact]
    public async Task Compare_ShowsTwoRunsStepsSideBySide_MarkingWhatDiffers()
    {
        var a = await _host.SubmitAsync("echo", "first question");
        var b = await _host.SubmitAsync("echo", "second question");
        await _host.WaitAsync(a);
        await _host.WaitAsync(b);

        await _page.GotoAsync($"{_host.BaseUrl}/#/compare?a={a}&b={b}");
        var table = _page.Locator("#compare table");
        await Expect(table).ToContainTextAsync("first question");
        await Expect(table).ToContainTextAsync("second question");
        await Expect(_page.Locator("#compare")).ToContainTextAsync("steps differ");
        Assert.True(await table.Locator("tr.diff").CountAsync() >= 2);
        NoPageErrors();
    }

    [Fact]
    public async Task WhatIf_FromTheRunsPage_ForksOntoAnotherModel_ShowsTheStepsSideBySide_AndTheReplayCheckReproducesTheRun()
    {
        _host.OpenLookup();
        var id = await _host.SubmitAsync("looker", "where is order 7?");
        Assert.Equal(RunStatus.Succeeded, (await _host.WaitAsync(id, orWaiting: false)).Status);

        await _page.GotoAsync($"{_host.BaseUrl}/#/run/{id}");
        await Expect(_page.Locator("#run-h")).ToContainTextAsync("succeeded");
        await _page.ClickAsync("#whatif-link");
        await Expect(_page.Locator("main h1")).ToContainTextAsync("Replay and what-if of run " + id);

        // The replay check: no model or tool call, the same steps.
        await _page.ClickAsync("#replay-check");
        await Expect(_page.Locator("#replay-verdict")).ToHaveAttributeAsync("data-reproduced", "true");
        await Expect(_page.Locator("#replay-verdict")).ToContainTextAsync("Reproduced");

        // The what-if: after step 1, on the model that answers without looking.
        await _page.FillAsync("#w-from", "1");
        await _page.FillAsync("#w-model", "look-direct");
        await _page.ClickAsync("#whatif-run");
        var verdict = _page.Locator("#whatif-verdict");
        await Expect(verdict).ToContainTextAsync("succeeded");
        await Expect(verdict).ToContainTextAsync("The runs diverge at step 2.");
        await Expect(_page.Locator("#whatif-scripted")).ToContainTextAsync("scripted"); // scripted output is labelled
        var steps = _page.Locator("#whatif-steps tbody tr");
        await Expect(steps.Nth(0)).ToHaveAttributeAsync("data-same", "true");
        await Expect(steps.Nth(0)).ToContainTextAsync("shared");
        var second = _page.Locator("#whatif-steps tr[data-step='2']");
        await Expect(second).ToHaveClassAsync(new Regex("diff"));
        await Expect(second).ToContainTextAsync("lookup");                   // the original called the tool
        await Expect(second).ToContainTextAsync("answered without looking"); // the fork answered at once
        await Expect(_page.Locator("#whatif-result")).ToContainTextAsync("found: order 7 shipped");
        await _page.EvaluateAsync("() => document.querySelector('#whatif-verdict').scrollIntoView({ block: 'start' })");
        await Chromium.ScreenshotAsync(_page, "whatif");

        // A bad request is said on the page, and nothing ran.
        await _page.FillAsync("#w-model", "no-such-model");
        await _page.ClickAsync("#whatif-run");
        await Expect(_page.Locator("#whatif-result .error")).ToContainTextAsync("'model' must be a deployed model");
        Assert.Single((await _host.Engine.ListRunsAsync(new RunQuery { Agent = "looker" }, TestContext.Current.CancellationToken)).Items);
        NoPageErrors();
    }
}
