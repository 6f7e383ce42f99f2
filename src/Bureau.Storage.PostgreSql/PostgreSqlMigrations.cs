using Npgsql;

namespace Bureau.Storage.PostgreSql;

/// <summary>
/// Versioned schema migrations, tracked in the table <c>schema_version</c> of Bureau's schema, applied in one
/// transaction under an advisory lock (nodes starting together migrate once). Append only: never edit a shipped step.
/// Times are Unix milliseconds (<c>bigint</c>), as in the SQLite store: the same truncation, the same day arithmetic.
/// </summary>
internal static class PostgreSqlMigrations
{
    /// <summary>The advisory lock key of migrations ('bureau_m').</summary>
    private const long MigrationLock = 0x6275726561755f6d;

    internal static readonly string[] Steps =
    [
        // 1: everything the SQLite store has after its 8 steps, in one.
        """
        CREATE TABLE runs(
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id text COLLATE "C" NOT NULL UNIQUE,
            agent text COLLATE "C" NOT NULL,
            kind text NOT NULL DEFAULT 'agent',
            parent_run_id text COLLATE "C",
            root_run_id text COLLATE "C",
            status text NOT NULL,
            input text NOT NULL,
            output text,
            error text,
            outcome text,
            input_tokens bigint NOT NULL DEFAULT 0,
            output_tokens bigint NOT NULL DEFAULT 0,
            cost double precision NOT NULL DEFAULT 0,
            created_at bigint NOT NULL,
            updated_at bigint NOT NULL,
            version bigint NOT NULL,
            waiting_for text,
            wait_deadline bigint,
            idempotency_key text COLLATE "C" UNIQUE,
            actor text,
            claim_owner text COLLATE "C",
            claim_until bigint
        );
        CREATE INDEX runs_by_status ON runs(status, seq);
        CREATE INDEX runs_by_agent ON runs(agent, seq);
        CREATE INDEX runs_by_parent ON runs(parent_run_id) WHERE parent_run_id IS NOT NULL;
        CREATE INDEX runs_by_root ON runs(root_run_id, seq);
        CREATE INDEX runs_by_deadline ON runs(wait_deadline) WHERE wait_deadline IS NOT NULL;
        CREATE INDEX runs_by_created ON runs(created_at);
        CREATE INDEX runs_unfinished ON runs(seq) WHERE status IN ('queued','running');
        CREATE INDEX runs_by_claim_owner ON runs(claim_owner) WHERE claim_owner IS NOT NULL;
        CREATE TABLE journal(
            run_id text COLLATE "C" NOT NULL,
            n bigint NOT NULL,
            kind text NOT NULL,
            at bigint NOT NULL,
            data bytea NOT NULL,
            PRIMARY KEY(run_id, n)
        );
        CREATE TABLE api_keys(
            id text COLLATE "C" PRIMARY KEY,
            name text,
            role text NOT NULL,
            hash text NOT NULL,
            created_at bigint NOT NULL,
            revoked_at bigint
        );
        CREATE TABLE store_probe(id integer PRIMARY KEY, at bigint NOT NULL);
        CREATE TABLE audit(
            seq bigint PRIMARY KEY,
            at bigint NOT NULL,
            actor text,
            action text NOT NULL,
            run_id text,
            step bigint,
            detail text,
            prev text NOT NULL,
            hash text NOT NULL
        );
        CREATE INDEX audit_by_run ON audit(run_id) WHERE run_id IS NOT NULL;
        CREATE INDEX audit_by_action ON audit(action, seq);
        CREATE TABLE dead_letters(
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id text NOT NULL UNIQUE,
            key text NOT NULL UNIQUE,
            trigger text NOT NULL,
            event_id text,
            reason text NOT NULL,
            agent text NOT NULL,
            input text NOT NULL,
            event text,
            data text,
            error text NOT NULL,
            run_id text,
            at bigint NOT NULL,
            retries integer NOT NULL DEFAULT 0,
            retried_at bigint,
            retry_run_id text
        );
        CREATE TABLE poll_cursors(
            trigger text PRIMARY KEY,
            value text NOT NULL,
            at bigint NOT NULL
        );
        """,
        // 2: long-term memory (PostgreSqlMemoryStore; SQLite's step 9) and teams' boards (PostgreSqlBoardStore; SQLite's step 10).
        //    A fact's head is live; tsv holds the head's text-search vector (english: stemmed, as SQLite's porter
        //    tokenizer), indexed (GIN) for live rows only. A task's seq orders a board's tasks by creation.
        """
        CREATE TABLE memory_facts(
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            scope text COLLATE "C" NOT NULL,
            key text COLLATE "C" NOT NULL,
            version bigint NOT NULL,
            value text,
            supersedes bigint,
            live boolean NOT NULL DEFAULT true,
            outcome text NOT NULL,
            run_id text COLLATE "C",
            step bigint,
            agent text,
            actor text,
            at bigint NOT NULL,
            write_key text COLLATE "C" UNIQUE,
            tsv tsvector,
            UNIQUE(scope, key, version)
        );
        CREATE UNIQUE INDEX memory_heads ON memory_facts(scope, key) WHERE live;
        CREATE INDEX memory_by_run ON memory_facts(run_id) WHERE run_id IS NOT NULL;
        CREATE INDEX memory_text ON memory_facts USING gin(tsv) WHERE live;
        CREATE TABLE memory_vectors(
            fact_id bigint PRIMARY KEY,
            scope text COLLATE "C" NOT NULL,
            model text NOT NULL,
            vector bytea NOT NULL
        );
        CREATE INDEX memory_vectors_by_scope ON memory_vectors(scope);
        CREATE TABLE board_tasks(
            board text COLLATE "C" NOT NULL,
            id text COLLATE "C" NOT NULL,
            seq bigint GENERATED ALWAYS AS IDENTITY,
            title text NOT NULL,
            detail text,
            status text NOT NULL,
            claimed_by text,
            version bigint NOT NULL,
            created_by text NOT NULL,
            created_at bigint NOT NULL,
            updated_at bigint NOT NULL,
            note text,
            PRIMARY KEY(board, id)
        );
        CREATE INDEX board_tasks_by_seq ON board_tasks(board, seq);
        CREATE TABLE board_decisions(
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            board text COLLATE "C" NOT NULL,
            title text NOT NULL,
            text text NOT NULL,
            "by" text NOT NULL,
            at bigint NOT NULL
        );
        CREATE INDEX board_decisions_by_board ON board_decisions(board, seq);
        CREATE TABLE board_keys(
            board text COLLATE "C" NOT NULL,
            key text COLLATE "C" NOT NULL,
            value text NOT NULL,
            version bigint NOT NULL,
            "by" text NOT NULL,
            at bigint NOT NULL,
            PRIMARY KEY(board, key)
        );
        """,
        // 3: A2A push notification configs (IA2APushConfigStore),
        //    until now JSON arrays in poll_cursors rows 'a2a-push:TASK' with an index row 'a2a-push:index' of the watched tasks.
        //    Those rows move here, in their order, and are deleted.
        """
        CREATE TABLE a2a_push_configs(
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            task_id text NOT NULL,
            config_id text NOT NULL,
            config text NOT NULL,
            watched boolean NOT NULL DEFAULT true,
            at bigint NOT NULL,
            UNIQUE(task_id, config_id)
        );
        CREATE INDEX a2a_push_configs_watched ON a2a_push_configs(task_id) WHERE watched;
        INSERT INTO a2a_push_configs(task_id, config_id, config, watched, at)
        SELECT substr(c.trigger, 10), coalesce(j.value->>'id', ''), j.value::text,
               EXISTS(SELECT 1 FROM poll_cursors i, jsonb_array_elements_text(i.value::jsonb) k(task)
                      WHERE i.trigger = 'a2a-push:index' AND k.task = substr(c.trigger, 10)),
               c.at
        FROM poll_cursors c, jsonb_array_elements(c.value::jsonb) WITH ORDINALITY j(value, ord)
        WHERE c.trigger LIKE 'a2a-push:%' AND c.trigger <> 'a2a-push:index' AND jsonb_typeof(j.value) = 'object'
        ORDER BY c.trigger, j.ord
        ON CONFLICT (task_id, config_id) DO NOTHING;
        DELETE FROM poll_cursors WHERE trigger LIKE 'a2a-push:%';
        """,
        // 4: the workforce's inbox (PostgreSqlWorkforceStore; SQLite's step 12). seq orders tasks by arrival.
        """
        CREATE TABLE workforce_tasks(
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id text COLLATE "C" NOT NULL UNIQUE,
            skill text COLLATE "C" NOT NULL,
            input text NOT NULL,
            status text NOT NULL,
            agent text COLLATE "C",
            run_id text COLLATE "C",
            source text NOT NULL,
            actor text,
            created_at bigint NOT NULL,
            updated_at bigint NOT NULL,
            version bigint NOT NULL,
            output text,
            error text
        );
        CREATE INDEX workforce_by_status ON workforce_tasks(status, seq);
        CREATE INDEX workforce_by_agent ON workforce_tasks(agent, status) WHERE agent IS NOT NULL;
        """,
        // 5: the workforce inbox's queued tasks by skill, for its per-skill limit (decision 0050).
        """
        CREATE INDEX IF NOT EXISTS workforce_queued_by_skill ON workforce_tasks(skill) WHERE status = 'queued';
        """,
        // 6: the execution slots of agents with a concurrency limit, held by one node's execution of a run until a lease
        // time, and the runs waiting for one since their first refusal (decision 0056). A row whose lease lapsed is gone.
        """
        CREATE TABLE IF NOT EXISTS agent_slots(
            agent text COLLATE "C" NOT NULL,
            run_id text COLLATE "C" NOT NULL,
            owner text COLLATE "C" NOT NULL,
            held boolean NOT NULL,
            since bigint NOT NULL,
            until bigint NOT NULL,
            PRIMARY KEY (agent, run_id)
        );
        CREATE INDEX IF NOT EXISTS agent_slots_by_owner ON agent_slots(owner);
        """,
    ];

