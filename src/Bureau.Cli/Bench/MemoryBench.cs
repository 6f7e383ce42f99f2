using System.CommandLine;
using System.Diagnostics;
using System.Text.Json.Nodes;
using Bureau.Memory;
using Bureau.Storage.Sqlite;
using Microsoft.Extensions.AI;

namespace Bureau.Cli.Bench;

/// <summary>
/// <c>bureau bench memory</c>: long-term memory on SQLite. Compare-and-set writes per second (each its own durable
/// transaction, C writers at once on distinct keys), then recall latency (p50, p99) by key and by full-text query with
/// N facts in the scope, the cost of an exact vector scan (synthetic vectors, no model), and the tokenizer's load and
/// counting cost. One JSON object on stdout.
/// </summary>
internal static class MemoryBench
{
    private static readonly string[] s_words =
    [
        "refund", "invoice", "plan", "gold", "silver", "platinum", "outage", "dashboard", "export", "mobile", "offline", "login", "password",
        "contract", "renewal", "discount", "escalate", "billing", "tax", "address", "email", "phone", "language", "german", "french", "tokyo",
        "lyon", "report", "security", "certificate", "latency", "timeout", "api", "limit", "seats", "upgrade", "downgrade", "cancel", "churn",
        "priority", "support", "weekend", "holiday", "delivery", "shipment", "warehouse", "order", "payment", "card", "transfer", "bank",
        "sso", "okta", "azure", "webhook", "integration", "slack", "teams", "calendar", "meeting", "demo", "trial", "onboarding", "training",
    ];

    /// <summary>A vocabulary of 3000 words (the seed words with suffixes): each fact has 12 of them, so a word is in about 0.4% of facts, as a real topic word is.</summary>
    private static readonly string[] s_vocabulary = [.. Enumerable.Range(0, 3000).Select(i => s_words[i % s_words.Length] + (i / s_words.Length == 0 ? "" : "x" + (i / s_words.Length)))];

    public static Command Create()
    {
        var facts = new Option<int>("--facts") { Description = "N: facts in the scope when recall is measured.", DefaultValueFactory = _ => 100_000 };
        var writes = new Option<int>("--writes") { Description = "W: compare-and-set writes timed (each a durable transaction).", DefaultValueFactory = _ => 2000 };
        var concurrency = new Option<int>("--concurrency") { Description = "C: writers at once.", DefaultValueFactory = _ => 8 };
        var queries = new Option<int>("--queries") { Description = "Q: recalls timed of each kind.", DefaultValueFactory = _ => 500 };
        var vectorFacts = new Option<int>("--vector-facts") { Description = "Facts with a 384-float vector for the exact-scan measurement (0: skip).", DefaultValueFactory = _ => 10_000 };
        var db = new Option<string>("--db") { Description = "The database file (deleted and recreated).", DefaultValueFactory = _ => Path.Combine(Path.GetTempPath(), "bureau-bench", "memory.db") };
        var cmd = new Command("memory", "Long-term memory: CAS writes/s, recall p50/p99 by key and by full-text query at N facts, exact vector scan, tokenizer load and counting.")
        {
            facts, writes, concurrency, queries, vectorFacts, db,
        };
        cmd.SetAction(async (parse, ct) =>
        {
            var (n, w, c, q, v, path) = (parse.GetValue(facts), parse.GetValue(writes), parse.GetValue(concurrency), parse.GetValue(queries), parse.GetValue(vectorFacts), parse.GetValue(db)!);
            if (n < 1 || w < 1 || c < 1 || q < 1 || v < 0) throw new CliUsageException("--facts, --writes, --concurrency and --queries must be at least 1, --vector-facts at least 0");
            var report = await RunAsync(n, w, c, q, v, path, s => Console.Error.WriteLine("memory: " + s), ct);
            Console.Out.WriteLine(RunDocuments.ToJson(report));
            return 0;
        });
        return cmd;
    }

    private static string Sentence(Random random, int i)
    {
        var words = new string[12];
        for (var k = 0; k < words.Length; k++) words[k] = s_vocabulary[random.Next(s_vocabulary.Length)];
        return $"customer {i} " + string.Join(' ', words);
    }

    private static MemoryWrite Fact(string scope, string key, string value, long expected) =>
        new() { Scope = scope, Key = key, Value = value, ExpectedVersion = expected, Provenance = new MemoryProvenance("bench", 1, "bench", DateTimeOffset.UtcNow) };

