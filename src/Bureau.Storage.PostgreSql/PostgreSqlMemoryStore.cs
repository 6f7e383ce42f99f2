using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Extensions.AI;
using Npgsql;
using NpgsqlTypes;

namespace Bureau.Storage.PostgreSql;

/// <summary>
/// Long-term memory in Bureau's PostgreSQL schema (tables <c>memory_facts</c> and <c>memory_vectors</c>, migration step 2;
/// decision 0023), with the SQLite store's semantics. Every version of a fact is a row; the newest of a key is its head
/// (<c>live</c>). A write runs in one transaction that first takes an advisory lock on the fact (its scope and key), so
/// the compare-and-set on the head's version is atomic across connections and nodes; the unique index on
/// (scope, key, version) is the last guard. Recall by text uses PostgreSQL's built-in full-text search (the
/// <c>english</c> configuration: stemmed words, as SQLite's porter tokenizer; a GIN index on the current values),
/// ranked by <c>ts_rank</c>: higher is better, as on SQLite. With an <see cref="IEmbeddingGenerator{TInput, TEmbedding}"/>
/// (decision 0024) each current value also gets an embedding and a search fuses both rankings, as on SQLite.
/// </summary>
public sealed class PostgreSqlMemoryStore : PostgreSqlSideStore, IMemoryStore
{
    /// <summary>The class id of the advisory locks of facts ('mem'); the fact's hash is the second key.</summary>
    private const int FactLockClass = 0x6d656d;

    /// <summary>The constant of reciprocal rank fusion (as SQLite's).</summary>

    private const string Columns = "id, scope, key, version, value, supersedes, live, outcome, run_id, step, agent, actor, at";

    private readonly IEmbeddingGenerator<string, Embedding<float>>? _embeddings;
    private readonly string _embeddingModel;

    /// <summary>Creates the store on its own pool: full-text recall only.</summary>
    public PostgreSqlMemoryStore(PostgreSqlStoreOptions options) : this(new PostgreSqlDatabase(options), null, ownsDatabase: true)
    {
    }

    /// <summary>Creates the store on a pool shared with the other stores of the database; with <paramref name="embeddings"/>, recall by query also ranks by meaning.</summary>
    public PostgreSqlMemoryStore(PostgreSqlDatabase database, IEmbeddingGenerator<string, Embedding<float>>? embeddings = null) : this(database, embeddings, ownsDatabase: false)
    {
    }

    private PostgreSqlMemoryStore(PostgreSqlDatabase database, IEmbeddingGenerator<string, Embedding<float>>? embeddings, bool ownsDatabase)
        : base(database, ownsDatabase, "the memory store")
    {
        _embeddings = embeddings;
        _embeddingModel = embeddings?.GetService<EmbeddingGeneratorMetadata>()?.DefaultModelId ?? embeddings?.GetType().Name ?? "";
    }

    /// <inheritdoc />
    public async Task<MemoryWriteResult> WriteAsync(MemoryWrite write, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(write);
        MemoryStoreSupport.Check(write);
        // Embedded before the transaction (a model call may be slow); a merged value is embedded inside it.
        var embedding = _embeddings is not null && write.Value is { } text ? await EmbedAsync(text, cancellationToken) : null;
        return await InTransactionAsync((c, tx, ct) => ApplyAsync(c, tx, write, embedding, ct), cancellationToken);
    }

