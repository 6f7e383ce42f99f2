using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Bureau.Hosting.Tests;

/// <summary>
/// The answers docs/api.md promises are in the OpenAPI document too: each request here provokes a problem the host
/// really answers (a full queue, a body that is too large, of another content type or with a bad field, a store that
/// cannot write), and the served document must declare that status for that operation, or a generated client does not
/// know it can happen.
/// </summary>
public sealed class OpenApiDeclaredStatusTests : IAsyncLifetime
{
    private readonly TestHost _host = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;
    public ValueTask DisposeAsync() => _host.DisposeAsync();

    [Fact]
    public async Task EveryProblemTheHostAnswers_IsDeclaredForItsOperation()
    {
        await _host.StartAsync(b => b.Services.Configure<BureauOptions>(o =>
        {
            o.MaxConcurrentRuns = 1;
            o.AgentQueueLimits["echo"] = 1;
        }));
        // One run slot, held by a gated run: one run of "echo" may wait, the next is refused.
        var id = await HoldTheSlotAsync();

        var observed = new List<(string Method, string Path, int Status)>();
        async Task Expect(HttpMethod method, string url, string template, string body, string contentType, int status)
        {
            using var request = new HttpRequestMessage(method, url) { Content = new StringContent(body, Encoding.UTF8, contentType) };
            using var response = await _host.Client.SendAsync(request, Ct);
            await Http.ProblemAsync(response, status);
            observed.Add((method.Method.ToLowerInvariant(), template, status));
        }

        Assert.Equal(HttpStatusCode.Accepted,
            (await _host.Client.SendAsync(Http.Json(HttpMethod.Post, "/v1/runs", """{"agent":"echo","input":"waits"}"""), Ct)).StatusCode);
        await Expect(HttpMethod.Post, "/v1/runs", "/v1/runs", """{"agent":"echo","input":"refused"}""", "application/json", 429);

        await Expect(HttpMethod.Post, $"/v1/runs/{id}/cancel", "/v1/runs/{id}/cancel", """{"reason":5}""", "application/json", 400);
        await Expect(HttpMethod.Post, $"/v1/runs/{id}/cancel", "/v1/runs/{id}/cancel", "x", "text/plain", 415);
        await Expect(HttpMethod.Post, $"/v1/runs/{id}/cancel", "/v1/runs/{id}/cancel", TooLarge, "application/json", 413);
        await Expect(HttpMethod.Post, $"/v1/runs/{id}/resolve", "/v1/runs/{id}/resolve", "x", "text/plain", 415);
        await Expect(HttpMethod.Post, $"/v1/runs/{id}/resolve", "/v1/runs/{id}/resolve", TooLarge, "application/json", 413);
        await Expect(HttpMethod.Post, $"/v1/runs/{id}/rollback", "/v1/runs/{id}/rollback", """{"reason":"x"}""", "application/json", 400);
        await Expect(HttpMethod.Post, $"/v1/runs/{id}/rollback", "/v1/runs/{id}/rollback", "x", "text/plain", 415);
        await Expect(HttpMethod.Post, $"/v1/runs/{id}/rollback", "/v1/runs/{id}/rollback", TooLarge, "application/json", 413);
        await Expect(HttpMethod.Post, $"/v1/runs/{id}/whatif", "/v1/runs/{id}/whatif", "x", "text/plain", 415);
        await Expect(HttpMethod.Post, $"/v1/runs/{id}/whatif", "/v1/runs/{id}/whatif", TooLarge, "application/json", 413);
        await Expect(HttpMethod.Post, $"/v1/approvals/{id}:2/decision", "/v1/approvals/{id}/decision", "x", "text/plain", 415);
        await Expect(HttpMethod.Post, $"/v1/approvals/{id}:2/decision", "/v1/approvals/{id}/decision", TooLarge, "application/json", 413);
        await Expect(HttpMethod.Post, "/v1/keys", "/v1/keys", "x", "text/plain", 415);
        await Expect(HttpMethod.Post, "/v1/keys", "/v1/keys", TooLarge, "application/json", 413);

        await AssertDeclaredAsync(observed);

        _host.Gate.Open("hold");
        await _host.WaitAsync(id);
    }

    private const string AguiInput =
        """{"threadId":"t1","runId":"r1","state":{},"tools":[],"context":[],"messages":[{"id":"u1","role":"user","content":"x"}]}""";

