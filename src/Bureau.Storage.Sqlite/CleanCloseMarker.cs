using System.Globalization;

namespace Bureau.Storage.Sqlite;

/// <summary>
/// Finds a write-ahead log that went missing after a crash. While an engine has the database open,
/// SQLite keeps <c>DB-wal</c> beside it, and the steps acknowledged since the last checkpoint live
/// only there; a clean close checkpoints and removes it. The engine's store writes a marker
/// (<c>DB.bureau-open</c>) once the database is open and deletes it on a clean close. A marker
/// found at start means the last engine died with the database open: its WAL must be there. If it
/// is not (deleted by hand, lost in a copy or a restore of the database file alone), starting would
/// silently drop acknowledged runs, so the store refuses and says how to go on.
/// </summary>
internal sealed class CleanCloseMarker
{
    private readonly string _path;

    private CleanCloseMarker(string path) => _path = path;

    public static string MarkerPath(string dbPath) => Path.GetFullPath(dbPath) + ".bureau-open";

    /// <exception cref="MissingWriteAheadLogException">The last engine died with the database open and its WAL is gone.</exception>
    public static void CheckWal(string dbPath)
    {
        var marker = MarkerPath(dbPath);
        var full = Path.GetFullPath(dbPath);
        if (!File.Exists(marker) || File.Exists(full + "-wal")) return;
        if (!File.Exists(full) || new FileInfo(full).Length == 0) return;
        string? who;
        try
        {
            who = File.ReadAllText(marker).Trim();
        }
        catch (IOException)
        {
            who = null;
        }
        throw new MissingWriteAheadLogException(
            $"the database {dbPath} was not closed cleanly (the engine that had it open{(string.IsNullOrEmpty(who) ? "" : $", {who},")} stopped without closing it) "
            + $"and its write-ahead log {full}-wal is missing: the runs and steps acknowledged since the last checkpoint were in that file, "
            + "and starting now would lose them without a trace. Put the -wal file back beside the database (from the volume, snapshot or backup it was on) "
            + $"and start again. To start anyway and accept the loss, delete {marker}.");
    }

    /// <summary>
    /// For a store that is not the engine's (a reader such as <c>bureau runs list</c>): true when it
    /// opens a database that a dead engine left with its WAL. If this store is the last connection,
    /// SQLite checkpoints that WAL into the database and removes it on close; then
    /// <see cref="AfterReaderClosed"/> retires the marker, as nothing is lost.
    /// </summary>
    public static bool CrashedWalPresent(string dbPath)
    {
        var full = Path.GetFullPath(dbPath);
        return File.Exists(MarkerPath(dbPath)) && File.Exists(full + "-wal");
    }

    /// <summary>After a reader that found a crashed engine's WAL closed: if the WAL is gone (checkpointed) and no engine holds the database, removes the marker.</summary>
    public static void AfterReaderClosed(string dbPath, bool crashedWalAtOpen)
    {
        if (!crashedWalAtOpen) return;
        var full = Path.GetFullPath(dbPath);
        var marker = MarkerPath(dbPath);
        if (File.Exists(full + "-wal") || !File.Exists(marker)) return;
        SqliteDatabaseLock engineLock;
        try
        {
            engineLock = SqliteDatabaseLock.Acquire(dbPath); // an engine starting now checks under this lock
        }
        catch (Exception ex) when (ex is InvalidOperationException or IOException or UnauthorizedAccessException)
        {
            return; // an engine has it: its own marker
        }
        using (engineLock)
        {
            if (!File.Exists(full + "-wal")) new CleanCloseMarker(marker).Delete();
        }
    }

    /// <summary>Writes the marker (durably) once the database is open.</summary>
    public static CleanCloseMarker Create(string dbPath)
    {
        var marker = MarkerPath(dbPath);
        using (var f = new FileStream(marker, FileMode.Create, FileAccess.Write, FileShare.Read))
        {
            var text = string.Create(CultureInfo.InvariantCulture,
                $"pid {Environment.ProcessId} on {Environment.MachineName} since {DateTimeOffset.UtcNow:yyyy-MM-ddTHH:mm:ssZ}\n");
            f.Write(System.Text.Encoding.UTF8.GetBytes(text));
            f.Flush(flushToDisk: true);
        }
        return new CleanCloseMarker(marker);
    }

    /// <summary>Removes the marker after a clean close.</summary>
    public void Delete()
    {
        try
        {
            File.Delete(_path);
        }
        catch (IOException)
        {
            // Left behind: the next start checks that the WAL is there (or gone with a clean checkpoint); harmless.
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}

/// <summary>
/// The engine that last had the database open died without closing it, and the database's
/// write-ahead log (which held what it acknowledged since the last checkpoint) is missing; the
/// message says how to go on. Nothing was changed.
/// </summary>
public sealed class MissingWriteAheadLogException(string message) : InvalidOperationException(message);
