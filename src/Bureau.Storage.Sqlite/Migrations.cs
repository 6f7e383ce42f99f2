using Microsoft.Data.Sqlite;

namespace Bureau.Storage.Sqlite;

/// <summary>Versioned schema migrations, tracked in <c>PRAGMA user_version</c>. Append only: never edit a shipped step.</summary>
internal static class Migrations
{
    internal static readonly string[] Steps =
    [
        // 1: runs, journal
        """
        CREATE TABLE runs(
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            agent TEXT NOT NULL,
            status TEXT NOT NULL,
            input TEXT NOT NULL,
            output TEXT,
            error TEXT,
            outcome TEXT,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            version INTEGER NOT NULL,
            waiting_for TEXT,
            idempotency_key TEXT UNIQUE,
            actor TEXT
        );
        CREATE INDEX runs_by_status ON runs(status, seq);
        CREATE INDEX runs_by_agent ON runs(agent, seq);
        CREATE TABLE journal(
            run_id TEXT NOT NULL,
            n INTEGER NOT NULL,
            kind TEXT NOT NULL,
            at INTEGER NOT NULL,
            data BLOB NOT NULL,
            PRIMARY KEY(run_id, n)
        ) WITHOUT ROWID;
        """,
        // 2: API keys (hashes only)
        """
        CREATE TABLE api_keys(
            id TEXT PRIMARY KEY,
            name TEXT,
            role TEXT NOT NULL,
            hash TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            revoked_at INTEGER
        ) WITHOUT ROWID;
        """,
        // 3: run kinds and trees, scheduler claims (leases), wait deadlines
        """
        ALTER TABLE runs ADD COLUMN kind TEXT NOT NULL DEFAULT 'agent';
        ALTER TABLE runs ADD COLUMN parent_run_id TEXT;
        ALTER TABLE runs ADD COLUMN root_run_id TEXT;
        ALTER TABLE runs ADD COLUMN claim_owner TEXT;
        ALTER TABLE runs ADD COLUMN claim_until INTEGER;
        ALTER TABLE runs ADD COLUMN wait_deadline INTEGER;
        CREATE INDEX runs_by_parent ON runs(parent_run_id) WHERE parent_run_id IS NOT NULL;
        CREATE INDEX runs_by_deadline ON runs(wait_deadline) WHERE wait_deadline IS NOT NULL;
        """,
        // 4: the store's write probe (one row; see ProbeOp).
        """
        CREATE TABLE store_probe(id INTEGER PRIMARY KEY, at INTEGER NOT NULL, pad BLOB);
        """,
        // 5: the audit log, a hash chain (see AuditChain).
        """
        CREATE TABLE audit(
            seq INTEGER PRIMARY KEY,
            at INTEGER NOT NULL,
            actor TEXT,
            action TEXT NOT NULL,
            run_id TEXT,
            step INTEGER,
            detail TEXT,
            prev TEXT NOT NULL,
            hash TEXT NOT NULL
        );
        CREATE INDEX audit_by_run ON audit(run_id) WHERE run_id IS NOT NULL;
        """,
        // 6: runs by tree (a root team's limit on all the runs below it).
        """
        CREATE INDEX runs_by_root ON runs(root_run_id, seq);
        """,
        // 7: each run's cost (its own model calls; a team's members summed), and runs by creation time for cost reports.
        //    created_at never changes after the insert, so the index costs nothing on the append path. Agent runs
        //    journaled before get their cost from their model answers (teams keep 0: their members are counted).
        """
        ALTER TABLE runs ADD COLUMN cost REAL NOT NULL DEFAULT 0;
        CREATE INDEX runs_by_created ON runs(created_at);
        UPDATE runs SET cost = coalesce((SELECT sum(json_extract(CAST(j.data AS TEXT), '$.cost')) FROM journal j
            WHERE j.run_id = runs.id AND j.kind = 'model.response'), 0)
        WHERE kind <> 'team';
        """,
        // 8: events: dead letters (events whose handling failed) and poll triggers' cursors (see SqliteEventStore).
        """
        CREATE TABLE dead_letters(
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            key TEXT NOT NULL UNIQUE,
            trigger TEXT NOT NULL,
            event_id TEXT,
            reason TEXT NOT NULL,
            agent TEXT NOT NULL,
            input TEXT NOT NULL,
            event TEXT,
            data TEXT,
            error TEXT NOT NULL,
            run_id TEXT,
            at INTEGER NOT NULL,
            retries INTEGER NOT NULL DEFAULT 0,
            retried_at INTEGER,
            retry_run_id TEXT
        );
        CREATE TABLE poll_cursors(
            trigger TEXT PRIMARY KEY,
            value TEXT NOT NULL,
            at INTEGER NOT NULL
        ) WITHOUT ROWID;
        """,
        // 9: long-term memory (see SqliteMemoryStore): every version of every fact, with provenance; the head version of a
        //    key is live = 1 (a forgotten fact's head has no value). write_key deduplicates a run's writes across a crash.
        //    memory_text indexes the current values for full-text recall (FTS5, bm25); memory_vectors holds their embeddings.
        """
        CREATE TABLE memory_facts(
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            scope TEXT NOT NULL,
            key TEXT NOT NULL,
            version INTEGER NOT NULL,
            value TEXT,
            supersedes INTEGER,
            live INTEGER NOT NULL DEFAULT 1,
            outcome TEXT NOT NULL,
            run_id TEXT,
            step INTEGER,
            agent TEXT,
            actor TEXT,
            at INTEGER NOT NULL,
            write_key TEXT UNIQUE,
            UNIQUE(scope, key, version)
        );
        CREATE UNIQUE INDEX memory_heads ON memory_facts(scope, key) WHERE live = 1;
        CREATE INDEX memory_by_run ON memory_facts(run_id) WHERE run_id IS NOT NULL;
        CREATE VIRTUAL TABLE memory_text USING fts5(scope UNINDEXED, key, value, tokenize = 'porter unicode61');
        CREATE TABLE memory_vectors(
            fact_id INTEGER PRIMARY KEY,
            scope TEXT NOT NULL,
            model TEXT NOT NULL,
            vector BLOB NOT NULL
        );
        CREATE INDEX memory_vectors_by_scope ON memory_vectors(scope);
        """,
        // 10: teams' operational boards (see SqliteBoardStore): tasks claimed once (a claim is an UPDATE ... WHERE status = 'open'),
        //     decisions (append-only), compare-and-set keys.
        """
        CREATE TABLE board_tasks(
            board TEXT NOT NULL,
            id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            title TEXT NOT NULL,
            detail TEXT,
            status TEXT NOT NULL,
            claimed_by TEXT,
            version INTEGER NOT NULL,
            created_by TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            note TEXT,
            PRIMARY KEY(board, id)
        ) WITHOUT ROWID;
        CREATE INDEX board_tasks_by_seq ON board_tasks(board, seq);
        CREATE TABLE board_decisions(
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            board TEXT NOT NULL,
            title TEXT NOT NULL,
            text TEXT NOT NULL,
            by TEXT NOT NULL,
            at INTEGER NOT NULL
        );
        CREATE INDEX board_decisions_by_board ON board_decisions(board, seq);
        CREATE TABLE board_keys(
            board TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            version INTEGER NOT NULL,
            by TEXT NOT NULL,
            at INTEGER NOT NULL,
            PRIMARY KEY(board, key)
        ) WITHOUT ROWID;
        """,
        // 11: A2A push notification configs (see
        //    SqliteEventStore, IA2APushConfigStore), until now JSON arrays in poll_cursors rows 'a2a-push:TASK' with an index
        //    row 'a2a-push:index' of the watched tasks. Those rows move here, in their order, and are deleted.
        """
        CREATE TABLE a2a_push_configs(
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            task_id TEXT NOT NULL,
            config_id TEXT NOT NULL,
            config TEXT NOT NULL,
            watched INTEGER NOT NULL DEFAULT 1,
            at INTEGER NOT NULL,
            UNIQUE(task_id, config_id)
        );
        CREATE INDEX a2a_push_configs_watched ON a2a_push_configs(watched, task_id);
        INSERT OR REPLACE INTO a2a_push_configs(task_id, config_id, config, watched, at)
        SELECT substr(c.trigger, 10), coalesce(json_extract(j.value, '$.id'), ''), j.value,
               EXISTS(SELECT 1 FROM poll_cursors i, json_each(i.value) k WHERE i.trigger = 'a2a-push:index' AND k.value = substr(c.trigger, 10)),
               c.at
        FROM poll_cursors c, json_each(c.value) j
        WHERE c.trigger LIKE 'a2a-push:%' AND c.trigger <> 'a2a-push:index' AND j.type = 'object'
        ORDER BY c.trigger, j.key;
        DELETE FROM poll_cursors WHERE trigger LIKE 'a2a-push:%';
        """,
        // 12: the workforce's inbox (see SqliteWorkforceStore): a task is assigned by one conditional UPDATE (status = 'queued' and
        //     the member below its limit); its run is started with the idempotency key workforce:ID, so a task has one run.
        """
        CREATE TABLE workforce_tasks(
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            skill TEXT NOT NULL,
            input TEXT NOT NULL,
            status TEXT NOT NULL,
            agent TEXT,
            run_id TEXT,
            source TEXT NOT NULL,
            actor TEXT,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            version INTEGER NOT NULL,
            output TEXT,
            error TEXT
        );
        CREATE INDEX workforce_by_status ON workforce_tasks(status, seq);
        CREATE INDEX workforce_by_agent ON workforce_tasks(agent, status) WHERE agent IS NOT NULL;
        """,
        // 13: the journal in commit order (a rowid table) with its (run_id, n) key as an index. Keyed by (run_id, n)
        // with each entry inline, a commit carrying the steps of many runs wrote into as many leaf pages, each a frame in
        // the WAL; appended in order, a commit's entries share a few pages and only the small index entries scatter.
        // Rewrites the table once (the existing entries in key order).
        """
        CREATE TABLE journal_by_commit(
            seq INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL,
            n INTEGER NOT NULL,
            kind TEXT NOT NULL,
            at INTEGER NOT NULL,
            data BLOB NOT NULL
        );
        INSERT INTO journal_by_commit(run_id, n, kind, at, data) SELECT run_id, n, kind, at, data FROM journal ORDER BY run_id, n;
        DROP TABLE journal;
        ALTER TABLE journal_by_commit RENAME TO journal;
        CREATE UNIQUE INDEX journal_by_run ON journal(run_id, n);
        """,
        // 14: the workforce inbox's queued tasks by skill, for its per-skill limit (decision 0050): a count of one skill's
        // queued tasks reads only those, however many other skills have waiting.
        """
        CREATE INDEX IF NOT EXISTS workforce_queued_by_skill ON workforce_tasks(skill) WHERE status = 'queued';
        """,
    ];