    /// <summary>The schema version this code writes.</summary>
    internal static int Latest => Steps.Length;

    internal static async Task ApplyAsync(PostgreSqlDatabase db, CancellationToken ct)
    {
        await using var c = await db.DataSource.OpenConnectionAsync(ct);
        await using var tx = await c.BeginTransactionAsync(ct);
        await ExecAsync(c, tx, $"SELECT pg_advisory_xact_lock({MigrationLock})", ct);
        await ExecAsync(c, tx, $"CREATE SCHEMA IF NOT EXISTS {db.Options.Schema}", ct);
        await ExecAsync(c, tx, "CREATE TABLE IF NOT EXISTS schema_version(version integer NOT NULL)", ct);
        int current;
        await using (var cmd = new NpgsqlCommand("SELECT max(version) FROM schema_version", c, tx))
            current = await cmd.ExecuteScalarAsync(ct) is int v ? v : 0;
        if (current > Latest)
        {
            throw new InvalidOperationException(
                $"the schema {db.Options.Schema} of {db.Name} is version {current}, newer than this Bureau understands ({Latest}); upgrade Bureau");
        }
        for (var v = current; v < Latest; v++)
        {
            await ExecAsync(c, tx, Steps[v], ct);
            await ExecAsync(c, tx, $"DELETE FROM schema_version; INSERT INTO schema_version(version) VALUES({v + 1})", ct);
        }
        await tx.CommitAsync(ct);
    }

    private static async Task ExecAsync(NpgsqlConnection c, NpgsqlTransaction tx, string sql, CancellationToken ct)
    {
        await using var cmd = new NpgsqlCommand(sql, c, tx);
        await cmd.ExecuteNonQueryAsync(ct);
    }
}
