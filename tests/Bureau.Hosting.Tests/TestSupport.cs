using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Xunit;

namespace Bureau.Hosting.Tests;

/// <summary>A model that answers "echo: INPUT" at once.</summary>
public sealed class EchoModel : IChatClient
{
    public Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var input = messages.First(m => m.Role == ChatRole.User).Text;
        return Task.FromResult(new ChatResponse(new ChatMessage(ChatRole.Assistant, "echo: " + input))
        {
            ModelId = "echo",
            Usage = new UsageDetails { InputTokenCount = 3, OutputTokenCount = 2 },
        });
    }

    public IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
        throw new NotSupportedException();

    public object? GetService(Type serviceType, object? serviceKey = null) => null;

    public void Dispose() { }
}

/// <summary>A model that answers only when the test opens the gate for the run's input (or the call is canceled).</summary>
public sealed class GateModel : IChatClient
{
    private readonly Dictionary<string, TaskCompletionSource> _gates = new(StringComparer.Ordinal);

    private TaskCompletionSource Gate(string input)
    {
        lock (_gates)
        {
            if (!_gates.TryGetValue(input, out var g)) _gates[input] = g = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return g;
        }
    }

    public void Open(string input) => Gate(input).TrySetResult();

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var input = messages.First(m => m.Role == ChatRole.User).Text;
        await Gate(input).Task.WaitAsync(cancellationToken);
        return new ChatResponse(new ChatMessage(ChatRole.Assistant, "opened: " + input)) { ModelId = "gate" };
    }

    public IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
        throw new NotSupportedException();

    public object? GetService(Type serviceType, object? serviceKey = null) => null;

    public void Dispose() { }
}

/// <summary>A Bureau host on TestServer (in memory, no socket) with its own database.</summary>
public sealed class TestHost : IAsyncDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bureau-hosting-tests", Guid.NewGuid().ToString("n"));

    public TestHost()
    {
        Directory.CreateDirectory(_dir);
        Db = Path.Combine(_dir, "bureau.db");
    }

    public string Db { get; }
    public GateModel Gate { get; } = new();
    public WebApplication App { get; private set; } = null!;
    public HttpClient Client { get; private set; } = null!;
    public BureauEngine Engine => App.Services.GetRequiredService<BureauEngine>();

    public async Task StartAsync(Action<BureauBuilder>? configure = null, Action<WebApplicationBuilder>? configureHost = null, bool testServer = true,
        Action<WebApplication>? mapApp = null)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ContentRootPath = _dir });
        if (testServer) builder.WebHost.UseTestServer();
        builder.Logging.ClearProviders();
        var bureau = builder.Services.AddBureau()
            .AddHttpApi(o =>
            {
                o.HeartbeatInterval = TimeSpan.FromMilliseconds(50);
                o.MaxRequestBodyBytes = 64 * 1024;
            })
            .UseSqliteStorage(Db)
            .AddChatClient("echo", new EchoModel())
            .AddChatClient("gate", Gate)
            .AddAgent(new AgentDefinition { Name = "echo", Model = "echo", Description = "Answers with its input." })
            .AddAgent(new AgentDefinition { Name = "pager", Model = "echo" })
            .AddAgent(new AgentDefinition { Name = "slow", Model = "gate", Instructions = "Wait for the gate." });
        configure?.Invoke(bureau);
        configureHost?.Invoke(builder);
        App = builder.Build();
        App.MapBureau();
        mapApp?.Invoke(App);
        await App.StartAsync(TestContext.Current.CancellationToken);
        if (testServer) Client = App.GetTestClient();
    }

    /// <summary>Stops the host (gracefully) and starts it again on the same database.</summary>
    public async Task RestartAsync(Action<BureauBuilder>? configure = null, Action<WebApplicationBuilder>? configureHost = null)
    {
        Client?.Dispose();
        await App.StopAsync(CancellationToken.None);
        await App.DisposeAsync();
        await StartAsync(configure, configureHost);
    }

    /// <summary>Waits until the run ends or waits (from its journal, so no event can be missed).</summary>
    public async Task<RunRecord> WaitAsync(string id)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(20));
        try
        {
            await foreach (var _ in Engine.WatchAsync(id, 0, untilWaiting: true, cancellationToken: timeout.Token)) { }
        }
        catch (OperationCanceledException)
        {
            var run = await Engine.GetRunAsync(id);
            throw new TimeoutException($"run {id} did not finish or wait within 20 s; it is {run?.Status}");
        }
        return (await Engine.GetRunAsync(id))!;
    }

    public async Task<string> CreateKeyAsync(ApiKeyRole role)
    {
        var store = new Storage.Sqlite.SqliteApiKeyStore(new Storage.Sqlite.SqliteStoreOptions { Path = Db });
        await store.InitializeAsync();
        var key = ApiKeys.Create(role, role.ToWireName(), DateTimeOffset.UtcNow);
        await store.AddAsync(key.Record);
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

public static class Http
{
    public static HttpRequestMessage Json(HttpMethod method, string url, string json, string? key = null)
    {
        var req = new HttpRequestMessage(method, url) { Content = new StringContent(json, Encoding.UTF8, "application/json") };
        if (key is not null) req.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return req;
    }

    public static HttpRequestMessage Get(string url, string? key = null)
    {
        var req = new HttpRequestMessage(HttpMethod.Get, url);
        if (key is not null) req.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return req;
    }

    public static async Task<JsonObject> BodyAsync(HttpResponseMessage response) =>
        JsonNode.Parse(await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken))!.AsObject();

    /// <summary>Asserts a problem+json answer with this status, field (if given) and run id (if given); returns it.</summary>
    public static async Task<JsonObject> ProblemAsync(HttpResponseMessage response, int status, string? field = null, string? runId = null)
    {
        var text = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
        Assert.True(status == (int)response.StatusCode, $"expected {status}, got {(int)response.StatusCode}: {text}");
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var problem = JsonNode.Parse(text)!.AsObject();
        Assert.Equal(status, (int)problem["status"]!);
        Assert.False(string.IsNullOrEmpty((string?)problem["detail"]), text);
        if (field is not null) Assert.Equal(field, (string?)problem["field"]);
        if (runId is not null) Assert.Equal(runId, (string?)problem["runId"]);
        return problem;
    }
}