    /// <summary>The schema version this code writes.</summary>
    /// <summary>
    /// Readies the database for a store that shares it with the run store (keys, events): its folder,
    /// WAL mode and the schema, whichever store opens it first. Storage faults come out classified.
    /// </summary>
    internal static async Task PrepareAsync(SqliteStoreOptions options, string connectionString, CancellationToken cancellationToken)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(options.Path));
        if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
        try
        {
            await using var c = new SqliteConnection(connectionString);
            await c.OpenAsync(cancellationToken);
            RefuseForeign(c, options.Path);
            await using (var wal = c.CreateCommand())
            {
                wal.CommandText = "PRAGMA journal_mode=WAL";
                await wal.ExecuteNonQueryAsync(cancellationToken);
            }
            Apply(c);
        }
        catch (SqliteException ex) when (SqliteFaults.Classify(ex, options.Path) is { } fault)
        {
            throw fault;
        }
    }

    internal static int Latest => Steps.Length;

    /// <summary>
    /// Refuses a file that holds another application's database: no Bureau schema (<c>user_version</c> 0) but tables of
    /// its own. Checked before anything is set or created, so such a file is left exactly as it was.
    /// </summary>
    /// <exception cref="InvalidOperationException">The database has tables and no Bureau schema.</exception>
    internal static void RefuseForeign(SqliteConnection connection, string path)
    {
        using var version = connection.CreateCommand();
        version.CommandText = "PRAGMA user_version";
        if (Convert.ToInt64(version.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture) != 0) return;
        using var tables = connection.CreateCommand();
        tables.CommandText = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%' ORDER BY name LIMIT 6";
        var names = new List<string>();
        using (var r = tables.ExecuteReader())
        {
            while (r.Read()) names.Add(r.GetString(0));
        }
        if (names.Count == 0) return;
        var listed = string.Join(", ", names.Take(5)) + (names.Count > 5 ? ", ..." : "");
        throw new InvalidOperationException(
            $"{path} is not a Bureau database: it has tables of its own ({listed}) and no Bureau schema; give Bureau a file of its own (--db, Bureau:Sqlite:Path)");
    }

    internal static void Apply(SqliteConnection connection)
    {
        using var tx = connection.BeginTransaction();
        var current = Convert.ToInt32(Scalar(connection, tx, "PRAGMA user_version"));
        if (current > Latest)
        {
            throw new InvalidOperationException(
                $"the database schema is version {current}, newer than this Bureau understands ({Latest}); upgrade Bureau");
        }
        for (var v = current; v < Latest; v++)
        {
            using var cmd = connection.CreateCommand();
            cmd.Transaction = tx;
            cmd.CommandText = Steps[v];
            cmd.ExecuteNonQuery();
            using var set = connection.CreateCommand();
            set.Transaction = tx;
            set.CommandText = $"PRAGMA user_version = {v + 1}";
            set.ExecuteNonQuery();
        }
        tx.Commit();
    }

    private static object? Scalar(SqliteConnection c, SqliteTransaction tx, string sql)
    {
        using var cmd = c.CreateCommand();
        cmd.Transaction = tx;
        cmd.CommandText = sql;
        return cmd.ExecuteScalar();
    }
}
