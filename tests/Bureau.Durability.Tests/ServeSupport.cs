using System.Net;
using System.Net.Sockets;

namespace Bureau.Durability.Tests;

/// <summary>Starting and probing real `bureau serve` processes.</summary>
internal static class ServeSupport
{
    /// <summary>A loopback port free right now.</summary>
    public static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    /// <summary>Polls /readyz as a load balancer would, until it answers 200 or <paramref name="timeout"/> passes.</summary>
    public static async Task WaitReadyAsync(HttpClient http, BureauProcess p, TimeSpan timeout, CancellationToken ct)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            try
            {
                using var res = await http.GetAsync("/readyz", ct);
                if (res.IsSuccessStatusCode) return;
            }
            catch (HttpRequestException) { }
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"bureau serve was not ready within {timeout.TotalSeconds}s\n{p.Stderr}");
            await Task.Delay(50, ct);
        }
    }
}
