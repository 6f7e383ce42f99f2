using System.Security.Cryptography;

namespace Bureau;

/// <summary>Run ids: 18 lower-case characters, time-ordered (10 for the millisecond, 8 random), cheap to make and compare.</summary>
public static class RunIds
{
    private const string Alphabet = "0123456789abcdefghjkmnpqrstvwxyz"; // Crockford base32

    /// <summary>A new id for a run accepted now.</summary>
    public static string New(TimeProvider? timeProvider = null)
    {
        var ms = (ulong)(timeProvider ?? TimeProvider.System).GetUtcNow().ToUnixTimeMilliseconds();
        Span<char> s = stackalloc char[18];
        for (var i = 9; i >= 0; i--) { s[i] = Alphabet[(int)(ms & 31)]; ms >>= 5; }
        Span<byte> rnd = stackalloc byte[5];
        RandomNumberGenerator.Fill(rnd);
        ulong r = 0;
        foreach (var b in rnd) r = (r << 8) | b;
        for (var i = 17; i >= 10; i--) { s[i] = Alphabet[(int)(r & 31)]; r >>= 5; }
        return new string(s);
    }
}
