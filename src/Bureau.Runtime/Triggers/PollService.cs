using System.Data.Common;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Bureau.Triggers;

/// <summary>
/// Runs the deployed poll triggers: each on its interval runs its query with <c>@cursor</c> (the last cursor value
/// accepted, from the event store), starts a run per row returned (a CloudEvent whose data is the row, key
/// <c>poll:NAME:CURSOR</c>) through <see cref="TriggerIngest"/>, and stores the cursor of the last row accepted. A
/// crash between a row's acceptance and the cursor's write polls the row again, and its key starts nothing new.
/// </summary>
internal sealed partial class PollService(IServiceProvider services, TimeProvider time, ILoggerFactory loggerFactory) : BackgroundService
{
    private readonly ILogger _logger = loggerFactory.CreateLogger("Bureau.Polls");

    internal static void Register(IServiceCollection services)
    {
        if (services.Any(d => d.ServiceType == typeof(PollService))) return;
        services.AddSingleton<PollService>();
        services.AddHostedService(sp => sp.GetRequiredService<PollService>());
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var engine = services.GetRequiredService<BureauEngine>();
        var polls = engine.Definitions.Triggers.Values.OfType<PollTriggerDefinition>().OrderBy(p => p.Name, StringComparer.Ordinal).ToList();
        if (polls.Count == 0) return;
        try
        {
            while (!engine.IsReady) await Task.Delay(TimeSpan.FromMilliseconds(200), time, stoppingToken);
            await Task.WhenAll(polls.Select(p => LoopAsync(p, stoppingToken)));
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    private async Task LoopAsync(PollTriggerDefinition poll, CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await PollOnceAsync(poll, stoppingToken);
            }
            catch (Exception ex) when (ex is not OperationCanceledException || !stoppingToken.IsCancellationRequested)
            {
                Log.PollFailed(_logger, ex, poll.Name); // the cursor did not move past what was not accepted: the next poll tries again
            }
            await Task.Delay(poll.Every, time, stoppingToken);
        }
    }

    /// <summary>Runs the query once and starts a run per new row; returns how many rows were accepted (started, seen before, or dead-lettered).</summary>
    /// <exception cref="InvalidOperationException">No ADO.NET provider is registered under the trigger's name, or the query has no cursor column.</exception>
    internal async Task<int> PollOnceAsync(PollTriggerDefinition poll, CancellationToken cancellationToken)
    {
        var ingest = services.GetRequiredService<TriggerIngest>();
        var store = ingest.Store ?? throw new InvalidOperationException($"poll trigger '{poll.Name}': this storage keeps no cursors (IEventStore)");
        var cursor = await store.GetCursorAsync(poll.Name, cancellationToken) ?? poll.InitialCursor;
        if (!DbProviderFactories.TryGetFactory(poll.Provider, out var factory))
        {
            throw new InvalidOperationException(
                $"poll trigger '{poll.Name}': no ADO.NET provider '{poll.Provider}' is registered (Microsoft.Data.Sqlite comes with UseSqliteStorage; register others with DbProviderFactories.RegisterFactory)");
        }
        var rows = await ReadAsync(poll, factory, cursor, cancellationToken);
        var accepted = 0;
        string? last = null;
        try
        {
            foreach (var (value, row) in rows)
            {
                var id = poll.KeyPrefix + value;
                var ev = new JsonObject
                {
                    ["specversion"] = "1.0", ["id"] = id, ["source"] = "/bureau/poll/" + poll.Name, ["type"] = poll.EventType,
                    ["datacontenttype"] = "application/json", ["data"] = row,
                };
                using var doc = JsonDocument.Parse(ev.ToJsonString());
                var root = doc.RootElement;
                await ingest.StartAsync(poll, id, value, root, root.GetProperty("data"), cancellationToken);
                accepted++;
                last = value;
            }
        }
        catch (Exception ex) when (ex is QueueFullException or WorkforceInboxFullException)
        {
            Log.QueueFull(_logger, poll.Name, ex.Message); // the rest waits for the next poll
        }
        finally
        {
            if (last is not null) await store.SetCursorAsync(poll.Name, last, time.GetUtcNow(), CancellationToken.None);
        }
        if (accepted > 0) Log.Polled(_logger, poll.Name, accepted, last!);
        return accepted;
    }

    private static async Task<List<(string Cursor, JsonObject Row)>> ReadAsync(PollTriggerDefinition poll, DbProviderFactory factory, string cursor, CancellationToken ct)
    {
        await using var connection = factory.CreateConnection() ?? throw new InvalidOperationException($"poll trigger '{poll.Name}': provider '{poll.Provider}' made no connection");
        connection.ConnectionString = poll.ConnectionString;
        await connection.OpenAsync(ct);
        await using var command = connection.CreateCommand();
        command.CommandText = poll.Query;
        var parameter = command.CreateParameter();
        parameter.ParameterName = "@cursor";
        parameter.Value = long.TryParse(cursor, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) ? n : cursor;
        command.Parameters.Add(parameter);
        await using var reader = await command.ExecuteReaderAsync(ct);
        var column = -1;
        for (var i = 0; i < reader.FieldCount; i++)
            if (string.Equals(reader.GetName(i), poll.CursorColumn, StringComparison.OrdinalIgnoreCase)) column = i;
        if (column < 0)
            throw new InvalidOperationException($"poll trigger '{poll.Name}': the query returns no column '{poll.CursorColumn}' (cursorColumn); it returns {string.Join(", ", Enumerable.Range(0, reader.FieldCount).Select(reader.GetName))}");
        var rows = new List<(string, JsonObject)>();
        while (await reader.ReadAsync(ct))
        {
            if (reader.IsDBNull(column)) throw new InvalidOperationException($"poll trigger '{poll.Name}': a row has no value in its cursor column '{poll.CursorColumn}'");
            var row = new JsonObject();
            for (var i = 0; i < reader.FieldCount; i++) row[reader.GetName(i)] = reader.IsDBNull(i) ? null : JsonValueOf(reader.GetValue(i));
            rows.Add((Convert.ToString(reader.GetValue(column), CultureInfo.InvariantCulture)!, row));
        }
        return rows;
    }

    private static JsonNode? JsonValueOf(object value) => value switch
    {
        string s => JsonValue.Create(s),
        long l => JsonValue.Create(l),
        int i => JsonValue.Create(i),
        short s16 => JsonValue.Create(s16),
        double d => JsonValue.Create(d),
        float f => JsonValue.Create(f),
        decimal m => JsonValue.Create(m),
        bool b => JsonValue.Create(b),
        DateTime dt => JsonValue.Create(dt),
        DateTimeOffset dto => JsonValue.Create(dto),
        Guid g => JsonValue.Create(g.ToString()),
        byte[] bytes => JsonValue.Create(Convert.ToBase64String(bytes)),
        _ => JsonValue.Create(Convert.ToString(value, CultureInfo.InvariantCulture)),
    };

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "Poll {Trigger}: {Count} new rows accepted, cursor now {Cursor}")]
        public static partial void Polled(ILogger logger, string trigger, int count, string cursor);

        [LoggerMessage(2, LogLevel.Error, "Poll {Trigger} failed; trying again at the next interval")]
        public static partial void PollFailed(ILogger logger, Exception exception, string trigger);

        [LoggerMessage(3, LogLevel.Warning, "Poll {Trigger}: {Reason}; the remaining rows wait for the next poll")]
        public static partial void QueueFull(ILogger logger, string trigger, string reason);
    }
}
