using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Xunit;

namespace Bureau.Dashboard.Tests;

/// <summary>A model that answers "echo: INPUT" at once, with a few tokens.</summary>
public sealed class EchoModel : IChatClient
{
    public Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var input = messages.First(m => m.Role == ChatRole.User).Text;
        return Task.FromResult(new ChatResponse(new ChatMessage(ChatRole.Assistant, "echo: " + input))
        {
            ModelId = "echo",
            Usage = new UsageDetails { InputTokenCount = 12, OutputTokenCount = 5 },
        });
    }

    public IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
        throw new NotSupportedException();

    public object? GetService(Type serviceType, object? serviceKey = null) => null;

    public void Dispose() { }
}

/// <summary>A model that is down: every call fails as a 503 would.</summary>
public sealed class DownModel : IChatClient
{
    public Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
        throw new HttpRequestException("503 Service Unavailable", null, System.Net.HttpStatusCode.ServiceUnavailable);

    public IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
        throw new NotSupportedException();

    public object? GetService(Type serviceType, object? serviceKey = null) => null;

    public void Dispose() { }
}

/// <summary>
/// The real Bureau host (Kestrel on a free loopback port, SQLite in a temp folder) with the Dashboard at <c>/</c>
/// and agents for each page: <c>echo</c>; <c>looker</c> (scripted: calls the <c>lookup</c> tool, which waits until
/// the test opens it, then answers; <c>look-direct</c> is a model for its what-ifs, answering without a tool); <c>refunder</c> (a refund over 100 needs an approval); <c>fragile</c> (its model is down; two attempts);
/// the team <c>pair</c> (echo, then echo).
/// </summary>
public sealed class DashboardHost : IAsyncDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bureau-dashboard-tests", Guid.NewGuid().ToString("n"));
    private readonly TaskCompletionSource _lookupGate = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly List<string> _refunds = [];

    public DashboardHost()
    {
        Directory.CreateDirectory(_dir);
        Db = Path.Combine(_dir, "bureau.db");
    }

    public string Db { get; }
    public WebApplication App { get; private set; } = null!;
    public HttpClient Client { get; private set; } = null!;
    public string BaseUrl { get; private set; } = null!;
    public BureauEngine Engine => App.Services.GetRequiredService<BureauEngine>();
    public IReadOnlyList<string> Refunds { get { lock (_refunds) return [.. _refunds]; } }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>Lets the <c>lookup</c> tool answer.</summary>
    public void OpenLookup() => _lookupGate.TrySetResult();

    public async Task StartAsync(string dashboardPath = "/")
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ContentRootPath = _dir });
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        builder.Services.AddBureau()
            .AddHttpApi(o => o.HeartbeatInterval = TimeSpan.FromSeconds(1))
            .UseSqliteStorage(Db)
            .AddChatClient("echo", new EchoModel())
            .AddModel(new ChatClientModelDefinition { Name = "down", Client = new DownModel(), Retry = new RetrySettings { MaxAttempts = 2, Delay = TimeSpan.FromMilliseconds(100) } })
            .AddModel(new ScriptedModelDefinition
            {
                Name = "look-script",
                Rules =
                [
                    new ScriptRule { When = new ScriptCondition { TurnFrom = 1, TurnTo = 1 }, Calls = [new ScriptToolCall { Tool = "lookup", Arguments = new JsonObject { ["order"] = 7 } }] },
                    new ScriptRule { Reply = "found: {{last}}" },
                ],
            })
            .AddModel(new ScriptedModelDefinition
            {
                Name = "look-direct", // what-if: the looker on a model that answers without looking
                Rules = [new ScriptRule { Reply = "answered without looking" }],
            })
            .AddModel(new ScriptedModelDefinition
            {
                Name = "refund-script",
                Rules =
                [
                    new ScriptRule { When = new ScriptCondition { TurnFrom = 1, TurnTo = 1 }, Calls = [new ScriptToolCall { Tool = "refund", Arguments = new JsonObject { ["amount"] = 250 } }] },
                    new ScriptRule { Reply = "done: {{last}}" },
                ],
            })
            .AddTool(AIFunctionFactory.Create(async (int order) =>
            {
                await _lookupGate.Task.WaitAsync(TimeSpan.FromMinutes(2));
                return $"order {order} shipped";
            }, "lookup", "Looks an order up."), ToolEffect.Read)
            .AddTool(AIFunctionFactory.Create((int amount) => { lock (_refunds) _refunds.Add("refund " + amount); return "refunded " + amount; }, "refund", "Refunds an order."), ToolEffect.Write)
            .AddAgent(new AgentDefinition { Name = "echo", Model = "echo", Description = "Answers with its input." })
            .AddAgent(new AgentDefinition { Name = "looker", Model = "look-script", Tools = ["lookup"], Description = "Looks orders up." })
            .AddAgent(new AgentDefinition { Name = "refunder", Model = "refund-script", Tools = ["refund"], Description = "Refunds orders." })
            .AddAgent(new AgentDefinition { Name = "fragile", Model = "down", Description = "Its model is down." })
            .AddTeam(new TeamDefinition { Name = "pair", Pattern = TeamPattern.Sequential, Members = ["echo", "echo"], Description = "Echo twice." })
            .AddPolicy(new PolicyRule
            {
                Name = "big-refunds",
                When = new PolicyConditions { Tools = ["refund"], Arguments = [ArgumentCondition.Parse("$.amount > 100", out _)!] },
                Action = PolicyAction.RequireApproval,
                Reason = "refunds over 100 need a lead",
                Approval = new ApprovalSpec { Levels = [new(["support-leads"], TimeSpan.FromMinutes(30))] },
            });
        App = builder.Build();
        App.MapBureau();
        App.MapBureauDashboard(dashboardPath);
        await App.StartAsync(Ct);
        BaseUrl = App.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.Single().TrimEnd('/');
        Client = new HttpClient { BaseAddress = new Uri(BaseUrl), Timeout = TimeSpan.FromSeconds(60) };
    }

    /// <summary>Submits a run over HTTP (as a user would); returns its id.</summary>
    public async Task<string> SubmitAsync(string agent, string input, string? key = null)
    {
        using var req = new HttpRequestMessage(HttpMethod.Post, "/v1/runs")
        {
            Content = new StringContent(new JsonObject { ["agent"] = agent, ["input"] = input }.ToJsonString(), Encoding.UTF8, "application/json"),
        };
        if (key is not null) req.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        using var res = await Client.SendAsync(req, Ct);
        var body = await res.Content.ReadAsStringAsync(Ct);
        Assert.True(res.IsSuccessStatusCode, $"POST /v1/runs for {agent}: {(int)res.StatusCode} {body}");
        return (string)JsonNode.Parse(body)!["id"]!;
    }

    /// <summary>Waits (up to a minute) until the run ends, or waits when <paramref name="orWaiting"/>.</summary>
    public async Task<RunRecord> WaitAsync(string id, bool orWaiting = true)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(60));
        try
        {
            await foreach (var _ in Engine.WatchAsync(id, 0, untilWaiting: orWaiting, cancellationToken: timeout.Token)) { }
        }
        catch (OperationCanceledException) when (!Ct.IsCancellationRequested)
        {
            var run = await Engine.GetRunAsync(id, CancellationToken.None);
            throw new TimeoutException($"run {id} did not {(orWaiting ? "finish or wait" : "finish")} within 60 s; it is {run?.Status}");
        }
        return (await Engine.GetRunAsync(id, Ct))!;
    }

    public async Task<string> CreateKeyAsync(ApiKeyRole role)
    {
        var store = new Storage.Sqlite.SqliteApiKeyStore(new Storage.Sqlite.SqliteStoreOptions { Path = Db });
        await store.InitializeAsync(Ct);
        var key = ApiKeys.Create(role, role.ToWireName(), DateTimeOffset.UtcNow);
        await store.AddAsync(key.Record, Ct);
        return key.Key;
    }

    public async ValueTask DisposeAsync()
    {
        Client?.Dispose();
        if (App is not null)
        {
            await App.StopAsync(CancellationToken.None);
            await App.DisposeAsync();
        }
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
