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
    /// <summary>Serializes an entry, discriminator included.</summary>
    public static byte[] SerializeEntry(JournalEntry entry) =>
        JsonSerializer.SerializeToUtf8Bytes(entry, BureauJsonContext.Default.JournalEntry);

    /// <summary>Reads an entry written by <see cref="SerializeEntry"/>.</summary>
    public static JournalEntry DeserializeEntry(ReadOnlySpan<byte> utf8) =>
        JsonSerializer.Deserialize(utf8, BureauJsonContext.Default.JournalEntry)
        ?? throw new JsonException("journal entry is null");

    /// <summary>Serializes a value with Bureau's contract.</summary>
    public static string Serialize<T>(T value, JsonTypeInfo<T> typeInfo) => JsonSerializer.Serialize(value, typeInfo);
}
