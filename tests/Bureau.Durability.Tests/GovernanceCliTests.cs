using System.Text.Json.Nodes;
using Bureau.Storage.Sqlite;
using Microsoft.Data.Sqlite;
using Xunit;

namespace Bureau.Durability.Tests;

/// <summary>
/// The governance commands as a person types them, on real processes: <c>bureau policy test</c> on the
/// support-desk sample, <c>bureau approvals list|approve|reject</c> on a database where a run waits for
/// an approval (the run then finishes, or the model is told the reason), <c>bureau audit verify|export</c>
/// before and after a row of the audit table is edited behind Bureau's back, and <c>bureau runs rollback</c>
/// compensating a failed run's write.
/// </summary>
public sealed class GovernanceCliTests : IDisposable
{
    private static readonly TimeSpan ProcessTimeout = TimeSpan.FromSeconds(90);
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bureau-governance-cli", Guid.NewGuid().ToString("n"));
    private readonly Dictionary<string, string> _env;

    public GovernanceCliTests()
    {
        Directory.CreateDirectory(_dir);
        _env = new Dictionary<string, string> { ["LEDGER_DIR"] = _dir };
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private static string SampleDir()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Bureau.slnx"))) dir = dir.Parent;
        return Path.Combine(dir?.FullName ?? throw new InvalidOperationException("Bureau.slnx not found"), "samples", "support-desk");
    }

    private async Task<(int Code, string Stdout, string Stderr)> BureauInAsync(string workingDirectory, params string[] args)
    {
        using var p = BureauProcess.Start(workingDirectory, _env, args);
        var code = await p.WaitAsync(ProcessTimeout);
        return (code, p.Stdout, p.Stderr);
    }

    private Task<(int Code, string Stdout, string Stderr)> BureauAsync(params string[] args) => BureauInAsync(_dir, args);

    private string Ledger => Path.Combine(_dir, "ledger.txt");

    private static async Task<RunRecord> RunAsync(string db, string runId)
    {
        await using var store = new SqliteRunStore(new SqliteStoreOptions { Path = db });
        await store.InitializeAsync(TestContext.Current.CancellationToken);
        return (await store.GetRunAsync(runId, TestContext.Current.CancellationToken))!;
    }

    // ---- bureau policy test -------------------------------------------------------------------

    [Fact]
    public async Task PolicyTest_OnTheSupportDeskSample_ExplainsTheMatchingRule_ItsLevels_AndWhyASmallRefundIsAllowed()
    {
        var sample = SampleDir();
        var big = await BureauInAsync(sample, "policy", "test", "bureau.yaml", "--agent", "triage", "--tool", "file_refund",
            "--args", """{"order":7,"amount":250,"email":"ann@example.com"}""");
        Assert.True(big.Code == 0, $"policy test exited {big.Code}\n{big.Stdout}\n{big.Stderr}");
        var lines = big.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.Equal(
            [
                "rule 'big-refunds' matches: tool file_refund; $.amount > 100 ($.amount is 250) -> require_approval",
                "require_approval (rule big-refunds): Refunds over 100 need a support lead",
                "level 1: support-leads, 00:30:00",
                "level 2: finance, 01:30:00",
                "then: reject; arguments editable",
            ], lines);

        var small = await BureauInAsync(sample, "policy", "test", "bureau.yaml", "--agent", "triage", "--tool", "file_refund",
            "--args", """{"order":7,"amount":40,"email":"ann@example.com"}""");
        Assert.True(small.Code == 0, $"policy test exited {small.Code}\n{small.Stdout}\n{small.Stderr}");
        Assert.Equal(
            [
                "rule 'big-refunds' does not match: $.amount > 100 does not hold ($.amount is 40)",
                "no rule matched and no default for write tools: allowed",
                "allow (rule default)",
            ], small.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));

        var other = await BureauInAsync(sample, "policy", "test", "bureau.yaml", "--agent", "triage", "--tool", "update_ticket",
            "--args", """{"ticket":7,"status":"solved"}""");
        Assert.Equal(0, other.Code);
        Assert.Contains("rule 'big-refunds' does not match: the tool is update_ticket, not file_refund", other.Stdout);

