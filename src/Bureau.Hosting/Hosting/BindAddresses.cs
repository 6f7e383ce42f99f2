using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Bureau.Hosting;

/// <summary>What an address listens on, as the loopback rule sees it.</summary>
internal enum BindScope
{
    /// <summary>This machine only: <c>localhost</c>, <c>127.0.0.0/8</c>, <c>::1</c> (also written <c>::ffff:127.x.x.x</c>).</summary>
    Loopback,
    /// <summary>
    /// Every interface: <c>*</c>, <c>+</c>, <c>0.0.0.0</c>, <c>[::]</c>, <c>[::ffff:0.0.0.0]</c>, and any host
    /// name other than <c>localhost</c> (Kestrel binds a name to every interface).
    /// </summary>
    AllInterfaces,
    /// <summary>One address that is not loopback (<c>192.0.2.10</c>, <c>[2001:db8::1]</c>).</summary>
    OneAddress,
    /// <summary>A Unix domain socket (<c>http://unix:/run/bureau.sock</c>): not loopback for the key rule.</summary>
    UnixSocket,
}

/// <summary>One parsed address of <c>--urls</c>.</summary>
/// <param name="Given">The text as given (trimmed).</param>
/// <param name="Url">
/// What to hand to Kestrel: scheme in lower case, no trailing slash, IPv4-mapped IPv6 addresses written as
/// the IPv4 address they mean (Kestrel cannot bind <c>[::ffff:a.b.c.d]</c>: its IPv6 listen socket is
/// IPv6-only, and Linux refuses the bind with EINVAL).
/// </param>
/// <param name="Scheme"><c>http</c> or <c>https</c>.</param>
/// <param name="Host">The host as bound: <c>localhost</c>, a wildcard as given, an IP address (IPv6 without brackets), a host name, or the socket path.</param>
/// <param name="Port">The port (0: one the system picks); 0 for a Unix socket.</param>
/// <param name="Scope">Loopback, every interface, one other address, or a Unix socket.</param>
internal sealed record BindAddress(string Given, string Url, string Scheme, string Host, int Port, BindScope Scope)
{
    /// <summary>True when only this machine can connect (see <see cref="BindScope.Loopback"/>).</summary>
    public bool IsLoopback => Scope == BindScope.Loopback;
}

/// <summary>The addresses of <c>--urls</c>, or why they are not usable (every problem, each naming its URL).</summary>
internal sealed record BindAddressList(IReadOnlyList<BindAddress> Addresses, string? Error)
{
    /// <summary>True when every address parsed.</summary>
    public bool IsValid => Error is null;

    /// <summary>The normalized URLs, ';'-separated, for <c>UseUrls</c>.</summary>
    public string Urls => string.Join(';', Addresses.Select(a => a.Url));

    /// <summary>The addresses that are not loopback (those that need API keys).</summary>
    public IEnumerable<BindAddress> Exposed => Addresses.Where(a => !a.IsLoopback);
}

/// <summary>
/// Parses the <c>--urls</c> value (';'-separated, as <c>UseUrls</c> takes it) before Kestrel binds, so a bad
/// address is a one-line error naming it instead of an exception out of the server start, and each address is
/// classified as loopback or not the way Kestrel will bind it. Pure: no DNS, no sockets.
/// </summary>
internal static class BindAddresses
{
    private const string UnixPrefix = "unix:";

