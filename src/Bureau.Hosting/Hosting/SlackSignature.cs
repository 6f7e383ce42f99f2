using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace Bureau.Hosting;

/// <summary>
/// Slack's request signing: <c>X-Slack-Signature: v0=HEX(HMAC-SHA256(signing secret, "v0:" + X-Slack-Request-Timestamp + ":" + body))</c>,
/// compared in constant time, with the timestamp within a window of this host's clock (Slack's own advice: five minutes).
/// </summary>
internal static class SlackSignature
{
    public const string SignatureHeader = "X-Slack-Signature";
    public const string TimestampHeader = "X-Slack-Request-Timestamp";

    /// <summary>Why the timestamp is refused (not Unix seconds, or outside the window), or null when it is fresh.</summary>
    public static string? TimestampProblem(string timestamp, DateTimeOffset now, TimeSpan tolerance)
    {
        if (!long.TryParse(timestamp, NumberStyles.None, CultureInfo.InvariantCulture, out var seconds) || seconds > 253_402_300_799)
            return $"{TimestampHeader} must be Unix seconds, not '{timestamp}'";
        var age = now - DateTimeOffset.FromUnixTimeSeconds(seconds);
        if (age.Duration() <= tolerance) return null;
        return age > TimeSpan.Zero
            ? $"{TimestampHeader} is {(long)age.TotalSeconds} s old, more than the tolerance of {(long)tolerance.TotalSeconds} s (a replayed or delayed request)"
            : $"{TimestampHeader} is {(long)(-age).TotalSeconds} s ahead of this host's clock, more than the tolerance of {(long)tolerance.TotalSeconds} s";
    }

    /// <summary>The signature's 32 bytes, or null when the header is not <c>v0=</c> and 64 hex digits.</summary>
    public static byte[]? Parse(string signature)
    {
        if (!signature.StartsWith("v0=", StringComparison.Ordinal) || signature.Length != 3 + 64) return null;
        try
        {
            return Convert.FromHexString(signature.AsSpan(3));
        }
        catch (FormatException)
        {
            return null;
        }
    }

    /// <summary>True when <paramref name="given"/> is the request signed with <paramref name="secret"/> (constant time).</summary>
    public static bool Matches(string secret, string timestamp, ReadOnlySpan<byte> body, byte[] given)
    {
        var head = Encoding.UTF8.GetBytes($"v0:{timestamp}:");
        var signed = new byte[head.Length + body.Length];
        head.CopyTo(signed, 0);
        body.CopyTo(signed.AsSpan(head.Length));
        return CryptographicOperations.FixedTimeEquals(HMACSHA256.HashData(Encoding.UTF8.GetBytes(secret), signed), given);
    }
}