        var unknown = await BureauInAsync(sample, "policy", "test", "bureau.yaml", "--agent", "triage", "--tool", "refund_everything");
        Assert.Equal(2, unknown.Code);
        Assert.Contains("tool 'refund_everything' is not defined in bureau.yaml", unknown.Stderr);
    }

    [Fact]
    public async Task PolicyTest_CostOption_DecidesARuleOnTheRunsSpend_WithoutItTheCostIsUnknown()
    {
        File.WriteAllText(Path.Combine(_dir, "bureau.yaml"), """
            models:
              m: { provider: scripted }
            tools:
              refund: { kind: process, command: ["sh", "-c", "cat"], effect: write }
            agents:
              clerk: { model: m, tools: [refund] }
            policies:
              rules:
                - name: pricey-runs
                  when: { cost: "> 0.50" }
                  action: deny
                  reason: this run has spent enough
            """);
        var spent = await BureauAsync("policy", "test", "bureau.yaml", "--agent", "clerk", "--tool", "refund", "--cost", "0.75");
        Assert.True(spent.Code == 0, $"policy test exited {spent.Code}\n{spent.Stdout}\n{spent.Stderr}");
        Assert.Equal(["rule 'pricey-runs' matches: cost 0.75 > 0.5 -> deny", "deny (rule pricey-runs): this run has spent enough"],
            spent.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));

        var cheap = await BureauAsync("policy", "test", "bureau.yaml", "--agent", "clerk", "--tool", "refund", "--cost", "0.25");
        Assert.Equal(0, cheap.Code);
        Assert.Contains("rule 'pricey-runs' does not match: the run has cost 0.25, not > 0.5", cheap.Stdout);
        Assert.EndsWith("allow (rule default)", cheap.Stdout.Trim());

        var unknown = await BureauAsync("policy", "test", "bureau.yaml", "--agent", "clerk", "--tool", "refund");
        Assert.Equal(0, unknown.Code);
        Assert.Contains("rule 'pricey-runs' does not match: the run's cost is unknown (no prices)", unknown.Stdout);

        var negative = await BureauAsync("policy", "test", "bureau.yaml", "--agent", "clerk", "--tool", "refund", "--cost", "-1");
        Assert.Equal(2, negative.Code);
        Assert.Contains("--cost must be 0 or more", negative.Stderr);
    }

    // ---- bureau approvals list|approve|reject -------------------------------------------------

    private void WriteApprovalDeployment()
    {
        File.WriteAllText(Path.Combine(_dir, "refund.sh"), "args=$(cat)\necho \"$args\" >> \"$LEDGER_DIR/ledger.txt\"\necho \"refunded $args\"\n");
        File.WriteAllText(Path.Combine(_dir, "bureau.yaml"), """
            models:
              script:
                provider: scripted
                rules:
                  - when: { turn: 1 }
                    calls: [ { tool: refund, args: { amount: 300 } } ]
                  - reply: "done: {{last}}"
            tools:
              refund:
                kind: process
                command: ["sh", "refund.sh"]
                effect: write
                env: [LEDGER_DIR]
                parameters: { type: object, properties: { amount: { type: number } }, required: [amount] }
            agents:
              clerk: { model: script, tools: [refund] }
            policies:
              rules:
                - name: big-refunds
                  when: { tool: refund, args: "$.amount > 100" }
                  action: require_approval
                  reason: Refunds over 100 need a lead
                  approval:
                    approvers: [alice]
                    timeout: 2h
                    onTimeout: reject
                    editableArgs: true
            """);
    }

    /// <summary>Starts a run that waits for the approval (bureau run exits 3) and returns its id and the approval's.</summary>
    private async Task<(string RunId, string ApprovalId)> WaitingRunAsync(string db)
    {
        WriteApprovalDeployment();
        var run = await BureauAsync("run", "bureau.yaml", "--agent", "clerk", "--input", "refund order 7", "--db", db, "--json");
        Assert.True(run.Code == 3, $"bureau run exited {run.Code} (3: waiting)\n{run.Stdout}\n{run.Stderr}");
        var runId = (string)JsonNode.Parse(run.Stdout)!["runId"]!;
        var waiting = await RunAsync(db, runId);
        Assert.Equal(RunStatus.Waiting, waiting.Status);
        return (runId, $"{runId}:{((ApprovalWait)waiting.WaitingFor!).Step}");
    }

    [Fact]
    public async Task Approvals_ListShowsTheWaitingCall_ANonApproverIsRefused_ApproveWithEditedArguments_TheRunFinishesWithThem()
    {
        var db = Path.Combine(_dir, "approve.db");
        var (runId, approvalId) = await WaitingRunAsync(db);

        var json = await BureauAsync("approvals", "list", "--db", db, "--json");
        Assert.Equal(0, json.Code);
        var item = Assert.Single(JsonNode.Parse(json.Stdout)!["items"]!.AsArray())!;
        Assert.Equal((approvalId, runId, "clerk", "refund", 300, "big-refunds", 0),
            ((string)item["id"]!, (string)item["runId"]!, (string)item["agent"]!, (string)item["tool"]!, (int)item["arguments"]!["amount"]!, (string)item["rule"]!, (int)item["level"]!));
        Assert.Equal(["alice"], item["approvers"]!.AsArray().Select(a => (string)a!));
        Assert.NotNull(item["deadline"]);

        var text = await BureauAsync("approvals", "list", "--db", db);
        Assert.Equal(0, text.Code);
        Assert.Contains($"{approvalId}  agent clerk  refund {{\"amount\":300}}", text.Stdout);
        Assert.Contains("level 1, approvers: alice, until ", text.Stdout);

        // Someone who is not among the approvers: refused, nothing changes.
        var mallory = await BureauAsync("approvals", "approve", approvalId, "--as-user", "mallory", "--db", db);
        Assert.Equal(1, mallory.Code);
        Assert.Contains($"mallory may not answer approval {approvalId}: at escalation level 1 its approvers are alice", mallory.Stderr);
        Assert.Equal(RunStatus.Waiting, (await RunAsync(db, runId)).Status);

        var approve = await BureauAsync("approvals", "approve", approvalId, "--as-user", "alice", "--reason", "partial refund", "--args", """{"amount":120}""", "--db", db);
        Assert.True(approve.Code == 0, $"approve exited {approve.Code}\n{approve.Stdout}\n{approve.Stderr}");
        Assert.Contains($"approval {approvalId}: approved by alice", approve.Stdout);
        Assert.False(File.Exists(Ledger), "the refund ran before any host resumed the run");

        // A second answer is refused, naming who answered.
        var again = await BureauAsync("approvals", "reject", approvalId, "--as-user", "alice", "--reason", "changed my mind", "--db", db);
        Assert.NotEqual(0, again.Code);
        Assert.Contains("already answered by alice (approved)", again.Stderr);

        var resume = await BureauAsync("runs", "resume", "bureau.yaml", "--db", db);
        Assert.True(resume.Code == 0, $"resume exited {resume.Code}\n{resume.Stdout}\n{resume.Stderr}");
        var run = await RunAsync(db, runId);
        Assert.Equal((RunStatus.Succeeded, "done: refunded {\"amount\":120}"), (run.Status, run.Output));
        Assert.Equal(["{\"amount\":120}"], File.ReadAllLines(Ledger)); // the edited call ran, once

        var empty = await BureauAsync("approvals", "list", "--db", db);
        Assert.Equal("no open approvals", empty.Stdout.Trim());
    }

    [Fact]
    public async Task Approvals_Reject_TheModelIsToldTheReason_TheCallNeverRuns()
    {
        var db = Path.Combine(_dir, "reject.db");
        var (runId, approvalId) = await WaitingRunAsync(db);

        var noReason = await BureauAsync("approvals", "reject", approvalId, "--as-user", "alice", "--db", db);
        Assert.Equal(2, noReason.Code); // a rejection must say why (the model is told): without --reason it is bad usage
        Assert.Contains("Option '--reason' is required.", noReason.Stderr);
        Assert.Equal(RunStatus.Waiting, (await RunAsync(db, runId)).Status);

        var reject = await BureauAsync("approvals", "reject", approvalId, "--as-user", "alice", "--reason", "order 7 was refunded last week", "--db", db);
        Assert.True(reject.Code == 0, $"reject exited {reject.Code}\n{reject.Stdout}\n{reject.Stderr}");
        Assert.Contains($"approval {approvalId}: rejected by alice", reject.Stdout);

        var resume = await BureauAsync("runs", "resume", "bureau.yaml", "--db", db);
        Assert.True(resume.Code == 0, $"resume exited {resume.Code}\n{resume.Stdout}\n{resume.Stderr}");
        var run = await RunAsync(db, runId);
        Assert.Equal((RunStatus.Succeeded, "done: rejected by alice: order 7 was refunded last week; the call did not run"), (run.Status, run.Output));
        Assert.False(File.Exists(Ledger), "the rejected refund ran");
    }

    // ---- bureau audit verify|export -----------------------------------------------------------

    [Fact]
    public async Task Audit_VerifyHolds_ExportIsAChainOfJsonLines_AnEditedRowIsNamedByVerify()
    {
        var db = Path.Combine(_dir, "audit.db");
        var (runId, approvalId) = await WaitingRunAsync(db);
        var reject = await BureauAsync("approvals", "reject", approvalId, "--as-user", "alice", "--reason", "no", "--db", db);
        Assert.Equal(0, reject.Code);

        var verify = await BureauAsync("audit", "verify", "--db", db);
        Assert.True(verify.Code == 0, $"verify exited {verify.Code}\n{verify.Stdout}\n{verify.Stderr}");
        Assert.Matches(@"^audit log intact: \d+ entries, each follows the one before", verify.Stdout);

        var export = await BureauAsync("audit", "export", "--db", db);
        Assert.Equal(0, export.Code);
        var entries = export.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonNode.Parse(l)!.AsObject()).ToList();
        Assert.True(entries.Count >= 3, "expected the policy load, the run's start, the approval asked and answered:\n" + export.Stdout);
        Assert.Equal(Enumerable.Range(1, entries.Count).Select(i => (long)i), entries.Select(e => (long)e["seq"]!));
        for (var i = 1; i < entries.Count; i++) Assert.Equal((string)entries[i - 1]["hash"]!, (string)entries[i]["previous"]!);
        Assert.Contains(entries, e => (string?)e["action"] == "approval.asked" && (string?)e["runId"] == runId);
        var answered = Assert.Single(entries, e => (string?)e["action"] == "approval.answered" && (string?)e["runId"] == runId);
        Assert.Equal("alice", (string?)answered["actor"]);
        var after = await BureauAsync("audit", "export", "--db", db, "--after", "2");
        Assert.Equal(entries.Skip(2).Select(e => e.ToJsonString()), after.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonNode.Parse(l)!.ToJsonString()));

        // Someone with write access to the database rewrites who answered the approval.
        var seq = (long)answered["seq"]!;
        using (var c = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = db, Pooling = false }.ConnectionString))
        {
            c.Open();
            using var cmd = c.CreateCommand();
            cmd.CommandText = "UPDATE audit SET actor = 'mallory' WHERE seq = $seq";
            cmd.Parameters.AddWithValue("$seq", seq);
            Assert.Equal(1, cmd.ExecuteNonQuery());
        }
        var broken = await BureauAsync("audit", "verify", "--db", db);
        Assert.Equal(1, broken.Code);
        Assert.StartsWith($"audit log BROKEN at entry {seq}: ", broken.Stdout);
    }

    // ---- bureau runs rollback -----------------------------------------------------------------

    [Fact]
    public async Task RunsRollback_CompensatesAFailedRunsWrite_Once()
    {
        ShipperDeployment.WriteTo(_dir, rollbackOnFailure: false); // a failure after a write, not rolled back by itself
        var db = Path.Combine(_dir, "rollback.db");
        var run = await BureauAsync("run", "bureau.yaml", "--agent", "shipper", "--input", "o-1", "--db", db, "--json");
        Assert.True(run.Code == 1, $"bureau run exited {run.Code} (1: failed)\n{run.Stdout}\n{run.Stderr}");
        var runId = (string)JsonNode.Parse(run.Stdout)!["runId"]!;
        Assert.Equal("failed", (string?)JsonNode.Parse(run.Stdout)!["status"]);
        var shipped = Assert.Single(File.ReadAllLines(Ledger));
        Assert.StartsWith("ship ", shipped);

        var rollback = await BureauAsync("runs", "rollback", runId, "--file", "bureau.yaml", "--db", db);
        Assert.True(rollback.Code == 0, $"runs rollback exited {rollback.Code}\n{rollback.Stdout}\n{rollback.Stderr}");
        Assert.Contains($" for run {runId}", rollback.Stderr);
        var ledger = File.ReadAllLines(Ledger);
        Assert.Equal(2, ledger.Length);
        Assert.StartsWith("unship ", ledger[1]);

        // Asked again: the same rollback run, nothing compensated twice.
        var again = await BureauAsync("runs", "rollback", runId, "--file", "bureau.yaml", "--db", db);
        Assert.Equal(0, again.Code);
        Assert.Contains("(already there)", again.Stderr);
        Assert.Equal(ledger, File.ReadAllLines(Ledger));

        await using var store = new SqliteRunStore(new SqliteStoreOptions { Path = db });
        await store.InitializeAsync(TestContext.Current.CancellationToken);
        var child = Assert.Single((await store.ListRunsAsync(new RunQuery { ParentRunId = runId }, TestContext.Current.CancellationToken)).Items);
        Assert.Equal((RunKinds.Rollback, RunStatus.Succeeded), (child.Kind, child.Status));
    }
}
