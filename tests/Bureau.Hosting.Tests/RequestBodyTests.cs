using System.Net;
using System.Net.Http.Headers;
using System.Text;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Bureau.Hosting.Tests;

/// <summary>
/// Bodies that are JSON by the grammar but cannot be read as text or as one object: a field given twice,
/// bytes that are not UTF-8, a lone <c>\ud800</c> escape. Each endpoint that reads a body answers 400
/// naming the field, and does nothing. The bytes are sent as they are (no client re-encoding).
/// </summary>
public sealed class RequestBodyTests(AnonymousHostFixture fixture) : IClassFixture<AnonymousHostFixture>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    // Each endpoint with a body, the fields that make its body otherwise valid, and one string field to spoil.
    private static readonly Dictionary<string, (string Url, string Valid, string Field)> Endpoints = new()
    {
        ["start"] = ("/v1/runs", "\"agent\":\"echo\",", "input"),
        ["cancel"] = ("/v1/runs/run_none/cancel", "", "reason"),
        ["resolve"] = ("/v1/runs/run_none/resolve", "\"step\":1,\"as\":\"done\",", "result"),
        ["create-key"] = ("/v1/keys", "\"role\":\"viewer\",", "name"),
    };

    public static TheoryData<string, string> EveryEndpointAndKind()
    {
        var data = new TheoryData<string, string>();
        foreach (var endpoint in Endpoints.Keys)
            foreach (var kind in new[] { "duplicate", "invalid-utf8", "lone-surrogate" })
                data.Add(endpoint, kind);
        return data;
    }

    [Theory]
    [MemberData(nameof(EveryEndpointAndKind))]
    public async Task Post_UnreadableBody_Returns400NamingTheFieldAndDoesNothing(string endpoint, string kind)
    {
        var (url, valid, field) = Endpoints[endpoint];
        var (body, says) = kind switch
        {
            "duplicate" => (Utf8($"{{{valid}\"{field}\":\"a\",\"{field}\":\"b\"}}"), "given twice"),
            "invalid-utf8" => ([.. Utf8($"{{{valid}\"{field}\":\"a"), 0xFF, 0xFE, .. Utf8("b\"}")], "not valid UTF-8"),
            "lone-surrogate" => (Utf8($"{{{valid}\"{field}\":\"\\ud800\"}}"), "lone surrogate"),
            _ => throw new ArgumentOutOfRangeException(nameof(kind)),
        };

        using var res = await PostAsync(url, body);

        var problem = await Http.ProblemAsync(res, 400, field);
        Assert.Contains(says, (string?)problem["detail"]);
        Assert.Equal("invalid-request", (string?)problem["code"]);
        await AssertNothingDoneAsync();
    }

    [Theory]
    [InlineData("{\"agent\":\"echo\",\"input\":\"a\",\"\\u0069nput\":\"b\"}", "input")] // the same name, spelled with an escape
    [InlineData("{\"agent\":\"echo\",\"input\":{\"a\":1,\"a\":2}}", "input.a")]
    [InlineData("{\"agent\":\"echo\",\"input\":[\"ok\",{\"x\":\"\\udc00\"}]}", "input[1].x")]
    [InlineData("{\"agent\":\"echo\",\"input\":\"\\ud800\\u0041\"}", "input")] // a high surrogate followed by a letter
    [InlineData("\"\\ud800\"", "body")]
    public async Task PostRuns_UnreadableNestedOrEscapedField_NamesItsPath(string json, string field)
    {
        using var res = await PostAsync("/v1/runs", Utf8(json));

        await Http.ProblemAsync(res, 400, field);
        await AssertNothingDoneAsync();
    }

    [Theory] // the examples of docs/api.md
    [InlineData("{\"agent\":\"a\",\"agent\":\"b\"}", "agent", "'agent' is given twice (again at byte 13); send each field once")]
    [InlineData("{\"agent\":\"echo\",\"input\":\"\u00ff\"}", "input", "'input' (the string at byte 24) is not valid UTF-8; send the body in UTF-8")]
    [InlineData("{\"input\":\"\\ud800\"}", "input", "'input' (the string at byte 9) has a \\uD800-\\uDFFF escape without its pair (a lone surrogate), which is not text; escape whole characters only")]
    public async Task PostRuns_DocumentedExamples_SayWhatTheDocsSay(string latin1Body, string field, string detail)
    {
        using var res = await PostAsync("/v1/runs", Encoding.Latin1.GetBytes(latin1Body));

        var problem = await Http.ProblemAsync(res, 400, field);
        Assert.Equal(detail, (string?)problem["detail"]);
    }

    [Fact]
    public async Task PostRuns_InvalidUtf8InAFieldName_NamesTheByteOffset()
    {
        byte[] body = [.. Utf8("{\"agent\":\"echo\",\""), 0xC3, .. Utf8("input\":\"x\"}")];

        using var res = await PostAsync("/v1/runs", body);

        var problem = await Http.ProblemAsync(res, 400, "body");
        Assert.Contains("field name at byte 16", (string?)problem["detail"]);
        await AssertNothingDoneAsync();
    }

    [Fact]
    public async Task PostRuns_EncodedSurrogateBytes_AreNotUtf8()
    {
        // ED A0 80: U+D800 encoded as if it were a character (CESU-8), which UTF-8 forbids.
        byte[] body = [.. Utf8("{\"agent\":\"echo\",\"input\":\""), 0xED, 0xA0, 0x80, .. Utf8("\"}")];

        using var res = await PostAsync("/v1/runs", body);

        var problem = await Http.ProblemAsync(res, 400, "input");
        Assert.Contains("not valid UTF-8", (string?)problem["detail"]);
    }

    [Fact]
    public async Task PostCancel_SurrogatePairAndNonAsciiText_AreRead()
    {
        // A whole character escaped as its pair, and raw UTF-8: the body is read (then the run is not found).
        using var res = await PostAsync("/v1/runs/run_none/cancel", Utf8("{\"reason\":\"\\ud83d\\ude00 caf\u00e9 \u4e2d\"}"));

        await Http.ProblemAsync(res, 404);
    }

    private async Task<HttpResponseMessage> PostAsync(string url, byte[] body)
    {
        var content = new ByteArrayContent(body);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        return await fixture.Host.Client.SendAsync(new HttpRequestMessage(HttpMethod.Post, url) { Content = content }, Ct);
    }

    private async Task AssertNothingDoneAsync()
    {
        // This class's host only ever receives bodies it must refuse (or ones for runs that do not exist).
        var runs = await fixture.Host.Engine.ListRunsAsync(new RunQuery { Limit = 10 }, Ct);
        Assert.Empty(runs.Items);
        using var keys = await fixture.Host.Client.GetAsync("/v1/keys", Ct);
        Assert.Equal(HttpStatusCode.OK, keys.StatusCode);
        Assert.Empty((await Http.BodyAsync(keys))["items"]!.AsArray());
    }

    private static byte[] Utf8(string text) => Encoding.UTF8.GetBytes(text);
}

