using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;

namespace Bureau;

/// <summary>The source-generated JSON contract of everything Bureau persists.</summary>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    UseStringEnumConverter = true)]
[JsonSerializable(typeof(JournalEntry))]
[JsonSerializable(typeof(RunRecord))]
[JsonSerializable(typeof(WaitingFor))]
[JsonSerializable(typeof(UsageRecord))]
[JsonSerializable(typeof(RunFailure))]
[JsonSerializable(typeof(IReadOnlyList<ToolCallRecord>))]
[JsonSerializable(typeof(DateTimeOffset))]
public sealed partial class BureauJsonContext : JsonSerializerContext;

/// <summary>Serialization helpers over <see cref="BureauJsonContext"/>.</summary>
public static class BureauJson
{
    // The default encoder escapes quotes and non-ASCII inside strings (\u0022); stored journals are
    // data, never HTML, so they are written with relaxed escaping: smaller and readable.
    private static readonly BureauJsonContext s_storage = new(new JsonSerializerOptions(BureauJsonContext.Default.Options)
    {
        Encoder = StorageEncoder,
        TypeInfoResolver = null,
    });

    /// <summary>Serializes an entry, discriminator included.</summary>
    public static byte[] SerializeEntry(JournalEntry entry) =>
        JsonSerializer.SerializeToUtf8Bytes(entry, s_storage.JournalEntry);

    /// <summary>Writes an entry as <see cref="SerializeEntry"/> does, into <paramref name="writer"/>.</summary>
    public static void WriteEntry(Utf8JsonWriter writer, JournalEntry entry) =>
        JsonSerializer.Serialize(writer, entry, s_storage.JournalEntry);

    /// <summary>
    /// The source generator's direct writer of an entry type (no serializer state: the polymorphic
    /// path allocates a frame stack per call), or null where the generator made none. It writes the
    /// entry's own members, without the <c>kind</c> discriminator; see <see cref="EntryWriter"/>.
    /// </summary>
    internal static Action<Utf8JsonWriter, JournalEntry>? FastWriter(Type entryType) => s_fastWriters.GetOrAdd(entryType, static type =>
    {
        var info = BureauJsonContext.Default.GetTypeInfo(type);
        var handler = info?.GetType().GetProperty("SerializeHandler")?.GetValue(info) as Delegate;
        if (handler is null) return null;
        var method = typeof(BureauJson).GetMethod(nameof(Adapt), System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)!.MakeGenericMethod(type);
        return (Action<Utf8JsonWriter, JournalEntry>)method.Invoke(null, [handler])!;
    });

    private static Action<Utf8JsonWriter, JournalEntry> Adapt<T>(Action<Utf8JsonWriter, T> handler) where T : JournalEntry =>
        (writer, entry) => handler(writer, (T)entry);

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<Type, Action<Utf8JsonWriter, JournalEntry>?> s_fastWriters = new();

    /// <summary>The encoder of stored entries (relaxed: quotes and non-ASCII text are not escaped).</summary>
    public static System.Text.Encodings.Web.JavaScriptEncoder StorageEncoder => System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping;

    /// <summary>Reads an entry written by <see cref="SerializeEntry"/>.</summary>
    public static JournalEntry DeserializeEntry(ReadOnlySpan<byte> utf8) =>
        JsonSerializer.Deserialize(utf8, BureauJsonContext.Default.JournalEntry)
        ?? throw new JsonException("journal entry is null");

    /// <summary>
    /// One journal record as the API, the event stream and <c>bureau runs show --json</c> write it:
    /// <c>{"n":N,"at":"...","kind":"...",&lt;the entry's fields&gt;}</c>. The one place a step becomes JSON:
    /// the entry is serialized once, as the store writes it, and prefixed with its number and time.
    /// </summary>
    public static byte[] SerializeStep(JournalRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        var entry = SerializeEntry(record.Entry);
        var at = JsonSerializer.SerializeToUtf8Bytes(record.At, s_storage.DateTimeOffset);
        Span<byte> number = stackalloc byte[24];
        record.N.TryFormat(number, out var digits, default, System.Globalization.CultureInfo.InvariantCulture);
        var result = new byte[5 + digits + 6 + at.Length + 1 + (entry.Length - 1)];
        var span = result.AsSpan();
        var pos = Put(span, 0, "{\"n\":"u8);
        pos = Put(span, pos, number[..digits]);
        pos = Put(span, pos, ",\"at\":"u8);
        pos = Put(span, pos, at);
        pos = Put(span, pos, ","u8);
        Put(span, pos, entry.AsSpan(1));
        return result;
    }

    private static int Put(Span<byte> target, int at, ReadOnlySpan<byte> bytes)
    {
        bytes.CopyTo(target[at..]);
        return at + bytes.Length;
    }

    /// <summary>Serializes a value with Bureau's contract.</summary>
    public static string Serialize<T>(T value, JsonTypeInfo<T> typeInfo) => JsonSerializer.Serialize(value, typeInfo);
}

/// <summary>
/// Writes journal entries exactly as <see cref="BureauJson.WriteEntry"/> does, into one reused
/// buffer, through the source generator's direct writers where it made them: the storage writer's
/// path for every appended entry. Not thread-safe: one per writer.
/// </summary>
public sealed class EntryWriter
{
    private readonly System.Buffers.ArrayBufferWriter<byte> _output = new(1024);
    private readonly System.Buffers.ArrayBufferWriter<byte> _members = new(1024);
    private readonly Utf8JsonWriter _outputWriter;
    private readonly Utf8JsonWriter _membersWriter;

    /// <summary>Creates a writer with the storage encoder.</summary>
    public EntryWriter()
    {
        var options = new JsonWriterOptions { Encoder = BureauJson.StorageEncoder, SkipValidation = true };
        _outputWriter = new Utf8JsonWriter(_output, options);
        _membersWriter = new Utf8JsonWriter(_members, options);
    }

    /// <summary>The entry's JSON, discriminator first; valid until the next call.</summary>
    public ReadOnlySpan<byte> Write(JournalEntry entry)
    {
        ArgumentNullException.ThrowIfNull(entry);
        _output.ResetWrittenCount();
        if (BureauJson.FastWriter(entry.GetType()) is { } fast && IsPlain(entry.Kind))
        {
            _members.ResetWrittenCount();
            _membersWriter.Reset(_members);
            fast(_membersWriter, entry);
            _membersWriter.Flush();
            var members = _members.WrittenSpan; // {...}
            Append("{\"kind\":\""u8);
            var kind = _output.GetSpan(entry.Kind.Length);
            for (var i = 0; i < entry.Kind.Length; i++) kind[i] = (byte)entry.Kind[i];
            _output.Advance(entry.Kind.Length);
            Append("\""u8);
            if (members.Length > 2) Append(","u8);
            Append(members[1..]);
            return _output.WrittenSpan;
        }
        _outputWriter.Reset(_output);
        BureauJson.WriteEntry(_outputWriter, entry);
        _outputWriter.Flush();
        return _output.WrittenSpan;
    }

    private void Append(ReadOnlySpan<byte> bytes)
    {
        bytes.CopyTo(_output.GetSpan(bytes.Length));
        _output.Advance(bytes.Length);
    }

    // Kind names are lower-case ASCII with dots and dashes: written as they are, never escaped.
    private static bool IsPlain(string kind)
    {
        foreach (var c in kind)
        {
            if (c is not ((>= 'a' and <= 'z') or (>= '0' and <= '9') or '.' or '-' or '_')) return false;
        }
        return true;
    }
}
