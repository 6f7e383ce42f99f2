using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Bureau.Storage.Sqlite;
using Microsoft.Extensions.Logging;

namespace Bureau.Cli.Bench;

/// <summary>The soak's parameters: the agent-loop workload kept at <paramref name="Concurrency"/> runs in flight for <paramref name="Duration"/>.</summary>
internal sealed record SoakConfig(TimeSpan Duration, TimeSpan Interval, int Concurrency, int Steps, int LatencyMs, string DbPath, StoreDurability Durability);

/// <summary>One sample of the process and of the steps finished since the previous sample.</summary>
internal sealed record SoakSample(double ElapsedS, double RssMb, int Handles, double GcHeapMb, int Threads, long RunsFinished, long WindowSteps, double P50StepMs, double P99StepMs)
{
    public JsonObject ToJson() => new()
    {
        ["t_s"] = Math.Round(ElapsedS, 1),
        ["rss_mb"] = Math.Round(RssMb, 1),
        ["handles"] = Handles,
        ["gc_heap_mb"] = Math.Round(GcHeapMb, 1),
        ["threads"] = Threads,
        ["runs_finished"] = RunsFinished,
        ["window_steps"] = WindowSteps,
        ["p50_step_ms"] = Math.Round(P50StepMs, 3),
        ["p99_step_ms"] = Math.Round(P99StepMs, 3),
    };
}

/// <summary>The soak's report: the samples, and the slopes over their second half (R20: RSS and handles flat, p99 drift).</summary>
internal sealed record SoakReport(SoakConfig Config, IReadOnlyList<SoakSample> Samples, long RunsSubmitted, long RunsFinished, long RunsFailed, double WallSeconds, long StoreBytes)
{
    /// <summary>The samples of the second half of the soak.</summary>
    public IReadOnlyList<SoakSample> SecondHalf => [.. Samples.Where(s => s.ElapsedS >= Config.Duration.TotalSeconds / 2)];

    /// <summary>Least-squares slope of <paramref name="y"/> against time in minutes, over the second half's samples (NaN with fewer than 2).</summary>
    public double SecondHalfSlopePerMinute(Func<SoakSample, double> y) => Slope(SecondHalf, y);

    /// <summary>Least-squares slope of <paramref name="y"/> against time in minutes (NaN with fewer than 2 samples).</summary>
    public static double Slope(IReadOnlyList<SoakSample> samples, Func<SoakSample, double> y)
    {
        if (samples.Count < 2) return double.NaN;
        var xs = samples.Select(s => s.ElapsedS / 60).ToArray();
        var ys = samples.Select(y).ToArray();
        var mx = xs.Average();
        var my = ys.Average();
        var sxx = xs.Sum(x => (x - mx) * (x - mx));
        if (sxx == 0) return double.NaN;
        return xs.Zip(ys).Sum(p => (p.First - mx) * (p.Second - my)) / sxx;
    }