    [Fact]
    public async Task InteropBoardAndReplayAnswers_AreDeclaredForTheirOperation()
    {
        // docs/interop.md: the OpenAI-compatible routes answer 413, 415, 429 (queue_full) and, for a failed run, 422;
        // AG-UI's errors before its stream are the REST API's; docs/security.md: every body over
        // Bureau:MaxRequestBodyBytes is 413. A generated client must find each in the document.
        await _host.StartAsync(b =>
        {
            OpenAiApiTests.Configure(b);
            b.Services.Configure<BureauOptions>(o =>
            {
                o.MaxConcurrentRuns = 1;
                o.AgentQueueLimits["echo"] = 1;
            });
        });
        var id = await HoldTheSlotAsync();

        var observed = new List<(string Method, string Path, int Status)>();
        async Task Expect(HttpMethod method, string url, string template, string body, string contentType, int status)
        {
            using var request = new HttpRequestMessage(method, url) { Content = new StringContent(body, Encoding.UTF8, contentType) };
            using var response = await _host.Client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, Ct);
            var text = status == 200 ? "" : await response.Content.ReadAsStringAsync(Ct);
            Assert.True(status == (int)response.StatusCode, $"{method} {url}: expected {status}, got {(int)response.StatusCode}: {text}");
            observed.Add((method.Method.ToLowerInvariant(), template, status));
        }

        var routes = new (HttpMethod Method, string Url, string Template)[]
        {
            (HttpMethod.Post, "/v1/chat/completions", "/v1/chat/completions"),
            (HttpMethod.Post, "/v1/responses", "/v1/responses"),
            (HttpMethod.Post, "/v1/agents/echo/agui", "/v1/agents/{name}/agui"),
            (HttpMethod.Post, "/v1/boards/desk/tasks", "/v1/boards/{board}/tasks"),
            (HttpMethod.Post, "/v1/boards/desk/tasks/t1/claim", "/v1/boards/{board}/tasks/{id}/{action}"),
            (HttpMethod.Post, "/v1/boards/desk/decisions", "/v1/boards/{board}/decisions"),
            (HttpMethod.Put, "/v1/boards/desk/keys/k1", "/v1/boards/{board}/keys/{key}"),
            (HttpMethod.Post, $"/v1/runs/{id}/replay", "/v1/runs/{id}/replay"),
        };
        foreach (var (method, url, template) in routes)
        {
            await Expect(method, url, template, "x", "text/plain", 415);
            await Expect(method, url, template, TooLarge, "application/json", 413);
        }

        // The run slot is held and echo's queue (1) is filled: the next run of echo is refused, whichever protocol asks.
        Assert.Equal(HttpStatusCode.Accepted,
            (await _host.Client.SendAsync(Http.Json(HttpMethod.Post, "/v1/runs", """{"agent":"echo","input":"waits"}"""), Ct)).StatusCode);
        await Expect(HttpMethod.Post, "/v1/chat/completions", "/v1/chat/completions",
            """{"model":"echo","messages":[{"role":"user","content":"refused"}]}""", "application/json", 429);
        await Expect(HttpMethod.Post, "/v1/responses", "/v1/responses", """{"model":"echo","input":"refused"}""", "application/json", 429);
        await Expect(HttpMethod.Post, "/v1/agents/echo/agui", "/v1/agents/{name}/agui", AguiInput, "application/json", 429);

        _host.Gate.Open("hold");
        await _host.WaitAsync(id);
        // spinner spends its steps budget: the run fails, and chat completions says so with 422 (not a 5xx a client retries).
        await Expect(HttpMethod.Post, "/v1/chat/completions", "/v1/chat/completions",
            """{"model":"spinner","messages":[{"role":"user","content":"spin"}]}""", "application/json", 422);

