using System.Runtime.InteropServices;

namespace Bureau.Storage.Sqlite;

/// <summary>
/// One engine per database file: a second engine would execute the same runs. The lock is an
/// open-file-description record lock (<c>F_OFD_SETLK</c>) on a byte range of the database file
/// itself far beyond anything SQLite locks or writes, so it holds for the same file reached through
/// any path: a symbolic link, a hard link, a relative path. The kernel releases it when the process
/// dies, SIGKILL included. It does not conflict with SQLite's own record locks (other bytes) nor with
/// other programs opening the file (.NET's and others' <c>flock</c>s are a separate kind of lock).
/// Only the store an engine runs on takes it; readers (<c>bureau runs list</c>) do not.
/// </summary>
internal sealed class SqliteDatabaseLock : IDisposable
{
    private readonly FileStream _file;

    private SqliteDatabaseLock(FileStream file) => _file = file;

    /// <summary>Takes the lock of <paramref name="dbPath"/> (creating an empty database file if there is none).</summary>
    /// <exception cref="InvalidOperationException">Another engine holds it.</exception>
    public static SqliteDatabaseLock Acquire(string dbPath)
    {
        var full = Path.GetFullPath(dbPath);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        if (!OperatingSystem.IsLinux())
        {
            // Elsewhere: an exclusive opener of a lock file beside the database (by its full path).
            try
            {
                return new SqliteDatabaseLock(new FileStream(full + ".lock", FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None));
            }
            catch (IOException)
            {
                throw InUse(dbPath);
            }
        }
        // A lock released a moment ago can still be held for a while: a child process forked by this
        // process (a process tool starting) shares the open file until it execs. Try again for a second
        // before saying another engine has it.
        var deadline = Environment.TickCount64 + ReleaseGraceMs;
        while (true)
        {
            // FileShare.ReadWrite: no lock of .NET's own (it can be switched off by an environment variable); fcntl below.
            var file = new FileStream(full, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.ReadWrite);
            var range = new FileLockRange { Type = WriteLock, Whence = 0, Start = LockOffset, Length = 1 };
            if (fcntl((int)file.SafeFileHandle.DangerousGetHandle(), OfdSetLock, ref range) == 0)
                return new SqliteDatabaseLock(file);
            var errno = Marshal.GetLastPInvokeError();
            file.Dispose();
            if (errno is not (EAgain or EAccess)) throw new IOException($"could not lock the database {dbPath} (fcntl failed, errno {errno})");
            if (Environment.TickCount64 >= deadline) throw InUse(dbPath);
            Thread.Sleep(50);
        }
    }

    private const int ReleaseGraceMs = 1000;

    private static InvalidOperationException InUse(string dbPath) =>
        new($"the database {dbPath} is in use by another Bureau engine (one engine per database file, whatever path or link reaches it; stop it, or use --db / Bureau:Sqlite:Path to name another file)");

    /// <summary>Releases the lock.</summary>
    public void Dispose() => _file.Dispose();

    // A byte SQLite never locks or writes (its locks sit at 1 GiB; a database this large is not an engine's).
    private const long LockOffset = 0x3FFF_FFFF_FFFF_FF00;
    private const short WriteLock = 1;       // F_WRLCK
    private const int OfdSetLock = 37;       // F_OFD_SETLK (Linux): owned by the open file, not the process
    private const int EAgain = 11;
    private const int EAccess = 13;

    [StructLayout(LayoutKind.Sequential)]
    private struct FileLockRange
    {
        public short Type;
        public short Whence;
        public long Start;
        public long Length;
        public int Pid;
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int fcntl(int fd, int cmd, ref FileLockRange range);
}
