using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Bureau.Hosting.Tests;

/// <summary>
/// Triggers that target the workforce: a signed webhook (standard, hmac with the skill read from the payload) or a
/// schedule tick adds a task to the inbox, which is routed to a member and run once; a redelivered event adds nothing;
/// an event whose skill no member has is dead-lettered; a deployment naming both an agent and the workforce is refused.
/// </summary>
public sealed class WorkforceTriggerTests : IAsyncDisposable
{
    private const string StandardSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    private const string HmacSecret = "hmac-secret";

    private readonly TestHost _host = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask DisposeAsync() => _host.DisposeAsync();

    private Task StartAsync(params TriggerDefinition[] triggers) => _host.StartAsync(Deployment(["paging"], triggers));

    private static Action<BureauBuilder> Deployment(string[] pagerSkills, TriggerDefinition[] triggers) => b =>
    {
        b.AddWorkforceMember(new WorkforceMember { Name = "echo", Skills = ["billing"], Concurrency = 2 })
         .AddWorkforceMember(new WorkforceMember { Name = "pager", Skills = pagerSkills });
        foreach (var t in triggers) b.AddTrigger(t);
    };

    private static readonly WebhookTriggerDefinition Crm = new()
    {
        Name = "crm", Source = WebhookSource.Standard, Secret = StandardSecret, Input = "{{$.type}} {{$.data.ticket}}",
        Workforce = new TriggerWorkforceTarget { Skill = "billing" },
    };

    private static readonly WebhookTriggerDefinition Plain = new()
    {
        Name = "plain", Source = WebhookSource.Hmac, Secret = HmacSecret, IdHeader = "X-Id", Input = "{{$.text}}",
        Workforce = new TriggerWorkforceTarget { Skill = "{{$.team}}" },
    };

    private static HttpRequestMessage Standard(string body, string id)
    {
        var ts = DateTimeOffset.UtcNow.ToUnixTimeSeconds().ToString(System.Globalization.CultureInfo.InvariantCulture);
        var key = Convert.FromBase64String(StandardSecret["whsec_".Length..]);
        var sig = Convert.ToBase64String(HMACSHA256.HashData(key, Encoding.UTF8.GetBytes($"{id}.{ts}.{body}")));
        var req = new HttpRequestMessage(HttpMethod.Post, "/v1/hooks/crm") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        req.Headers.Add("webhook-id", id);
        req.Headers.Add("webhook-timestamp", ts);
        req.Headers.TryAddWithoutValidation("webhook-signature", $"v1,{sig}");
        return req;
    }

