using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Bureau.Replay;

/// <summary>A recorded run as a replay fixture: a header and its journal.</summary>
/// <param name="Header">The header line's fields (<c>runId</c>, <c>agent</c>, <c>manifest</c>, ...).</param>
/// <param name="Journal">The journal, step 1 first.</param>
public sealed record RecordedRun(JsonObject Header, IReadOnlyList<JournalRecord> Journal)
{
    /// <summary>The run's id (the header's <c>runId</c>).</summary>
    public string RunId => Header["runId"]?.GetValue<string>() ?? throw new InvalidDataException("the recorded run's header has no runId");
}

/// <summary>
/// The file format of recorded runs (the replay corpus): JSON lines. Line 1 is a header object
/// (<c>{"format":"bureau.journal/1","runId":...}</c> plus whatever the recorder adds); every further
/// line is one journal step exactly as the API and <c>bureau runs show --json</c> write it:
/// <c>{"n":N,"at":"...","kind":"...",&lt;the entry's fields&gt;}</c>.
/// </summary>
public static class ReplayJournalFile
{
    /// <summary>The header's <c>format</c>.</summary>
    public const string Format = "bureau.journal/1";

    /// <summary>Writes <paramref name="journal"/> with <paramref name="header"/> (its <c>format</c> and <c>runId</c> are set here).</summary>
    public static void Write(TextWriter writer, string runId, JsonObject header, IReadOnlyList<JournalRecord> journal)
    {
        ArgumentNullException.ThrowIfNull(writer);
        ArgumentNullException.ThrowIfNull(header);
        ArgumentNullException.ThrowIfNull(journal);
        var line = new JsonObject { ["format"] = Format, ["runId"] = runId };
        foreach (var (k, v) in header)
        {
            if (k is not "format" and not "runId") line[k] = v?.DeepClone();
        }
        writer.Write(line.ToJsonString(new JsonSerializerOptions { Encoder = BureauJson.StorageEncoder }));
        writer.Write('\n');
        foreach (var record in journal)
        {
            writer.Write(Encoding.UTF8.GetString(BureauJson.SerializeStep(record)));
            writer.Write('\n');
        }
    }

    /// <summary>Reads a file written by <see cref="Write"/>.</summary>
    /// <exception cref="InvalidDataException">The file is not a recorded run; the message names the file and line.</exception>
    public static RecordedRun Read(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        using var reader = new StreamReader(path, Encoding.UTF8);
        return Read(reader, path);
    }

    /// <summary>Reads a recorded run from <paramref name="reader"/>; <paramref name="name"/> names it in errors.</summary>
    public static RecordedRun Read(TextReader reader, string name)
    {
        ArgumentNullException.ThrowIfNull(reader);
        JsonObject? header = null;
        var journal = new List<JournalRecord>();
        var lineNo = 0;
        while (reader.ReadLine() is { } line)
        {
            lineNo++;
            if (line.Length == 0) continue;
            try
            {
                var obj = JsonNode.Parse(line) as JsonObject ?? throw new InvalidDataException("not a JSON object");
                if (header is null)
                {
                    if (obj["format"]?.GetValue<string>() != Format) throw new InvalidDataException($"the header's format is not \"{Format}\"");
                    header = obj;
                    continue;
                }
                var n = obj["n"]?.GetValue<long>() ?? throw new InvalidDataException("no \"n\"");
                var at = obj["at"]?.GetValue<DateTimeOffset>() ?? throw new InvalidDataException("no \"at\"");
                obj.Remove("n");
                obj.Remove("at");
                journal.Add(new JournalRecord(n, at, BureauJson.DeserializeEntry(Encoding.UTF8.GetBytes(obj.ToJsonString()))));
            }
            catch (Exception ex) when (ex is JsonException or InvalidOperationException or FormatException or InvalidDataException)
            {
                throw new InvalidDataException($"{name}:{lineNo}: not a recorded run's line: {ex.Message}", ex);
            }
        }
        if (header is null) throw new InvalidDataException($"{name}: empty; a recorded run starts with a header line");
        return new RecordedRun(header, journal);
    }
}
