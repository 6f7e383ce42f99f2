using Bureau.Storage.Sqlite;
using Bureau.TestKit;
using Bureau.Tests.Storage;
using Bureau.Tests.Support;
using Microsoft.Extensions.AI;
using Xunit;

namespace Bureau.Tests.Memory;

/// <summary>
/// A deterministic embedding generator for tests: words (after a small synonym table) hashed into 64 dimensions, so
/// "reach" and "contact" land together while sharing no letters. Not a model: it shows the store's plumbing.
/// </summary>
internal sealed class ConceptEmbedder(string model = "concepts-v1") : IEmbeddingGenerator<string, Embedding<float>>
{
    private static readonly Dictionary<string, string> s_synonyms = new(StringComparer.OrdinalIgnoreCase)
    {
        ["reach"] = "contact", ["touch"] = "contact", ["email"] = "contact", ["phone"] = "contact", ["contacted"] = "contact",
        ["leave"] = "cancel", ["churn"] = "cancel", ["quit"] = "cancel",
    };

    public int Calls;

    public Task<GeneratedEmbeddings<Embedding<float>>> GenerateAsync(IEnumerable<string> values, EmbeddingGenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        var result = new GeneratedEmbeddings<Embedding<float>>();
        foreach (var text in values)
        {
            Interlocked.Increment(ref Calls);
            var v = new float[64];
            foreach (var raw in text.Split([' ', ',', '.', '?', ';', ':'], StringSplitOptions.RemoveEmptyEntries))
            {
                var word = s_synonyms.GetValueOrDefault(raw, raw).ToLowerInvariant();
                if (word.Length < 4) continue; // short words carry little meaning here
                v[(int)(Fnv(word) % 64)] += 1;
            }
            result.Add(new Embedding<float>(v) { ModelId = model });
        }
        return Task.FromResult(result);
    }

    /// <summary>FNV-1a: the same in every process (string.GetHashCode is randomized per process).</summary>
    private static uint Fnv(string word)
    {
        var hash = 2166136261u;
        foreach (var ch in word) hash = (hash ^ ch) * 16777619u;
        return hash;
    }

    public object? GetService(Type serviceType, object? serviceKey = null) =>
        serviceType == typeof(EmbeddingGeneratorMetadata) ? new EmbeddingGeneratorMetadata("test", null, model, 64) : null;

    public void Dispose() { }
}

/// <summary>Recall by meaning when an <see cref="IEmbeddingGenerator{TInput, TEmbedding}"/> is registered: vectors kept for current values only, per model, fused with full text.</summary>
public sealed class VectorRecallTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private async Task<SqliteMemoryStore> OpenAsync(IEmbeddingGenerator<string, Embedding<float>>? embedder)
    {
        var store = new SqliteMemoryStore(new SqliteStoreOptions { Path = _dir.File("v.db") }, embedder);
        await store.InitializeAsync(TestContext.Current.CancellationToken);
        return store;
    }

    private static MemoryWrite Write(string key, string? value, long expected) =>
        new() { Scope = "team:desk", Key = key, Value = value, ExpectedVersion = expected, Provenance = new("run-v", 2, "a", DateTimeOffset.UnixEpoch) };

    [Fact]
    public async Task Recall_WithEmbeddings_FindsAFactThatSharesNoWordWithTheQuery_WithScoreAndProvenance()
    {
        var store = await OpenAsync(new ConceptEmbedder());
        await store.WriteAsync(Write("c17-contact", "Customer seventeen prefers email", 0));
        await store.WriteAsync(Write("c17-plan", "Customer seventeen has the gold plan", 0));
        var textOnly = await OpenAsync(null);

        var query = new MemoryRecall { Scopes = ["team:desk"], Query = "how to reach them", Limit = 1 };
        var hits = await store.RecallAsync(query);

        Assert.Empty(await textOnly.RecallAsync(query)); // no word in common
        var hit = Assert.Single(hits);
        Assert.Equal(("c17-contact", "run-v", 2L), (hit.Fact.Key, hit.Fact.Provenance.RunId, hit.Fact.Provenance.Step!.Value));
        Assert.True(hit.Score > 0);
    }

    [Fact]
    public async Task Vectors_AreKeptForCurrentValuesOnly_AndPerModel()
    {
        var embedder = new ConceptEmbedder();
        var store = await OpenAsync(embedder);
        await store.WriteAsync(Write("note", "they want to leave", 0));
        await store.WriteAsync(Write("note", "renewed happily", 1));
        await store.WriteAsync(Write("gone", "will churn soon", 0));
        await store.WriteAsync(Write("gone", null, 1));

        var cancel = await store.RecallAsync(new MemoryRecall { Scopes = ["team:desk"], Query = "quit", Limit = 5 });
        Assert.Empty(cancel); // the superseded and the forgotten values are not found by meaning either

        var otherModel = await OpenAsync(new ConceptEmbedder("concepts-v2"));
        await otherModel.WriteAsync(Write("fresh", "may quit next month", 0));
        var hits = await otherModel.RecallAsync(new MemoryRecall { Scopes = ["team:desk"], Query = "churn", Limit = 5 });
        Assert.Equal(["fresh"], hits.Select(h => h.Fact.Key)); // vectors of another model are not compared
    }

    [Fact]
    public void Fuse_RanksAFactFoundByBothAboveOnesFoundByOne()
    {
        MemoryFact F(string key) => new("team:desk", key, 1, key, new MemoryProvenance(null, null, null, DateTimeOffset.UnixEpoch));
        var fused = MemoryStoreSupport.Fuse([new(F("a"), 3), new(F("b"), 2)], [new(F("c"), 0.9), new(F("b"), 0.8)], 3);
        Assert.Equal(["b", "a", "c"], fused.Select(h => h.Fact.Key));
    }
}

/// <summary>The memory conformance suite on SQLite with embeddings on: vectors change nothing of the contract.</summary>
public sealed class SqliteMemoryStoreWithEmbeddingsTests : MemoryStoreConformanceTests, IDisposable
{
    private readonly TempDir _dir = new();

    protected override IMemoryStore CreateStore() => new SqliteMemoryStore(new SqliteStoreOptions { Path = _dir.File("bureau.db") }, new ConceptEmbedder());

    public void Dispose() => _dir.Dispose();
}
