using System.Text.Json.Nodes;
using Bureau.Governance;
using Bureau.Manifests;
using Bureau.Tests.Support;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace Bureau.Tests.Governance;

/// <summary>
/// The support-desk sample as shipped (its manifest, scripted model and Python tools, in a copy of the
/// sample folder): a refund over 100 on a numbered ticket marks the ticket, then waits for a support
/// lead; a rejection fails the run (<c>onReject: fail</c>) and, with <c>rollbackOnFailure</c>, the
/// ticket update is compensated by <c>restore_ticket</c> in a rollback run, journaled.
/// </summary>
public sealed class SupportDeskRollbackTests : IAsyncDisposable
{
    private const string Ticket = "Ticket #4711 from ada@example.com: I was charged twice for order 1042, please refund 300 EUR";
    private readonly TempDir _dir = new();
    private ServiceProvider? _services;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask DisposeAsync()
    {
        if (_services is not null) await _services.DisposeAsync();
        _dir.Dispose();
    }

    private string Sample => Path.Combine(_dir.Path, "support-desk");

    /// <summary>Copies samples/support-desk (manifest, tools, data) so its tools write into the copy's data/ folder.</summary>
    private async Task<BureauEngine> StartSampleAsync(TimeProvider? time = null)
    {
        var source = Path.Combine(RepoRoot(), "samples", "support-desk");
        foreach (var file in Directory.GetFiles(source, "*", SearchOption.AllDirectories))
        {
            var relative = Path.GetRelativePath(source, file);
            if (relative.StartsWith("data", StringComparison.Ordinal) && !relative.EndsWith("customers.json", StringComparison.Ordinal)) continue; // no logs of earlier runs by hand
            Directory.CreateDirectory(Path.GetDirectoryName(Path.Combine(Sample, relative))!);
            File.Copy(file, Path.Combine(Sample, relative));
        }
        var loaded = ManifestLoader.LoadFile(Path.Combine(Sample, "bureau.yaml"), new Dictionary<string, string?>());
        Assert.True(loaded.Success, string.Join("\n", loaded.Diagnostics));
        var services = new ServiceCollection();
        if (time is not null) services.AddSingleton(time);
        services.AddBureau().AddDefinitions(loaded.Definitions!).UseSqliteStorage(_dir.File("bureau.db"));
        _services = services.BuildServiceProvider();
        await _services.GetRequiredService<IRunStore>().InitializeAsync(Ct);
        var engine = _services.GetRequiredService<BureauEngine>();
        await engine.StartAsync();
        return engine;
    }