        await AssertDeclaredAsync(observed);
    }

    [Fact]
    public async Task WritesRefusedByAStoreThatCannotWrite_Are503_AndDeclaredForTheirOperation()
    {
        var failing = new StoreFault();
        await _host.StartAsync(b =>
        {
            b.Services.Configure<BureauOptions>(o => o.MaxConcurrentRuns = 1);
            b.Services.AddSingleton(sp => StoreFault.Wrap<IRunStore>(sp.GetRequiredService<Bureau.Storage.Sqlite.SqliteRunStore>(), failing, "SubmitAsync", "AppendAsync"));
            b.Services.AddSingleton(sp => StoreFault.Wrap<IApiKeyStore>(sp.GetRequiredService<Bureau.Storage.Sqlite.SqliteApiKeyStore>(), failing, "AddAsync", "RevokeAsync"));
        });
        var done = await _host.Engine.SubmitAsync(new RunRequest("pager", "finished"), Ct);
        await _host.WaitAsync(done.Run.Id);
        await _host.Engine.SubmitAsync(new RunRequest("slow", "hold"), Ct);              // holds the one run slot
        var queued = await _host.Engine.SubmitAsync(new RunRequest("echo", "waits in the queue"), Ct);

        var observed = new List<(string Method, string Path, int Status)>();
        async Task Expect(HttpMethod method, string url, string template, string? body)
        {
            using var request = new HttpRequestMessage(method, url);
            if (body is not null) request.Content = new StringContent(body, Encoding.UTF8, "application/json");
            using var response = await _host.Client.SendAsync(request, Ct);
            var problem = await Http.ProblemAsync(response, 503);
            Assert.Equal("storage-unavailable", (string?)problem["code"]);
            observed.Add((method.Method.ToLowerInvariant(), template, 503));
        }

        failing.On = true;
        await Expect(HttpMethod.Post, "/v1/runs", "/v1/runs", """{"agent":"echo","input":"x"}""");
        await Expect(HttpMethod.Post, $"/v1/runs/{queued.Run.Id}/cancel", "/v1/runs/{id}/cancel", null);
        await Expect(HttpMethod.Post, "/v1/keys", "/v1/keys", """{"role":"viewer"}""");
        await Expect(HttpMethod.Post, $"/v1/runs/{done.Run.Id}/rollback", "/v1/runs/{id}/rollback", null);
        await Expect(HttpMethod.Post, "/v1/agents/echo/agui", "/v1/agents/{name}/agui", AguiInput);
        foreach (var (path, body) in new[]
        {
            ("/v1/chat/completions", """{"model":"echo","messages":[{"role":"user","content":"x"}]}"""),
            ("/v1/responses", """{"model":"echo","input":"x"}"""),
        })
        {
            // The OpenAI-compatible routes answer in OpenAI's error shape (docs/interop.md).
            using var response = await _host.Client.SendAsync(Http.Json(HttpMethod.Post, path, body), Ct);
            var text = await response.Content.ReadAsStringAsync(Ct);
            Assert.True(response.StatusCode == HttpStatusCode.ServiceUnavailable, $"{path}: {(int)response.StatusCode} {text}");
            Assert.Equal("storage_unavailable", (string?)JsonNode.Parse(text)!["error"]!["code"]);
            observed.Add(("post", path, 503));
        }
        failing.On = false;

        await AssertDeclaredAsync(observed);

        _host.Gate.Open("hold");
        await _host.WaitAsync(queued.Run.Id);
    }

    /// <summary>A body over the test host's 64 KiB limit.</summary>
    private static readonly string TooLarge = "{\"reason\":\"" + new string('a', 70 * 1024) + "\"}";

    /// <summary>Submits a gated run of "slow" and waits until it holds the one run slot (its model call started).</summary>
    private async Task<string> HoldTheSlotAsync()
    {
        var blocker = await _host.Engine.SubmitAsync(new RunRequest("slow", "hold"), Ct);
        using var started = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        started.CancelAfter(TimeSpan.FromSeconds(20));
        await foreach (var e in _host.Engine.WatchAsync(blocker.Run.Id, includeActivity: true, cancellationToken: started.Token))
            if (e.Activity == "model.started") break;
        return blocker.Run.Id;
    }

    /// <summary>Each (method, path template, status) the host answered is among its operation's responses in the served OpenAPI document.</summary>
    private async Task AssertDeclaredAsync(List<(string Method, string Path, int Status)> observed)
    {
        using var served = await _host.Client.GetAsync("/openapi/v1.json", Ct);
        var document = JsonNode.Parse(await served.Content.ReadAsStringAsync(Ct))!;
        var undeclared = observed
            .Where(o => document["paths"]?[o.Path]?[o.Method]?["responses"]?[o.Status.ToString(System.Globalization.CultureInfo.InvariantCulture)] is null)
            .Select(o => $"{o.Method.ToUpperInvariant()} {o.Path} answers {o.Status}")
            .ToList();
        Assert.True(undeclared.Count == 0, "the OpenAPI document does not declare what the host answers:\n" + string.Join("\n", undeclared));
    }

    /// <summary>Makes chosen methods of a store throw as a full disk does while <see cref="On"/>; the rest go through.</summary>
    public class StoreFault : System.Reflection.DispatchProxy
    {
        private object _inner = null!;
        private StoreFault _switch = null!;
        private string[] _methods = [];

        public volatile bool On;

        public static T Wrap<T>(T inner, StoreFault fault, params string[] methods) where T : class
        {
            var proxy = Create<T, StoreFault>();
            var self = (StoreFault)(object)proxy;
            (self._inner, self._switch, self._methods) = (inner, fault, methods);
            return proxy;
        }

        protected override object? Invoke(System.Reflection.MethodInfo? targetMethod, object?[]? args)
        {
            if (_switch.On && _methods.Contains(targetMethod!.Name))
                throw new StorageUnavailableException(StorageFault.DiskFull, "test.db", "the store cannot write to test.db: the disk is full (a test's fault)");
            try
            {
                return targetMethod!.Invoke(_inner, args);
            }
            catch (System.Reflection.TargetInvocationException ex) when (ex.InnerException is not null)
            {
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(ex.InnerException);
                throw;
            }
        }
    }
}
