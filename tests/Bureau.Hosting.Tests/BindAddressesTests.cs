using System.Net.Sockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Logging;
using Xunit;

namespace Bureau.Hosting.Tests;

public sealed class BindAddressesTests
{
    [Theory]
    // Loopback: this machine only.
    [InlineData("http://localhost:5080", "http://localhost:5080", "Loopback")]
    [InlineData("http://LocalHost:5080", "http://localhost:5080", "Loopback")]
    [InlineData("http://127.0.0.1:5080", "http://127.0.0.1:5080", "Loopback")]
    [InlineData("http://127.0.0.2:5080", "http://127.0.0.2:5080", "Loopback")]
    [InlineData("http://127.255.255.254:1", "http://127.255.255.254:1", "Loopback")]
    [InlineData("http://[::1]:5080", "http://[::1]:5080", "Loopback")]
    [InlineData("http://[0:0:0:0:0:0:0:1]:5080", "http://[::1]:5080", "Loopback")]
    [InlineData("http://[::ffff:127.0.0.1]:5080", "http://127.0.0.1:5080", "Loopback")]
    [InlineData("http://[::FFFF:127.1.2.3]:5080", "http://127.1.2.3:5080", "Loopback")]
    [InlineData("http://[::ffff:7f00:1]:5080", "http://127.0.0.1:5080", "Loopback")]
    [InlineData("https://127.0.0.1:8443/", "https://127.0.0.1:8443", "Loopback")]
    [InlineData("HTTP://127.0.0.1:5080", "http://127.0.0.1:5080", "Loopback")]
    [InlineData("http://127.0.0.1:0", "http://127.0.0.1:0", "Loopback")]
    [InlineData("http://127.1:5080", "http://127.0.0.1:5080", "Loopback")] // what Kestrel binds for it
    // Every interface.
    [InlineData("http://*:5080", "http://*:5080", "AllInterfaces")]
    [InlineData("http://+:5080", "http://+:5080", "AllInterfaces")]
    [InlineData("http://0.0.0.0:5080", "http://0.0.0.0:5080", "AllInterfaces")]
    [InlineData("http://[::]:5080", "http://[::]:5080", "AllInterfaces")]
    [InlineData("http://[::ffff:0.0.0.0]:5080", "http://0.0.0.0:5080", "AllInterfaces")]
    [InlineData("http://[::ffff:0:0]:5080", "http://0.0.0.0:5080", "AllInterfaces")]
    [InlineData("http://0:5080", "http://0.0.0.0:5080", "AllInterfaces")]
    [InlineData("http://example.com:5080", "http://example.com:5080", "AllInterfaces")]
    [InlineData("http://localhost.example.com:5080", "http://localhost.example.com:5080", "AllInterfaces")]
    // One other address.
    [InlineData("http://192.0.2.10:5080", "http://192.0.2.10:5080", "OneAddress")]
    [InlineData("http://[::ffff:192.0.2.10]:5080", "http://192.0.2.10:5080", "OneAddress")]
    [InlineData("http://[2001:db8::1]:5080", "http://[2001:db8::1]:5080", "OneAddress")]
    [InlineData("http://[::127.0.0.1]:5080", "http://[::127.0.0.1]:5080", "OneAddress")] // IPv4-compatible, not mapped: not loopback
    [InlineData("http://126.0.0.1:5080", "http://126.0.0.1:5080", "OneAddress")]
    [InlineData("http://128.0.0.1:5080", "http://128.0.0.1:5080", "OneAddress")]
    // Unix socket.
    [InlineData("http://unix:/run/bureau.sock", "http://unix:/run/bureau.sock", "UnixSocket")]
    public void Parse_OneAddress_ClassifiesAndNormalizes(string given, string url, string scopeName)
    {
        var scope = Enum.Parse<BindScope>(scopeName);
        var result = BindAddresses.Parse(given);

        Assert.True(result.IsValid, result.Error);
        var address = Assert.Single(result.Addresses);
        Assert.Equal(given, address.Given);
        Assert.Equal(url, address.Url);
        Assert.Equal(scope, address.Scope);
        Assert.Equal(scope == BindScope.Loopback, address.IsLoopback);
    }

    [Fact]
    public void Parse_ScopedLoopback_IsLoopbackAndKeepsTheScope()
    {
        var address = Assert.Single(BindAddresses.Parse("http://[::1%1]:5080").Addresses);

        Assert.True(address.IsLoopback);
        Assert.Equal("http://[::1%1]:5080", address.Url);
    }

    [Theory]
    [InlineData("http://127.0.0.1", 80)]
    [InlineData("https://127.0.0.1", 443)]
    [InlineData("http://[::1]", 80)]
    [InlineData("http://127.0.0.1:65535", 65535)]
    [InlineData("http://127.0.0.1:05080", 5080)]
    public void Parse_Port_DefaultsAsKestrelDoes(string given, int port)
    {
        Assert.Equal(port, Assert.Single(BindAddresses.Parse(given).Addresses).Port);
    }

    [Fact]
    public void Parse_SeveralAddresses_KeepsTheOrderAndSaysWhichAreExposed()
    {
        var result = BindAddresses.Parse(" http://127.0.0.1:5080 ; http://[::ffff:0.0.0.0]:5081;;http://[::1]:5082; ");

        Assert.True(result.IsValid, result.Error);
        Assert.Equal(["http://127.0.0.1:5080", "http://0.0.0.0:5081", "http://[::1]:5082"], result.Addresses.Select(a => a.Url));
        Assert.Equal("http://127.0.0.1:5080;http://0.0.0.0:5081;http://[::1]:5082", result.Urls);
        Assert.Equal(["http://[::ffff:0.0.0.0]:5081"], result.Exposed.Select(a => a.Given));
    }

