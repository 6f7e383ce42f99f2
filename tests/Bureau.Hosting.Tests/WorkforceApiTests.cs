using System.Net;
using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Bureau.Hosting.Tests;

/// <summary>/v1/workforce: tasks into the durable inbox (idempotent by id), refused with a problem naming the field, routed within each member's limit, and the status.</summary>
public sealed class WorkforceApiTests : IAsyncDisposable
{
    private readonly TestHost _host = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask DisposeAsync() => _host.DisposeAsync();

    private Task StartAsync() => _host.StartAsync(b => b
        .AddWorkforceMember(new WorkforceMember { Name = "slow", Skills = ["desk"], Concurrency = 1 })
        .AddWorkforceMember(new WorkforceMember { Name = "echo", Skills = ["echo"], Concurrency = 2 }));

    private async Task<HttpResponseMessage> PostAsync(string json) => await _host.Client.SendAsync(Http.Json(HttpMethod.Post, "/v1/workforce/tasks", json), Ct);

    private async Task<JsonNode> GetAsync(string url)
    {
        using var res = await _host.Client.SendAsync(Http.Get(url), Ct);
        return await Http.BodyAsync(res);
    }

    private async Task<JsonNode> TaskUntilAsync(string id, string status)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (true)
        {
            var task = await GetAsync($"/v1/workforce/tasks/{id}");
            if ((string)task["status"]! == status) return task;
            Assert.True(DateTime.UtcNow < deadline, $"task {id} did not become {status} within 60 s: {task}");
            await Task.Delay(25, Ct);
        }
    }

    [Fact]
    public async Task PostTask_IsAccepted_OnceById_RunsWithinTheMembersLimit_AndTheStatusShowsTheInbox()
    {
        await StartAsync();
        using var first = await PostAsync("""{"skill":"desk","input":"a","id":"t1"}""");
        using var again = await PostAsync("""{"skill":"desk","input":"a","id":"t1"}""");
        using var second = await PostAsync("""{"skill":"desk","input":"b","id":"t2"}""");
        Assert.Equal((HttpStatusCode.Accepted, HttpStatusCode.OK, HttpStatusCode.Accepted), (first.StatusCode, again.StatusCode, second.StatusCode));
        Assert.Equal("t1", (string)(await Http.BodyAsync(again))["id"]!);

        // slow takes one task at a time: t1 runs (its model waits for the gate), t2 waits in the inbox.
        var t1 = await TaskUntilAsync("t1", "running");
        Assert.Equal("slow", (string)t1["agent"]!);
        var status = await GetAsync("/v1/workforce");
        Assert.Equal((1, 1, 1), ((int)status["queued"]!, (int)status["inProgress"]!, (int)status["queuedBySkill"]!["desk"]!));
        var slow = status["agents"]!.AsArray().Single(a => (string)a!["name"]! == "slow")!;
        Assert.Equal((1, 1, 1, 0), ((int)slow["concurrency"]!, (int)slow["inProgress"]!, (int)slow["inbox"]!, (int)slow["finished"]!));
        // No limits configured: the inbox's default (decision 0050), and the queued skill without a limit of its own (null); echo has neither.
        Assert.Equal(10_000, (int)status["maxQueuedTasks"]!);
        var skillLimits = status["maxQueuedBySkill"]!.AsObject();
        Assert.Equal(["desk"], skillLimits.Select(p => p.Key));
        Assert.Null(skillLimits["desk"]);
        Assert.Equal("queued", (string)(await GetAsync("/v1/workforce/tasks/t2"))["status"]!);

        _host.Gate.Open("a");
        _host.Gate.Open("b");
        var done = await TaskUntilAsync("t2", "succeeded");
        Assert.Equal(("slow", "opened: b"), ((string)done["agent"]!, (string)done["output"]!));
        var run = await _host.Engine.GetRunAsync((string)done["runId"]!);
        Assert.Equal(("workforce:t2", RunStatus.Succeeded), (run!.IdempotencyKey, run.Status));
        Assert.Equal("succeeded", (string)(await GetAsync("/v1/workforce/tasks/t1"))["status"]!);
    }

    [Fact]
    public async Task Status_ShowsTheInboxLimits_AsConfigured()
    {
        await _host.StartAsync(b =>
        {
            b.Services.Configure<BureauOptions>(o =>
            {
                o.Workforce.MaxQueuedTasks = 50;
                o.Workforce.MaxQueuedTasksPerSkill = 20;
                o.Workforce.SkillQueueLimits["desk"] = 3;
                o.Workforce.SkillQueueLimits["legal"] = 7; // no member has it yet: shown, so a typo is visible
            });
            b.AddWorkforceMember(new WorkforceMember { Name = "slow", Skills = ["desk"], Concurrency = 1 })
             .AddWorkforceMember(new WorkforceMember { Name = "echo", Skills = ["echo"], Concurrency = 2 });
        });
        using (var t1 = await PostAsync("""{"skill":"desk","input":"a","id":"t1"}""")) Assert.Equal(HttpStatusCode.Accepted, t1.StatusCode);
        await TaskUntilAsync("t1", "running");
        using (var t2 = await PostAsync("""{"skill":"desk","input":"b","id":"t2"}""")) Assert.Equal(HttpStatusCode.Accepted, t2.StatusCode);

        var status = await GetAsync("/v1/workforce");
        Assert.Equal((1, 1, 50), ((int)status["queued"]!, (int)status["queuedBySkill"]!["desk"]!, (int)status["maxQueuedTasks"]!));
        // Every member's skill gets the per-skill default (echo), a skill's own limit overrides it (desk), a configured skill is listed (legal).
        Assert.Equal([("desk", 3), ("echo", 20), ("legal", 7)],
            status["maxQueuedBySkill"]!.AsObject().Select(p => (p.Key, (int)p.Value!)));
        _host.Gate.Open("a");
        _host.Gate.Open("b");
        await TaskUntilAsync("t2", "succeeded");
    }

    [Fact]
    public async Task PostTask_Refused_IsAProblemNamingTheField_AndChangesNothing()
    {
        await StartAsync();
        using var unknownSkill = await PostAsync("""{"skill":"dsk","input":"a","id":"t1"}""");
        var problem = await Http.ProblemAsync(unknownSkill, 400, "skill");
        Assert.Contains("did you mean 'desk'", (string)problem["detail"]!);
        await Http.ProblemAsync(await PostAsync("""{"skill":"desk","input":"  ","id":"t1"}"""), 400, "input");
        await Http.ProblemAsync(await PostAsync("""{"skill":"desk","input":"a","id":"no spaces please"}"""), 400, "id");
        await Http.ProblemAsync(await PostAsync("""{"skill":"desk","input":"a","agent":"slow"}"""), 400, "agent");
        using var missing = await _host.Client.SendAsync(Http.Get("/v1/workforce/tasks/t1"), Ct);
        await Http.ProblemAsync(missing, 404, "id");
        Assert.Equal(0, (int)(await GetAsync("/v1/workforce"))["queued"]!);
    }
}
