using System.Net;
using System.Text.Json.Nodes;
using Microsoft.Extensions.AI;
using Xunit;

namespace Bureau.Hosting.Tests;

/// <summary>/v1/approvals: the inbox of approvals, decisions with first-wins, who may answer by key name or role.</summary>
public sealed class ApprovalApiTests : IAsyncDisposable
{
    private readonly TestHost _host = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;
    private readonly List<string> _refunds = [];

    public ValueTask DisposeAsync() => _host.DisposeAsync();

    private Task StartAsync(int required = 1) => _host.StartAsync(b => b
        .AddModel(new ScriptedModelDefinition
        {
            Name = "script",
            Rules =
            [
                new ScriptRule { When = new ScriptCondition { TurnFrom = 1, TurnTo = 1 }, Calls = [new ScriptToolCall { Tool = "refund", Arguments = new JsonObject { ["amount"] = 250 } }] },
                new ScriptRule { Reply = "done: {{last}}" },
            ],
        })
        .AddTool(AIFunctionFactory.Create((int amount) => { lock (_refunds) _refunds.Add("refund " + amount); return "refunded " + amount; }, "refund"), ToolEffect.Write)
        .AddAgent(new AgentDefinition { Name = "refunder", Model = "script", Tools = ["refund"] })
        .AddPolicy(new PolicyRule
        {
            Name = "big-refunds",
            When = new PolicyConditions { Tools = ["refund"], Arguments = [ArgumentCondition.Parse("$.amount > 100", out _)!] },
            Action = PolicyAction.RequireApproval,
            Reason = "refunds over 100 need a lead",
            Approval = new ApprovalSpec { Levels = [new(["support-leads"], TimeSpan.FromMinutes(30))], EditableArguments = true, Required = required },
        }));

    private async Task<(string RunId, string ApprovalId)> WaitingRunAsync()
    {
        using var res = await _host.Client.SendAsync(Http.Json(HttpMethod.Post, "/v1/runs", """{"agent":"refunder","input":"refund order 7"}"""), Ct);
        var runId = (string)(await Http.BodyAsync(res))["id"]!;
        var run = await _host.WaitAsync(runId);
        Assert.Equal(RunStatus.Waiting, run.Status);
        return (runId, $"{runId}:{((ApprovalWait)run.WaitingFor!).Step}");
    }

    private async Task<HttpResponseMessage> DecideAsync(string approvalId, string body) =>
        await _host.Client.SendAsync(Http.Json(HttpMethod.Post, $"/v1/approvals/{approvalId}/decision", body), Ct);

    [Fact]
    public async Task Inbox_ListsTheProposedCall_ApproveWithEditedArguments_RunsTheEdit()
    {
        await StartAsync();
        var (runId, approvalId) = await WaitingRunAsync();

        var inbox = (await Http.BodyAsync(await _host.Client.GetAsync("/v1/approvals?state=open", Ct)))["items"]!.AsArray();
        var item = Assert.Single(inbox)!;
        Assert.Equal((approvalId, "refund", 250, "big-refunds"), ((string)item["id"]!, (string)item["tool"]!, (int)item["arguments"]!["amount"]!, (string)item["rule"]!));
        Assert.Equal("support-leads", (string)item["approvers"]![0]!);
        Assert.NotNull(item["deadline"]);

        using var res = await DecideAsync(approvalId, """{"decision":"approve","reason":"partial refund","arguments":{"amount":120}}""");
        Assert.Equal(HttpStatusCode.Accepted, res.StatusCode);
        var run = await _host.WaitAsync(runId);
        Assert.Equal((RunStatus.Succeeded, "done: refunded 120"), (run.Status, run.Output));
        Assert.Equal(["refund 120"], _refunds);
        Assert.Empty((await Http.BodyAsync(await _host.Client.GetAsync("/v1/approvals", Ct)))["items"]!.AsArray());
    }

    [Fact]
    public async Task EditedArgumentsTheToolRefuses_Are400NamingArguments_TheApprovalStaysOpen()
    {
        await StartAsync();
        var (runId, approvalId) = await WaitingRunAsync();

        using (var bad = await DecideAsync(approvalId, """{"decision":"approve","arguments":{"amount":"lots"}}"""))
        {
            var problem = await Http.ProblemAsync(bad, 400, runId: runId);
            Assert.Equal("arguments", (string?)problem["field"]);
            Assert.Contains("invalid arguments for tool 'refund'", (string?)problem["detail"]);
            Assert.Contains("amount", (string?)problem["detail"]);
        }
        Assert.Equal(approvalId, (string?)Assert.Single((await Http.BodyAsync(await _host.Client.GetAsync("/v1/approvals?state=open", Ct)))["items"]!.AsArray())!["id"]);
        Assert.Empty(_refunds);

        using var res = await DecideAsync(approvalId, """{"decision":"approve","arguments":{"amount":120}}""");
        Assert.Equal(HttpStatusCode.Accepted, res.StatusCode);
        Assert.Equal((RunStatus.Succeeded, "done: refunded 120"), ((await _host.WaitAsync(runId)).Status, (await _host.WaitAsync(runId)).Output));
    }

