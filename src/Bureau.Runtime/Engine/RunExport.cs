using System.Text.Json;

namespace Bureau;

/// <summary>Which finished runs <see cref="RunExport"/> writes.</summary>
internal sealed class RunExportQuery
{
    /// <summary>Only runs of this agent.</summary>
    public string? Agent { get; init; }

    /// <summary>Only runs with this status (succeeded, failed or canceled); null for every finished run.</summary>
    public RunStatus? Status { get; init; }

    /// <summary>Only runs that ended (their row's last update) before this time.</summary>
    public DateTimeOffset? Before { get; init; }
}

/// <summary>
/// Finished runs as JSON lines: one object per run, the document of <c>GET /v1/runs/{id}</c> (the run
/// record, then <c>steps</c>: its journal, each step as <see cref="BureauJson.SerializeStep"/> writes it).
/// </summary>
internal static class RunExport
{
    /// <summary>Writes the finished runs <paramref name="query"/> selects, newest first, one per line; returns how many.</summary>
    public static async Task<int> WriteAsync(IRunStore store, RunExportQuery query, Stream output, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(query);
        ArgumentNullException.ThrowIfNull(output);
        if (query.Status is { } s && !s.IsTerminal())
            throw new ArgumentException($"status '{s.ToWireName()}' is not a finished status (succeeded, failed, canceled)", nameof(query));
        var count = 0;
        string? cursor = null;
        do
        {
            var page = await store.ListRunsAsync(new RunQuery { Agent = query.Agent, Status = query.Status, Limit = 500, Cursor = cursor }, cancellationToken);
            foreach (var run in page.Items)
            {
                if (!run.Status.IsTerminal() || (query.Before is { } before && run.UpdatedAt >= before)) continue;
                var journal = await store.ReadJournalAsync(run.Id, 0, cancellationToken);
                await WriteLineAsync(output, run, journal, cancellationToken);
                count++;
            }
            cursor = page.Next;
        }
        while (cursor is not null);
        await output.FlushAsync(cancellationToken);
        return count;
    }

    /// <summary>Writes one run and its journal as one line of JSON.</summary>
    public static async Task WriteLineAsync(Stream output, RunRecord run, IReadOnlyList<JournalRecord> journal, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(output);
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = RunDocuments.JsonOptions.Encoder }))
            RunDocuments.WriteFull(writer, run, journal);
        buffer.WriteByte((byte)'\n');
        buffer.Position = 0;
        await buffer.CopyToAsync(output, cancellationToken);
    }
}
