using System.Collections;
using System.Reflection;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Xunit;

namespace Bureau.Tests.Storage;

/// <summary>
/// The storage writer's fast path writes every kind of journal entry byte for byte as the
/// serializer does (what was stored before it, and what the readers parse), with optional members
/// absent and present, and text that needs escaping.
/// </summary>
public sealed class EntryWriterTests
{
    public static TheoryData<string, bool> EntryKinds()
    {
        var data = new TheoryData<string, bool>();
        foreach (var derived in typeof(JournalEntry).GetCustomAttributes<JsonDerivedTypeAttribute>())
        {
            data.Add(derived.DerivedType.Name, false);
            data.Add(derived.DerivedType.Name, true);
        }
        return data;
    }

    [Theory]
    [InlineData(typeof(ModelResponded))]
    [InlineData(typeof(ToolCompleted))]
    [InlineData(typeof(ToolIntent))]
    [InlineData(typeof(RunStarted))]
    public void FastWriter_TheHotEntryKinds_HaveOne(Type type) => Assert.NotNull(BureauJson.FastWriter(type));

    [Theory]
    [MemberData(nameof(EntryKinds))]
    public void Write_EveryEntryKind_MatchesTheSerializer(string typeName, bool fill)
    {
        var type = typeof(JournalEntry).Assembly.GetTypes().Single(t => t.Name == typeName && typeof(JournalEntry).IsAssignableFrom(t));
        var entry = (JournalEntry)Sample(type, fill, 0)!;
        var writer = new EntryWriter();

        var expected = BureauJson.SerializeEntry(entry);
        var actual = writer.Write(entry).ToArray();
        Assert.Equal(Encoding.UTF8.GetString(expected), Encoding.UTF8.GetString(actual));
        // The buffer is reused: a second entry does not carry anything of the first.
        Assert.Equal(Encoding.UTF8.GetString(BureauJson.SerializeEntry(new RunFinished(RunStatus.Succeeded, "ok", null, null))),
            Encoding.UTF8.GetString(writer.Write(new RunFinished(RunStatus.Succeeded, "ok", null, null)).ToArray()));
        Assert.Equal(entry, BureauJson.DeserializeEntry(actual), EntryComparer.Instance);
    }

    /// <summary>An instance of <paramref name="type"/>: every optional member null, or every member set ("fill").</summary>
    private static object? Sample(Type type, bool fill, int depth)
    {
        if (Nullable.GetUnderlyingType(type) is { } inner) return fill ? Sample(inner, fill, depth) : null;
        if (type == typeof(string)) return "text \"quoted\" caf\u00e9 <b> \n \u2028 \U0001F600";
        if (type == typeof(int)) return 3;
        if (type == typeof(long)) return 1234567890123L;
        if (type == typeof(double)) return 1.5;
        if (type == typeof(bool)) return true;
        if (type == typeof(DateTimeOffset)) return new DateTimeOffset(2026, 12, 6, 10, 30, 0, TimeSpan.Zero);
        if (type == typeof(TimeSpan)) return TimeSpan.FromSeconds(90);
        if (type.IsEnum) return Enum.GetValues(type).GetValue(Enum.GetValues(type).Length - 1);
        if (type == typeof(JsonElement)) return JsonDocument.Parse("""{"a":[1,"b",null]}""").RootElement.Clone();
        if (type.IsGenericType && type.GetGenericArguments() is [var item] && typeof(IEnumerable).IsAssignableFrom(type))
        {
            var list = (IList)Activator.CreateInstance(typeof(List<>).MakeGenericType(item))!;
            if (depth < 3) list.Add(Sample(item, fill, depth + 1));
            return list;
        }
        if (type.IsGenericType && type.GetGenericArguments() is [var key, var value] && typeof(IEnumerable).IsAssignableFrom(type))
        {
            var dict = (IDictionary)Activator.CreateInstance(typeof(Dictionary<,>).MakeGenericType(key, value))!;
            dict[Sample(key, fill, depth + 1)!] = Sample(value, fill, depth + 1);
            return dict;
        }
        if (type.IsAbstract)
        {
            var derived = type.GetCustomAttributes<JsonDerivedTypeAttribute>().Last().DerivedType;
            return Sample(derived, fill, depth + 1);
        }
        var ctor = type.GetConstructors().OrderByDescending(c => c.GetParameters().Length).First();
        var args = ctor.GetParameters().Select(p =>
            !fill && p.HasDefaultValue ? p.DefaultValue : Sample(p.ParameterType, fill || !IsNullable(p), depth + 1)).ToArray();
        var instance = ctor.Invoke(args);
        foreach (var property in type.GetProperties().Where(p => p.SetMethod is { IsPublic: true } && p.GetCustomAttribute<JsonIgnoreAttribute>() is null))
        {
            var required = property.GetCustomAttribute<System.Runtime.CompilerServices.RequiredMemberAttribute>() is not null;
            if ((fill || required) && property.GetValue(instance) is null) property.SetValue(instance, Sample(property.PropertyType, true, depth + 1));
        }
        return instance;
    }

    private static bool IsNullable(ParameterInfo p) =>
        Nullable.GetUnderlyingType(p.ParameterType) is not null || new NullabilityInfoContext().Create(p).WriteState == NullabilityState.Nullable;

    /// <summary>Entries compare by their JSON (records holding lists compare lists by reference).</summary>
    private sealed class EntryComparer : IEqualityComparer<JournalEntry>
    {
        public static readonly EntryComparer Instance = new();
        public bool Equals(JournalEntry? x, JournalEntry? y) => BureauJson.SerializeEntry(x!).AsSpan().SequenceEqual(BureauJson.SerializeEntry(y!));
        public int GetHashCode(JournalEntry obj) => 0;
    }
}
