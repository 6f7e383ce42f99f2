using Microsoft.Data.Sqlite;

namespace Bureau.Storage.Sqlite;

/// <summary>
/// Which SQLite errors mean "the storage cannot write" (a fault outside Bureau) and how they read to
/// an operator. Everything else is a bug or a conflict and keeps its own exception.
/// </summary>
internal static class SqliteFaults
{
    private const int IoErr = 10, Corrupt = 11, Full = 13, CantOpen = 14, ReadOnly = 8, NotADb = 26;
    private const int IoErrFsync = IoErr | (4 << 8), IoErrDirFsync = IoErr | (5 << 8);

    /// <summary>The fault <paramref name="ex"/> stands for, or null when it is not a storage fault.</summary>
    public static StorageUnavailableException? Classify(Exception ex, string path)
    {
        if (ex is StorageUnavailableException already) return already;
        if (ex is UnauthorizedAccessException denied)
            return new StorageUnavailableException(StorageFault.ReadOnly, path, ReadOnlyMessage(path, denied.Message), ex);
        if (ex is not SqliteException e) return null;
        var (fault, what) = e.SqliteErrorCode switch
        {
            Full => (StorageFault.DiskFull, "the disk is full"),
            ReadOnly or CantOpen => (StorageFault.ReadOnly, "the database is read-only for this process"),
            IoErr when IsFsync(e) => (StorageFault.IoError, "an fsync failed (what the disk holds is unknown until the process restarts and SQLite recovers the write-ahead log)"),
            IoErr => (StorageFault.IoError, "an I/O error"),
            Corrupt or NotADb => (StorageFault.Corrupt, "the database file is damaged"),
            _ => ((StorageFault?)null, ""),
        };
        if (fault is not { } f) return null;
        var message = f == StorageFault.ReadOnly
            ? ReadOnlyMessage(path, e.Message)
            : $"the store cannot write to {path}: {what} ({e.Message})";
        return new StorageUnavailableException(f, path, message, ex);
    }

    /// <summary>True for an I/O error the store must not retry past (fsync, corruption): it refuses writes until a restart.</summary>
    public static bool Latches(StorageUnavailableException ex) =>
        ex.Fault == StorageFault.Corrupt || (ex.Fault == StorageFault.IoError && ex.InnerException is SqliteException s && IsFsync(s));

    private static bool IsFsync(SqliteException e) => e.SqliteExtendedErrorCode is IoErrFsync or IoErrDirFsync;

    private static string ReadOnlyMessage(string path, string error) =>
        $"the store cannot write to {path}: the database is read-only for this process ({error}); "
        + "Bureau needs write access to the database file and to its folder (SQLite keeps its write-ahead log "
        + $"{Path.GetFileName(path)}-wal and {Path.GetFileName(path)}-shm beside it)";
}
