using System.Reflection;
using System.Text.Json.Serialization;

namespace Bureau;

/// <summary>
/// The one naming of enum values on the wire: the <see cref="JsonStringEnumMemberNameAttribute"/> each
/// value carries (what JSON writes), read once per enum type. The API, the CLI, the store and telemetry
/// all name enum values through here.
/// </summary>
public static class WireNames
{
    /// <summary>The wire name of <paramref name="value"/> (<c>succeeded</c>, <c>write</c>, ...).</summary>
    public static string Of<TEnum>(TEnum value) where TEnum : struct, Enum => Names<TEnum>.ByValue[value];

    /// <summary>The value whose wire name is exactly <paramref name="name"/> (case-sensitive); false when none is.</summary>
    public static bool TryParse<TEnum>(string? name, out TEnum value) where TEnum : struct, Enum
    {
        if (name is not null && Names<TEnum>.ByName.TryGetValue(name, out value)) return true;
        value = default;
        return false;
    }

    /// <summary>Every wire name of <typeparamref name="TEnum"/>, in declaration order.</summary>
    public static IReadOnlyList<string> All<TEnum>() where TEnum : struct, Enum => Names<TEnum>.InOrder;

    private static class Names<TEnum> where TEnum : struct, Enum
    {
        public static readonly Dictionary<TEnum, string> ByValue = [];
        public static readonly Dictionary<string, TEnum> ByName = new(StringComparer.Ordinal);
        public static readonly List<string> InOrder = [];

        static Names()
        {
            foreach (var field in typeof(TEnum).GetFields(BindingFlags.Public | BindingFlags.Static))
            {
                var value = (TEnum)field.GetValue(null)!;
                var name = field.GetCustomAttribute<JsonStringEnumMemberNameAttribute>()?.Name ?? field.Name.ToLowerInvariant();
                ByValue[value] = name;
                ByName[name] = value;
                InOrder.Add(name);
            }
        }
    }
}