    public JsonObject ToJson()
    {
        var windows = Samples.Where(s => s.WindowSteps > 0).ToList();
        var secondHalf = SecondHalf.Where(s => s.WindowSteps > 0).ToList();
        var samples = new JsonArray();
        foreach (var s in Samples) samples.Add(s.ToJson());
        return new JsonObject
        {
            ["system"] = "bureau",
            ["workload"] = "agent-loop soak",
            ["version"] = typeof(SoakBench).Assembly.GetName().Version?.ToString(3),
            ["C"] = Config.Concurrency,
            ["K"] = Config.Steps,
            ["latency_ms"] = Config.LatencyMs,
            ["durability"] = Config.Durability == StoreDurability.Full ? "full" : "process",
            ["duration_s"] = Math.Round(Config.Duration.TotalSeconds, 1),
            ["interval_s"] = Math.Round(Config.Interval.TotalSeconds, 1),
            ["wall_s"] = Math.Round(WallSeconds, 1),
            ["processors"] = Environment.ProcessorCount,
            ["runs_submitted"] = RunsSubmitted,
            ["runs_finished"] = RunsFinished,
            ["runs_failed"] = RunsFailed,
            ["runs_per_s"] = Math.Round(RunsFinished / WallSeconds, 1),
            ["store_bytes"] = StoreBytes,
            ["rss_mb_first"] = Samples.Count > 0 ? Math.Round(Samples[0].RssMb, 1) : null,
            ["rss_mb_last"] = Samples.Count > 0 ? Math.Round(Samples[^1].RssMb, 1) : null,
            ["rss_mb_max"] = Samples.Count > 0 ? Math.Round(Samples.Max(s => s.RssMb), 1) : null,
            ["rss_slope_mb_per_min"] = Round(SecondHalfSlopePerMinute(s => s.RssMb), 3),
            ["handles_first"] = Samples.Count > 0 ? Samples[0].Handles : null,
            ["handles_last"] = Samples.Count > 0 ? Samples[^1].Handles : null,
            ["handles_slope_per_min"] = Round(SecondHalfSlopePerMinute(s => s.Handles), 3),
            ["threads_last"] = Samples.Count > 0 ? Samples[^1].Threads : null,
            ["gc_heap_mb_slope_per_min"] = Round(SecondHalfSlopePerMinute(s => s.GcHeapMb), 3),
            ["p99_step_ms_first_window"] = windows.Count > 0 ? Math.Round(windows[0].P99StepMs, 3) : null,
            ["p99_step_ms_second_half_first"] = secondHalf.Count > 0 ? Math.Round(secondHalf[0].P99StepMs, 3) : null,
            ["p99_step_ms_last_window"] = windows.Count > 0 ? Math.Round(windows[^1].P99StepMs, 3) : null,
            ["p99_step_ms_slope_per_min"] = Round(Slope(secondHalf, s => s.P99StepMs), 3),
            ["samples"] = samples,
        };
    }

    private static double? Round(double value, int digits) => double.IsNaN(value) ? null : Math.Round(value, digits);
}

