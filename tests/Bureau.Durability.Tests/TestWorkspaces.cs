using Npgsql;
using Xunit;

namespace Bureau.Durability.Tests;

/// <summary>The PostgreSQL server of the tests that need one (tests/pg.sh starts a throwaway one), and clean-up of their schemas.</summary>
internal static class TestPostgres
{
    /// <summary>The server's connection string; the test is skipped, saying how to get one, when there is none.</summary>
    public static string ServerOrSkip()
    {
        var cs = Environment.GetEnvironmentVariable("BUREAU_TEST_POSTGRES");
        if (string.IsNullOrWhiteSpace(cs))
            Assert.Skip("PostgreSQL tests need a server: set BUREAU_TEST_POSTGRES to a connection string, or run them under tests/pg.sh (which installs and starts a throwaway one)");
        return cs;
    }

    /// <summary>Drops a test's schemas (and everything in them).</summary>
    public static async Task DropSchemasAsync(string server, params string[] schemas)
    {
        await using var c = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(server) { Pooling = false }.ConnectionString);
        await c.OpenAsync();
        await using var cmd = new NpgsqlCommand(string.Concat(schemas.Select(s => $"DROP SCHEMA IF EXISTS {s} CASCADE; ")), c);
        await cmd.ExecuteNonQueryAsync();
    }
}

/// <summary>
/// The deployment of the kill tests: agent <c>clerk</c> whose first turn calls the write tool <c>ledger</c> with the
/// <c>kNNN</c> of its input; the tool appends its idempotency key to <c>$LEDGER_DIR/ledger.txt</c>, so a write done
/// twice shows as a key written twice.
/// </summary>
internal static class LedgerDeployment
{
    public static void WriteTo(string dir)
    {
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "ledger.sh"), "args=$(cat)\necho \"$BUREAU_IDEMPOTENCY_KEY\" >> \"$LEDGER_DIR/ledger.txt\"\necho \"recorded $args\"\n");
        File.WriteAllText(Path.Combine(dir, "bureau.yaml"), """
            models:
              script:
                provider: scripted
                rules:
                  - when: { turn: 1, input: '(?<key>k\d+)' }
                    calls:
                      - tool: ledger
                        args: { n: "{{key}}" }
                  - reply: "done"
            tools:
              ledger:
                kind: process
                command: ["sh", "ledger.sh"]
                effect: write
                env: [LEDGER_DIR]
                parameters: { type: object, properties: { n: { type: string } }, required: [n] }
            agents:
              clerk:
                model: script
                tools: [ledger]
            """);
    }
}

/// <summary>
/// A deployment whose write tool <c>ship</c> declares the compensation <c>unship</c>; both append a line with their
/// idempotency key to <c>$LEDGER_DIR/ledger.txt</c>. The agent <c>shipper</c> ships its input, then stops on its step
/// budget: a run that fails after a write.
/// </summary>
internal static class ShipperDeployment
{
    public static void WriteTo(string dir, bool rollbackOnFailure)
    {
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "ship.sh"), "cat >/dev/null\necho \"ship $BUREAU_IDEMPOTENCY_KEY\" >> \"$LEDGER_DIR/ledger.txt\"\necho shipped\n");
        File.WriteAllText(Path.Combine(dir, "unship.sh"), "cat >/dev/null\necho \"unship $BUREAU_IDEMPOTENCY_KEY\" >> \"$LEDGER_DIR/ledger.txt\"\necho unshipped\n");
        File.WriteAllText(Path.Combine(dir, "bureau.yaml"), $$$"""
            models:
              script:
                provider: scripted
                rules:
                  - calls: [ { tool: ship, args: { order: "{{input}}" } } ]
            tools:
              ship:
                kind: process
                command: ["sh", "ship.sh"]
                effect: write
                compensate: unship
                env: [LEDGER_DIR]
                parameters: { type: object, properties: { order: { type: string } }, required: [order] }
              unship:
                kind: process
                command: ["sh", "unship.sh"]
                effect: write
                env: [LEDGER_DIR]
                parameters: { type: object }
            agents:
              shipper:
                model: script
                tools: [ship]
                rollbackOnFailure: {{{(rollbackOnFailure ? "true" : "false")}}}
                budgets: { maxSteps: 2 }  # ships, then stops on its step budget: a failure after a write
            """);
    }
}
