using System.Net;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Bureau.Hosting.Tests;

/// <summary>
/// A full workforce inbox (decision 0050) at the edges: <c>POST /v1/workforce/tasks</c>, a webhook and a CloudEvent that target
/// the workforce are answered 429 with <c>Retry-After</c> and a problem naming the limit and the count; nothing is stored,
/// a task the inbox has is still returned (200), and the same request is accepted once the inbox has room.
/// </summary>
public sealed class WorkforceInboxLimitHttpTests : IAsyncDisposable
{
    private const string Secret = "hmac-secret";
    private readonly TestHost _host = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask DisposeAsync()
    {
        foreach (var input in new[] { "a", "b", "c", "d", "refund", "login" }) _host.Gate.Open(input); // no run holds the stop
        return _host.DisposeAsync();
    }

    /// <summary>"slow" (one task at a time, its model gated by input) takes "desk" tasks; the inbox holds one queued task.</summary>
    private Task StartAsync() => _host.StartAsync(b =>
    {
        b.Services.Configure<BureauOptions>(o =>
        {
            o.Workforce.MaxQueuedTasks = 1;
            o.QueueFullRetryAfter = TimeSpan.FromSeconds(7);
        });
        b.AddWorkforceMember(new WorkforceMember { Name = "slow", Skills = ["desk"], Concurrency = 1 })
         .AddTrigger(new WebhookTriggerDefinition
         {
             Name = "plain", Source = WebhookSource.Hmac, Secret = Secret, IdHeader = "X-Id", Input = "{{$.text}}",
             Workforce = new TriggerWorkforceTarget { Skill = "desk" },
         })
         .AddTrigger(new TopicTriggerDefinition { Name = "esc", Topic = "ticket.escalated", Workforce = new TriggerWorkforceTarget { Skill = "desk" } });
    });

    private async Task<HttpResponseMessage> PostAsync(string json) => await _host.Client.SendAsync(Http.Json(HttpMethod.Post, "/v1/workforce/tasks", json), Ct);