    /// <summary>Parses <paramref name="urls"/>; the result has either every address or an error naming each bad one.</summary>
    public static BindAddressList Parse(string? urls)
    {
        var entries = (urls ?? string.Empty).Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (entries.Length == 0)
            return new BindAddressList([], "no address to listen on: give at least one URL, such as http://127.0.0.1:5080");

        var addresses = new List<BindAddress>();
        var errors = new List<string>();
        var endpoints = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var entry in entries)
        {
            if (ParseOne(entry, out var address) is { } error)
            {
                errors.Add(error);
                continue;
            }
            // The same endpoint twice (whatever the scheme) would fail at bind time with "address already in use".
            var endpoint = address.Scope == BindScope.UnixSocket ? address.Host : $"{address.Host}|{address.Port}";
            if (address.Port != 0 || address.Scope == BindScope.UnixSocket)
            {
                if (endpoints.TryGetValue(endpoint, out var first))
                {
                    errors.Add($"'{entry}' listens where '{first}' already does; give each address once");
                    continue;
                }
                endpoints[endpoint] = entry;
            }
            addresses.Add(address);
        }
        return errors.Count > 0 ? new BindAddressList([], string.Join("; ", errors)) : new BindAddressList(addresses, null);
    }

    /// <summary>Parses one URL; returns why it is not usable, or null with <paramref name="address"/> set.</summary>
    private static string? ParseOne(string url, out BindAddress address)
    {
        address = null!;
        var schemeEnd = url.IndexOf("://", StringComparison.Ordinal);
        if (schemeEnd < 0)
            return $"'{url}' has no scheme: write it as http://{url} (or https://)";
        var scheme = url[..schemeEnd].ToLowerInvariant();
        if (scheme is not ("http" or "https"))
            return $"'{url}' has the scheme '{url[..schemeEnd]}'; only http:// and https:// are supported";
        var rest = url[(schemeEnd + 3)..];
        if (rest.IndexOfAny(['?', '#', '@', '\\']) >= 0 || rest.Any(char.IsWhiteSpace) || rest.Any(char.IsControl))
            return $"'{url}' is not a listen address: only scheme://host:port is allowed (no user, query, fragment, spaces or backslashes)";

        if (rest.StartsWith(UnixPrefix, StringComparison.OrdinalIgnoreCase))
        {
            var path = rest[UnixPrefix.Length..];
            if (!path.StartsWith('/') || path.Length == 1)
                return $"'{url}' names a Unix socket without an absolute path: write {scheme}://unix:/path/to/socket";
            address = new BindAddress(url, $"{scheme}://{UnixPrefix}{path}", scheme, path, 0, BindScope.UnixSocket);
            return null;
        }

        // host[:port][/] : a path base (/base) cannot be set through the address (Kestrel refuses it at start).
        var slash = rest.IndexOf('/');
        var authority = slash < 0 ? rest : rest[..slash];
        if (slash >= 0 && slash != rest.Length - 1)
            return $"'{url}' has a path ('{rest[slash..]}'); an address cannot carry a path base: remove it";
        if (authority.Length == 0)
            return $"'{url}' has no host: write {scheme}://127.0.0.1:PORT (this machine only) or {scheme}://0.0.0.0:PORT (every interface)";

        string host;
        string? portText;
        if (authority.StartsWith('['))
        {
            var close = authority.IndexOf(']');
            if (close < 0) return $"'{url}' opens '[' without closing it: write an IPv6 address as [::1]";
            host = authority[1..close];
            var after = authority[(close + 1)..];
            if (after.Length > 0 && after[0] != ':') return $"'{url}' has '{after}' after the IPv6 address; expected ':PORT'";
            portText = after.Length > 0 ? after[1..] : null;
            if (!IPAddress.TryParse(host, out var v6) || v6.AddressFamily != AddressFamily.InterNetworkV6)
                return $"'{url}': '[{host}]' is not an IPv6 address";
        }
        else
        {
            var colon = authority.IndexOf(':');
            if (colon >= 0 && authority.IndexOf(':', colon + 1) >= 0)
                return $"'{url}' looks like an IPv6 address without brackets: write it as {scheme}://[ADDRESS]:PORT, for example {scheme}://[::1]:5080";
            host = colon < 0 ? authority : authority[..colon];
            portText = colon < 0 ? null : authority[(colon + 1)..];
            if (host.Length == 0)
                return $"'{url}' has no host: write {scheme}://127.0.0.1:PORT (this machine only) or {scheme}://0.0.0.0:PORT (every interface)";
        }

        int port;
        if (portText is null)
        {
            port = scheme == "https" ? 443 : 80; // as Kestrel does
        }
        else if (portText.Length == 0 || portText.Length > 5 || !portText.All(char.IsAsciiDigit)
                 || !int.TryParse(portText, NumberStyles.None, CultureInfo.InvariantCulture, out port) || port > 65535)
        {
            return $"'{url}' has the port '{portText}'; a port is a number from 0 to 65535";
        }

        if (host is "*" or "+")
        {
            address = new BindAddress(url, $"{scheme}://{host}:{port}", scheme, host, port, BindScope.AllInterfaces);
            return null;
        }
        if (string.Equals(host, "localhost", StringComparison.OrdinalIgnoreCase))
        {
            // Kestrel binds localhost to 127.0.0.1 and [::1] on one port, so it cannot pick the port itself.
            if (port == 0) return $"'{url}': port 0 (any free port) does not work with localhost; use {scheme}://127.0.0.1:0";
            address = new BindAddress(url, $"{scheme}://localhost:{port}", scheme, "localhost", port, BindScope.Loopback);
            return null;
        }
        if (IPAddress.TryParse(host, out var ip))
        {
            var meant = Meant(ip);
            var scope = IsWildcard(meant) ? BindScope.AllInterfaces : IPAddress.IsLoopback(meant) ? BindScope.Loopback : BindScope.OneAddress;
            // The address as Kestrel can bind it: mapped IPv4 as IPv4; the scope id (fe80::1%eth0) kept.
            var bound = ip.IsIPv4MappedToIPv6 ? ip.MapToIPv4() : ip;
            var text = bound.ToString();
            var urlHost = bound.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{text}]" : text;
            address = new BindAddress(url, $"{scheme}://{urlHost}:{port}", scheme, text, port, scope);
            return null;
        }
        if (!IsHostName(host))
            return $"'{url}': '{host}' is neither an IP address nor a host name";
        // Kestrel binds any other name to every interface (it does not resolve it).
        address = new BindAddress(url, $"{scheme}://{host}:{port}", scheme, host, port, BindScope.AllInterfaces);
        return null;
    }

    /// <summary>The address without its scope id, and an IPv4-mapped IPv6 address as the IPv4 address it stands for.</summary>
    private static IPAddress Meant(IPAddress ip)
    {
        if (ip.IsIPv4MappedToIPv6) return ip.MapToIPv4();
        return ip.AddressFamily == AddressFamily.InterNetworkV6 && ip.ScopeId != 0 ? new IPAddress(ip.GetAddressBytes()) : ip;
    }

    private static bool IsWildcard(IPAddress ip) => ip.Equals(IPAddress.Any) || ip.Equals(IPAddress.IPv6Any);

    private static bool IsHostName(string host)
    {
        if (host.Length > 253) return false;
        foreach (var label in host.Split('.'))
        {
            if (label.Length is 0 or > 63 || label[0] == '-' || label[^1] == '-') return false;
            if (!label.All(c => char.IsAsciiLetterOrDigit(c) || c == '-')) return false;
        }
        return true;
    }
}