    internal static async Task<JsonObject> RunAsync(int n, int w, int c, int q, int v, string path, Action<string> progress, CancellationToken ct)
    {
        AgentLoopBench.DeleteDb(path);
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        var store = new SqliteMemoryStore(new SqliteStoreOptions { Path = path });
        await store.InitializeAsync(ct);
        var random = new Random(42);

        // 1. CAS writes: W writes by C writers, each a new version of one of the writer's keys (expected version read from its own last write).
        progress($"{w} compare-and-set writes by {c} writers");
        var next = -1;
        var started = Stopwatch.GetTimestamp();
        await Task.WhenAll(Enumerable.Range(0, c).Select(writer => Task.Run(async () =>
        {
            var versions = new Dictionary<string, long>();
            var rnd = new Random(writer);
            while (Interlocked.Increment(ref next) < w)
            {
                var key = $"w{writer}-k{rnd.Next(50)}";
                var result = await store.WriteAsync(Fact("team:writes", key, Sentence(rnd, writer), versions.GetValueOrDefault(key)), ct);
                if (!result.Succeeded) throw new InvalidOperationException($"bench write of {key} was not applied: {result.Outcome}");
                versions[key] = result.Fact!.Version;
            }
        }, ct)));
        var writeSeconds = Stopwatch.GetElapsedTime(started).TotalSeconds;

        // 2. N facts in one scope (loaded in transactions of 5000; not timed), then recall by key and by query.
        progress($"loading {n} facts");
        for (var i = 0; i < n; i += 5000)
        {
            var batch = Enumerable.Range(i, Math.Min(5000, n - i)).Select(k => Fact("team:bench", "fact-" + k, Sentence(random, k), 0)).ToList();
            await store.WriteManyAsync(batch, ct);
        }
        progress($"{q} recalls by key, {q} by query");
        var byKey = new List<double>(q);
        for (var i = 0; i < q; i++)
        {
            var t = Stopwatch.GetTimestamp();
            var hits = await store.RecallAsync(new MemoryRecall { Scopes = ["team:bench"], Key = "fact-" + random.Next(n) }, ct);
            byKey.Add(Stopwatch.GetElapsedTime(t).TotalMilliseconds);
            if (hits.Count != 1) throw new InvalidOperationException("a fact the bench wrote was not found");
        }
        var byQuery = new List<double>(q);
        var found = 0;
        for (var i = 0; i < q; i++)
        {
            var query = $"what about {s_vocabulary[random.Next(s_vocabulary.Length)]} and {s_vocabulary[random.Next(s_vocabulary.Length)]} {s_vocabulary[random.Next(s_vocabulary.Length)]}?";
            var t = Stopwatch.GetTimestamp();
            var hits = await store.RecallAsync(new MemoryRecall { Scopes = ["team:bench"], Query = query, Limit = 5 }, ct);
            byQuery.Add(Stopwatch.GetElapsedTime(t).TotalMilliseconds);
            found += hits.Count;
        }
        // The worst case: a query word that is in every fact ("customer"), so every fact is scored.
        var everyFact = new List<double>();
        for (var i = 0; i < Math.Min(q, 50); i++)
        {
            var t = Stopwatch.GetTimestamp();
            await store.RecallAsync(new MemoryRecall { Scopes = ["team:bench"], Query = "customer " + s_vocabulary[random.Next(s_vocabulary.Length)], Limit = 5 }, ct);
            everyFact.Add(Stopwatch.GetElapsedTime(t).TotalMilliseconds);
        }

        // 3. Exact vector scan: V facts with synthetic 384-float vectors (no model), recall by a random vector.
        JsonObject? vectors = null;
        if (v > 0)
        {
            progress($"exact vector scan over {v} vectors of 384 floats");
            var embedder = new RandomEmbedder();
            var vpath = path + ".vectors";
            AgentLoopBench.DeleteDb(vpath);
            var vstore = new SqliteMemoryStore(new SqliteStoreOptions { Path = vpath }, embedder);
            await vstore.InitializeAsync(ct);
            for (var i = 0; i < v; i += 5000)
                await vstore.WriteManyAsync(Enumerable.Range(i, Math.Min(5000, v - i)).Select(k => Fact("team:vectors", "fact-" + k, Sentence(random, k), 0)).ToList(), ct);
            var scans = new List<double>();
            for (var i = 0; i < Math.Min(q, 50); i++)
            {
                var t = Stopwatch.GetTimestamp();
                await vstore.RecallAsync(new MemoryRecall { Scopes = ["team:vectors"], Query = "zzz" + i, Limit = 5 }, ct);
                scans.Add(Stopwatch.GetElapsedTime(t).TotalMilliseconds);
            }
            vectors = new JsonObject { ["facts"] = v, ["dimensions"] = 384, ["queries"] = scans.Count, ["p50Ms"] = Percentile(scans, 0.50), ["p99Ms"] = Percentile(scans, 0.99) };
            AgentLoopBench.DeleteDb(vpath);
        }

        // 4. The tokenizer: load (first use in this process), then counting a 200-message conversation.
        progress("tokenizer o200k_base");
        var load = Stopwatch.GetTimestamp();
        var tokenizer = TokenCounter.For("o200k_base");
        tokenizer.CountTokens("warm");
        var loadMs = Stopwatch.GetElapsedTime(load).TotalMilliseconds;
        var messages = Enumerable.Range(0, 200).Select(i => new ChatMessage(i % 2 == 0 ? ChatRole.User : ChatRole.Assistant, Sentence(random, i) + " " + Sentence(random, i + 1))).ToList();
        var count = Stopwatch.GetTimestamp();
        var tokens = messages.Sum(m => tokenizer.CountTokens(m.Text));
        var countMs = Stopwatch.GetElapsedTime(count).TotalMilliseconds;

        AgentLoopBench.DeleteDb(path);
        return new JsonObject
        {
            ["benchmark"] = "memory",
            ["machine"] = $"{Environment.ProcessorCount} cores, load average {LoadAverage()}",
            ["writes"] = new JsonObject { ["count"] = w, ["concurrency"] = c, ["seconds"] = Math.Round(writeSeconds, 3), ["perSecond"] = Math.Round(w / writeSeconds, 1), ["durability"] = "synchronous=FULL, one transaction per write" },
            ["recall"] = new JsonObject
            {
                ["facts"] = n,
                ["byKey"] = new JsonObject { ["queries"] = q, ["p50Ms"] = Percentile(byKey, 0.50), ["p99Ms"] = Percentile(byKey, 0.99) },
                ["byQuery"] = new JsonObject { ["queries"] = q, ["p50Ms"] = Percentile(byQuery, 0.50), ["p99Ms"] = Percentile(byQuery, 0.99), ["meanHits"] = Math.Round((double)found / q, 2), ["engine"] = "FTS5 bm25" },
                ["byQueryMatchingEveryFact"] = new JsonObject { ["queries"] = everyFact.Count, ["p50Ms"] = Percentile(everyFact, 0.50), ["p99Ms"] = Percentile(everyFact, 0.99) },
            },
            ["vectorScan"] = vectors,
            ["tokenizer"] = new JsonObject { ["name"] = "o200k_base", ["loadMs"] = Math.Round(loadMs, 1), ["messages"] = messages.Count, ["tokens"] = tokens, ["countMs"] = Math.Round(countMs, 2) },
        };
    }

    private static double Percentile(List<double> values, double p)
    {
        var sorted = values.Order().ToList();
        return Math.Round(sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(p * sorted.Count) - 1)], 3);
    }

    private static string LoadAverage()
    {
        try
        {
            return File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "unknown";
        }
        catch (IOException)
        {
            return "unknown";
        }
    }

    /// <summary>Random unit-free vectors: the scan's cost without a model's.</summary>
    private sealed class RandomEmbedder : IEmbeddingGenerator<string, Embedding<float>>
    {
        private readonly Random _random = new(7);

        public Task<GeneratedEmbeddings<Embedding<float>>> GenerateAsync(IEnumerable<string> values, EmbeddingGenerationOptions? options = null, CancellationToken cancellationToken = default)
        {
            var result = new GeneratedEmbeddings<Embedding<float>>();
            lock (_random)
            {
                foreach (var _ in values)
                {
                    var v = new float[384];
                    for (var i = 0; i < v.Length; i++) v[i] = (float)(_random.NextDouble() - 0.3);
                    result.Add(new Embedding<float>(v));
                }
            }
            return Task.FromResult(result);
        }

        public object? GetService(Type serviceType, object? serviceKey = null) => null;

        public void Dispose() { }
    }
}
