using System.Text.Json.Serialization;

namespace Bureau;

/// <summary>Why a store cannot write.</summary>
public enum StorageFault
{
    /// <summary>The disk (or the file system's quota) is full. Writes work again once space is freed.</summary>
    [JsonStringEnumMemberName("disk-full")] DiskFull,

    /// <summary>The database (or its folder, where the write-ahead log lives) is read-only for this process.</summary>
    [JsonStringEnumMemberName("read-only")] ReadOnly,

    /// <summary>The operating system reported an I/O error on a write or an fsync.</summary>
    [JsonStringEnumMemberName("io-error")] IoError,

    /// <summary>The database file is damaged.</summary>
    [JsonStringEnumMemberName("corrupt")] Corrupt,
}

/// <summary>
/// The store could not write, for a reason outside Bureau (<see cref="Fault"/>). Nothing of the
/// failed write was stored: a request refused with it changed no state and can be sent again.
/// </summary>
public sealed class StorageUnavailableException(StorageFault fault, string store, string message, Exception? innerException = null)
    : IOException(message, innerException)
{
    /// <summary>Why.</summary>
    public StorageFault Fault { get; } = fault;

    /// <summary>The store concerned (a database file, a server).</summary>
    public string Store { get; } = store;

    /// <summary>True when writes may work again without a restart (disk full, read-only); false after an I/O error on fsync or corruption.</summary>
    public bool IsTransient => Fault is StorageFault.DiskFull or StorageFault.ReadOnly;
}

/// <summary>Whether a store can write now, as it last found out.</summary>
/// <param name="Fault">Null when the last write worked.</param>
/// <param name="Detail">The error of the last failed write, naming the store.</param>
/// <param name="Since">When writes started failing.</param>
/// <param name="Latched">True when the store refuses writes until a restart (an fsync failed: what the disk holds is unknown).</param>
public sealed record StorageHealth(StorageFault? Fault, string? Detail, DateTimeOffset? Since, bool Latched = false)
{
    /// <summary>Writes work.</summary>
    public static StorageHealth Ok { get; } = new(null, null, null);

    /// <summary>True when the last write worked.</summary>
    public bool CanWrite => Fault is null;
}
