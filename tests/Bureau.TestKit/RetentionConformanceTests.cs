using System.Text.Json.Nodes;
using Xunit;

namespace Bureau.TestKit;

/// <summary>The contract of <see cref="IRunStore.DeleteRunsAsync"/>: finished runs go with their journals, anything a live run needs stays, and one audit entry says what went.</summary>
public abstract class RetentionConformanceTests(IStoreTestDatabase database) : StoreSuite(database)
{
    [Fact]
    public async Task DeleteRuns_FinishedRuns_GoWithTheirJournals_AndOneAuditEntrySaysWhich()
    {
        var store = await OpenRunsAsync();
        await store.SubmitAsync(Run("done1"));
        await store.SubmitAsync(Run("done2", minute: 1));
        await store.SubmitAsync(Run("live", minute: 2));
        await FinishAsync(store, "done1");
        await FinishAsync(store, "done2", RunStatus.Failed);

        var deleted = await store.DeleteRunsAsync(new RunDeletion { RunIds = ["done1", "done2", "live", "nosuch"], At = T0.AddDays(30), Actor = "retention", Reason = "agent a: 7 days" });

        Assert.Equal(["done1", "done2"], deleted);
        Assert.Null(await store.GetRunAsync("done1"));
        Assert.Empty(await store.ReadJournalAsync("done1"));
        Assert.Empty(await store.ReadJournalAsync("done2"));
        Assert.NotNull(await store.GetRunAsync("live"));
        Assert.Equal(["live"], (await store.ListRunsAsync(new RunQuery())).Items.Select(r => r.Id));

        var audit = (IAuditLog)store;
        var entry = await audit.LastAuditAsync("retention.deleted");
        Assert.NotNull(entry);
        Assert.Equal(("retention", T0.AddDays(30)), (entry.Actor, entry.At));
        var detail = JsonNode.Parse(entry.Detail!)!;
        Assert.Equal(2, (int)detail["count"]!);
        Assert.Equal("agent a: 7 days", (string?)detail["reason"]);
        Assert.Equal(["done1", "done2"], detail["runs"]!.AsArray().Select(n => (string?)n));
        Assert.True((await audit.VerifyAuditAsync()).IsIntact);
    }

    [Fact]
    public async Task DeleteRuns_ARunWhoseTreeIsStillLive_IsLeft_AndNothingGoneMeansNoAuditEntry()
    {
        var store = await OpenRunsAsync();
        await store.SubmitAsync(Run("root"));
        await store.SubmitAsync(Run("child", parent: "root", root: "root", minute: 1));
        await store.SubmitAsync(Run("grandchild", parent: "child", root: "root", minute: 2));
        await FinishAsync(store, "child");

        // root is running: neither it nor its finished child may go; the grandchild is live too.
        Assert.Empty(await store.DeleteRunsAsync(new RunDeletion { RunIds = ["root", "child", "grandchild"], At = T0 }));
        Assert.Null(await ((IAuditLog)store).LastAuditAsync("retention.deleted"));

        await FinishAsync(store, "grandchild");
        await FinishAsync(store, "root");
        Assert.Equal(["child", "grandchild", "root"], (await store.DeleteRunsAsync(new RunDeletion { RunIds = ["child", "grandchild", "root"], At = T0 })).Order(StringComparer.Ordinal));
        Assert.Empty((await store.ListRunsAsync(new RunQuery())).Items);
    }

    [Fact]
    public async Task DeleteRuns_ADeletedRun_CanNoLongerBeAppendedTo()
    {
        var store = await OpenRunsAsync();
        await store.SubmitAsync(Run("gone"));
        await FinishAsync(store, "gone");
        Assert.Equal(["gone"], await store.DeleteRunsAsync(new RunDeletion { RunIds = ["gone"], At = T0 }));
        var ex = await Assert.ThrowsAsync<JournalConflictException>(async () => await store.AppendAsync(new AppendRequest
        {
            RunId = "gone", ExpectedVersion = 2, At = T0, Entries = [new RunResumed("late")],
        }));
        Assert.Null(ex.ActualVersion);
    }
}