    [Fact]
    public async Task SecondDecision_Is409NamingWhoAnswered_ABadDecisionIs400()
    {
        await StartAsync();
        var (_, approvalId) = await WaitingRunAsync();
        using (var bad = await DecideAsync(approvalId, """{"decision":"maybe"}"""))
        {
            Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
            Assert.Equal("decision", (string?)(await Http.BodyAsync(bad))["field"]);
        }
        using (var first = await DecideAsync(approvalId, """{"decision":"reject","reason":"already refunded"}"""))
            Assert.Equal(HttpStatusCode.Accepted, first.StatusCode);
        using var second = await DecideAsync(approvalId, """{"decision":"approve"}""");
        Assert.Equal(HttpStatusCode.Conflict, second.StatusCode);
        Assert.Contains("already answered by loopback (rejected)", (string?)(await Http.BodyAsync(second))["detail"]);
        Assert.Empty(_refunds);
    }

    /// <summary>A key with this role and name (the name is who the key answers as: a person, or a group such as support-leads).</summary>
    private async Task<string> KeyAsync(ApiKeyRole role, string name)
    {
        var store = new Storage.Sqlite.SqliteApiKeyStore(new Storage.Sqlite.SqliteStoreOptions { Path = _host.Db });
        await store.InitializeAsync(Ct);
        var key = ApiKeys.Create(role, name, DateTimeOffset.UtcNow);
        await store.AddAsync(key.Record, Ct);
        return key.Key;
    }

    private async Task<JsonArray> InboxAsync(string key)
    {
        using var res = await _host.Client.SendAsync(Http.Get("/v1/approvals?state=open", key), Ct);
        Assert.Equal(HttpStatusCode.OK, res.StatusCode);
        return (await Http.BodyAsync(res))["items"]!.AsArray();
    }

    [Fact]
    public async Task Inbox_ShowsAnApprovalOnlyToItsApproversAndAdmins_AnotherApproversDecisionIs403AndChangesNothing()
    {
        await StartAsync();
        var (runId, approvalId) = await WaitingRunAsync();
        var lead = await KeyAsync(ApiKeyRole.Approver, "support-leads");
        var bob = await KeyAsync(ApiKeyRole.Approver, "bob");
        var admin = await KeyAsync(ApiKeyRole.Admin, "root");

        Assert.Equal(approvalId, (string?)Assert.Single(await InboxAsync(lead))!["id"]);
        Assert.Empty(await InboxAsync(bob)); // not among support-leads: not theirs to see
        Assert.Equal(approvalId, (string?)Assert.Single(await InboxAsync(admin))!["id"]);

        using (var refused = await _host.Client.SendAsync(Http.Json(HttpMethod.Post, $"/v1/approvals/{approvalId}/decision", """{"decision":"approve"}""", bob), Ct))
        {
            var problem = await Http.ProblemAsync(refused, 403, runId: runId);
            Assert.Contains("bob may not answer approval", (string?)problem["detail"]);
            Assert.Contains("its approvers are support-leads", (string?)problem["detail"]);
        }
        var run = (await _host.Engine.GetRunAsync(runId, Ct))!;
        Assert.Equal(RunStatus.Waiting, run.Status); // the refused decision changed nothing
        Assert.Equal(approvalId, $"{runId}:{((ApprovalWait)run.WaitingFor!).Step}");
        Assert.Single(await InboxAsync(lead));
        Assert.Empty(_refunds);

        using (var ok = await _host.Client.SendAsync(Http.Json(HttpMethod.Post, $"/v1/approvals/{approvalId}/decision", """{"decision":"approve"}""", lead), Ct))
            Assert.Equal(HttpStatusCode.Accepted, ok.StatusCode);
        run = await _host.WaitAsync(runId);
        Assert.Equal((RunStatus.Succeeded, "done: refunded 250"), (run.Status, run.Output));
        Assert.Equal(["refund 250"], _refunds);
    }

    [Fact]
    public async Task UnknownApprovalId_Is404()
    {
        await StartAsync();
        using var res = await DecideAsync("nope", """{"decision":"approve"}""");
        Assert.Equal(HttpStatusCode.NotFound, res.StatusCode);
        using var res2 = await DecideAsync("01m00000000000000000:5", """{"decision":"approve"}""");
        Assert.Equal(HttpStatusCode.NotFound, res2.StatusCode);
    }
}
