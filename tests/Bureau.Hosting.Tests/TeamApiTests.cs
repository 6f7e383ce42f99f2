using System.Net;
using System.Text.Json.Nodes;
using Xunit;

namespace Bureau.Hosting.Tests;

/// <summary>A team is runnable wherever an agent is: listed with the agents, started with POST /v1/runs, its tree readable.</summary>
public sealed class TeamApiTests : IAsyncDisposable
{
    private readonly TestHost _host = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask DisposeAsync() => _host.DisposeAsync();

    [Fact]
    public async Task Team_ListedStartedAndItsChildrenListed()
    {
        await _host.StartAsync(b => b.AddTeam(new TeamDefinition { Name = "twice", Pattern = TeamPattern.Sequential, Members = ["echo", "echo"], Description = "Echoes twice." }));

        var agents = (await Http.BodyAsync(await _host.Client.GetAsync("/v1/agents", Ct)))["items"]!.AsArray();
        var team = agents.Single(a => (string?)a!["name"] == "twice")!;
        Assert.Equal(("team", "sequential"), ((string?)team["kind"], (string?)team["pattern"]));
        var one = await Http.BodyAsync(await _host.Client.GetAsync("/v1/agents/twice", Ct));
        Assert.Equal(["echo"], one["uses"]!.AsArray().Select(u => (string)u!));

        using var res = await _host.Client.SendAsync(Http.Json(HttpMethod.Post, "/v1/runs", """{"agent":"twice","input":"hi"}"""), Ct);
        Assert.Equal(HttpStatusCode.Accepted, res.StatusCode);
        var id = (string)(await Http.BodyAsync(res))["id"]!;
        RunRecord run;
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (!(run = (await _host.Engine.GetRunAsync(id, Ct))!).Status.IsTerminal())
        {
            Assert.True(DateTime.UtcNow < deadline, $"team run is {run.Status}");
            await Task.Delay(20, Ct);
        }
        Assert.Equal((RunStatus.Succeeded, "echo: echo: hi"), (run.Status, run.Output));

        var doc = await Http.BodyAsync(await _host.Client.GetAsync($"/v1/runs/{id}", Ct));
        var started = doc["steps"]!.AsArray().Where(s => (string?)s!["kind"] == ChildRunStarted.KindName).ToList();
        Assert.Equal(2, started.Count);
        Assert.Equal("step:0:echo", (string?)started[0]!["label"]);
        var child = await Http.BodyAsync(await _host.Client.GetAsync($"/v1/runs/{(string)started[1]!["childRunId"]!}", Ct));
        Assert.Equal(id, (string?)child["parentRunId"]);
        var children = (await Http.BodyAsync(await _host.Client.GetAsync($"/v1/runs?parent={id}", Ct)))["items"]!.AsArray();
        Assert.Equal(started.Select(s => (string)s!["childRunId"]!).Order(), children.Select(c => (string)c!["id"]!).Order());
    }

    [Fact]
    public async Task Team_WithAMemberThatIsNotDefined_RefusedAtStart()
    {
        var ex = await Assert.ThrowsAnyAsync<Exception>(() => _host.StartAsync(b => b.AddTeam(new TeamDefinition { Name = "t", Pattern = TeamPattern.Sequential, Members = ["ghost"] })));
        Assert.Contains("team 't': 'ghost' is neither an agent nor a team", ex.ToString());
    }
}
