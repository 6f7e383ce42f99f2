using Bureau.Replay;
using Xunit;

namespace Bureau.Durability.Tests.Replay;

/// <summary>
/// R4: every recorded run of the corpus (corpus/*.jsonl) replayed against the current engine, with model
/// answers and tool results served from its journal, takes the same steps.
/// </summary>
public sealed class CorpusReplayTests(ITestOutputHelper output)
{
    /// <summary>What the corpus holds today; a fixture lost by accident fails the count.</summary>
    private const int MinimumFixtures = 19;

    [Fact]
    public async Task Replay_EveryRecordedRun_ReproducesEveryStep()
    {
        var files = Corpus.Files().ToList();
        Assert.True(files.Count >= MinimumFixtures, $"the corpus in {Corpus.Folder} has {files.Count} recorded runs, expected at least {MinimumFixtures}");
        var divergences = new List<string>();
        var steps = 0;
        foreach (var file in files)
        {
            var recorded = ReplayJournalFile.Read(file);
            var result = await new RunReplayer(Corpus.Definitions(recorded)).ReplayAsync(recorded.RunId, recorded.Journal, TestContext.Current.CancellationToken);
            Assert.Equal(recorded.Journal.Count, result.Steps);
            if (result.Divergence is { } d) divergences.Add($"{Path.GetFileName(file)}: {d}");
            else Assert.Equal(recorded.Journal.Count, result.StepsReproduced);
            steps += result.Steps;
        }
        output.WriteLine($"runs replayed: {files.Count}, steps: {steps}, divergences: {divergences.Count}");
        Assert.True(divergences.Count == 0, "replay diverged:\n" + string.Join("\n", divergences));
    }

    [Fact]
    public void Corpus_CoversTheEngineBehaviours_TheReplayClaimsToCheck()
    {
        var kinds = Corpus.Files().SelectMany(f => ReplayJournalFile.Read(f).Journal).Select(r => r.Entry.Kind).ToHashSet();
        foreach (var kind in new[]
        {
            RunStarted.KindName, ModelResponded.KindName, ToolIntent.KindName, ToolCompleted.KindName, ToolCallRejected.KindName,
            BudgetExceeded.KindName, LoopDetected.KindName, RunWaiting.KindName, StepResolved.KindName, RunResumed.KindName,
            RunCanceled.KindName, RunFinished.KindName, WaitExpired.KindName,
        })
        {
            Assert.Contains(kind, kinds);
        }
    }

    [Fact]
    public async Task Replay_WriteToolDeclaredIdempotentNow_ReportsTheIntentStepWithBothEffects()
    {
        var recorded = ReplayJournalFile.Read(Path.Combine(Corpus.Folder, "clerk-ok.jsonl"));
        var definitions = Corpus.Definitions(recorded);
        var ledger = (ProcessToolDefinition)definitions.Tools["ledger"];
        definitions.Add(new ProcessToolDefinition
        {
            Name = ledger.Name, Command = ledger.Command, Parameters = ledger.Parameters, Description = ledger.Description,
            Effect = ToolEffect.Idempotent,
        });

        var result = await new RunReplayer(definitions).ReplayAsync(recorded.RunId, recorded.Journal, TestContext.Current.CancellationToken);

        var d = Assert.IsType<ReplayDivergence>(result.Divergence);
        var intentStep = recorded.Journal.Last(r => r.Entry is ToolIntent { Tool: "ledger" }).N;
        Assert.Equal(intentStep, d.Step);
        Assert.Equal(intentStep - 1, result.StepsReproduced);
        Assert.Equal(ToolEffect.Write, Assert.IsType<ToolIntent>(d.Expected).Effect);
        Assert.Equal(ToolEffect.Idempotent, Assert.IsType<ToolIntent>(d.Actual).Effect);
        Assert.Contains(recorded.RunId, d.ToString());
    }

    [Fact]
    public async Task Replay_StepsBudgetLoweredNow_ReportsTheBudgetStopWhereTheModelWasAskedBefore()
    {
        var recorded = ReplayJournalFile.Read(Path.Combine(Corpus.Folder, "clerk-ok.jsonl"));
        var definitions = Corpus.Definitions(recorded);
        var clerk = definitions.Agents["clerk"];
        definitions.Add(new AgentDefinition { Name = clerk.Name, Model = clerk.Model, Instructions = clerk.Instructions, Tools = clerk.Tools, Budgets = new AgentBudgets { MaxSteps = 2 } });

        var result = await new RunReplayer(definitions).ReplayAsync(recorded.RunId, recorded.Journal, TestContext.Current.CancellationToken);

        var d = Assert.IsType<ReplayDivergence>(result.Divergence);
        Assert.Equal(5, d.Step); // run.started, model, intent, result; then the second model answer was recorded
        Assert.IsType<ModelResponded>(d.Expected);
        Assert.Equal(("steps", 2.0), (Assert.IsType<BudgetExceeded>(d.Actual).Budget, Assert.IsType<BudgetExceeded>(d.Actual).Limit));
    }

