using System.Text;

namespace Bureau.Tools;

/// <summary>Reading bounded output from a stream and turning it into result text.</summary>
internal static class ToolOutput
{
    private const int ChunkSize = 16 * 1024;

    /// <summary>Bytes read, capped at a limit, and whether more followed.</summary>
    internal readonly record struct Captured(byte[] Bytes, bool Truncated);

    /// <summary>
    /// Reads <paramref name="stream"/> to its end, keeping the first <paramref name="maxBytes"/> bytes.
    /// With <paramref name="drain"/>, what follows is read and discarded (so a writer never blocks on a
    /// full pipe); without it, reading stops at the first byte over the limit.
    /// </summary>
    public static async Task<Captured> ReadHeadAsync(Stream stream, int maxBytes, bool drain, CancellationToken cancellationToken)
    {
        var kept = new MemoryStream();
        var buffer = new byte[ChunkSize];
        var truncated = false;
        while (true)
        {
            var read = await stream.ReadAsync(buffer, cancellationToken);
            if (read == 0) break;
            var room = maxBytes - (int)kept.Length;
            if (read > room)
            {
                kept.Write(buffer, 0, Math.Max(room, 0));
                truncated = true;
                if (!drain) break;
                continue;
            }
            kept.Write(buffer, 0, read);
        }
        return new Captured(kept.ToArray(), truncated);
    }

    /// <summary>Reads <paramref name="stream"/> to its end, keeping only the last <paramref name="tailBytes"/> bytes.</summary>
    public static async Task<byte[]> ReadTailAsync(Stream stream, int tailBytes, CancellationToken cancellationToken)
    {
        var window = new byte[tailBytes * 2];
        var length = 0;
        var buffer = new byte[ChunkSize];
        while (true)
        {
            var read = await stream.ReadAsync(buffer, cancellationToken);
            if (read == 0) break;
            if (read >= tailBytes)
            {
                Array.Copy(buffer, read - tailBytes, window, 0, tailBytes);
                length = tailBytes;
                continue;
            }
            if (length + read > window.Length)
            {
                // Keep the last tailBytes - read bytes, then append.
                var keep = tailBytes - read;
                Array.Copy(window, length - keep, window, 0, keep);
                length = keep;
            }
            Array.Copy(buffer, 0, window, length, read);
            length += read;
        }
        var start = Math.Max(0, length - tailBytes);
        return window[start..length];
    }

    /// <summary>Decodes UTF-8 text, adding the truncation note when the output was cut.</summary>
    public static string Text(Captured captured, int maxBytes, Encoding? encoding = null)
    {
        var bytes = captured.Bytes;
        var length = bytes.Length;
        if (captured.Truncated && (encoding ?? Encoding.UTF8) is UTF8Encoding)
            length = Utf8Boundary(bytes, length);
        var text = (encoding ?? Encoding.UTF8).GetString(bytes, 0, length);
        return captured.Truncated ? text + TruncationNote(maxBytes) : text;
    }

    /// <summary>The note appended to a cut result.</summary>
    public static string TruncationNote(int maxBytes) => $"\n[output truncated at {maxBytes} bytes]";

    /// <summary>Decodes the tail of a stream as UTF-8, starting at a character boundary.</summary>
    public static string TailText(byte[] tail)
    {
        var start = 0;
        while (start < tail.Length && start < 4 && (tail[start] & 0xC0) == 0x80) start++;
        return Encoding.UTF8.GetString(tail, start, tail.Length - start).Trim();
    }

    /// <summary>The longest prefix of <paramref name="length"/> bytes that does not split a UTF-8 character.</summary>
    private static int Utf8Boundary(byte[] bytes, int length)
    {
        if (length == 0) return 0;
        // Walk back over continuation bytes to the lead byte of the last character.
        var lead = length - 1;
        while (lead > 0 && length - lead < 4 && (bytes[lead] & 0xC0) == 0x80) lead--;
        var b = bytes[lead];
        var needed = b < 0x80 ? 1 : (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : (b & 0xF8) == 0xF0 ? 4 : 1;
        return lead + needed <= length ? length : lead;
    }

    /// <summary>The first <paramref name="maxChars"/> characters of <paramref name="text"/>, with an ellipsis when cut.</summary>
    public static string Excerpt(string text, int maxChars)
    {
        text = text.Trim();
        return text.Length <= maxChars ? text : text[..maxChars] + "…";
    }
}
