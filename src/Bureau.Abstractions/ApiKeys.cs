using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Serialization;

namespace Bureau;

/// <summary>
/// What an API key may do. Each role includes reading; <see cref="Admin"/> may do everything,
/// including managing keys.
/// </summary>
[JsonConverter(typeof(JsonStringEnumConverter<ApiKeyRole>))]
public enum ApiKeyRole
{
    /// <summary>Reads runs, their events and the deployed agents.</summary>
    [JsonStringEnumMemberName("viewer")] Viewer,
    /// <summary>Reads, starts runs and cancels them.</summary>
    [JsonStringEnumMemberName("operator")] Operator,
    /// <summary>Reads and answers what runs wait for (resolves in-doubt steps).</summary>
    [JsonStringEnumMemberName("approver")] Approver,
    /// <summary>Everything, including creating, listing and revoking keys.</summary>
    [JsonStringEnumMemberName("admin")] Admin,
}

/// <summary>A stored API key: never the secret, only its SHA-256 hash.</summary>
public sealed record ApiKeyRecord
{
    /// <summary>The key's public id (the part after <c>bk_</c>); safe to log and show.</summary>
    public required string Id { get; init; }
    /// <summary>A label given at creation, if any.</summary>
    public string? Name { get; init; }
    /// <summary>What the key may do.</summary>
    public required ApiKeyRole Role { get; init; }
    /// <summary>SHA-256 of the whole key text, lower-case hex.</summary>
    public required string Hash { get; init; }
    /// <summary>When it was created.</summary>
    public required DateTimeOffset CreatedAt { get; init; }
    /// <summary>When it was revoked; null while it is valid.</summary>
    public DateTimeOffset? RevokedAt { get; init; }
}

/// <summary>A key just created: the record to store and the key text, shown once and never stored.</summary>
/// <param name="Record">What is stored.</param>
/// <param name="Key">The key text (<c>bk_ID_SECRET</c>).</param>
public sealed record NewApiKey(ApiKeyRecord Record, string Key);

/// <summary>Where API keys live (their hashes). Every <c>/v1</c> request with a key looks it up here.</summary>
public interface IApiKeyStore
{
    /// <summary>Creates or migrates the schema. Called once before anything else.</summary>
    Task InitializeAsync(CancellationToken cancellationToken = default);

    /// <summary>Stores a new key. Throws <see cref="InvalidOperationException"/> if the id exists.</summary>
    Task AddAsync(ApiKeyRecord key, CancellationToken cancellationToken = default);

    /// <summary>The key with this id (revoked or not), or null.</summary>
    Task<ApiKeyRecord?> FindAsync(string id, CancellationToken cancellationToken = default);

    /// <summary>Every key, oldest first; revoked ones only when asked.</summary>
    Task<IReadOnlyList<ApiKeyRecord>> ListAsync(bool includeRevoked = false, CancellationToken cancellationToken = default);

    /// <summary>Revokes a key; false if no valid key has this id.</summary>
    Task<bool> RevokeAsync(string id, DateTimeOffset at, CancellationToken cancellationToken = default);

    /// <summary>True if at least one key is valid (not revoked).</summary>
    Task<bool> AnyActiveAsync(CancellationToken cancellationToken = default);
}

/// <summary>Makes, parses and checks API keys of the form <c>bk_ID_SECRET</c>.</summary>
public static class ApiKeys
{
    /// <summary>The prefix of every key.</summary>
    public const string Prefix = "bk_";

    private const string Alphabet = "abcdefghijklmnopqrstuvwxyz234567";
    private const int IdLength = 12;
    private const int SecretLength = 40;

    /// <summary>The longest <see cref="ApiKeyRecord.Name"/>, in characters (Unicode scalar values).</summary>
    public const int MaxNameLength = 100;

    /// <summary>The roles' wire names, as error messages list them.</summary>
    public const string RoleNames = "viewer, operator, approver or admin";

    /// <summary>Creates a key with a random id and secret (from the OS's cryptographic generator).</summary>
    /// <exception cref="ArgumentException"><paramref name="name"/> is not a valid name (see <see cref="CheckName"/>).</exception>
    public static NewApiKey Create(ApiKeyRole role, string? name, DateTimeOffset now)
    {
        if (CheckName(name) is { } problem) throw new ArgumentException($"the key name {problem}", nameof(name));
        var id = Random(IdLength);
        var key = $"{Prefix}{id}_{Random(SecretLength)}";
        return new NewApiKey(new ApiKeyRecord { Id = id, Name = name, Role = role, Hash = Hash(key), CreatedAt = now }, key);
    }

    /// <summary>Reads the id out of a key's text; false if the text is not shaped like a Bureau key.</summary>
    public static bool TryParseId(string? key, out string id)
    {
        id = "";
        if (key is null || key.Length != Prefix.Length + IdLength + 1 + SecretLength || !key.StartsWith(Prefix, StringComparison.Ordinal)) return false;
        if (key[Prefix.Length + IdLength] != '_') return false;
        for (var i = Prefix.Length; i < key.Length; i++)
        {
            if (i == Prefix.Length + IdLength) continue;
            if (!Alphabet.Contains(key[i], StringComparison.Ordinal)) return false;
        }
        id = key.Substring(Prefix.Length, IdLength);
        return true;
    }

    /// <summary>True if <paramref name="key"/> is the key <paramref name="record"/> was made from and it is not revoked.</summary>
    public static bool Matches(ApiKeyRecord record, string key)
    {
        ArgumentNullException.ThrowIfNull(record);
        if (record.RevokedAt is not null) return false;
        var expected = Convert.FromHexString(record.Hash);
        var actual = SHA256.HashData(Encoding.UTF8.GetBytes(key));
        return CryptographicOperations.FixedTimeEquals(expected, actual);
    }

    /// <summary>SHA-256 of the key text, lower-case hex.</summary>
    public static string Hash(string key) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key)));

    /// <summary>The lower-case wire name of a role.</summary>
    public static string ToWireName(this ApiKeyRole role) => WireNames.Of(role);

    /// <summary>
    /// Parses a role's wire name: exactly <c>viewer</c>, <c>operator</c>, <c>approver</c> or <c>admin</c>
    /// (case-sensitive, like every wire name: <c>Admin</c> is not a role); false when it is not one.
    /// </summary>
    public static bool TryParseRole(string? text, out ApiKeyRole role) => WireNames.TryParse(text, out role);

    /// <summary>
    /// Why <paramref name="name"/> cannot label a key, or null when it can (null, or at most
    /// <see cref="MaxNameLength"/> characters without control characters, so one key stays one line of
    /// <c>bureau keys list</c>). The message reads after the field's name: <c>name</c> ... .
    /// </summary>
    public static string? CheckName(string? name)
    {
        if (name is null) return null;
        var length = 0;
        foreach (var rune in name.EnumerateRunes())
        {
            if (Rune.IsControl(rune))
                return $"must not contain control characters (found U+{rune.Value:X4} at character {length + 1})";
            length++;
        }
        return length > MaxNameLength ? $"is {length} characters long; at most {MaxNameLength} are allowed" : null;
    }

    private static string Random(int length)
    {
        Span<char> chars = stackalloc char[length];
        for (var i = 0; i < length; i++) chars[i] = Alphabet[RandomNumberGenerator.GetInt32(Alphabet.Length)];
        return new string(chars);
    }
}