    private static HttpRequestMessage Hook(string body, string id)
    {
        var req = new HttpRequestMessage(HttpMethod.Post, "/v1/hooks/plain") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        req.Headers.Add("X-Signature", Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(Secret), Encoding.UTF8.GetBytes(body))));
        req.Headers.TryAddWithoutValidation("X-Id", id);
        return req;
    }

    private IWorkforceStore Inbox => _host.App.Services.GetRequiredService<IWorkforceStore>();

    private async Task<WorkforceTask> UntilAsync(string id, WorkforceTaskStatus status)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (true)
        {
            var task = await Inbox.GetAsync(id, Ct);
            if (task?.Status == status) return task;
            Assert.True(DateTime.UtcNow < deadline, $"task {id} did not become {status} within 60 s: {task}");
            await Task.Delay(25, Ct);
        }
    }

    private async Task<int> TasksAsync()
    {
        var all = 0;
        foreach (var status in Enum.GetValues<WorkforceTaskStatus>()) all += (await Inbox.ListAsync(status, 1000, Ct)).Count;
        return all;
    }

    /// <summary>t1 runs (gated), t2 waits in the inbox: the inbox is at its limit of one queued task.</summary>
    private async Task FillAsync()
    {
        using (var t1 = await PostAsync("""{"skill":"desk","input":"a","id":"t1"}""")) Assert.Equal(HttpStatusCode.Accepted, t1.StatusCode);
        await UntilAsync("t1", WorkforceTaskStatus.Running);
        using (var t2 = await PostAsync("""{"skill":"desk","input":"b","id":"t2"}""")) Assert.Equal(HttpStatusCode.Accepted, t2.StatusCode);
    }

    [Fact]
    public async Task PostTask_WhenTheInboxIsFull_Is429WithRetryAfter_StoresNothing_ReturnsATaskItHas_AndAcceptsOnceDrained()
    {
        await StartAsync();
        await FillAsync();

        using var refused = await PostAsync("""{"skill":"desk","input":"c","id":"t3"}""");
        var problem = await Http.ProblemAsync(refused, 429, "skill");
        Assert.Equal(("inbox-full", "desk", 1, 1, true), ((string?)problem["code"], (string?)problem["skill"], (int)problem["queued"]!, (int)problem["limit"]!, (bool)problem["global"]!));
        Assert.Contains("1 tasks are queued, the limit is 1 (Bureau:Workforce:MaxQueuedTasks)", (string)problem["detail"]!);
        Assert.Equal(TimeSpan.FromSeconds(7), refused.Headers.RetryAfter?.Delta);
        using (var missing = await _host.Client.SendAsync(Http.Get("/v1/workforce/tasks/t3"), Ct)) await Http.ProblemAsync(missing, 404, "id");
        Assert.Equal(2, await TasksAsync());

        // The same id again is an idempotent resubmit: the task the inbox has, full or not.
        using (var again = await PostAsync("""{"skill":"desk","input":"b","id":"t2"}"""))
        {
            Assert.Equal(HttpStatusCode.OK, again.StatusCode);
            Assert.Equal(("t2", "queued"), ((string?)(await Http.BodyAsync(again))["id"], (string?)(await Http.BodyAsync(again))["status"]));
        }

        _host.Gate.Open("a");
        await UntilAsync("t2", WorkforceTaskStatus.Running); // the inbox has room again
        using var accepted = await PostAsync("""{"skill":"desk","input":"c","id":"t3"}""");
        Assert.Equal(HttpStatusCode.Accepted, accepted.StatusCode);
        _host.Gate.Open("b");
        _host.Gate.Open("c");
        Assert.Equal("opened: c", (await UntilAsync("t3", WorkforceTaskStatus.Succeeded)).Output);
    }

    [Fact]
    public async Task TriggersTargetingAFullInbox_Are429WithRetryAfter_NothingStoredNorDeadLettered_AndTheRedeliveryIsAccepted()
    {
        await StartAsync();
        await FillAsync();

        using var hook = await _host.Client.SendAsync(Hook("""{"text":"c"}""", "h-1"), Ct);
        var problem = await Http.ProblemAsync(hook, 429, "skill");
        Assert.Equal("inbox-full", (string?)problem["code"]);
        Assert.Equal(TimeSpan.FromSeconds(7), hook.Headers.RetryAfter?.Delta);
        using var ev = await _host.Client.SendAsync(new HttpRequestMessage(HttpMethod.Post, "/v1/events")
        {
            Content = new StringContent("""{"specversion":"1.0","id":"ev-1","source":"/crm","type":"ticket.escalated","data":{"text":"d"}}""",
                Encoding.UTF8, "application/cloudevents+json"),
        }, Ct);
        await Http.ProblemAsync(ev, 429, "skill");
        Assert.Equal(TimeSpan.FromSeconds(7), ev.Headers.RetryAfter?.Delta);
        Assert.Equal(2, await TasksAsync());
        Assert.Empty(await _host.App.Services.GetRequiredService<IEventStore>().ListDeadLettersAsync(includeRetried: true, limit: 10, Ct));

        // The sender retries after Retry-After: once the inbox has room, the same delivery is accepted, once.
        _host.Gate.Open("a");
        await UntilAsync("t2", WorkforceTaskStatus.Running);
        using var redelivered = await _host.Client.SendAsync(Hook("""{"text":"c"}""", "h-1"), Ct);
        Assert.Equal(HttpStatusCode.Accepted, redelivered.StatusCode);
        Assert.Equal(3, await TasksAsync());
    }

    [Fact]
    public async Task APollTargetingAFullInbox_KeepsItsCursorBeforeTheRefusedRow_AndTakesItOnceTheInboxHasRoom()
    {
        var source = Path.Combine(Path.GetDirectoryName(_host.Db)!, "tickets.db");
        var cs = $"Data Source={source};Pooling=false";
        await using (var c = new Microsoft.Data.Sqlite.SqliteConnection(cs))
        {
            await c.OpenAsync(Ct);
            await using var cmd = c.CreateCommand();
            cmd.CommandText = "CREATE TABLE tickets(id INTEGER PRIMARY KEY, title TEXT); INSERT INTO tickets VALUES(1, 'refund'), (2, 'login');";
            await cmd.ExecuteNonQueryAsync(Ct);
        }
        // Polled by hand only (not deployed, so the service's own polls do not race this test's).
        var poll = new PollTriggerDefinition
        {
            Name = "tickets", Provider = "Microsoft.Data.Sqlite", ConnectionString = cs, CursorColumn = "id",
            Query = "SELECT id, title FROM tickets WHERE id > @cursor ORDER BY id LIMIT 100", Every = TimeSpan.FromHours(1), Input = "{{$.data.title}}",
            Workforce = new TriggerWorkforceTarget { Skill = "desk" },
        };
        await StartAsync();
        await FillAsync();
        var polls = _host.App.Services.GetRequiredService<Triggers.PollService>();
        var events = _host.App.Services.GetRequiredService<IEventStore>();

        Assert.Equal(0, await polls.PollOnceAsync(poll, Ct)); // backpressure: no error, the rows wait for the next poll
        Assert.Null(await events.GetCursorAsync("tickets", Ct));
        Assert.Equal(2, await TasksAsync());

        _host.Gate.Open("a");
        await UntilAsync("t2", WorkforceTaskStatus.Running); // room for one
        Assert.Equal(1, await polls.PollOnceAsync(poll, Ct));
        Assert.Equal("1", await events.GetCursorAsync("tickets", Ct)); // row 2 was refused: the cursor stays before it
        Assert.Equal(["refund"], (await Inbox.ListAsync(WorkforceTaskStatus.Queued, 10, Ct)).Select(t => t.Input));
        Assert.Empty(await events.ListDeadLettersAsync(includeRetried: true, limit: 10, Ct));
    }
}
