using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Npgsql;
using Xunit;

namespace Bureau.Storage.PostgreSql.Tests;

/// <summary>
/// The server goes away (a TCP proxy in front of it drops every connection and refuses new ones) and comes back:
/// writes fail with a storage fault that names the server and change nothing, the store's health says so, and once
/// the server is reachable again the probe clears it and writes work.
/// </summary>
public sealed class ServerAwayTests : IAsyncDisposable
{
    private static readonly DateTimeOffset T0 = new(2026, 1, 2, 3, 4, 5, TimeSpan.Zero);
    private readonly PostgreSqlTestDatabase _db = new();
    private readonly LoopbackProxy _proxy;

    public ServerAwayTests()
    {
        var server = new NpgsqlConnectionStringBuilder(_db.ConnectionString);
        _proxy = new LoopbackProxy(server.Host!, server.Port);
    }

    public async ValueTask DisposeAsync()
    {
        _proxy.Dispose();
        await _db.DisposeAsync();
    }

    [Fact]
    public async Task Writes_WhileTheServerIsAway_FailAsAStorageFault_ThenWorkOnceItIsBack()
    {
        var cs = new NpgsqlConnectionStringBuilder(_db.ConnectionString) { Host = "127.0.0.1", Port = _proxy.Port, Timeout = 5 }.ConnectionString;
        await using var store = new PostgreSqlRunStore(new PostgreSqlStoreOptions { ConnectionString = cs, Schema = _db.Schema });
        await store.InitializeAsync(TestContext.Current.CancellationToken);
        await store.SubmitAsync(new NewRun { Id = "r1", Agent = "a", Input = "i", Started = new RunStarted("a", "i"), CreatedAt = T0 }, TestContext.Current.CancellationToken);
        var append = new AppendRequest { RunId = "r1", ExpectedVersion = 1, At = T0, Entries = [new RunResumed("test")] };

        _proxy.Down();
        var ex = await Assert.ThrowsAsync<StorageUnavailableException>(async () => await store.AppendAsync(append, TestContext.Current.CancellationToken));
        Assert.Equal(StorageFault.IoError, ex.Fault);
        Assert.Contains($"127.0.0.1:{_proxy.Port}", ex.Message);
        Assert.False(store.Health.CanWrite);
        Assert.False((await store.ProbeWriteAsync(TestContext.Current.CancellationToken)).CanWrite);

        _proxy.Up();
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (!(await store.ProbeWriteAsync(TestContext.Current.CancellationToken)).CanWrite)
        {
            Assert.True(DateTime.UtcNow < deadline, "the store did not write again within 60 s of the server coming back: " + store.Health.Detail);
            await Task.Delay(200, TestContext.Current.CancellationToken);
        }
        Assert.True(store.Health.CanWrite);
        // The failed append changed nothing: the run is still at version 1, and the same append now takes.
        Assert.Equal(1, (await store.GetRunAsync("r1", TestContext.Current.CancellationToken))!.Version);
        await store.AppendAsync(append, TestContext.Current.CancellationToken);
        Assert.Equal(2, (await store.GetRunAsync("r1", TestContext.Current.CancellationToken))!.Version);
    }

    /// <summary>A TCP proxy on 127.0.0.1 to the server; <see cref="Down"/> drops every connection and refuses new ones until <see cref="Up"/>.</summary>
    private sealed class LoopbackProxy : IDisposable
    {
        private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
        private readonly ConcurrentDictionary<TcpClient, byte> _open = new();
        private readonly CancellationTokenSource _stop = new();
        private readonly string _host;
        private readonly int _port;
        private volatile bool _up = true;

        public LoopbackProxy(string host, int port)
        {
            _host = host;
            _port = port;
            _listener.Start();
            Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
            _ = Task.Run(AcceptAsync);
        }

        public int Port { get; }

        public void Down()
        {
            _up = false;
            foreach (var c in _open.Keys) c.Dispose();
            _open.Clear();
        }

        public void Up() => _up = true;

        private async Task AcceptAsync()
        {
            while (!_stop.IsCancellationRequested)
            {
                TcpClient client;
                try
                {
                    client = await _listener.AcceptTcpClientAsync(_stop.Token);
                }
                catch (Exception) when (_stop.IsCancellationRequested)
                {
                    return;
                }
                if (!_up)
                {
                    client.Dispose();
                    continue;
                }
                var server = new TcpClient();
                try
                {
                    await server.ConnectAsync(_host, _port, _stop.Token);
                }
                catch (Exception)
                {
                    client.Dispose();
                    server.Dispose();
                    continue;
                }
                _open[client] = 0;
                _open[server] = 0;
                _ = PumpAsync(client, server);
                _ = PumpAsync(server, client);
            }
        }

        private async Task PumpAsync(TcpClient from, TcpClient to)
        {
            try
            {
                await from.GetStream().CopyToAsync(to.GetStream(), _stop.Token);
            }
            catch (Exception)
            {
                // A side closed (or Down dropped it).
            }
            from.Dispose();
            to.Dispose();
            _open.TryRemove(from, out _);
            _open.TryRemove(to, out _);
        }

        public void Dispose()
        {
            _stop.Cancel();
            _listener.Stop();
            Down();
            _stop.Dispose();
        }
    }
}