    private static string RepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Bureau.slnx"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("Bureau.slnx not found above " + AppContext.BaseDirectory);
    }

    private static async Task<RunRecord> RollbackOfAsync(BureauEngine engine, string runId)
    {
        for (var i = 0; i < 800; i++)
        {
            var child = (await engine.ListRunsAsync(new RunQuery { ParentRunId = runId })).Items.FirstOrDefault(r => r.Kind == RunKinds.Rollback);
            if (child is not null) return await EngineFixture.WaitAsync(engine, child.Id, 60);
            await Task.Delay(25, Ct);
        }
        throw new TimeoutException($"run {runId} failed after a ticket update but no rollback run was started for it");
    }

    private JsonObject TicketState(int ticket) => (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(Sample, "data", "tickets.json")))![ticket.ToString()]!;

    private string[] TicketLog() => [.. File.ReadAllLines(Path.Combine(Sample, "data", "tickets.log")).Select(l => (string)JsonNode.Parse(l)!["op"]! + ":" + (string)JsonNode.Parse(l)!["result"]!["status"]!)];

    [Fact]
    public async Task RefundRejectedAfterTicketUpdate_RunFails_TicketUpdateCompensatedAndJournaled()
    {
        var engine = await StartSampleAsync();
        var submitted = await engine.SubmitAsync(new RunRequest("triage", Ticket), Ct);
        var waiting = await EngineFixture.WaitAsync(engine, submitted.Run.Id, 60);
        var approval = Assert.IsType<ApprovalWait>(waiting.WaitingFor);
        Assert.Equal(("file_refund", "big-refunds"), (approval.Tool, approval.Rule));
        Assert.Equal(["support-leads"], approval.Approvers);
        Assert.Equal("refund-requested", (string?)TicketState(4711)["status"]); // the ticket was updated before the refund was asked for

        await engine.DecideApprovalAsync(waiting.Id, approval.Step, new ApprovalDecision(false, "already refunded last week"), "lead", ["support-leads"], Ct);
        var failed = await EngineFixture.WaitAsync(engine, waiting.Id, 60);
        Assert.Equal((RunStatus.Failed, "rejected"), (failed.Status, failed.Outcome));

        var rollback = await RollbackOfAsync(engine, failed.Id);
        Assert.Equal(RunStatus.Succeeded, rollback.Status);
        Assert.Equal($"compensated 1 of 1 writes of run {failed.Id}", rollback.Output);

        // In order: the customer was looked up (a read: no intent), the update ran (intent, result), then the refund was asked for and rejected, the run failed;
        // then the rollback journaled the compensation's intent and its result.
        var journal = (await engine.ReadJournalAsync(failed.Id)).Select(r => r.Entry).ToList();
        var kinds = journal.Select(e => e switch
        {
            ToolIntent i => "intent:" + i.Tool,
            ToolCompleted c => "result:" + c.Tool,
            PolicyApplied p => "policy:" + p.Tool,
            WaitAnswered => "answered",
            RunFinished f => "finished:" + f.Outcome,
            _ => null,
        }).OfType<string>().ToList();
        Assert.Equal(["result:lookup_customer", "intent:update_ticket", "result:update_ticket", "policy:file_refund", "answered", "finished:rejected"], kinds);
        var update = journal.OfType<ToolIntent>().Single(i => i.Tool == "update_ticket");

        var undo = (await engine.ReadJournalAsync(rollback.Id)).Select(r => r.Entry).ToList();
        var intent = Assert.Single(undo.OfType<ToolIntent>());
        var result = Assert.Single(undo.OfType<ToolCompleted>());
        Assert.True(undo.IndexOf(intent) < undo.IndexOf(result));
        Assert.Equal(("restore_ticket", ToolEffect.Write), (intent.Tool, intent.Effect));
        Assert.StartsWith(rollback.Id + ":", intent.IdempotencyKey); // the compensation's own key, not the update's
        Assert.Equal(JsonNode.Parse(update.Arguments)!.ToJsonString(), JsonNode.Parse(intent.Arguments)!["arguments"]!.ToJsonString());
        Assert.False(result.IsError, result.Content);
        Assert.Equal(("restore_ticket", "open"), (result.Tool, (string?)JsonNode.Parse(result.Content)!["status"]));

        // The ticket is back where it was, and nothing was refunded.
        Assert.Equal("open", (string?)TicketState(4711)["status"]);
        Assert.Equal(["update:refund-requested", "restore:open"], TicketLog());
        Assert.False(File.Exists(Path.Combine(Sample, "data", "refunds.log")));
    }

    [Fact]
    public async Task RefundApprovedAfterTicketUpdate_RefundFiled_TicketKept_NoRollback()
    {
        var engine = await StartSampleAsync();
        var submitted = await engine.SubmitAsync(new RunRequest("triage", Ticket), Ct);
        var waiting = await EngineFixture.WaitAsync(engine, submitted.Run.Id, 60);
        var approval = Assert.IsType<ApprovalWait>(waiting.WaitingFor);

        await engine.DecideApprovalAsync(waiting.Id, approval.Step, new ApprovalDecision(true, "checked the order"), "lead", ["support-leads"], Ct);
        var done = await EngineFixture.WaitAsync(engine, waiting.Id, 60);
        Assert.Equal(RunStatus.Succeeded, done.Status);
        Assert.Matches(@"^Sorry about the double charge on order 1042\. Refund RF-[0-9A-F]{8} of 300 EUR is filed", done.Output);
        Assert.Equal("refund-requested", (string?)TicketState(4711)["status"]);
        Assert.Equal(["update:refund-requested"], TicketLog());
        Assert.Empty((await engine.ListRunsAsync(new RunQuery { ParentRunId = done.Id })).Items);
    }

    [Fact]
    public async Task NobodyAnswers_FinanceAfter30Minutes_RejectedAfterTwoHours_ModelToldAndTicketKept()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var engine = await StartSampleAsync(time);
        var submitted = await engine.SubmitAsync(new RunRequest("triage", Ticket), Ct);
        var waiting = await EngineFixture.WaitAsync(engine, submitted.Run.Id, 60);
        var first = Assert.IsType<ApprovalWait>(waiting.WaitingFor);
        Assert.Equal((0, time.GetUtcNow().AddMinutes(30)), (first.Level, first.Deadline));

        time.Advance(TimeSpan.FromMinutes(29));
        Assert.Equal(0, ((ApprovalWait)(await engine.GetRunAsync(waiting.Id))!.WaitingFor!).Level);
        var escalated = await AdvanceUntilAsync(engine, waiting.Id, time, r => r.WaitingFor is ApprovalWait { Level: 1 });
        Assert.Equal(["finance"], ((ApprovalWait)escalated.WaitingFor!).Approvers);
        await Assert.ThrowsAsync<ApprovalForbiddenException>(() => engine.DecideApprovalAsync(waiting.Id, first.Step, new ApprovalDecision(true), "lead", ["support-leads"], Ct));

        var done = await AdvanceUntilAsync(engine, waiting.Id, time, r => r.Status.IsTerminal());
        Assert.True(done.Status == RunStatus.Succeeded, $"{done.Status}: {done.Error}"); // onTimeout: reject tells the model; only a person's rejection fails the run
        Assert.StartsWith("We could not get your refund approved yet", done.Output);
        Assert.Equal(2, (await engine.ReadJournalAsync(done.Id)).Select(r => r.Entry).OfType<WaitExpired>().Count());
        Assert.True(time.GetUtcNow() - first.Deadline!.Value >= TimeSpan.FromMinutes(90));
        Assert.Equal("refund-requested", (string?)TicketState(4711)["status"]);
        Assert.False(File.Exists(Path.Combine(Sample, "data", "refunds.log")));
        Assert.Empty((await engine.ListRunsAsync(new RunQuery { ParentRunId = done.Id })).Items);
    }

    private static async Task<RunRecord> AdvanceUntilAsync(BureauEngine engine, string id, FakeTimeProvider time, Func<RunRecord, bool> done)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(3);   // the sample's tools are python scripts: slow on a loaded machine
        long? movedAt = null;
        while (DateTime.UtcNow < deadline)
        {
            var run = (await engine.GetRunAsync(id))!;
            if (done(run)) return run;
            // The clock moves only while the run waits, and once per wait: to just past the wait's deadline. Moving it
            // again while the row still says waiting (the timer has fired and the execution it woke is under way on a
            // busy machine) would spend the agent's wall-time budget (2 minutes) on time nobody waited.
            if (run.Status == RunStatus.Waiting && run.Version != movedAt && run.WaitingFor?.Deadline is { } due)
            {
                if (due >= time.GetUtcNow()) time.Advance(due - time.GetUtcNow() + TimeSpan.FromSeconds(1));
                movedAt = run.Version;
            }
            await Task.Delay(10, Ct);
        }
        throw new TimeoutException($"run {id} never reached the state expected within 3 minutes: {(await engine.GetRunAsync(id))?.Status}");
    }
}