/// <summary>One Server-Sent Event as read off the wire.</summary>
public sealed record SseEvent(string? Id, string Event, string Data)
{
    public JsonObject Json => JsonNode.Parse(Data)!.AsObject();
}

/// <summary>Reads an event stream event by event; a comment (": ping") comes back as event ":comment".</summary>
public sealed class SseReader(Stream stream) : IDisposable
{
    private readonly StreamReader _reader = new(stream, Encoding.UTF8);

    public int Pings { get; private set; }

    /// <summary>The next event, or null when the stream ends.</summary>
    public async Task<SseEvent?> NextAsync(CancellationToken ct)
    {
        string? id = null, ev = null;
        var data = new StringBuilder();
        while (true)
        {
            var line = await _reader.ReadLineAsync(ct);
            if (line is null) return null;
            if (line.Length == 0)
            {
                if (ev is null && data.Length == 0) continue;
                return new SseEvent(id, ev ?? "message", data.ToString());
            }
            if (line.StartsWith(':'))
            {
                Pings++;
                await _reader.ReadLineAsync(ct); // the blank line that ends the comment block
                return new SseEvent(null, ":comment", line[1..].Trim());
            }
            var colon = line.IndexOf(':');
            var field = colon < 0 ? line : line[..colon];
            var value = colon < 0 ? "" : line[(colon + 1)..].TrimStart(' ');
            switch (field)
            {
                case "id": id = value; break;
                case "event": ev = value; break;
                case "data": if (data.Length > 0) data.Append('\n'); data.Append(value); break;
            }
        }
    }

    public void Dispose() => _reader.Dispose();
}

/// <summary>Test agents shared by the API tests.</summary>
public static class TestAgents
{
    /// <summary>
    /// Agent <c>refunder</c>: its scripted model calls <c>refund</c> with amount 250, then answers <c>done: {{last}}</c>; the write
    /// tool answers <c>refunded AMOUNT</c>, and policy <c>big-refunds</c> has every refund approved by support-leads first.
    /// </summary>
    public static BureauBuilder AddScriptedRefunder(this BureauBuilder b, bool editableArguments = false) => b
        .AddModel(new ScriptedModelDefinition
        {
            Name = "script",
            Rules =
            [
                new ScriptRule { When = new ScriptCondition { TurnFrom = 1, TurnTo = 1 }, Calls = [new ScriptToolCall { Tool = "refund", Arguments = new System.Text.Json.Nodes.JsonObject { ["amount"] = 250 } }] },
                new ScriptRule { Reply = "done: {{last}}" },
            ],
        })
        .AddTool(Microsoft.Extensions.AI.AIFunctionFactory.Create((int amount) => "refunded " + amount, "refund"), ToolEffect.Write)
        .AddAgent(new AgentDefinition { Name = "refunder", Model = "script", Tools = ["refund"] })
        .AddPolicy(new PolicyRule
        {
            Name = "big-refunds",
            When = new PolicyConditions { Tools = ["refund"] },
            Action = PolicyAction.RequireApproval,
            Reason = "refunds need a lead",
            Approval = new ApprovalSpec { Levels = [new(["support-leads"], TimeSpan.FromMinutes(30))], EditableArguments = editableArguments },
        });
}
