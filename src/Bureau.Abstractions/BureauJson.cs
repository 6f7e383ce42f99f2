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
[JsonSerializable(typeof(IReadOnlyList<ToolCallRecord>))]
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

    /// <summary>Serializes a value with Bureau's contract.</summary>
    public static string Serialize<T>(T value, JsonTypeInfo<T> typeInfo) => JsonSerializer.Serialize(value, typeInfo);
}