public sealed class KestrelHostFixture : IAsyncLifetime
{
    public TestHost Host { get; } = new();
    public HttpClient Client { get; private set; } = null!;

    public async ValueTask InitializeAsync()
    {
        await Host.StartAsync(configureHost: b => b.WebHost.UseUrls("http://127.0.0.1:0"), testServer: false);
        var address = Host.App.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.Single();
        Client = new HttpClient { BaseAddress = new Uri(address) };
    }

    public async ValueTask DisposeAsync()
    {
        Client?.Dispose();
        await Host.DisposeAsync();
    }
}

/// <summary>The same bodies over a real socket (Kestrel on loopback): before the fix, a 500 with an empty body.</summary>
public sealed class RequestBodyOverKestrelTests(KestrelHostFixture fixture) : IClassFixture<KestrelHostFixture>
{
    [Theory]
    [InlineData("{\"agent\":\"echo\",\"input\":\"a\",\"input\":\"b\"}", "given twice")]
    [InlineData("{\"agent\":\"echo\",\"input\":\"\\ud800\"}", "lone surrogate")]
    [InlineData("{\"agent\":\"echo\",\"input\":\"\u00ff\"}", "not valid UTF-8")] // sent as Latin-1: the byte FF
    public async Task PostRuns_UnreadableBody_Returns400ProblemOnTheWire(string json, string says)
    {
        var content = new ByteArrayContent(Encoding.Latin1.GetBytes(json));
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");

        using var res = await fixture.Client.PostAsync("/v1/runs", content, TestContext.Current.CancellationToken);

        var problem = await Http.ProblemAsync(res, 400, "input");
        Assert.Contains(says, (string?)problem["detail"]);
    }
}
