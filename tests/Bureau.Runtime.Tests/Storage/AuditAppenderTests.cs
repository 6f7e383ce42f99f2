using Bureau.Storage.Sqlite;
using CsCheck;
using Microsoft.Data.Sqlite;
using Xunit;

namespace Bureau.Tests.Storage;

/// <summary>The writer's audit hasher gives the hash <c>bureau audit verify</c> recomputes, for any entry.</summary>
public sealed class AuditAppenderTests
{
    private static readonly Gen<string?> Text = Gen.Frequency(
        (1, Gen.Const(() => (string?)null)),
        (1, Gen.Const<string?>("")),
        (4, Gen.String.Select(s => (string?)s)),
        (1, Gen.String[Gen.Char['\u0080', '\uFFFF'], 0, 600].Select(s => (string?)s)),
        (1, Gen.Const<string?>("{\"agent\":\"triage\",\"kind\":null} caf\u00e9 \U0001F600")));

    [Fact]
    public void Hash_AnyEntry_MatchesTheChainsHash()
    {
        using var connection = new SqliteConnection("Data Source=:memory:");
        connection.Open();
        using (var create = connection.CreateCommand())
        {
            create.CommandText = "CREATE TABLE audit(seq INTEGER PRIMARY KEY, at INTEGER, actor TEXT, action TEXT, run_id TEXT, step INTEGER, detail TEXT, prev TEXT, hash TEXT)";
            create.ExecuteNonQuery();
        }
        using var appender = new AuditAppender(connection);
        Gen.Select(Text, Gen.Long, Gen.Long, Text, Gen.String, Text, Gen.Frequency((1, Gen.Const(() => (long?)null)), (3, Gen.Long.Select(l => (long?)l))), Text).Sample((prev, seq, at, actor, action, run, step, detail) =>
        {
            var previous = prev ?? AuditChain.Genesis;
            Assert.Equal(AuditChain.Hash(previous, seq, at, actor, action, run, step, detail), appender.Hash(previous, seq, at, actor, action, run, step, detail));
        }, iter: 3_000, threads: 1);
    }
}
