using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Bureau.Hosting.Tests;

/// <summary>GET /v1/memory/{scope} and /v1/memory/{scope}/{key}: current facts, versions with provenance and supersession, clear errors.</summary>
public sealed class MemoryApiTests : IAsyncDisposable
{
    private readonly TestHost _host = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask DisposeAsync() => _host.DisposeAsync();

    private async Task<IMemoryStore> StartAsync()
    {
        await _host.StartAsync();
        var store = _host.App.Services.GetRequiredService<IMemoryStore>();
        var at = new DateTimeOffset(2026, 12, 6, 10, 0, 0, TimeSpan.Zero);
        await store.WriteAsync(new MemoryWrite { Scope = "team:desk", Key = "customer/42/plan", Value = "gold", ExpectedVersion = 0, Provenance = new("run-1", 4, "billing", at, "alice") }, Ct);
        await store.WriteAsync(new MemoryWrite { Scope = "team:desk", Key = "customer/42/plan", Value = "platinum", ExpectedVersion = 1, Provenance = new("run-2", 6, "triage", at.AddMinutes(1), "bob") }, Ct);
        await store.WriteAsync(new MemoryWrite { Scope = "team:desk", Key = "a-first", Value = "x", ExpectedVersion = 0, Provenance = new(null, null, null, at, "ops") }, Ct);
        await store.WriteAsync(new MemoryWrite { Scope = "team:desk", Key = "gone", Value = "y", ExpectedVersion = 0, Provenance = new(null, null, null, at, "ops") }, Ct);
        await store.WriteAsync(new MemoryWrite { Scope = "team:desk", Key = "gone", Value = null, ExpectedVersion = 1, Provenance = new(null, null, null, at, "ops") }, Ct);
        return store;
    }

    [Fact]
    public async Task GetFact_ShowsTheCurrentValue_AndEveryVersionWithItsProvenance()
    {
        await StartAsync();

        using var res = await _host.Client.GetAsync("/v1/memory/team:desk/customer/42/plan", Ct);

        Assert.Equal(HttpStatusCode.OK, res.StatusCode);
        var body = await Http.BodyAsync(res);
        Assert.Equal(("platinum", 2), ((string)body["current"]!["value"]!, (int)body["current"]!["version"]!));
        var versions = body["versions"]!.AsArray();
        Assert.Equal(2, versions.Count);
        Assert.Equal(("gold", 2, "billing", "run-1", 4), ((string)versions[0]!["value"]!, (int)versions[0]!["supersededBy"]!,
            (string)versions[0]!["provenance"]!["agent"]!, (string)versions[0]!["provenance"]!["runId"]!, (int)versions[0]!["provenance"]!["step"]!));
        Assert.Equal(1, (int)versions[1]!["supersedes"]!);
    }

    [Fact]
    public async Task ListScope_GivesCurrentFactsByKey_LeavesOutForgottenOnes_AndPages()
    {
        await StartAsync();

        using var res = await _host.Client.GetAsync("/v1/memory/team:desk?limit=1", Ct);
        var first = await Http.BodyAsync(res);
        using var res2 = await _host.Client.GetAsync($"/v1/memory/team:desk?after={first["next"]}", Ct);
        var rest = await Http.BodyAsync(res2);

        Assert.Equal("a-first", (string)first["items"]![0]!["key"]!);
        Assert.Equal(["customer/42/plan"], rest["items"]!.AsArray().Select(i => (string)i!["key"]!));
        Assert.Null(rest["next"]);
    }

    [Fact]
    public async Task GetFact_Forgotten_ShowsItsHistory_Unknown404_BadScope400()
    {
        await StartAsync();

        using var gone = await _host.Client.GetAsync("/v1/memory/team:desk/gone", Ct);
        var body = await Http.BodyAsync(gone);
        Assert.True((bool)body["forgotten"]!);
        Assert.Null(body["current"]);
        Assert.Equal(2, body["versions"]!.AsArray().Count);

        using var missing = await _host.Client.GetAsync("/v1/memory/team:desk/never", Ct);
        await Http.ProblemAsync(missing, 404, "key");
        using var bad = await _host.Client.GetAsync("/v1/memory/desk", Ct);
        var problem = await Http.ProblemAsync(bad, 400, "scope");
        Assert.Contains("KIND:ID", (string)problem["detail"]!);
    }
}
