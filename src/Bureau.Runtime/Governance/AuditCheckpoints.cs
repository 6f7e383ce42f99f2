using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Bureau.Governance;

/// <summary>
/// Signed checkpoints of the audit log's head, so that a cut tail is found: the hash chain proves
/// what is there, a checkpoint proves how far it reached. The key is kept outside the database
/// (<c>BUREAU_AUDIT_KEY</c> or <c>BUREAU_AUDIT_KEY_FILE</c>), the checkpoints in a file of their
/// own (<c>BUREAU_AUDIT_CHECKPOINTS</c>, default <c>DB.checkpoints</c>; ship it somewhere append-only).
/// </summary>
public sealed class AuditCheckpointOptions
{
    /// <summary>The environment variable holding the key (text, at least 16 characters).</summary>
    public const string KeyVariable = "BUREAU_AUDIT_KEY";

    /// <summary>The environment variable naming a file that holds the key.</summary>
    public const string KeyFileVariable = "BUREAU_AUDIT_KEY_FILE";

    /// <summary>The environment variable naming the checkpoints file.</summary>
    public const string FileVariable = "BUREAU_AUDIT_CHECKPOINTS";

    /// <summary>The HMAC-SHA256 key; null: no checkpoints.</summary>
    public byte[]? Key { get; set; }

    /// <summary>Where checkpoints are appended (JSON lines).</summary>
    public string? File { get; set; }

    /// <summary>A checkpoint every this many new audit entries, while the host runs (and one at a clean stop). Default 1000.</summary>
    public int EveryEntries { get; set; } = 1000;

    /// <summary>How often the audit head is looked at. Default 5 s.</summary>
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>The checkpoints file of a database: <c>BUREAU_AUDIT_CHECKPOINTS</c>, else <c>DB.checkpoints</c> beside it.</summary>
    public static string DefaultFile(string dbPath, Func<string, string?>? environment = null) =>
        (environment ?? Environment.GetEnvironmentVariable)(FileVariable) is { Length: > 0 } f ? f : dbPath + ".checkpoints";

    /// <summary>
    /// The key from <paramref name="keyFile"/>, else <c>BUREAU_AUDIT_KEY_FILE</c>, else <c>BUREAU_AUDIT_KEY</c>; null when none is set.
    /// A key shorter than 16 characters, or an unreadable key file, is an error naming where the key came from.
    /// </summary>
    public static byte[]? ReadKey(string? keyFile = null, Func<string, string?>? environment = null)
    {
        var env = environment ?? Environment.GetEnvironmentVariable;
        string text, source;
        if ((keyFile ?? env(KeyFileVariable)) is { Length: > 0 } file)
        {
            source = keyFile is not null ? $"--key-file {file}" : $"{KeyFileVariable} ({file})";
            try
            {
                text = System.IO.File.ReadAllText(file).Trim();
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                throw new InvalidOperationException($"the audit key file of {source} cannot be read: {ex.Message}");
            }
        }
        else if (env(KeyVariable) is { Length: > 0 } value)
        {
            source = KeyVariable;
            text = value.Trim();
        }
        else
        {
            return null;
        }
        if (text.Length < 16) throw new InvalidOperationException($"the audit key from {source} has {text.Length} characters; use at least 16 (32 random bytes in hex or base64 are best)");
        return Encoding.UTF8.GetBytes(text);
    }
}

/// <summary>A signed checkpoint: the audit entry <paramref name="Seq"/> had hash <paramref name="Hash"/> at <paramref name="At"/>.</summary>
/// <param name="Seq">The head's position (0: an empty log).</param>
/// <param name="Hash">The head's hash.</param>
/// <param name="At">When the checkpoint was made.</param>
/// <param name="KeyId">Which key signed it (a fingerprint of the key, not the key).</param>
/// <param name="Signature">HMAC-SHA256 of the other fields with the key, hex.</param>
internal sealed record AuditCheckpoint(long Seq, string Hash, DateTimeOffset At, string KeyId, string Signature);

/// <summary>What checking the audit log against its checkpoints found.</summary>
/// <param name="Checkpoints">Checkpoints read.</param>
/// <param name="Latest">The highest entry a checkpoint vouches for, or null without checkpoints.</param>
/// <param name="Problem">What is wrong (a tail cut, an entry that differs from its checkpoint, a checkpoint not signed with this key), or null.</param>
/// <param name="FirstMissing">When the tail was cut: the first entry that is gone.</param>
internal sealed record AuditCheckpointVerification(int Checkpoints, AuditCheckpoint? Latest, string? Problem, long? FirstMissing)
{
    /// <summary>True when every checkpoint is signed with the key and the log still holds what each one vouches for.</summary>
    public bool IsIntact => Problem is null;
}

