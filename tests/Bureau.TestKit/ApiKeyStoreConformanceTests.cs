using Xunit;

namespace Bureau.TestKit;

/// <summary>The contract of <see cref="IApiKeyStore"/>: hashes by id, unique ids, revocation once, the active check.</summary>
public abstract class ApiKeyStoreConformanceTests(IStoreTestDatabase database) : StoreSuite(database)
{
    private static ApiKeyRecord Key(string id, int second, string? name = null, ApiKeyRole role = ApiKeyRole.Operator) =>
        new() { Id = id, Name = name, Role = role, Hash = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData([(byte)second])), CreatedAt = T0.AddSeconds(second) };

    [Fact]
    public async Task Add_ThenFind_ReturnsWhatWasStored()
    {
        var keys = await OpenKeysAsync();
        Assert.Null(await keys.FindAsync("k1"));
        Assert.False(await keys.AnyActiveAsync());
        await keys.AddAsync(Key("k1", 1, "ops bot", ApiKeyRole.Admin));
        Assert.Equal(Key("k1", 1, "ops bot", ApiKeyRole.Admin), await keys.FindAsync("k1"));
        Assert.True(await keys.AnyActiveAsync());
    }

    [Fact]
    public async Task Add_AnIdThatExists_IsRefusedAndTheFirstKeyStays()
    {
        var keys = await OpenKeysAsync();
        await keys.AddAsync(Key("k1", 1, "first"));
        var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => keys.AddAsync(Key("k1", 2, "second")));
        Assert.Contains("k1", ex.Message);
        Assert.Equal("first", (await keys.FindAsync("k1"))!.Name);
        Assert.Single(await keys.ListAsync());
    }

    [Fact]
    public async Task Revoke_OnceOnly_AndListingsLeaveRevokedKeysOutUnlessAsked()
    {
        var keys = await OpenKeysAsync();
        await keys.AddAsync(Key("k2", 2));
        await keys.AddAsync(Key("k1", 1));
        await keys.AddAsync(Key("k3", 3));
        Assert.True(await keys.RevokeAsync("k2", T0.AddMinutes(1)));
        Assert.False(await keys.RevokeAsync("k2", T0.AddMinutes(2)));
        Assert.False(await keys.RevokeAsync("nope", T0));

        Assert.Equal(["k1", "k3"], (await keys.ListAsync()).Select(k => k.Id));
        Assert.Equal(["k1", "k2", "k3"], (await keys.ListAsync(includeRevoked: true)).Select(k => k.Id));
        Assert.Equal(T0.AddMinutes(1), (await keys.FindAsync("k2"))!.RevokedAt);

        await keys.RevokeAsync("k1", T0);
        await keys.RevokeAsync("k3", T0);
        Assert.False(await keys.AnyActiveAsync());
    }

    [Fact]
    public async Task Keys_SurviveANewStoreOnTheSameDatabase()
    {
        var keys = await OpenKeysAsync();
        await keys.AddAsync(Key("k1", 1, "kept"));
        var again = await OpenKeysAsync();
        Assert.Equal("kept", (await again.FindAsync("k1"))!.Name);
    }
}
