using System.Net.Sockets;
using Npgsql;

namespace Bureau.Storage.PostgreSql;

/// <summary>
/// Which PostgreSQL errors mean "the storage cannot write" (a fault outside Bureau) and how they read to an operator.
/// Everything else (a constraint, a bug) keeps its own exception.
/// </summary>
internal static class PostgreSqlFaults
{
    /// <summary>The fault <paramref name="ex"/> stands for, or null when it is not a storage fault.</summary>
    public static StorageUnavailableException? Classify(Exception ex, string store)
    {
        if (ex is StorageUnavailableException already) return already;
        if (ex is PostgresException pg)
        {
            var (fault, what) = pg.SqlState switch
            {
                "53100" => (StorageFault.DiskFull, "the server's disk is full"),
                "25006" => (StorageFault.ReadOnly, "the server accepts no writes (a read-only transaction or a standby)"),
                "42501" => (StorageFault.ReadOnly, "the database user lacks the privilege to write"),
                "58030" => (StorageFault.IoError, "the server reported an I/O error"),
                "XX001" or "XX002" => (StorageFault.Corrupt, "the server reported damaged data"),
                "57P01" or "57P02" or "57P03" or "53300" => (StorageFault.IoError, "the server is shutting down, starting or out of connections"),
                _ when pg.SqlState.StartsWith("08", StringComparison.Ordinal) => (StorageFault.IoError, "the connection to the server failed"),
                _ => ((StorageFault?)null, ""),
            };
            return fault is { } f ? new StorageUnavailableException(f, store, $"the store cannot write to {store}: {what} ({pg.SqlState}: {pg.MessageText})", ex) : null;
        }
        // Npgsql raises NpgsqlException (not PostgresException) when the server cannot be reached or the connection broke:
        // then it is transient, or wraps the socket or stream error. Any other NpgsqlException (a bug) keeps its own type.
        if (ex is NpgsqlException { IsTransient: true } or SocketException
            || (ex is NpgsqlException && ex.InnerException is SocketException or IOException or TimeoutException))
        {
            return new StorageUnavailableException(StorageFault.IoError, store,
                $"the store cannot write to {store}: the server cannot be reached or the connection broke ({ex.Message})", ex);
        }
        return null;
    }

    /// <summary>Whether the error is a deadlock or a serialization failure: the transaction can simply run again.</summary>
    public static bool IsRetriable(Exception ex) => ex is PostgresException { SqlState: "40P01" or "40001" };
}