    private async Task<MemoryWriteResult> ApplyAsync(NpgsqlConnection c, NpgsqlTransaction tx, MemoryWrite write, float[]? embedding, CancellationToken ct)
    {
        await using (var lockCmd = new NpgsqlCommand($"SELECT pg_advisory_xact_lock({FactLockClass}, hashtext($1 || chr(10) || $2))", c, tx))
        {
            lockCmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = write.Scope });
            lockCmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = write.Key });
            await lockCmd.ExecuteNonQueryAsync(ct);
        }
        if (write.IdempotencyKey is { } writeKey && await ReadOneAsync(c, tx, "write_key = $1", [writeKey], ct) is { } done)
            return new MemoryWriteResult(MemoryStoreSupport.OutcomeOf(done.Outcome), done.Fact, null, Repeated: true);

        var head = await ReadOneAsync(c, tx, "scope = $1 AND key = $2 AND live", [write.Scope, write.Key], ct);
        var decision = MemoryStoreSupport.Decide(write, head?.Fact);
        if (decision.Answer is { } answer) return answer;
        var (value, outcome, version) = (decision.Value, decision.Outcome, decision.Version);

        if (head is not null)
        {
            await using var retire = new NpgsqlBatch(c, tx)
            {
                BatchCommands =
                {
                    new NpgsqlBatchCommand("UPDATE memory_facts SET live = false, tsv = NULL WHERE id = $1") { Parameters = { new NpgsqlParameter<long> { TypedValue = head.Id } } },
                    new NpgsqlBatchCommand("DELETE FROM memory_vectors WHERE fact_id = $1") { Parameters = { new NpgsqlParameter<long> { TypedValue = head.Id } } },
                },
            };
            await retire.ExecuteNonQueryAsync(ct);
        }
        var pv = write.Provenance;
        var fact = new MemoryFact(write.Scope, write.Key, version + 1, value, pv, head is null ? null : version);
        long id;
        await using (var insert = new NpgsqlCommand("""
            INSERT INTO memory_facts(scope, key, version, value, supersedes, live, outcome, run_id, step, agent, actor, at, write_key, tsv)
            VALUES($1, $2, $3, $4, $5, true, $6, $7, $8, $9, $10, $11, $12, CASE WHEN $4 IS NULL THEN NULL ELSE to_tsvector('english', $4) END)
            RETURNING id
            """, c, tx))
        {
            insert.Parameters.Add(new NpgsqlParameter<string> { TypedValue = fact.Scope });
            insert.Parameters.Add(new NpgsqlParameter<string> { TypedValue = fact.Key });
            insert.Parameters.Add(new NpgsqlParameter<long> { TypedValue = fact.Version });
            insert.Parameters.Add(Text(value));
            insert.Parameters.Add(Long(fact.Supersedes));
            insert.Parameters.Add(new NpgsqlParameter<string> { TypedValue = MemoryStoreSupport.OutcomeName(outcome) });
            insert.Parameters.Add(Text(pv.RunId));
            insert.Parameters.Add(Long(pv.Step));
            insert.Parameters.Add(Text(pv.Agent));
            insert.Parameters.Add(Text(pv.Actor));
            insert.Parameters.Add(new NpgsqlParameter<long> { TypedValue = pv.At.ToUnixTimeMilliseconds() });
            insert.Parameters.Add(Text(write.IdempotencyKey));
            id = (long)(await insert.ExecuteScalarAsync(ct))!;
        }
        if (value is not null && _embeddings is not null)
        {
            var vector = outcome == MemoryWriteOutcome.Merged ? await EmbedAsync(value, ct) : embedding!;
            await using var vec = new NpgsqlCommand("INSERT INTO memory_vectors(fact_id, scope, model, vector) VALUES($1, $2, $3, $4)", c, tx);
            vec.Parameters.Add(new NpgsqlParameter<long> { TypedValue = id });
            vec.Parameters.Add(new NpgsqlParameter<string> { TypedValue = fact.Scope });
            vec.Parameters.Add(new NpgsqlParameter<string> { TypedValue = _embeddingModel });
            vec.Parameters.Add(new NpgsqlParameter<byte[]> { TypedValue = MemoryMarshal.AsBytes(vector.AsSpan()).ToArray() });
            await vec.ExecuteNonQueryAsync(ct);
        }
        return new MemoryWriteResult(outcome, fact with { Provenance = pv with { At = DateTimeOffset.FromUnixTimeMilliseconds(pv.At.ToUnixTimeMilliseconds()) } });
    }

    /// <inheritdoc />
    public async Task<MemoryFact?> GetAsync(string scope, string key, CancellationToken cancellationToken = default)
    {
        await using var c = await OpenAsync(cancellationToken);
        return (await ReadOneAsync(c, null, "scope = $1 AND key = $2 AND live AND value IS NOT NULL", [scope, key], cancellationToken))?.Fact;
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<MemoryFact>> HistoryAsync(string scope, string key, CancellationToken cancellationToken = default)
    {
        await using var c = await OpenAsync(cancellationToken);
        return await ReadAllAsync(c, $"SELECT {Columns} FROM memory_facts WHERE scope = $1 AND key = $2 ORDER BY version", [scope, key], cancellationToken);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<MemoryFact>> ListAsync(string scope, string? afterKey = null, int limit = 100, CancellationToken cancellationToken = default)
    {
        await using var c = await OpenAsync(cancellationToken);
        return await ReadAllAsync(c, $"SELECT {Columns} FROM memory_facts WHERE scope = $1 AND live AND value IS NOT NULL AND key > $2 ORDER BY key LIMIT $3",
            [scope, afterKey ?? "", Math.Clamp(limit, 1, 1000)], cancellationToken);
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
                var head = await ReadOneAsync(c, null, "scope = $1 AND key = $2 AND live AND value IS NOT NULL", [scope, key], cancellationToken);
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

    private static async Task<List<MemoryHit>> FullTextAsync(NpgsqlConnection c, IReadOnlyList<string> scopes, string? query, int limit, CancellationToken ct)
    {
        var match = QueryExpression(query);
        if (match is null) return [];
        await using var cmd = new NpgsqlCommand($"""
            SELECT {string.Join(", ", Columns.Split(", ").Select(col => "f." + col))}, ts_rank(f.tsv, q, 1) AS rank
            FROM memory_facts f, to_tsquery('english', $1) q
            WHERE f.live AND f.tsv @@ q AND f.scope = ANY($2)
            ORDER BY rank DESC, f.key LIMIT $3
            """, c);
        cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = match });
        cmd.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text, Value = scopes.ToArray() });
        cmd.Parameters.Add(new NpgsqlParameter<int> { TypedValue = limit });
        var result = new List<MemoryHit>();
        await using var r = await cmd.ExecuteReaderAsync(ct);
        while (await r.ReadAsync(ct)) result.Add(new MemoryHit(Read(r).Fact, Math.Round(r.GetFloat(13), 6)));
        return result;
    }

    /// <summary>The facts whose vectors (of this store's model) are nearest the query's, by cosine similarity: an exact scan of the scopes' vectors.</summary>
    private async Task<List<MemoryHit>> NearestAsync(NpgsqlConnection c, IReadOnlyList<string> scopes, float[] query, int limit, CancellationToken ct)
    {
        var best = new PriorityQueue<long, double>();
        await using (var cmd = new NpgsqlCommand("SELECT fact_id, vector FROM memory_vectors WHERE model = $1 AND scope = ANY($2)", c))
        {
            cmd.Parameters.Add(new NpgsqlParameter<string> { TypedValue = _embeddingModel });
            cmd.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text, Value = scopes.ToArray() });
            await using var r = await cmd.ExecuteReaderAsync(ct);
            var queryNorm = MemoryStoreSupport.Norm(query);
            while (await r.ReadAsync(ct))
            {
                var vector = MemoryMarshal.Cast<byte, float>(r.GetFieldValue<byte[]>(1));
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
            var row = await ReadOneAsync(c, null, "id = $1", [id], ct);
            if (row is not null) hits.Add(new MemoryHit(row.Fact, Math.Round(similarity, 6)));
        }
        return hits;
    }

    private async Task<float[]> EmbedAsync(string text, CancellationToken ct)
    {
        var embedding = await _embeddings!.GenerateAsync(text, cancellationToken: ct);
        return embedding.Vector.ToArray();
    }

    /// <summary>
    /// The <c>to_tsquery</c> text of free text: its words (letters and digits only, so nothing of the text is query
    /// syntax), any of them matching (<c>|</c>). Common English words are left out unless nothing else is left, as on
    /// SQLite (the <c>english</c> configuration drops them from the index anyway). Null when the text has no word.
    /// </summary>
    internal static string? QueryExpression(string? text)
    {
        var words = MemoryStoreSupport.QueryWords(text);
        return words.Count == 0 ? null : string.Join(" | ", words);
    }

    private sealed record Row(long Id, MemoryFact Fact, string Outcome);

    private static NpgsqlCommand Command(NpgsqlConnection c, NpgsqlTransaction? tx, string sql, object[] parameters)
    {
        var cmd = new NpgsqlCommand(sql, c, tx);
        foreach (var p in parameters) cmd.Parameters.Add(new NpgsqlParameter { Value = p });
        return cmd;
    }

    private static async Task<Row?> ReadOneAsync(NpgsqlConnection c, NpgsqlTransaction? tx, string where, object[] parameters, CancellationToken ct)
    {
        await using var cmd = Command(c, tx, $"SELECT {Columns} FROM memory_facts WHERE {where}", parameters);
        await using var r = await cmd.ExecuteReaderAsync(ct);
        return await r.ReadAsync(ct) ? Read(r) : null;
    }

    private static async Task<IReadOnlyList<MemoryFact>> ReadAllAsync(NpgsqlConnection c, string sql, object[] parameters, CancellationToken ct)
    {
        await using var cmd = Command(c, null, sql, parameters);
        var list = new List<MemoryFact>();
        await using var r = await cmd.ExecuteReaderAsync(ct);
        while (await r.ReadAsync(ct)) list.Add(Read(r).Fact);
        return list;
    }

    private static Row Read(NpgsqlDataReader r)
    {
        var version = r.GetInt64(3);
        var live = r.GetBoolean(6);
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

    private static NpgsqlParameter Text(string? value) => new() { NpgsqlDbType = NpgsqlDbType.Text, Value = (object?)value ?? DBNull.Value };

    private static NpgsqlParameter Long(long? value) => new() { NpgsqlDbType = NpgsqlDbType.Bigint, Value = (object?)value ?? DBNull.Value };
}
