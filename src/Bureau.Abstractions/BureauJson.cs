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
