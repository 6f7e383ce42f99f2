using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Bureau.Hosting.Tests;

/// <summary>A model that fails every call (a non-transient error): every run of its agents fails.</summary>
public sealed class FailingModel : IChatClient
{
    public Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
        throw new InvalidOperationException("the model refused: bad request");

    public IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
        throw new NotSupportedException();

    public object? GetService(Type serviceType, object? serviceKey = null) => null;

    public void Dispose() { }
}

/// <summary>A model that calls the tool <c>escalate</c> once with <c>{"data": {"ticket": INPUT}}</c>, then answers with the tool's result.</summary>
public sealed class EscalatingModel : IChatClient
{
    public Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var list = messages.ToList();
        if (list.LastOrDefault(m => m.Role == ChatRole.Tool)?.Contents.OfType<FunctionResultContent>().LastOrDefault() is { } result)
            return Task.FromResult(new ChatResponse(new ChatMessage(ChatRole.Assistant, "escalated: " + result.Result)) { ModelId = "escalating" });
        var input = list.First(m => m.Role == ChatRole.User).Text;
        using var args = JsonDocument.Parse(new JsonObject { ["data"] = new JsonObject { ["ticket"] = input } }.ToJsonString());
        var call = new FunctionCallContent("call_1", "escalate", new Dictionary<string, object?> { ["data"] = args.RootElement.GetProperty("data").Clone() });
        return Task.FromResult(new ChatResponse(new ChatMessage(ChatRole.Assistant, [call])) { ModelId = "escalating" });
    }

    public IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
        throw new NotSupportedException();

    public object? GetService(Type serviceType, object? serviceKey = null) => null;

    public void Dispose() { }
}

/// <summary>
/// What happens to events past their first submission: dead letters (refused runs, failed runs) and their retry,
/// backpressure (429 with Retry-After, nothing stored) and event chains through the emit tool.
/// </summary>
public sealed class EventHandlingTests : IAsyncDisposable
{
    private const string Secret = "gh-secret";
    private readonly TestHost _host = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask DisposeAsync() => _host.DisposeAsync();

