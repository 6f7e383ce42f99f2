using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.AI;

namespace Bureau.Storage.Sqlite;

/// <summary>
/// Long-term memory in the runs' SQLite file (tables <c>memory_facts</c>, <c>memory_text</c> and <c>memory_vectors</c>,
/// migration step 9; decision 0023). Every version of a fact is a row; the newest of a key is its head. A write runs in
/// one <c>BEGIN IMMEDIATE</c> transaction (SQLite serializes writers), so the compare-and-set on the head's version
/// is atomic across threads, connections and processes. Recall by text uses FTS5 (bm25) over the current values.
/// Each call opens its own pooled connection, so it is safe beside a host on the same database.
/// With an <see cref="IEmbeddingGenerator{TInput, TEmbedding}"/> (decision 0024), each current value also gets an
/// embedding (table <c>memory_vectors</c>, per model), and a search fuses the full-text ranking with the cosine
/// ranking of the scopes' vectors (reciprocal rank fusion).
/// </summary>
public sealed class SqliteMemoryStore : SqliteSideStore, IMemoryStore
{
    private readonly IEmbeddingGenerator<string, Embedding<float>>? _embeddings;
    private readonly string _embeddingModel;

    /// <summary>Creates the store: full-text recall only.</summary>
    public SqliteMemoryStore(SqliteStoreOptions options) : this(options, null)
    {
    }

    /// <summary>Creates the store; with <paramref name="embeddings"/>, recall by query also ranks by meaning (vectors kept per model id).</summary>
    public SqliteMemoryStore(SqliteStoreOptions options, IEmbeddingGenerator<string, Embedding<float>>? embeddings) : base(options, "the memory store")
    {
        _embeddings = embeddings;
        _embeddingModel = embeddings?.GetService<EmbeddingGeneratorMetadata>()?.DefaultModelId ?? embeddings?.GetType().Name ?? "";
    }

    /// <summary>The constant of reciprocal rank fusion: a hit's score is the sum over rankings of 1 / (k + rank).</summary>

    private const string Columns = "id, scope, key, version, value, supersedes, live, outcome, run_id, step, agent, actor, at";

    /// <inheritdoc />
    public async Task<MemoryWriteResult> WriteAsync(MemoryWrite write, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(write);
        MemoryStoreSupport.Check(write);
        // Embedded before the write lock is taken (a model call may be slow); a merged value is embedded under it.
        var embedding = _embeddings is not null && write.Value is { } text ? await EmbedAsync(text, cancellationToken) : null;
        try
        {
            await using var c = await OpenAsync(cancellationToken);
            await using var tx = c.BeginTransaction(deferred: false);
            var result = await ApplyAsync(c, tx, write, embedding, cancellationToken);
            if (result.Succeeded) tx.Commit();
            return result;
        }
        catch (SqliteException ex) when (SqliteFaults.Classify(ex, Options.Path) is { } fault)
        {
            throw fault;
        }
    }

    /// <summary>
    /// Applies many writes in one transaction (one fsync), each exactly as <see cref="WriteAsync"/> would, in order: an
    /// import, or the loading of a benchmark's facts. Returns each write's result.
    /// </summary>
    public async Task<IReadOnlyList<MemoryWriteResult>> WriteManyAsync(IReadOnlyList<MemoryWrite> writes, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(writes);
        foreach (var w in writes) MemoryStoreSupport.Check(w);
        var embeddings = new float[]?[writes.Count];
        for (var i = 0; i < writes.Count; i++)
            if (_embeddings is not null && writes[i].Value is { } text) embeddings[i] = await EmbedAsync(text, cancellationToken);
        try
        {
            await using var c = await OpenAsync(cancellationToken);
            await using var tx = c.BeginTransaction(deferred: false);
            var results = new List<MemoryWriteResult>(writes.Count);
            for (var i = 0; i < writes.Count; i++) results.Add(await ApplyAsync(c, tx, writes[i], embeddings[i], cancellationToken));
            tx.Commit();
            return results;
        }
        catch (SqliteException ex) when (SqliteFaults.Classify(ex, Options.Path) is { } fault)
        {
            throw fault;
        }
    }

