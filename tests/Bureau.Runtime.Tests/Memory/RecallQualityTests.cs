using System.Text.Json;
using Bureau.Storage.Sqlite;
using Bureau.Tests.Support;
using Xunit;

namespace Bureau.Tests.Memory;

/// <summary>
/// Recall quality on a small labelled set (recall-set.json: 30 facts of a support desk, 20 queries with the facts that
/// answer them), through the store's recall as an agent's <c>recall</c> tool uses it. The number is recorded in
/// docs/performance.md and decision 0024; the assertion is a floor, so a change that makes recall worse fails.
/// </summary>
public sealed class RecallQualityTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    internal sealed record LabelledSet(IReadOnlyList<(string Key, string Value)> Facts, IReadOnlyList<(string Query, IReadOnlyList<string> Relevant)> Queries);

    internal static LabelledSet Load()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Memory", "recall-set.json")));
        var facts = doc.RootElement.GetProperty("facts").EnumerateArray().Select(f => (f.GetProperty("key").GetString()!, f.GetProperty("value").GetString()!)).ToList();
        var queries = doc.RootElement.GetProperty("queries").EnumerateArray()
            .Select(q => (q.GetProperty("query").GetString()!, (IReadOnlyList<string>)[.. q.GetProperty("relevant").EnumerateArray().Select(r => r.GetString()!)])).ToList();
        return new LabelledSet(facts, queries);
    }

    /// <summary>Mean over the queries of the share of their relevant facts among the first five hits.</summary>
    internal static async Task<double> RecallAt5Async(IMemoryStore store, LabelledSet set, ITestOutputHelper? output = null)
    {
        var total = 0.0;
        foreach (var (query, relevant) in set.Queries)
        {
            var hits = await store.RecallAsync(new MemoryRecall { Scopes = ["team:desk"], Query = query, Limit = 5 });
            var found = relevant.Count(r => hits.Any(h => h.Fact.Key == r));
            total += (double)found / relevant.Count;
            output?.WriteLine($"{found}/{relevant.Count}  {query}  ->  {string.Join(", ", hits.Select(h => $"{h.Fact.Key} ({h.Score:0.00})"))}");
        }
        return total / set.Queries.Count;
    }

    [Fact]
    public async Task FullText_RecallAt5_OnTheLabelledSet_StaysAtLeastWhatDecision0024Measured()
    {
        var set = Load();
        Assert.Equal((30, 20), (set.Facts.Count, set.Queries.Count));
        var store = new SqliteMemoryStore(new SqliteStoreOptions { Path = _dir.File("recall.db") });
        await store.InitializeAsync(TestContext.Current.CancellationToken);
        foreach (var (key, value) in set.Facts)
            await store.WriteAsync(new MemoryWrite { Scope = "team:desk", Key = key, Value = value, ExpectedVersion = 0, Provenance = new("run-set", 1, "loader", DateTimeOffset.UnixEpoch) });

        var recall = await RecallAt5Async(store, set, output);

        output.WriteLine($"recall@5 (SQLite FTS5, bm25): {recall:0.000}");
        Assert.True(recall >= 0.90, $"recall@5 fell to {recall:0.000}");
    }
}