/// <summary>Making, writing, reading and checking audit checkpoints.</summary>
internal static class AuditCheckpoints
{
    /// <summary>A fingerprint of the key (its first 8 bytes of SHA-256, hex), so a checkpoint names which key signed it without revealing it.</summary>
    public static string KeyId(byte[] key) => Convert.ToHexStringLower(SHA256.HashData([.. "bureau-audit-key:"u8, .. key]))[..16];

    /// <summary>A checkpoint of <paramref name="seq"/> and <paramref name="hash"/>, signed with <paramref name="key"/>.</summary>
    public static AuditCheckpoint Sign(byte[] key, long seq, string hash, DateTimeOffset at)
    {
        at = DateTimeOffset.FromUnixTimeMilliseconds(at.ToUnixTimeMilliseconds());
        return new AuditCheckpoint(seq, hash, at, KeyId(key), Signature(key, seq, hash, at));
    }

    private static string Signature(byte[] key, long seq, string hash, DateTimeOffset at) =>
        Convert.ToHexStringLower(HMACSHA256.HashData(key, Encoding.UTF8.GetBytes(
            string.Create(CultureInfo.InvariantCulture, $"bureau-audit-checkpoint/v1\n{seq}\n{hash}\n{at.ToUnixTimeMilliseconds()}"))));

    /// <summary>True when <paramref name="checkpoint"/> was signed with <paramref name="key"/> and not changed since (constant time).</summary>
    public static bool IsSignedWith(AuditCheckpoint checkpoint, byte[] key)
    {
        var expected = Encoding.ASCII.GetBytes(Signature(key, checkpoint.Seq, checkpoint.Hash, checkpoint.At));
        return CryptographicOperations.FixedTimeEquals(expected, Encoding.ASCII.GetBytes(checkpoint.Signature));
    }

    /// <summary>The audit log's head: its last entry's position and hash ((0, 64 zeros) when empty).</summary>
    public static async Task<(long Seq, string Hash)> HeadAsync(IAuditLog audit, long after = 0, CancellationToken cancellationToken = default)
    {
        (long Seq, string Hash) head = (0, new string('0', 64));
        if (after > 0 && (await audit.ReadAuditAsync(after - 1, 1, cancellationToken)) is [var known]) head = (known.Seq, known.Hash);
        while (true)
        {
            var page = await audit.ReadAuditAsync(head.Seq, 5000, cancellationToken);
            if (page.Count == 0) return head;
            head = (page[^1].Seq, page[^1].Hash);
        }
    }

    /// <summary>Appends a checkpoint to <paramref name="file"/> as one JSON line, flushed to disk.</summary>
    public static void Append(string file, AuditCheckpoint checkpoint)
    {
        if (Path.GetDirectoryName(Path.GetFullPath(file)) is { } dir) Directory.CreateDirectory(dir);
        var line = new JsonObject
        {
            ["seq"] = checkpoint.Seq, ["hash"] = checkpoint.Hash, ["at"] = checkpoint.At.ToString("O", CultureInfo.InvariantCulture),
            ["keyId"] = checkpoint.KeyId, ["signature"] = checkpoint.Signature,
        }.ToJsonString() + "\n";
        using var stream = new FileStream(file, FileMode.Append, FileAccess.Write, FileShare.Read);
        stream.Write(Encoding.UTF8.GetBytes(line));
        stream.Flush(flushToDisk: true);
    }

    /// <summary>The checkpoints in <paramref name="file"/>, in order; a line that is not a checkpoint is an error naming the file and line.</summary>
    public static IReadOnlyList<AuditCheckpoint> Read(string file)
    {
        var list = new List<AuditCheckpoint>();
        var n = 0;
        foreach (var line in File.ReadLines(file))
        {
            n++;
            if (line.Length == 0) continue;
            try
            {
                var o = JsonNode.Parse(line) as JsonObject ?? throw new FormatException("not a JSON object");
                list.Add(new AuditCheckpoint(
                    (long?)o["seq"] ?? throw new FormatException("no 'seq'"),
                    (string?)o["hash"] ?? throw new FormatException("no 'hash'"),
                    DateTimeOffset.Parse((string?)o["at"] ?? throw new FormatException("no 'at'"), CultureInfo.InvariantCulture),
                    (string?)o["keyId"] ?? throw new FormatException("no 'keyId'"),
                    (string?)o["signature"] ?? throw new FormatException("no 'signature'")));
            }
            catch (Exception ex) when (ex is JsonException or FormatException or InvalidOperationException)
            {
                throw new FormatException($"{file}:{n}: not an audit checkpoint ({ex.Message}); it was changed by hand, or the file is not a checkpoints file");
            }
        }
        return list;
    }

