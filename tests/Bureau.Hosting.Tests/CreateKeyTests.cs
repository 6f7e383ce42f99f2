using System.Net;
using System.Text.Json.Nodes;
using Xunit;

namespace Bureau.Hosting.Tests;

/// <summary>POST /v1/keys: roles are exact lower-case wire names; names are short, printable labels.</summary>
public sealed class CreateKeyTests(KeyedHostFixture fixture) : IClassFixture<KeyedHostFixture>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;
    private string Admin => fixture.Keys[ApiKeyRole.Admin];

    [Theory]
    [InlineData("Admin")]
    [InlineData("ADMIN")]
    [InlineData("Viewer")]
    [InlineData("admin ")]
    [InlineData("adm\u0130n")]
    public async Task PostKeys_RoleNotExactlyAWireName_Returns400ListingTheRoles(string role)
    {
        var before = await KeyCountAsync();

        using var res = await PostAsync(new JsonObject { ["role"] = role });

        var problem = await Http.ProblemAsync(res, 400, "role");
        Assert.Contains("viewer, operator, approver or admin", (string?)problem["detail"]);
        Assert.Equal(before, await KeyCountAsync());
    }

    [Theory]
    [InlineData(ApiKeys.MaxNameLength + 1)]
    [InlineData(10_000)]
    public async Task PostKeys_NameLongerThanTheLimit_Returns400NamingTheField(int length)
    {
        var before = await KeyCountAsync();

        using var res = await PostAsync(new JsonObject { ["role"] = "viewer", ["name"] = new string('n', length) });

        var problem = await Http.ProblemAsync(res, 400, "name");
        Assert.Contains($"at most {ApiKeys.MaxNameLength}", (string?)problem["detail"]);
        Assert.Equal(before, await KeyCountAsync());
    }

    [Theory]
    [InlineData("two\nlines")]
    [InlineData("bell\u0007")]
    [InlineData("\u009b31m")]
    public async Task PostKeys_NameWithControlCharacters_Returns400NamingTheField(string name)
    {
        using var res = await PostAsync(new JsonObject { ["role"] = "viewer", ["name"] = name });

        var problem = await Http.ProblemAsync(res, 400, "name");
        Assert.Contains("control characters", (string?)problem["detail"]);
    }

    [Fact]
    public async Task PostKeys_NameOfExactlyTheLimitInCharacters_IsCreated()
    {
        // 100 characters outside the BMP: 200 UTF-16 code units, still 100 characters.
        var name = string.Concat(Enumerable.Repeat("\U0001F600", ApiKeys.MaxNameLength));

        using var res = await PostAsync(new JsonObject { ["role"] = "viewer", ["name"] = name });

        Assert.Equal(HttpStatusCode.Created, res.StatusCode);
        var doc = await Http.BodyAsync(res);
        Assert.Equal(name, (string?)doc["name"]);
        Assert.Equal("viewer", (string?)doc["role"]);
    }

    private async Task<HttpResponseMessage> PostAsync(JsonObject body) =>
        await fixture.Host.Client.SendAsync(Http.Json(HttpMethod.Post, "/v1/keys", body.ToJsonString(), Admin), Ct);

    private async Task<int> KeyCountAsync()
    {
        using var res = await fixture.Host.Client.SendAsync(Http.Get("/v1/keys", Admin), Ct);
        Assert.Equal(HttpStatusCode.OK, res.StatusCode);
        return (await Http.BodyAsync(res))["items"]!.AsArray().Count;
    }
}