/// <summary>
/// R20: the agent-loop workload (<see cref="AgentLoopBench"/>'s agent, tool and scripted model) kept at C
/// runs in flight for a duration: a new run is submitted as each one finishes. Every interval it samples
/// RSS (VmRSS), open handles (/proc/self/fd), the GC heap and the thread count, and the step latencies
/// of the window: per step (a model answer or a tool result), the time from the run's previous journal
/// entry to this one, as the event bus sees them.
/// </summary>
internal static class SoakBench
{
    public static async Task<SoakReport> RunAsync(SoakConfig config, Action<SoakSample> onSample, CancellationToken ct)
    {
        AgentLoopBench.DeleteDb(config.DbPath);
        var samples = new List<SoakSample>();
        long submitted = 0, finished = 0, failed = 0;
        var lastRecord = new System.Collections.Concurrent.ConcurrentDictionary<string, long>(StringComparer.Ordinal);
        var window = new List<double>(1 << 16);
        var windowGate = new Lock();
        using var slots = new SemaphoreSlim(config.Concurrency);
        Exception? submitError = null;

        await using var bureau = await EmbeddedBureau.StartAsync(AgentLoopBench.Definitions(config.Steps, config.LatencyMs), config.DbPath, config.Durability,
            config.Concurrency, LogLevel.Warning, ct);
        using var sub = bureau.Engine.Events.SubscribeAll(e =>
        {
            if (e.Record is null) return;
            var now = Stopwatch.GetTimestamp();
            // run.finished is written with the final answer, in one append: not a step of its own.
            if (e.Record.N > 1 && e.Record.Entry is not RunFinished && lastRecord.TryGetValue(e.RunId, out var previous))
            {
                var ms = Stopwatch.GetElapsedTime(previous, now).TotalMilliseconds;
                lock (windowGate) window.Add(ms);
            }
            if (e.Record.Entry is RunFinished f)
            {
                lastRecord.TryRemove(e.RunId, out _);
                if (f.Status != RunStatus.Succeeded) Interlocked.Increment(ref failed);
                Interlocked.Increment(ref finished);
                slots.Release();
            }
            else
            {
                lastRecord[e.RunId] = now;
            }
        });

        var wall = Stopwatch.StartNew();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        stop.CancelAfter(config.Duration);
        var sampler = SampleLoopAsync();
        try
        {
            while (!stop.IsCancellationRequested)
            {
                await slots.WaitAsync(stop.Token);
                var r = Interlocked.Increment(ref submitted) - 1;
                _ = SubmitAsync(r);
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
        await sampler;
        // Drain: the runs in flight finish (they are part of the last window's load, not sampled).
        for (var waited = 0; Interlocked.Read(ref finished) < Interlocked.Read(ref submitted) && waited < 600; waited++)
            await Task.Delay(100, ct);
        wall.Stop();
        if (submitError is not null) throw new InvalidOperationException("bureau bench soak: a submission failed", submitError);
        return new SoakReport(config, samples, submitted, finished, failed, wall.Elapsed.TotalSeconds, bureau.Store.SizeOnDisk());

        async Task SubmitAsync(long r)
        {
            try
            {
                await bureau.Engine.SubmitAsync(new RunRequest("loop", r.ToString(CultureInfo.InvariantCulture)), CancellationToken.None);
            }
            catch (Exception ex)
            {
                submitError ??= ex;
                slots.Release();
            }
        }

        async Task SampleLoopAsync()
        {
            Take();
            using var timer = new PeriodicTimer(config.Interval);
            try
            {
                while (await timer.WaitForNextTickAsync(stop.Token)) Take();
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
            }
            if (wall.Elapsed.TotalSeconds - (samples.Count > 0 ? samples[^1].ElapsedS : 0) > config.Interval.TotalSeconds / 2) Take();
        }

        void Take()
        {
            List<double> steps;
            lock (windowGate)
            {
                steps = [.. window];
                window.Clear();
            }
            var (rss, threads) = ReadStatus();
            var sample = new SoakSample(wall.Elapsed.TotalSeconds, rss, CountHandles(), GC.GetGCMemoryInfo().HeapSizeBytes / (1024.0 * 1024.0), threads,
                Interlocked.Read(ref finished), steps.Count, AgentLoopBench.Percentile(steps, 0.50), AgentLoopBench.Percentile(steps, 0.99));
            samples.Add(sample);
            onSample(sample);
        }
    }

    /// <summary>VmRSS in MB and the thread count, from /proc/self/status (the working set and the managed thread count elsewhere).</summary>
    internal static (double RssMb, int Threads) ReadStatus()
    {
        double rss = -1;
        var threads = -1;
        try
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
            {
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                    rss = long.Parse(line.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024.0;
                else if (line.StartsWith("Threads:", StringComparison.Ordinal))
                    threads = int.Parse(line.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
            }
        }
        catch (IOException)
        {
        }
        if (rss < 0) rss = Environment.WorkingSet / (1024.0 * 1024.0);
        if (threads < 0) threads = Process.GetCurrentProcess().Threads.Count;
        return (rss, threads);
    }

    /// <summary>Open file descriptors (/proc/self/fd), or the process's handle count where there is no /proc.</summary>
    internal static int CountHandles()
    {
        try
        {
            return Directory.GetFileSystemEntries("/proc/self/fd").Length;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return Process.GetCurrentProcess().HandleCount;
        }
    }

    /// <summary>Parses <c>90s</c>, <c>10m</c>, <c>1h</c>, a number of seconds, or a TimeSpan (<c>00:10:00</c>).</summary>
    internal static TimeSpan ParseDuration(string text, string option)
    {
        text = text.Trim();
        double Number(string s) => double.Parse(s, NumberStyles.Float, CultureInfo.InvariantCulture);
        try
        {
            var value = text.Length > 1 && char.IsLetter(text[^1])
                ? text[^1] switch
                {
                    's' => TimeSpan.FromSeconds(Number(text[..^1])),
                    'm' => TimeSpan.FromMinutes(Number(text[..^1])),
                    'h' => TimeSpan.FromHours(Number(text[..^1])),
                    _ => throw new FormatException(),
                }
                : text.Contains(':') ? TimeSpan.Parse(text, CultureInfo.InvariantCulture) : TimeSpan.FromSeconds(Number(text));
            if (value > TimeSpan.Zero) return value;
        }
        catch (Exception ex) when (ex is FormatException or OverflowException)
        {
        }
        throw new CliUsageException($"{option} must be a positive duration such as 30s, 10m or 1h; not '{text}'");
    }
}