    private async Task<MemoryWriteResult> ApplyAsync(SqliteConnection c, SqliteTransaction tx, MemoryWrite write, float[]? embedding, CancellationToken cancellationToken)
    {
        if (write.IdempotencyKey is { } writeKey && await ReadOneAsync(c, tx, "write_key = $k", p => p.AddWithValue("$k", writeKey), cancellationToken) is { } done)
            return new MemoryWriteResult(MemoryStoreSupport.OutcomeOf(done.Outcome), done.Fact, null, Repeated: true);

        var head = await ReadOneAsync(c, tx, "scope = $s AND key = $key AND live = 1",
            p => { p.AddWithValue("$s", write.Scope); p.AddWithValue("$key", write.Key); }, cancellationToken);
        var decision = MemoryStoreSupport.Decide(write, head?.Fact);
        if (decision.Answer is { } answer) return answer;
        var (value, outcome, version) = (decision.Value, decision.Outcome, decision.Version);

        if (head is not null)
        {
            await ExecAsync(c, tx, "UPDATE memory_facts SET live = 0 WHERE id = $id", p => p.AddWithValue("$id", head.Id), cancellationToken);
            await ExecAsync(c, tx, "DELETE FROM memory_text WHERE rowid = $id", p => p.AddWithValue("$id", head.Id), cancellationToken);
            await ExecAsync(c, tx, "DELETE FROM memory_vectors WHERE fact_id = $id", p => p.AddWithValue("$id", head.Id), cancellationToken);
        }
        var pv = write.Provenance;
        var fact = new MemoryFact(write.Scope, write.Key, version + 1, value, pv, head is null ? null : version);
        await using (var insert = c.CreateCommand())
        {
            insert.Transaction = tx;
            insert.CommandText = """
                INSERT INTO memory_facts(scope, key, version, value, supersedes, live, outcome, run_id, step, agent, actor, at, write_key)
                VALUES($scope, $key, $version, $value, $supersedes, 1, $outcome, $run, $step, $agent, $actor, $at, $write_key);
                SELECT last_insert_rowid();
                """;
            insert.Parameters.AddWithValue("$scope", fact.Scope);
            insert.Parameters.AddWithValue("$key", fact.Key);
            insert.Parameters.AddWithValue("$version", fact.Version);
            insert.Parameters.AddWithValue("$value", (object?)value ?? DBNull.Value);
            insert.Parameters.AddWithValue("$supersedes", (object?)fact.Supersedes ?? DBNull.Value);
            insert.Parameters.AddWithValue("$outcome", MemoryStoreSupport.OutcomeName(outcome));
            insert.Parameters.AddWithValue("$run", (object?)pv.RunId ?? DBNull.Value);
            insert.Parameters.AddWithValue("$step", (object?)pv.Step ?? DBNull.Value);
            insert.Parameters.AddWithValue("$agent", (object?)pv.Agent ?? DBNull.Value);
            insert.Parameters.AddWithValue("$actor", (object?)pv.Actor ?? DBNull.Value);
            insert.Parameters.AddWithValue("$at", pv.At.ToUnixTimeMilliseconds());
            insert.Parameters.AddWithValue("$write_key", (object?)write.IdempotencyKey ?? DBNull.Value);
            var id = Convert.ToInt64(await insert.ExecuteScalarAsync(cancellationToken), CultureInfo.InvariantCulture);
            if (value is not null)
            {
                await ExecAsync(c, tx, "INSERT INTO memory_text(rowid, scope, key, value) VALUES($id, $scope, $key, $value)", p =>
                {
                    p.AddWithValue("$id", id);
                    p.AddWithValue("$scope", fact.Scope);
                    p.AddWithValue("$key", fact.Key);
                    p.AddWithValue("$value", value);
                }, cancellationToken);
                if (_embeddings is not null)
                {
                    var vector = outcome == MemoryWriteOutcome.Merged ? await EmbedAsync(value, cancellationToken) : embedding!;
                    await ExecAsync(c, tx, "INSERT INTO memory_vectors(fact_id, scope, model, vector) VALUES($id, $scope, $model, $vector)", p =>
                    {
                        p.AddWithValue("$id", id);
                        p.AddWithValue("$scope", fact.Scope);
                        p.AddWithValue("$model", _embeddingModel);
                        p.AddWithValue("$vector", MemoryMarshal.AsBytes(vector.AsSpan()).ToArray());
                    }, cancellationToken);
                }
            }
        }
        return new MemoryWriteResult(outcome, fact with { Provenance = pv with { At = DateTimeOffset.FromUnixTimeMilliseconds(pv.At.ToUnixTimeMilliseconds()) } });
    }

