namespace Bureau.Storage.Sqlite;

/// <summary>
/// One engine per database file: a second process would execute the same runs. The lock (an
/// advisory lock on DB.lock) is released by the kernel when the process dies, SIGKILL included.
/// The CLI's commands and the host take it before they start an engine on a database.
/// </summary>
internal static class SqliteDatabaseLock
{
    /// <summary>Takes the lock of <paramref name="dbPath"/>; dispose the stream to release it.</summary>
    /// <exception cref="InvalidOperationException">Another process holds it.</exception>
    public static FileStream Acquire(string dbPath)
    {
        var full = Path.GetFullPath(dbPath);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        try
        {
            return new FileStream(full + ".lock", FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException)
        {
            throw new InvalidOperationException($"the database {dbPath} is in use by another Bureau process (one engine per database file; stop it, or use --db / Bureau:Sqlite:Path to name another file)");
        }
    }
}