    private static HttpRequestMessage GitHub(string body, string delivery, string trigger = "gh")
    {
        var req = new HttpRequestMessage(HttpMethod.Post, "/v1/hooks/" + trigger) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        req.Headers.Add("X-Hub-Signature-256", "sha256=" + Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(Secret), Encoding.UTF8.GetBytes(body))));
        req.Headers.Add("X-GitHub-Event", "issues");
        req.Headers.Add("X-GitHub-Delivery", delivery);
        return req;
    }

    private static HttpRequestMessage Event(string id, string type = "ticket.escalated", string ticket = "T-1") =>
        new(HttpMethod.Post, "/v1/events")
        {
            Content = new StringContent(new JsonObject { ["specversion"] = "1.0", ["id"] = id, ["source"] = "/test", ["type"] = type, ["data"] = new JsonObject { ["ticket"] = ticket } }.ToJsonString(),
                Encoding.UTF8, "application/cloudevents+json"),
        };

    private async Task<(HttpResponseMessage Response, JsonObject Body)> SendAsync(HttpRequestMessage request)
    {
        var res = await _host.Client.SendAsync(request, Ct);
        var text = await res.Content.ReadAsStringAsync(Ct);
        return (res, JsonNode.Parse(text)!.AsObject());
    }

    private async Task<int> RunCountAsync() => (await _host.Engine.ListRunsAsync(new RunQuery { Limit = 1000 }, Ct)).Items.Count;

    private static WebhookTriggerDefinition Hook(string input) =>
        new() { Name = "gh", Agent = "echo", Source = WebhookSource.GitHub, Secret = Secret, Input = input };

    // ---- dead letters: refused ----

    [Fact]
    public async Task Webhook_InputRendersEmpty_DeadLetteredDurably_202_NoRun()
    {
        await _host.StartAsync(b => b.AddTrigger(Hook("{{$.issue.missing}}")));
        var (res, body) = await SendAsync(GitHub("""{"action":"opened","issue":{"title":"Refund"}}""", "d-1"));
        Assert.Equal(HttpStatusCode.Accepted, res.StatusCode);
        Assert.Equal("dead-letter", (string?)body["status"]);
        var letter = body["deadLetter"]!;
        Assert.Equal(("refused", "gh", "d-1", "trigger:gh:d-1"), ((string?)letter["reason"], (string?)letter["trigger"], (string?)letter["eventId"], (string?)letter["key"]));
        Assert.Contains("input is empty", (string?)letter["error"]);
        Assert.Equal(0, await RunCountAsync());

        // The same delivery again: the same dead letter, nothing new.
        var (again, againBody) = await SendAsync(GitHub("""{"action":"opened","issue":{"title":"Refund"}}""", "d-1"));
        Assert.Equal(HttpStatusCode.Accepted, again.StatusCode);
        Assert.Equal((string?)letter["id"], (string?)againBody["deadLetter"]!["id"]);
        using var list = await _host.Client.GetAsync("/v1/events/dead", Ct);
        Assert.Single((await Http.BodyAsync(list))["items"]!.AsArray());
    }

    [Fact]
    public async Task Retry_StillRefused_400_DeadLetterUnchanged_ThenFixedTemplate_StartsTheRun()
    {
        await _host.StartAsync(b => b.AddTrigger(Hook("{{$.issue.missing}}")));
        var (_, body) = await SendAsync(GitHub("""{"action":"opened","issue":{"title":"Refund"}}""", "d-1"));
        var id = (string)body["deadLetter"]!["id"]!;

        using var refused = await _host.Client.PostAsync($"/v1/events/dead/{id}/retry", null, Ct);
        await Http.ProblemAsync(refused, 400, "input");
        var unchanged = await _host.App.Services.GetRequiredService<IEventStore>().GetDeadLetterAsync(id, Ct);
        Assert.Equal((0, null), (unchanged!.Retries, unchanged.RetriedAt));
        Assert.Equal(0, await RunCountAsync());

        // Redeployed with a fixed template: the retry renders the kept event again.
        await _host.RestartAsync(b => b.AddTrigger(Hook("New issue {{$.issue.title}}")));
        using var retried = await _host.Client.PostAsync($"/v1/events/dead/{id}/retry", null, Ct);
        Assert.Equal(HttpStatusCode.Accepted, retried.StatusCode);
        var answer = await Http.BodyAsync(retried);
        var run = await _host.WaitAsync((string)answer["run"]!["id"]!);
        Assert.Equal(("New issue Refund", "trigger:gh:d-1#retry-1", "trigger:gh", RunStatus.Succeeded), (run.Input, run.IdempotencyKey, run.Actor, run.Status));
        Assert.Equal(1, (int)answer["deadLetter"]!["retries"]!);

        using var list = await _host.Client.GetAsync("/v1/events/dead", Ct);
        Assert.Empty((await Http.BodyAsync(list))["items"]!.AsArray());
        using var all = await _host.Client.GetAsync("/v1/events/dead?all=true", Ct);
        Assert.Equal(run.Id, (string?)(await Http.BodyAsync(all))["items"]![0]!["retryRunId"]);
    }

    [Theory]
    [InlineData("/v1/events/dead?all=yes", "all")]
    [InlineData("/v1/events/dead?limit=%2B5", "limit")]
    [InlineData("/v1/keys?revoked=maybe", "revoked")]
    public async Task ListingFlagsAndLimits_MistypedValue_400NamingIt_NotReadAsFalse(string url, string field)
    {
        await _host.StartAsync();
        using var res = await _host.Client.GetAsync(url, Ct);
        await Http.ProblemAsync(res, 400, field);
        using var ok = await _host.Client.GetAsync(url.Split('?')[0] + "?" + field + (field == "limit" ? "=5" : "=false"), Ct);
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
    }

    [Fact]
    public async Task Retry_UnknownId_404()
    {
        await _host.StartAsync();
        using var res = await _host.Client.PostAsync("/v1/events/dead/dl_0000000000000000/retry", null, Ct);
        await Http.ProblemAsync(res, 404, "id");
    }

    // ---- dead letters: the run failed ----

    [Fact]
    public async Task TopicRunFails_DeadLetterRunFailed_RetryStartsOneNewRun()
    {
        await _host.StartAsync(b => b
            .AddChatClient("failing", new FailingModel())
            .AddAgent(new AgentDefinition { Name = "broken", Model = "failing" })
            .AddTrigger(new TopicTriggerDefinition { Name = "esc", Agent = "broken", Topic = "ticket.escalated", Input = "ticket {{$.data.ticket}}" }));
        var recorded = new TaskCompletionSource<DeadLetter>(TaskCreationOptions.RunContinuationsAsynchronously);
        _host.App.Services.GetRequiredService<Triggers.DeadLetterRecorder>().Recorded += d => recorded.TrySetResult(d);

        var (_, body) = await SendAsync(Event("ev-1"));
        var runId = (string)body["runs"]![0]!["run"]!["id"]!;
        var failed = await _host.WaitAsync(runId);
        Assert.Equal(RunStatus.Failed, failed.Status);
        var letter = await recorded.Task.WaitAsync(TimeSpan.FromSeconds(20), Ct);
        Assert.Equal(("run-failed", "esc", "ev-1", runId, "ticket T-1"), (letter.Reason, letter.Trigger, letter.EventId, letter.RunId, letter.Input));

        using var list = await _host.Client.GetAsync("/v1/events/dead", Ct);
        var item = (await Http.BodyAsync(list))["items"]!.AsArray().Single()!;
        Assert.Contains("the model refused", (string?)item["error"]);

        using var retry1 = await _host.Client.PostAsync($"/v1/events/dead/{letter.Id}/retry", null, Ct);
        Assert.Equal(HttpStatusCode.Accepted, retry1.StatusCode);
        var retryRun = (string)(await Http.BodyAsync(retry1))["run"]!["id"]!;
        var again = await _host.WaitAsync(retryRun);
        Assert.Equal(("ticket T-1", "event:ev-1:esc#retry-1", "broken"), (again.Input, again.IdempotencyKey, again.Agent));
    }

    [Fact]
    public async Task Recorder_AtStart_FindsFailedTriggeredRunsMissed()
    {
        await _host.StartAsync(b => b
            .AddChatClient("failing", new FailingModel())
            .AddAgent(new AgentDefinition { Name = "broken", Model = "failing" })
            .AddTrigger(new TopicTriggerDefinition { Name = "esc", Agent = "broken", Topic = "ticket.escalated" }));
        var (_, body) = await SendAsync(Event("ev-2"));
        var runId = (string)body["runs"]![0]!["run"]!["id"]!;
        await _host.WaitAsync(runId);
        // A run submitted by hand (not by a trigger) that fails is no dead letter.
        var manual = await _host.Engine.SubmitAsync(new RunRequest("broken", "by hand"), Ct);
        await _host.WaitAsync(manual.Run.Id);

        // Forget the dead letter (as if the host crashed before writing it), then restart: the sweep finds the run.
        await using (var c = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={_host.Db};Pooling=false"))
        {
            await c.OpenAsync(Ct);
            await using var cmd = c.CreateCommand();
            cmd.CommandText = "DELETE FROM dead_letters";
            await cmd.ExecuteNonQueryAsync(Ct);
        }
        await _host.RestartAsync(b =>
        {
            b.AddChatClient("failing", new FailingModel())
                .AddAgent(new AgentDefinition { Name = "broken", Model = "failing" })
                .AddTrigger(new TopicTriggerDefinition { Name = "esc", Agent = "broken", Topic = "ticket.escalated" });
        });
        await _host.App.Services.GetRequiredService<Triggers.DeadLetterRecorder>().Swept.WaitAsync(TimeSpan.FromSeconds(20), Ct);
        var letters = await _host.App.Services.GetRequiredService<IEventStore>().ListDeadLettersAsync(cancellationToken: Ct);
        Assert.Equal(runId, Assert.Single(letters).RunId);
    }

    // ---- backpressure ----

    /// <summary>One run slot, held by a gated run of "slow": runs of "echo" accepted meanwhile wait in the queue.</summary>
    private async Task StartBlockedAsync(Action<BureauBuilder>? more = null)
    {
        await _host.StartAsync(b =>
        {
            b.Services.Configure<BureauOptions>(o =>
            {
                o.MaxConcurrentRuns = 1;
                o.AgentQueueLimits["echo"] = 2;
                o.QueueFullRetryAfter = TimeSpan.FromSeconds(7);
            });
            b.AddTrigger(Hook("{{$.issue.title}}"))
                .AddTrigger(new TopicTriggerDefinition { Name = "esc", Agent = "echo", Topic = "ticket.escalated" });
            more?.Invoke(b);
        });
        var blocker = await _host.Engine.SubmitAsync(new RunRequest("slow", "hold"), Ct);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(20));
        await foreach (var e in _host.Engine.WatchAsync(blocker.Run.Id, includeActivity: true, cancellationToken: timeout.Token))
            if (e.Activity == "model.started") break;
    }

    [Fact]
    public async Task QueueFull_Webhook429WithRetryAfter_StoresNothing_ThenAcceptsOnceDrained()
    {
        await StartBlockedAsync();
        Assert.Equal(HttpStatusCode.Accepted, (await SendAsync(GitHub("""{"issue":{"title":"a"}}""", "d-1"))).Response.StatusCode);
        Assert.Equal(HttpStatusCode.Accepted, (await SendAsync(GitHub("""{"issue":{"title":"b"}}""", "d-2"))).Response.StatusCode);
        var before = await RunCountAsync();

        using var refused = await _host.Client.SendAsync(GitHub("""{"issue":{"title":"c"}}""", "d-3"), Ct);
        var problem = await Http.ProblemAsync(refused, 429, "agent");
        Assert.Equal(("queue-full", 2, 2), ((string?)problem["code"], (int)problem["queued"]!, (int)problem["limit"]!));
        Assert.Equal(TimeSpan.FromSeconds(7), refused.Headers.RetryAfter?.Delta);
        Assert.Equal(before, await RunCountAsync());

        // A redelivery of an event that has its run is still a duplicate, full queue or not.
        var (redelivered, duplicate) = await SendAsync(GitHub("""{"issue":{"title":"a"}}""", "d-1"));
        Assert.Equal((HttpStatusCode.OK, "duplicate"), (redelivered.StatusCode, (string?)duplicate["status"]));
        Assert.Equal(before, await RunCountAsync());

        // An event for two runs of a full agent is refused as a whole; POST /v1/runs too.
        using var ev = await _host.Client.SendAsync(Event("ev-9"), Ct);
        await Http.ProblemAsync(ev, 429);
        using var run = await _host.Client.SendAsync(Http.Json(HttpMethod.Post, "/v1/runs", """{"agent":"echo","input":"x"}"""), Ct);
        await Http.ProblemAsync(run, 429);
        Assert.Equal(before, await RunCountAsync());
        Assert.Equal(2, _host.Engine.QueuedRuns("echo"));

        // Other agents are not limited.
        using var pager = await _host.Client.SendAsync(Http.Json(HttpMethod.Post, "/v1/runs", """{"agent":"pager","input":"x"}"""), Ct);
        Assert.Equal(HttpStatusCode.Accepted, pager.StatusCode);

        _host.Gate.Open("hold");
        foreach (var r in (await _host.Engine.ListRunsAsync(new RunQuery { Agent = "echo" }, Ct)).Items) await _host.WaitAsync(r.Id);
        Assert.Equal(0, _host.Engine.QueuedRuns("echo"));
        var (accepted, body) = await SendAsync(GitHub("""{"issue":{"title":"c"}}""", "d-3"));
        Assert.Equal(HttpStatusCode.Accepted, accepted.StatusCode);
        Assert.Equal("c", (await _host.WaitAsync((string)body["run"]!["id"]!)).Input);
    }

    [Fact]
    public async Task QueueFull_ACloudEventSentAgain_IsAnsweredWithItsRuns_ANewOneIsRefused()
    {
        await StartBlockedAsync();
        var (first, a) = await SendAsync(Event("ev-1"));
        Assert.Equal(HttpStatusCode.Accepted, first.StatusCode);
        Assert.Equal(HttpStatusCode.Accepted, (await SendAsync(Event("ev-2"))).Response.StatusCode); // echo's queue is now full (2)
        var before = await RunCountAsync();

        var (again, b) = await SendAsync(Event("ev-1"));
        Assert.Equal(HttpStatusCode.OK, again.StatusCode);
        Assert.True((bool)b["runs"]![0]!["duplicate"]!);
        Assert.Equal((string?)a["runs"]![0]!["run"]!["id"], (string?)b["runs"]![0]!["run"]!["id"]);
        using var fresh = await _host.Client.SendAsync(Event("ev-3"), Ct);
        await Http.ProblemAsync(fresh, 429);
        Assert.Equal(before, await RunCountAsync());
        _host.Gate.Open("hold");
    }

    [Fact]
    public async Task QueueFull_PostRunsWithKeySeenBefore_AnsweredWithItsRun()
    {
        await StartBlockedAsync();
        var first = Http.Json(HttpMethod.Post, "/v1/runs", """{"agent":"echo","input":"x"}""");
        first.Headers.Add("Idempotency-Key", "k-1");
        using var a = await _host.Client.SendAsync(first, Ct);
        Assert.Equal(HttpStatusCode.Accepted, a.StatusCode);
        // The queue is now full (2), its newest run keyed k-10: the key k-1 is looked up exactly, not as a prefix.
        await _host.Engine.SubmitAsync(new RunRequest("echo", "y", "k-10"), Ct);
        var again = Http.Json(HttpMethod.Post, "/v1/runs", """{"agent":"echo","input":"x"}""");
        again.Headers.Add("Idempotency-Key", "k-1");
        using var b = await _host.Client.SendAsync(again, Ct);
        Assert.Equal(HttpStatusCode.OK, b.StatusCode);
        Assert.Equal((string?)(await Http.BodyAsync(a))["id"], (string?)(await Http.BodyAsync(b))["id"]);
        _host.Gate.Open("hold");
    }

    // ---- emit: event chains ----

    [Fact]
    public async Task Emit_PublishesToTopic_SubscriberRunStarts_OnceWithRunAndStepInItsKey()
    {
        await _host.StartAsync(b => b
            .AddChatClient("escalating", new EscalatingModel())
            .AddTool(new EmitToolDefinition { Name = "escalate", Topic = "ticket.escalated", Description = "Escalate the ticket." })
            .AddAgent(new AgentDefinition { Name = "triage", Model = "escalating", Tools = ["escalate"] })
            .AddTrigger(new TopicTriggerDefinition { Name = "resolve", Agent = "echo", Topic = "ticket.escalated", Input = "resolve {{$.data.ticket}} from {{$.source}}" }));
        var triage = await _host.Engine.SubmitAsync(new RunRequest("triage", "T-42"), Ct);
        var done = await _host.WaitAsync(triage.Run.Id);
        Assert.Equal(RunStatus.Succeeded, done.Status);

        // The tool's result names the event (RUN:STEP) and the subscriber's run.
        var journal = await _host.Engine.ReadJournalAsync(triage.Run.Id, cancellationToken: Ct);
        var result = journal.Select(r => r.Entry).OfType<ToolCompleted>().Single();
        Assert.False(result.IsError, result.Content);
        var published = JsonNode.Parse(result.Content)!;
        var eventId = (string)published["id"]!;
        Assert.StartsWith(triage.Run.Id + ":", eventId);
        var chained = await _host.WaitAsync((string)published["runs"]![0]!["run"]!);
        Assert.Equal(("echo", $"resolve T-42 from /bureau/runs/{triage.Run.Id}", $"event:{eventId}:resolve", "trigger:resolve"),
            (chained.Agent, chained.Input, chained.IdempotencyKey, chained.Actor));

        // Published again with the same id (a retried or replayed call): nothing new starts.
        var outcomes = await _host.App.Services.GetRequiredService<Triggers.TriggerIngest>().PublishAsync(
            JsonDocument.Parse(new JsonObject { ["specversion"] = "1.0", ["id"] = eventId, ["source"] = "/x", ["type"] = "ticket.escalated", ["data"] = new JsonObject { ["ticket"] = "T-42" } }.ToJsonString()).RootElement, Ct);
        Assert.False(outcomes.Single().Result!.Created);
        Assert.Equal(2, await RunCountAsync());
    }

    // ---- priorities and ordering keys ----

    private async Task StartedAsync(string runId)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(20));
        await foreach (var e in _host.Engine.WatchAsync(runId, includeActivity: true, cancellationToken: timeout.Token))
            if (e.Activity == "model.started") return;
    }

    [Fact]
    public async Task Priority_HigherRunPickedFirstWhenASlotFrees()
    {
        await _host.StartAsync(b => b.Services.Configure<BureauOptions>(o => o.MaxConcurrentRuns = 1));
        var blocker = await _host.Engine.SubmitAsync(new RunRequest("slow", "hold"), Ct);
        await StartedAsync(blocker.Run.Id);
        var low = await _host.Engine.SubmitAsync(new RunRequest("slow", "low"), Ct);
        var high = await _host.Engine.SubmitAsync(new RunRequest("slow", "high") { Priority = 5 }, Ct);

        _host.Gate.Open("hold");
        await StartedAsync(high.Run.Id);
        Assert.Equal(RunStatus.Queued, (await _host.Engine.GetRunAsync(low.Run.Id, Ct))!.Status);
        _host.Gate.Open("high");
        _host.Gate.Open("low");
        Assert.Equal(RunStatus.Succeeded, (await _host.WaitAsync(low.Run.Id)).Status);
    }

    [Fact]
    public async Task OrderingKey_SameKeyRunsOneAtATimeInArrivalOrder_OthersGoOn()
    {
        await _host.StartAsync(b => b.Services.Configure<BureauOptions>(o => o.MaxConcurrentRuns = 4));
        var a = await _host.Engine.SubmitAsync(new RunRequest("slow", "a") { OrderingKey = "issue:7" }, Ct);
        var b = await _host.Engine.SubmitAsync(new RunRequest("slow", "b") { OrderingKey = "issue:7" }, Ct);
        var c = await _host.Engine.SubmitAsync(new RunRequest("slow", "c") { OrderingKey = "issue:8" }, Ct);
        await StartedAsync(a.Run.Id);
        await StartedAsync(c.Run.Id);
        _host.Gate.Open("b");
        _host.Gate.Open("c");
        await _host.WaitAsync(c.Run.Id); // another key is not held up
        Assert.Equal(RunStatus.Queued, (await _host.Engine.GetRunAsync(b.Run.Id, Ct))!.Status);

        _host.Gate.Open("a");
        var first = await _host.WaitAsync(a.Run.Id);
        var second = await _host.WaitAsync(b.Run.Id);
        Assert.Equal((RunStatus.Succeeded, RunStatus.Succeeded), (first.Status, second.Status));
        var bStarted = (await _host.Engine.ReadJournalAsync(b.Run.Id, cancellationToken: Ct)).Skip(1).First().At;
        Assert.True(bStarted >= first.UpdatedAt, $"b's first step ({bStarted:o}) came before a ended ({first.UpdatedAt:o})");
    }

    [Fact]
    public async Task WebhookOrderingKey_RenderedFromThePayload()
    {
        await _host.StartAsync(b => b.AddTrigger(new WebhookTriggerDefinition
        {
            Name = "gh", Agent = "slow", Source = WebhookSource.GitHub, Secret = Secret, Input = "{{$.issue.title}}", OrderingKey = "{{$.issue.number}}", Priority = 3,
        }));
        var (_, first) = await SendAsync(GitHub("""{"issue":{"number":7,"title":"one"}}""", "d-1"));
        var (_, second) = await SendAsync(GitHub("""{"issue":{"number":7,"title":"two"}}""", "d-2"));
        var firstId = (string)first["run"]!["id"]!;
        var secondId = (string)second["run"]!["id"]!;
        await StartedAsync(firstId);
        _host.Gate.Open("two");
        Assert.Equal(RunStatus.Queued, (await _host.Engine.GetRunAsync(secondId, Ct))!.Status);
        _host.Gate.Open("one");
        Assert.Equal(RunStatus.Succeeded, (await _host.WaitAsync(secondId)).Status);
    }

    // ---- poll ----

    [Fact]
    public async Task Poll_OneRunPerNewRow_CursorDurableAcrossRestart()
    {
        var source = Path.Combine(Path.GetDirectoryName(_host.Db)!, "tickets.db");
        var cs = $"Data Source={source};Pooling=false";
        async Task ExecAsync(string sql)
        {
            await using var c = new Microsoft.Data.Sqlite.SqliteConnection(cs);
            await c.OpenAsync(Ct);
            await using var cmd = c.CreateCommand();
            cmd.CommandText = sql;
            await cmd.ExecuteNonQueryAsync(Ct);
        }
        await ExecAsync("CREATE TABLE tickets(id INTEGER PRIMARY KEY, title TEXT); INSERT INTO tickets VALUES(1, 'refund'), (2, 'login');");
        var poll = new PollTriggerDefinition
        {
            Name = "tickets", Agent = "echo", Provider = "Microsoft.Data.Sqlite", ConnectionString = cs, CursorColumn = "id",
            Query = "SELECT id, title FROM tickets WHERE id > @cursor ORDER BY id LIMIT 100", Every = TimeSpan.FromHours(1), Input = "ticket {{$.data.id}}: {{$.data.title}}",
        };
        await _host.StartAsync(b => b.AddTrigger(poll));
        var polls = _host.App.Services.GetRequiredService<Triggers.PollService>();
        await polls.PollOnceAsync(poll, Ct); // the service polled at start too: the keys make that harmless
        var runs = (await _host.Engine.ListRunsAsync(new RunQuery { IdempotencyKeyPrefix = "poll:tickets:" }, Ct)).Items.OrderBy(r => r.IdempotencyKey).ToList();
        Assert.Equal(["poll:tickets:1", "poll:tickets:2"], runs.Select(r => r.IdempotencyKey));
        Assert.Equal("ticket 1: refund", (await _host.WaitAsync(runs[0].Id)).Input);
        Assert.Equal("2", await _host.App.Services.GetRequiredService<IEventStore>().GetCursorAsync("tickets", Ct));

        await ExecAsync("INSERT INTO tickets VALUES(3, 'invoice');");
        await _host.RestartAsync(b => b.AddTrigger(poll));
        await _host.App.Services.GetRequiredService<Triggers.PollService>().PollOnceAsync(poll, Ct);
        runs = (await _host.Engine.ListRunsAsync(new RunQuery { IdempotencyKeyPrefix = "poll:tickets:" }, Ct)).Items.OrderBy(r => r.IdempotencyKey).ToList();
        Assert.Equal(["poll:tickets:1", "poll:tickets:2", "poll:tickets:3"], runs.Select(r => r.IdempotencyKey));
        Assert.Equal("3", await _host.App.Services.GetRequiredService<IEventStore>().GetCursorAsync("tickets", Ct));
        Assert.Equal(0, await _host.App.Services.GetRequiredService<Triggers.PollService>().PollOnceAsync(poll, Ct));
    }

    [Fact]
    public async Task Poll_QueryWithoutTheCursorColumn_ClearError()
    {
        var poll = new PollTriggerDefinition
        {
            Name = "bad", Agent = "echo", Provider = "Microsoft.Data.Sqlite", ConnectionString = "Data Source=:memory:", CursorColumn = "id",
            Query = "SELECT 1 AS other WHERE @cursor IS NOT NULL", Every = TimeSpan.FromHours(1),
        };
        await _host.StartAsync(b => b.AddTrigger(poll));
        var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => _host.App.Services.GetRequiredService<Triggers.PollService>().PollOnceAsync(poll, Ct));
        Assert.Contains("poll trigger 'bad': the query returns no column 'id' (cursorColumn); it returns other", ex.Message);
    }
}