    /// <summary>
    /// Checks the audit log against <paramref name="checkpoints"/>: each must be signed with
    /// <paramref name="key"/>, and the entry it names must still be there with the hash it signed. An
    /// entry a checkpoint vouches for that is gone means the tail was cut: the answer names the first
    /// missing entry. Run it with a chain that verifies (<see cref="IAuditLog.VerifyAuditAsync"/>): the
    /// chain proves every entry up to the head, the checkpoints prove how far the head reached.
    /// </summary>
    public static async Task<AuditCheckpointVerification> VerifyAsync(IAuditLog audit, IReadOnlyList<AuditCheckpoint> checkpoints, byte[] key, string source,
        CancellationToken cancellationToken = default)
    {
        if (checkpoints.Count == 0) return new AuditCheckpointVerification(0, null, null, null);
        var keyId = KeyId(key);
        for (var i = 0; i < checkpoints.Count; i++)
        {
            var c = checkpoints[i];
            if (!IsSignedWith(c, key))
            {
                var why = c.KeyId == keyId ? "it was changed after it was signed" : $"it names key {c.KeyId}, this key is {keyId}: signed with another key, or changed";
                return new AuditCheckpointVerification(checkpoints.Count, null, $"checkpoint {i + 1} in {source} (entry #{c.Seq}) does not match its signature: {why}", null);
            }
        }
        var latest = checkpoints.MaxBy(c => c.Seq)!;
        var head = await HeadAsync(audit, 0, cancellationToken);
        if (head.Seq < latest.Seq)
        {
            return new AuditCheckpointVerification(checkpoints.Count, latest,
                $"entries after #{head.Seq} were removed: the checkpoint of {latest.At:yyyy-MM-dd HH:mm:ss}Z vouches for #{latest.Seq}; the first missing is #{head.Seq + 1}",
                head.Seq + 1);
        }
        foreach (var c in checkpoints.Where(c => c.Seq > 0).DistinctBy(c => c.Seq))
        {
            var entry = (await audit.ReadAuditAsync(c.Seq - 1, 1, cancellationToken)).FirstOrDefault();
            if (entry is null || entry.Seq != c.Seq)
                return new AuditCheckpointVerification(checkpoints.Count, latest, $"entry #{c.Seq}, which a checkpoint vouches for, is missing", c.Seq);
            if (!string.Equals(entry.Hash, c.Hash, StringComparison.Ordinal))
            {
                return new AuditCheckpointVerification(checkpoints.Count, latest,
                    $"entry #{c.Seq} differs from its checkpoint of {c.At:yyyy-MM-dd HH:mm:ss}Z: the log up to #{c.Seq} was rewritten (entries removed and the chain rebuilt)", null);
            }
        }
        return new AuditCheckpointVerification(checkpoints.Count, latest, null, null);
    }
}

/// <summary>
/// Writes a checkpoint every <see cref="AuditCheckpointOptions.EveryEntries"/> new audit entries while
/// the host runs, and one at a clean stop; only with a key and a file configured.
/// </summary>
internal sealed partial class AuditCheckpointService(IRunStore store, TimeProvider time, ILoggerFactory loggers, AuditCheckpointOptions? options = null) : BackgroundService
{
    private readonly ILogger _logger = loggers.CreateLogger("Bureau.Audit");
    private long _signed = -1;
    private readonly SemaphoreSlim _gate = new(1, 1);

    private bool Enabled => options is { Key: not null, File: not null } && store is IAuditLog;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!Enabled) return;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await CheckpointAsync(options!.EveryEntries, stoppingToken);
                await Task.Delay(options.PollInterval, time, stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                Log.Failed(_logger, options!.File!, ex);
                await Task.Delay(options.PollInterval, time, stoppingToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken);
        if (!Enabled) return;
        try
        {
            await CheckpointAsync(1, cancellationToken); // a clean stop: the head as it is now
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            Log.Failed(_logger, options!.File!, ex);
        }
    }

    /// <summary>Signs the head when it is at least <paramref name="every"/> entries past the last checkpoint.</summary>
    private async Task CheckpointAsync(int every, CancellationToken ct)
    {
        await _gate.WaitAsync(ct);
        try
        {
            if (_signed < 0) _signed = File.Exists(options!.File) ? AuditCheckpoints.Read(options.File!).Select(c => c.Seq).DefaultIfEmpty(0).Max() : 0;
            var head = await AuditCheckpoints.HeadAsync((IAuditLog)store, _signed, ct);
            if (head.Seq - _signed < Math.Max(1, every)) return;
            var checkpoint = AuditCheckpoints.Sign(options!.Key!, head.Seq, head.Hash, time.GetUtcNow());
            AuditCheckpoints.Append(options.File!, checkpoint);
            _signed = head.Seq;
            Log.Written(_logger, head.Seq, options.File!);
        }
        finally
        {
            _gate.Release();
        }
    }

    private static partial class Log
    {
        [LoggerMessage(90, LogLevel.Information, "Audit checkpoint: entry #{Seq} signed, in {File}")]
        public static partial void Written(ILogger logger, long seq, string file);

        [LoggerMessage(91, LogLevel.Error, "Writing an audit checkpoint to {File} failed; trying again")]
        public static partial void Failed(ILogger logger, string file, Exception ex);
    }
}