    private static HttpRequestMessage Hmac(string body, string id)
    {
        var req = new HttpRequestMessage(HttpMethod.Post, "/v1/hooks/plain") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        req.Headers.Add("X-Signature", Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(HmacSecret), Encoding.UTF8.GetBytes(body))));
        req.Headers.TryAddWithoutValidation("X-Id", id);
        return req;
    }

    private async Task<(HttpStatusCode Status, JsonObject Body, Uri? Location)> SendAsync(HttpRequestMessage request)
    {
        using var res = await _host.Client.SendAsync(request, Ct);
        return (res.StatusCode, (JsonObject)await Http.BodyAsync(res), res.Headers.Location);
    }

    private IWorkforceStore Inbox => _host.App.Services.GetRequiredService<IWorkforceStore>();

    private async Task<WorkforceTask> FinishedAsync(string id)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (true)
        {
            var task = await Inbox.GetAsync(id, Ct);
            if (task is { IsFinished: true }) return task;
            Assert.True(DateTime.UtcNow < deadline, $"task {id} did not finish within 60 s: {task}");
            await Task.Delay(50, Ct);
        }
    }

    private async Task<IReadOnlyList<RunRecord>> RunsKeyedAsync(string prefix) =>
        (await _host.Engine.ListRunsAsync(new RunQuery { IdempotencyKeyPrefix = prefix, Limit = 100 }, Ct)).Items;

    [Fact]
    public async Task StandardWebhook_AddsATask_RoutedAndRunOnce_ARedeliveryAddsNothing()
    {
        await StartAsync(Crm);
        const string body = """{"type":"invoice.disputed","data":{"ticket":"T-9"}}""";

        var (status, answer, location) = await SendAsync(Standard(body, "msg_1"));
        Assert.Equal(HttpStatusCode.Accepted, status);
        Assert.Equal(("accepted", "msg_1", "trigger:crm:msg_1", "billing"),
            ((string?)answer["status"], (string?)answer["eventId"], (string?)answer["task"]!["id"], (string?)answer["task"]!["skill"]));
        Assert.Null(answer["run"]);
        Assert.EndsWith("/v1/workforce/tasks/trigger%3Acrm%3Amsg_1", location!.ToString());

        var task = await FinishedAsync("trigger:crm:msg_1");
        Assert.Equal((WorkforceTaskStatus.Succeeded, "echo", "echo: invoice.disputed T-9", "trigger:crm", "trigger:crm"),
            (task.Status, task.Agent, task.Output, task.Source, task.Actor));

        // The sender delivers the same event again (a retry after a lost answer): the first task, nothing new.
        var (again, repeat, _) = await SendAsync(Standard(body, "msg_1"));
        Assert.Equal(HttpStatusCode.OK, again);
        Assert.Equal(("duplicate", "trigger:crm:msg_1", "succeeded"), ((string?)repeat["status"], (string?)repeat["task"]!["id"], (string?)repeat["task"]!["status"]));

        var run = Assert.Single(await RunsKeyedAsync("workforce:trigger:crm:"));
        Assert.Equal((task.RunId, "echo", "invoice.disputed T-9", "workforce:trigger:crm:msg_1"), (run.Id, run.Agent, run.Input, run.IdempotencyKey));
        var members = await _host.App.Services.GetRequiredService<BureauWorkforce>().StatusAsync(Ct);
        Assert.Equal((0, 1L), (members.Queued, members.Agents.Single(a => a.Name == "echo").Finished));
    }

    [Fact]
    public async Task HmacWebhook_SkillFromThePayload_RoutesToThatMember_AnUnknownSkillIsADeadLetter()
    {
        await StartAsync(Plain);

        var (status, answer, _) = await SendAsync(Hmac("""{"team":"paging","text":"server down"}""", "evt-1"));
        Assert.Equal(HttpStatusCode.Accepted, status);
        var task = await FinishedAsync((string)answer["task"]!["id"]!);
        Assert.Equal(("trigger:plain:evt-1", "paging", "pager", "echo: server down"), (task.Id, task.Skill, task.Agent, task.Output));

        // An event id that is not a valid task id: the task's id is derived from it (the same every time).
        var odd = "evt/2 with spaces";
        var (oddStatus, oddAnswer, _) = await SendAsync(Hmac("""{"team":"billing","text":"refund"}""", odd));
        Assert.Equal(HttpStatusCode.Accepted, oddStatus);
        Assert.Equal(TriggerWorkforceTarget.TaskIdOf("trigger:plain:" + odd), (string?)oddAnswer["task"]!["id"]);
        Assert.StartsWith("k-", (string)oddAnswer["task"]!["id"]!);
        var (oddAgain, _, _) = await SendAsync(Hmac("""{"team":"billing","text":"refund"}""", odd));
        Assert.Equal(HttpStatusCode.OK, oddAgain);

        // No member has the skill the event names: kept as a dead letter (the sender cannot fix it by sending again), no task.
        var (deadStatus, dead, _) = await SendAsync(Hmac("""{"team":"legal","text":"contract"}""", "evt-3"));
        Assert.Equal(HttpStatusCode.Accepted, deadStatus);
        Assert.Equal(("dead-letter", "workforce:legal"), ((string?)dead["status"], (string?)dead["deadLetter"]!["agent"]));
        Assert.Contains("no member of the workforce has skill 'legal'", (string?)dead["deadLetter"]!["error"]);
        Assert.Null(await Inbox.GetAsync("trigger:plain:evt-3", Ct));
    }

    [Fact]
    public async Task DeadLetter_OfAWorkforceTrigger_RetriedOnceTheSkillIsDeployed_AddsTheTask()
    {
        await StartAsync(Plain);
        var (_, dead, _) = await SendAsync(Hmac("""{"team":"legal","text":"contract"}""", "evt-9"));
        var letter = (string)dead["deadLetter"]!["id"]!;

        // A member learns the skill (redeployed); the dead letter is retried: the task is added, routed and run.
        await _host.RestartAsync(Deployment(["paging", "legal"], [Plain]));
        using var res = await _host.Client.PostAsync($"/v1/events/dead/{letter}/retry", null, Ct);
        var answer = await Http.BodyAsync(res);
        Assert.Equal(HttpStatusCode.Accepted, res.StatusCode);
        Assert.Equal(TriggerWorkforceTarget.TaskIdOf("trigger:plain:evt-9#retry-1"), (string?)answer["task"]!["id"]);
        Assert.Equal(("task:" + (string)answer["task"]!["id"]!, 1), ((string?)answer["deadLetter"]!["retryRunId"], (int)answer["deadLetter"]!["retries"]!));
        var task = await FinishedAsync((string)answer["task"]!["id"]!);
        Assert.Equal(("legal", "pager", "echo: contract"), (task.Skill, task.Agent, task.Output));
    }

    [Fact]
    public async Task Schedule_TickAddsATask_RoutedAndRunOnce_AndTheLastTickIsReadBack()
    {
        var schedule = new ScheduleTriggerDefinition
        {
            Name = "tick", Every = TimeSpan.FromSeconds(1), Input = "reconcile {{$.tick}}",
            Workforce = new TriggerWorkforceTarget { Skill = "billing" },
        };
        await StartAsync(schedule);

        WorkforceTask? done = null;
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (done is null)
        {
            done = (await Inbox.ListAsync(WorkforceTaskStatus.Succeeded, 10, Ct)).FirstOrDefault();
            if (done is not null) break;
            Assert.True(DateTime.UtcNow < deadline, "no scheduled task succeeded within 60 s");
            await Task.Delay(100, Ct);
        }

        Assert.StartsWith("schedule:tick:", done.Id);
        var tick = schedule.TickOf(done.Id);
        Assert.NotNull(tick);
        Assert.Equal(("billing", "echo", "trigger:tick"), (done.Skill, done.Agent, done.Source));
        Assert.Equal("reconcile " + done.Id["schedule:tick:".Length..], done.Input);
        var run = Assert.Single(await RunsKeyedAsync(WorkforceTask.RunKey(done.Id)));
        Assert.Equal((done.RunId, "echo: " + done.Input), (run.Id, run.Output));

        // A restarted host reads the last fired tick back from the tasks' runs (so catch-up starts from there).
        var (last, lastRun) = await Triggers.ScheduleService.LastFiredAsync(_host.App.Services.GetRequiredService<IRunStore>(), schedule, Ct);
        Assert.NotNull(last);
        Assert.True(last >= tick, $"last fired tick {last:o} is before the finished task's tick {tick:o}");
        Assert.Null(lastRun);
    }

    [Theory]
    [InlineData("workforce:trigger:crm:msg_1", "crm", "msg_1")]
    [InlineData("workforce:schedule:tick:2026-12-07T06:00:00Z", "tick", "2026-12-07T06:00:00Z")]
    [InlineData("workforce:event:e-1:escalated", "escalated", "e-1")]
    [InlineData("trigger:crm:msg_1", "crm", "msg_1")]
    public void FailedTaskRun_DeadLetterNamesTheEvent(string runKey, string trigger, string eventId)
    {
        // A workforce task's run that fails is dead-lettered like any triggered run (its actor is trigger:NAME); the letter names the event.
        Assert.Equal(eventId, Triggers.DeadLetterRecorder.EventIdOf(runKey, trigger));
    }

    [Fact]
    public async Task Trigger_NamingAnAgentAndTheWorkforce_RefusedAtStart()
    {
        var ex = await Assert.ThrowsAnyAsync<Exception>(() => StartAsync(new WebhookTriggerDefinition
        {
            Name = "both", Agent = "echo", Source = WebhookSource.Hmac, Secret = HmacSecret,
            Workforce = new TriggerWorkforceTarget { Skill = "billing" },
        }));
        Assert.Contains("trigger 'both': it names both an agent ('echo') and the workforce; keep one", ex.ToString());
    }

    [Fact]
    public async Task Trigger_TargetingASkillNoMemberHas_RefusedAtStart()
    {
        var ex = await Assert.ThrowsAnyAsync<Exception>(() => StartAsync(new WebhookTriggerDefinition
        {
            Name = "legal", Source = WebhookSource.Hmac, Secret = HmacSecret, Workforce = new TriggerWorkforceTarget { Skill = "legl" },
        }));
        Assert.Contains("trigger 'legal': no member of the workforce has skill 'legl'", ex.ToString());
    }
}