    [Fact]
    public async Task Replay_InstructionsRemovedNow_ReportsTheFirstModelCallWithFewerMessages()
    {
        var recorded = ReplayJournalFile.Read(Path.Combine(Corpus.Folder, "clerk-ok.jsonl"));
        var definitions = Corpus.Definitions(recorded);
        var clerk = definitions.Agents["clerk"];
        definitions.Add(new AgentDefinition { Name = clerk.Name, Model = clerk.Model, Instructions = null, Tools = clerk.Tools });

        var result = await new RunReplayer(definitions).ReplayAsync(recorded.RunId, recorded.Journal, TestContext.Current.CancellationToken);

        var d = Assert.IsType<ReplayDivergence>(result.Divergence);
        Assert.Equal(2, d.Step);
        Assert.Equal(2, Assert.IsType<ModelResponded>(d.Expected).RequestMessages);
        Assert.Equal(1, Assert.IsType<ModelResponded>(d.Actual).RequestMessages);
    }

    [Fact]
    public async Task Replay_JournalWithAnExtraRecordedStep_ReportsThatTheReplayStoppedShort()
    {
        // The recorded run asked the model once more than today's engine does: a journal edited to say so.
        var recorded = ReplayJournalFile.Read(Path.Combine(Corpus.Folder, "budget-steps.jsonl"));
        var journal = recorded.Journal.ToList();
        var budget = journal.FindIndex(r => r.Entry is BudgetExceeded);
        journal.RemoveRange(budget, journal.Count - budget);
        var last = journal[^1];
        journal.Add(new JournalRecord(last.N + 1, last.At, new ToolCompleted("call_2_0", "echo", "{\"n\":\"three\"}", false, 1)));
        journal.Add(new JournalRecord(last.N + 2, last.At, new RunFinished(RunStatus.Succeeded, "done", null, null)));

        var result = await new RunReplayer(Corpus.Definitions(recorded)).ReplayAsync(recorded.RunId, journal, TestContext.Current.CancellationToken);

        var d = Assert.IsType<ReplayDivergence>(result.Divergence);
        Assert.Equal(last.N + 1, d.Step);
        Assert.IsType<ToolCompleted>(d.Expected);
        Assert.IsType<BudgetExceeded>(d.Actual);
    }

    [Fact]
    public async Task DocsSnippet_ReplayInCode_ReportsTheDivergenceAsTheDocsShowIt()
    {
        var recorded = ReplayJournalFile.Read(Path.Combine(Corpus.Folder, "support-desk-refund.jsonl"));
        var definitions = Corpus.Definitions(recorded);
        var triage = definitions.Agents["triage"];
        definitions.Add(new AgentDefinition { Name = triage.Name, Model = triage.Model, Instructions = triage.Instructions, Tools = ["lookup_customer"] });
        var (runId, journal) = (recorded.RunId, recorded.Journal);
        var cancellationToken = TestContext.Current.CancellationToken;

        // docs/replay.md begin ("In code")
        var replayer = new RunReplayer(definitions);                 // the agents as they are now
        var result = await replayer.ReplayAsync(runId, journal, cancellationToken); // step 1 to run.finished
        if (result.Divergence is { } d) Console.WriteLine(d);        // run X, step 5: expected {...}, actual {...}
        // docs/replay.md end

        // file_refund is no longer the agent's: the call is rejected where the recorded run wrote its intent (what the page prints).
        var printed = result.Divergence?.ToString();
        var intent = journal.Single(r => r.Entry is ToolIntent).N;
        Assert.StartsWith($"run {runId}, step {intent}: expected {{\"kind\":\"tool.intent\"", printed);
        Assert.Contains("actual {\"kind\":\"tool.rejected\"", printed);
    }

    [Fact]
    public async Task Replay_UnfinishedRun_IsRefusedNamingTheRun()
    {
        var recorded = ReplayJournalFile.Read(Path.Combine(Corpus.Folder, "clerk-ok.jsonl"));
        var unfinished = recorded.Journal.Take(4).ToList();

        var ex = await Assert.ThrowsAsync<ArgumentException>(() => new RunReplayer(Corpus.Definitions(recorded)).ReplayAsync(recorded.RunId, unfinished, TestContext.Current.CancellationToken));

        Assert.Contains($"run {recorded.RunId} has not finished", ex.Message);
    }
}