    /// <inheritdoc />
    public async Task<MemoryFact?> GetAsync(string scope, string key, CancellationToken cancellationToken = default)
    {
        await using var c = await OpenAsync(cancellationToken);
        var head = await ReadOneAsync(c, null, "scope = $s AND key = $key AND live = 1 AND value IS NOT NULL",
            p => { p.AddWithValue("$s", scope); p.AddWithValue("$key", key); }, cancellationToken);
        return head?.Fact;
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<MemoryFact>> HistoryAsync(string scope, string key, CancellationToken cancellationToken = default)
    {
        await using var c = await OpenAsync(cancellationToken);
        await using var cmd = c.CreateCommand();
        cmd.CommandText = $"SELECT {Columns} FROM memory_facts WHERE scope = $s AND key = $key ORDER BY version";
        cmd.Parameters.AddWithValue("$s", scope);
        cmd.Parameters.AddWithValue("$key", key);
        return await ReadAllAsync(cmd, cancellationToken);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<MemoryFact>> ListAsync(string scope, string? afterKey = null, int limit = 100, CancellationToken cancellationToken = default)
    {
        await using var c = await OpenAsync(cancellationToken);
        await using var cmd = c.CreateCommand();
        cmd.CommandText = $"SELECT {Columns} FROM memory_facts WHERE scope = $s AND live = 1 AND value IS NOT NULL AND key > $after ORDER BY key LIMIT $limit";
        cmd.Parameters.AddWithValue("$s", scope);
        cmd.Parameters.AddWithValue("$after", afterKey ?? "");
        cmd.Parameters.AddWithValue("$limit", Math.Clamp(limit, 1, 1000));
        return await ReadAllAsync(cmd, cancellationToken);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<MemoryHit>> RecallAsync(MemoryRecall recall, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(recall);
        if (recall.Scopes.Count == 0) return [];
        await using var c = await OpenAsync(cancellationToken);
        if (recall.Key is { } key)
        {
            var hits = new List<MemoryHit>();
            foreach (var scope in recall.Scopes)
            {
                var head = await ReadOneAsync(c, null, "scope = $s AND key = $key AND live = 1 AND value IS NOT NULL",
                    p => { p.AddWithValue("$s", scope); p.AddWithValue("$key", key); }, cancellationToken);
                if (head is not null) hits.Add(new MemoryHit(head.Fact, null));
            }
            return hits;
        }
        var limit = Math.Clamp(recall.Limit, 1, 100);
        var text = await FullTextAsync(c, recall.Scopes, recall.Query, _embeddings is null ? limit : Math.Max(limit * 4, 20), cancellationToken);
        if (_embeddings is null || string.IsNullOrWhiteSpace(recall.Query)) return text.Take(limit).ToList();
        var vectors = await NearestAsync(c, recall.Scopes, await EmbedAsync(recall.Query, cancellationToken), Math.Max(limit * 4, 20), cancellationToken);
        return MemoryStoreSupport.Fuse(text, vectors, limit);
    }

    private static async Task<List<MemoryHit>> FullTextAsync(SqliteConnection c, IReadOnlyList<string> scopes, string? query, int limit, CancellationToken ct)
    {
        var match = MatchExpression(query);
        if (match is null) return [];
        await using var cmd = c.CreateCommand();
        var names = ScopeParameters(cmd, scopes);
        cmd.CommandText = $"""
            SELECT {string.Join(", ", Columns.Split(", ").Select(col => "f." + col))}, memory_text.rank
            FROM memory_text JOIN memory_facts f ON f.id = memory_text.rowid
            WHERE memory_text MATCH $match AND memory_text.scope IN ({names})
            ORDER BY memory_text.rank LIMIT $limit
            """;
        cmd.Parameters.AddWithValue("$match", match);
        cmd.Parameters.AddWithValue("$limit", limit);
        var result = new List<MemoryHit>();
        await using var r = await cmd.ExecuteReaderAsync(ct);
        while (await r.ReadAsync(ct)) result.Add(new MemoryHit(Read(r).Fact, Math.Round(-r.GetDouble(13), 6)));
        return result;
    }

    /// <summary>The facts whose vectors (of this store's model) are nearest the query's, by cosine similarity: an exact scan of the scopes' vectors.</summary>
    private async Task<List<MemoryHit>> NearestAsync(SqliteConnection c, IReadOnlyList<string> scopes, float[] query, int limit, CancellationToken ct)
    {
        var best = new PriorityQueue<long, double>();
        await using (var cmd = c.CreateCommand())
        {
            var names = ScopeParameters(cmd, scopes);
            cmd.CommandText = $"SELECT fact_id, vector FROM memory_vectors WHERE model = $model AND scope IN ({names})";
            cmd.Parameters.AddWithValue("$model", _embeddingModel);
            await using var r = await cmd.ExecuteReaderAsync(ct);
            var queryNorm = MemoryStoreSupport.Norm(query);
            while (await r.ReadAsync(ct))
            {
                var vector = MemoryMarshal.Cast<byte, float>((byte[])r.GetValue(1));
                if (vector.Length != query.Length) continue;
                var similarity = MemoryStoreSupport.Cosine(query, queryNorm, vector);
                if (similarity <= 0) continue; // orthogonal or opposite: not about the query at all
                best.Enqueue(r.GetInt64(0), similarity);
                if (best.Count > limit) best.Dequeue();
            }
        }
        var ranked = new List<(long Id, double Similarity)>();
        while (best.TryDequeue(out var id, out var similarity)) ranked.Add((id, similarity));
        ranked.Reverse();
        var hits = new List<MemoryHit>(ranked.Count);
        foreach (var (id, similarity) in ranked)
        {
            var row = await ReadOneAsync(c, null, "id = $id", p => p.AddWithValue("$id", id), ct);
            if (row is not null) hits.Add(new MemoryHit(row.Fact, Math.Round(similarity, 6)));
        }
        return hits;
    }

    private async Task<float[]> EmbedAsync(string text, CancellationToken ct)
    {
        var embedding = await _embeddings!.GenerateAsync(text, cancellationToken: ct);
        return embedding.Vector.ToArray();
    }

    private static string ScopeParameters(SqliteCommand cmd, IReadOnlyList<string> scopes)
    {
        var names = new StringBuilder();
        for (var i = 0; i < scopes.Count; i++)
        {
            if (i > 0) names.Append(", ");
            names.Append("$s").Append(i);
            cmd.Parameters.AddWithValue("$s" + i, scopes[i]);
        }
        return names.ToString();
    }

    /// <summary>
    /// The FTS5 query of free text: its words, each quoted (so no character of the text is FTS5 syntax), any of
    /// them matching; bm25 ranks facts with more and rarer words higher. Common English words (<c>the</c>, <c>what</c>,
    /// ...) are left out unless nothing else is left: they match nearly every fact, add nothing to the ranking, and make
    /// the search score every fact. Null when the text has no word.
    /// </summary>
    internal static string? MatchExpression(string? text)
    {
        var words = MemoryStoreSupport.QueryWords(text);
        return words.Count == 0 ? null : string.Join(" OR ", words.Select(w => "\"" + w + "\""));
    }

    private sealed record Row(long Id, MemoryFact Fact, string Outcome);

    private static async Task<Row?> ReadOneAsync(SqliteConnection c, SqliteTransaction? tx, string where, Action<SqliteParameterCollection> bind, CancellationToken ct)
    {
        await using var cmd = c.CreateCommand();
        cmd.Transaction = tx;
        cmd.CommandText = $"SELECT {Columns} FROM memory_facts WHERE {where}";
        bind(cmd.Parameters);
        await using var r = await cmd.ExecuteReaderAsync(ct);
        return await r.ReadAsync(ct) ? Read(r) : null;
    }

    private static async Task<IReadOnlyList<MemoryFact>> ReadAllAsync(SqliteCommand cmd, CancellationToken ct)
    {
        var list = new List<MemoryFact>();
        await using var r = await cmd.ExecuteReaderAsync(ct);
        while (await r.ReadAsync(ct)) list.Add(Read(r).Fact);
        return list;
    }

    private static Row Read(SqliteDataReader r)
    {
        var version = r.GetInt64(3);
        var live = r.GetInt64(6) == 1;
        var provenance = new MemoryProvenance(
            r.IsDBNull(8) ? null : r.GetString(8),
            r.IsDBNull(9) ? null : r.GetInt64(9),
            r.IsDBNull(10) ? null : r.GetString(10),
            DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(12)),
            r.IsDBNull(11) ? null : r.GetString(11));
        var fact = new MemoryFact(r.GetString(1), r.GetString(2), version, r.IsDBNull(4) ? null : r.GetString(4), provenance,
            r.IsDBNull(5) ? null : r.GetInt64(5), live ? null : version + 1);
        return new Row(r.GetInt64(0), fact, r.GetString(7));
    }

    private static async Task ExecAsync(SqliteConnection c, SqliteTransaction tx, string sql, Action<SqliteParameterCollection> bind, CancellationToken ct)
    {
        await using var cmd = c.CreateCommand();
        cmd.Transaction = tx;
        cmd.CommandText = sql;
        bind(cmd.Parameters);
        await cmd.ExecuteNonQueryAsync(ct);
    }
}