    [Theory]
    [InlineData("127.0.0.1:5080", "'127.0.0.1:5080' has no scheme: write it as http://127.0.0.1:5080")]
    [InlineData("localhost", "'localhost' has no scheme")]
    [InlineData("ftp://127.0.0.1:21", "'ftp://127.0.0.1:21' has the scheme 'ftp'; only http:// and https:// are supported")]
    [InlineData("http://127.0.0.1:99999", "'http://127.0.0.1:99999' has the port '99999'; a port is a number from 0 to 65535")]
    [InlineData("http://127.0.0.1:65536", "has the port '65536'")]
    [InlineData("http://127.0.0.1:-1", "has the port '-1'")]
    [InlineData("http://127.0.0.1:+80", "has the port '+80'")]
    [InlineData("http://127.0.0.1:abc", "has the port 'abc'")]
    [InlineData("http://127.0.0.1:", "has the port ''")]
    [InlineData("http://127.0.0.1:5080000000000", "has the port '5080000000000'")]
    [InlineData("http://[::1]:x", "has the port 'x'")]
    [InlineData("http://[::1]5080", "has '5080' after the IPv6 address")]
    [InlineData("http://[::1:5080", "opens '[' without closing it")]
    [InlineData("http://[127.0.0.1]:5080", "'[127.0.0.1]' is not an IPv6 address")]
    [InlineData("http://[nope]:5080", "'[nope]' is not an IPv6 address")]
    [InlineData("http://::1:5080", "looks like an IPv6 address without brackets")]
    [InlineData("http://:5080", "has no host")]
    [InlineData("http://", "has no host")]
    [InlineData("http://127.0.0.1:5080/base", "has a path ('/base')")]
    [InlineData("http://127.0.0.1:5080?x=1", "only scheme://host:port is allowed")]
    [InlineData("http://user@127.0.0.1:5080", "only scheme://host:port is allowed")]
    [InlineData("http://127.0.0.1 :5080", "only scheme://host:port is allowed")]
    [InlineData("http://bad_name:5080", "'bad_name' is neither an IP address nor a host name")]
    [InlineData("http://localhost:0", "port 0 (any free port) does not work with localhost")]
    [InlineData("http://unix:relative.sock", "without an absolute path")]
    [InlineData("", "no address to listen on")]
    [InlineData(" ; ;", "no address to listen on")]
    [InlineData(null, "no address to listen on")]
    public void Parse_Malformed_SaysWhatIsWrongNamingTheUrl(string? urls, string expected)
    {
        var result = BindAddresses.Parse(urls);

        Assert.False(result.IsValid);
        Assert.Empty(result.Addresses);
        Assert.Contains(expected, result.Error);
    }

    [Fact]
    public void Parse_SeveralBadAddresses_NamesEachAndReturnsNone()
    {
        var result = BindAddresses.Parse("http://127.0.0.1:5080;127.0.0.1:5081;http://[::1]:70000");

        Assert.False(result.IsValid);
        Assert.Empty(result.Addresses);
        Assert.Equal(
            "'127.0.0.1:5081' has no scheme: write it as http://127.0.0.1:5081 (or https://); " +
            "'http://[::1]:70000' has the port '70000'; a port is a number from 0 to 65535",
            result.Error);
    }

    [Theory]
    [InlineData("http://127.0.0.1:5080;http://127.0.0.1:5080")]
    [InlineData("http://127.0.0.1:5080;https://127.0.0.1:5080")]
    [InlineData("http://[::ffff:127.0.0.1]:5080;http://127.0.0.1:5080")]
    [InlineData("http://LOCALHOST:5080;http://localhost:5080/")]
    public void Parse_SameEndpointTwice_IsAnError(string urls)
    {
        var result = BindAddresses.Parse(urls);

        Assert.False(result.IsValid);
        Assert.Contains("listens where", result.Error);
    }

    [Theory]
    [InlineData("http://[::ffff:127.0.0.1]:0", "http://127.0.0.1:0", true)]
    [InlineData("http://[::ffff:0.0.0.0]:0", "http://0.0.0.0:0", false)] // tests stay on loopback: the normalized one is not bound
    public async Task Parse_MappedAddress_GivesAUrlKestrelCanBind(string given, string url, bool bindNormalized)
    {
        var parsed = BindAddresses.Parse(given);
        Assert.Equal(url, parsed.Urls);

        // What `bureau serve --urls` died of (rc 134): Kestrel's IPv6 listen socket is IPv6-only, and
        // Linux refuses to bind it to an IPv4-mapped address (EINVAL), a SocketException nothing caught.
        if (OperatingSystem.IsLinux())
        {
            var ex = await Assert.ThrowsAsync<SocketException>(() => StartAndStopKestrelAsync(given));
            Assert.Equal(SocketError.InvalidArgument, ex.SocketErrorCode);
        }
        if (bindNormalized) await StartAndStopKestrelAsync(parsed.Urls);
    }

    private static async Task StartAndStopKestrelAsync(string urls)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls(urls);
        await using var app = builder.Build();
        await app.StartAsync(TestContext.Current.CancellationToken);
        await app.StopAsync(TestContext.Current.CancellationToken);
    }

    [Fact]
    public void Parse_PortZeroTwice_IsFine()
    {
        Assert.Equal(2, BindAddresses.Parse("http://127.0.0.1:0;http://[::1]:0;").Addresses.Count);
        Assert.True(BindAddresses.Parse("http://127.0.0.1:0;http://127.0.0.1:0").IsValid);
    }
}
