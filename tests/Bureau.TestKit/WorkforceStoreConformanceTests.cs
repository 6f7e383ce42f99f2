using Xunit;

namespace Bureau.TestKit;

/// <summary>
/// The contract every <see cref="IWorkforceStore"/> passes (decision 0039): adding a task is idempotent by id, each state
/// change applies only from the state before it, and an assignment needs the member below its concurrency limit, so
/// racing dispatchers (other stores on the same database: other nodes) never assign a task twice nor overload a member.
/// </summary>
public abstract class WorkforceStoreConformanceTests
{
    private static readonly DateTimeOffset T0 = new(2026, 12, 6, 9, 0, 0, TimeSpan.Zero);

    /// <summary>A new store on the test's database (not initialized); each call another instance, as another node would have.</summary>
    protected abstract IWorkforceStore CreateStore();

    /// <summary>A new store, initialized.</summary>
    protected async Task<IWorkforceStore> OpenAsync()
    {
        var s = CreateStore();
        await s.InitializeAsync(TestContext.Current.CancellationToken);
        return s;
    }

    [Fact]
    public async Task Enqueue_IsIdempotentById_TheSecondAddReturnsTheFirstTaskUnchanged()
    {
        var store = await OpenAsync();

        var first = await store.EnqueueAsync("t1", "billing", "refund order 7", "api", "alice", T0);
        var again = await store.EnqueueAsync("t1", "technical", "something else", "code", null, T0.AddMinutes(1));

        Assert.True(first.Created);
        Assert.False(again.Created);
        Assert.Equal(new WorkforceTask("t1", "billing", "refund order 7", WorkforceTaskStatus.Queued, null, null, "api", "alice", T0, T0, 1), first.Task);
        Assert.Equal(first.Task, again.Task);
        Assert.Equal(first.Task, await store.GetAsync("t1"));
        Assert.Null(await store.GetAsync("t2"));
    }

    [Fact]
    public async Task ATask_GoesQueuedAssignedRunningFinished_EachChangeOnlyFromTheStateBeforeIt()
    {
        var store = await OpenAsync();
        await store.EnqueueAsync("t1", "billing", "refund", "api", null, T0);

        Assert.Null(await store.StartedAsync("t1", "run-1", T0.AddSeconds(1))); // not assigned yet
        Assert.Null(await store.FinishAsync("t1", WorkforceTaskStatus.Succeeded, "x", null, T0.AddSeconds(1))); // not running
        var assigned = await store.AssignAsync("t1", "ann", 1, T0.AddSeconds(2));
        Assert.Equal((WorkforceTaskStatus.Assigned, "ann", 2L, T0.AddSeconds(2)), (assigned!.Status, assigned.Agent, assigned.Version, assigned.UpdatedAt));
        Assert.Null(await store.AssignAsync("t1", "bob", 5, T0.AddSeconds(3))); // assigned once
        var running = await store.StartedAsync("t1", "run-1", T0.AddSeconds(4));
        Assert.Equal((WorkforceTaskStatus.Running, "run-1", 3L), (running!.Status, running.RunId, running.Version));
        Assert.Null(await store.StartedAsync("t1", "run-2", T0.AddSeconds(5)));
        var done = await store.FinishAsync("t1", WorkforceTaskStatus.Failed, null, "the model failed", T0.AddSeconds(6));
        Assert.Equal((WorkforceTaskStatus.Failed, null, "the model failed", 4L, true), (done!.Status, done.Output, done.Error, done.Version, done.IsFinished));
        Assert.Null(await store.FinishAsync("t1", WorkforceTaskStatus.Succeeded, "late", null, T0.AddSeconds(7))); // finished once

        var read = (await store.GetAsync("t1"))!;
        Assert.Equal(done, read);
        Assert.Equal(("ann", "run-1", T0, T0.AddSeconds(6)), (read.Agent, read.RunId, read.CreatedAt, read.UpdatedAt));
        Assert.Null(await store.AssignAsync("missing", "ann", 1, T0));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => store.FinishAsync("t1", WorkforceTaskStatus.Running, null, null, T0));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => store.AssignAsync("t1", "ann", 0, T0));
        await Assert.ThrowsAsync<ArgumentException>(() => store.EnqueueAsync(" ", "billing", "x", "api", null, T0));
    }

    [Fact]
    public async Task Assign_NeedsTheMemberBelowItsLimit_AndAFinishedTaskFreesItsPlace()
    {
        var store = await OpenAsync();
        for (var i = 1; i <= 3; i++) await store.EnqueueAsync("t" + i, "billing", "task " + i, "api", null, T0.AddSeconds(i));

        Assert.NotNull(await store.AssignAsync("t1", "ann", 2, T0));
        Assert.NotNull(await store.AssignAsync("t2", "ann", 2, T0));
        Assert.Null(await store.AssignAsync("t3", "ann", 2, T0)); // ann holds 2 of 2
        Assert.NotNull(await store.StartedAsync("t1", "r1", T0));
        Assert.Null(await store.AssignAsync("t3", "ann", 2, T0)); // running counts as held too
        Assert.NotNull(await store.FinishAsync("t1", WorkforceTaskStatus.Succeeded, "ok", null, T0));
        var third = await store.AssignAsync("t3", "ann", 2, T0);
        Assert.Equal(("ann", WorkforceTaskStatus.Assigned), (third!.Agent, third.Status));

        Assert.Equal([new WorkforceLoad("ann", 2, 1)], await store.LoadsAsync());
    }

    [Fact]
    public async Task List_LoadsAndQueuedBySkill_ReadTheInbox()
    {
        var store = await OpenAsync();
        await store.EnqueueAsync("b1", "billing", "1", "api", null, T0);
        await store.EnqueueAsync("t1", "technical", "2", "api", null, T0);
        await store.EnqueueAsync("b2", "billing", "3", "api", null, T0);
        await store.EnqueueAsync("b3", "billing", "4", "api", null, T0);
        await store.AssignAsync("b2", "bob", 3, T0);
        await store.AssignAsync("t1", "ann", 3, T0);
        await store.StartedAsync("t1", "r1", T0);
        await store.FinishAsync("t1", WorkforceTaskStatus.Canceled, null, "canceled", T0);

        Assert.Equal(["b1", "b3"], (await store.ListAsync(WorkforceTaskStatus.Queued, 10)).Select(t => t.Id)); // oldest first
        Assert.Equal(["b1"], (await store.ListAsync(WorkforceTaskStatus.Queued, 1)).Select(t => t.Id));
        Assert.Equal(["b2"], (await store.ListAsync(WorkforceTaskStatus.Assigned, 10)).Select(t => t.Id));
        Assert.Equal(["t1"], (await store.ListAsync(WorkforceTaskStatus.Canceled, 10)).Select(t => t.Id));
        Assert.Empty(await store.ListAsync(WorkforceTaskStatus.Running, 10));
        Assert.Equal([new WorkforceLoad("ann", 0, 1), new WorkforceLoad("bob", 1, 0)], await store.LoadsAsync());
        Assert.Equal(new Dictionary<string, int> { ["billing"] = 2 }, await store.QueuedBySkillAsync());
    }

    [Fact]
    public async Task Assign_RacingStoresOnOneDatabase_NeverExceedAMembersLimit_NorAssignATaskTwice()
    {
        var limits = new Dictionary<string, int> { ["ann"] = 1, ["bob"] = 2, ["cid"] = 3 };
        var stores = new List<IWorkforceStore>();
        for (var s = 0; s < 4; s++) stores.Add(await OpenAsync());
        const int tasks = 24;
        for (var i = 0; i < tasks; i++) await stores[0].EnqueueAsync($"t{i:00}", "billing", "task " + i, "api", null, T0);

        var finished = 0;
        for (var round = 0; round < 3; round++)
        {
            // Every worker tries every queued task with every member, in its own order: all of them at once.
            var queued = (await stores[0].ListAsync(WorkforceTaskStatus.Queued, 100)).Select(t => t.Id).ToList();
            var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var workers = Enumerable.Range(0, 8).Select(w => Task.Run(async () =>
            {
                await gate.Task;
                var won = new List<WorkforceTask>();
                var order = queued.OrderBy(id => (id.GetHashCode(StringComparison.Ordinal) * (w + 1)) % 97).ToList();
                foreach (var id in order)
                {
                    foreach (var (agent, limit) in limits.OrderBy(l => (l.Key.Length + w + id.Length) % 3))
                    {
                        if (await stores[w % stores.Count].AssignAsync(id, agent, limit, T0.AddMinutes(round)) is { } t) won.Add(t);
                    }
                }
                return won;
            })).ToArray();
            gate.SetResult();
            var assigned = (await Task.WhenAll(workers)).SelectMany(w => w).ToList();

            // Each task won at most once; each member filled exactly to its limit (more queued tasks than places), never beyond.
            Assert.Equal(assigned.Count, assigned.Select(t => t.Id).Distinct().Count());
            Assert.Equal(limits.Values.Sum(), assigned.Count);
            foreach (var (agent, limit) in limits) Assert.Equal(limit, assigned.Count(t => t.Agent == agent));
            foreach (var t in assigned) Assert.Equal((WorkforceTaskStatus.Assigned, t.Agent), ((await stores[1].GetAsync(t.Id))!.Status, (await stores[2].GetAsync(t.Id))!.Agent));
            var loads = (await stores[3].LoadsAsync()).ToDictionary(l => l.Agent);
            foreach (var (agent, limit) in limits) Assert.Equal((limit, (long)round * limit), (loads[agent].InProgress, loads[agent].Finished));

            // They all run and finish: the next round has every place free again.
            foreach (var t in assigned)
            {
                Assert.NotNull(await stores[0].StartedAsync(t.Id, "run-" + t.Id, T0));
                Assert.NotNull(await stores[1].FinishAsync(t.Id, WorkforceTaskStatus.Succeeded, "ok", null, T0));
            }
            finished += assigned.Count;
        }
        Assert.Equal(tasks - finished, (await stores[2].QueuedBySkillAsync())["billing"]);
    }

    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(5);

    [Fact]
    public async Task Enqueue_BeyondTheInboxLimit_IsRefusedNamingTheLimitAndTheCount_AndWritesNothing()
    {
        var store = await OpenAsync();
        var limits = new WorkforceInboxLimits(3, null, Wait);
        for (var i = 1; i <= 3; i++) Assert.True((await store.EnqueueAsync("t" + i, i == 3 ? "technical" : "billing", "task " + i, "api", null, T0, limits)).Created);

        var full = await Assert.ThrowsAsync<WorkforceInboxFullException>(() => store.EnqueueAsync("t4", "billing", "task 4", "api", null, T0, limits));
        Assert.Equal(("billing", 3, 3, true, Wait), (full.Skill, full.Queued, full.Limit, full.Global, full.RetryAfter));
        Assert.Contains("3 tasks are queued, the limit is 3 (Bureau:Workforce:MaxQueuedTasks)", full.Message);
        Assert.Null(await store.GetAsync("t4"));
        Assert.Equal(3, (await store.QueuedBySkillAsync()).Values.Sum());

        // Only queued tasks count: one assigned frees a place.
        Assert.NotNull(await store.AssignAsync("t1", "ann", 1, T0));
        Assert.True((await store.EnqueueAsync("t4", "billing", "task 4", "api", null, T0, limits)).Created);
        await Assert.ThrowsAsync<WorkforceInboxFullException>(() => store.EnqueueAsync("t5", "billing", "task 5", "api", null, T0, limits));
    }

    [Fact]
    public async Task Enqueue_ATaskAlreadyThere_IsReturnedEvenWhenTheInboxIsFull()
    {
        var store = await OpenAsync();
        var limits = new WorkforceInboxLimits(2, 1, Wait);
        var first = await store.EnqueueAsync("t1", "billing", "refund order 7", "api", "alice", T0, limits);
        await store.EnqueueAsync("t2", "technical", "reboot", "api", null, T0, limits);

        var again = await store.EnqueueAsync("t1", "billing", "something else", "code", null, T0.AddMinutes(1), limits);

        Assert.False(again.Created);
        Assert.Equal(first.Task, again.Task);
        Assert.Equal(2, (await store.QueuedBySkillAsync()).Values.Sum());
    }

    [Fact]
    public async Task Enqueue_BeyondASkillsLimit_IsRefusedForThatSkillOnly()
    {
        var store = await OpenAsync();
        var billing = new WorkforceInboxLimits(100, 2, Wait);
        var technical = new WorkforceInboxLimits(100, null, Wait);
        await store.EnqueueAsync("b1", "billing", "1", "api", null, T0, billing);
        await store.EnqueueAsync("b2", "billing", "2", "api", null, T0, billing);

        var full = await Assert.ThrowsAsync<WorkforceInboxFullException>(() => store.EnqueueAsync("b3", "billing", "3", "api", null, T0, billing));
        Assert.Equal(("billing", 2, 2, false), (full.Skill, full.Queued, full.Limit, full.Global));
        Assert.Contains("full for skill 'billing': 2 tasks of it are queued, the limit is 2", full.Message);
        Assert.Null(await store.GetAsync("b3"));
        Assert.True((await store.EnqueueAsync("t1", "technical", "4", "api", null, T0, technical)).Created);
        Assert.Equal(new Dictionary<string, int> { ["billing"] = 2, ["technical"] = 1 }, await store.QueuedBySkillAsync());
    }

    [Fact]
    public async Task Enqueue_RacingStoresOnOneDatabase_NeverTakeTheInboxBeyondItsLimit()
    {
        const int limit = 20, workers = 16, each = 6;
        var limits = new WorkforceInboxLimits(limit, null, Wait);
        var stores = new List<IWorkforceStore>();
        for (var s = 0; s < 4; s++) stores.Add(await OpenAsync());

        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var runs = Enumerable.Range(0, workers).Select(w => Task.Run(async () =>
        {
            await stores[w % stores.Count].GetAsync("warm-up"); // each worker's connection open before they all start
            await gate.Task;
            var (created, refused) = (0, 0);
            for (var i = 0; i < each; i++)
            {
                try
                {
                    // Every other add repeats a task of the worker before it: a repeat is never refused nor counted twice.
                    var id = i % 2 == 1 ? $"w{(w + 1) % workers}-{i - 1}" : $"w{w}-{i}";
                    if ((await stores[w % stores.Count].EnqueueAsync(id, "billing", "task", "api", null, T0, limits)).Created) created++;
                }
                catch (WorkforceInboxFullException ex)
                {
                    Assert.Equal(limit, ex.Limit);
                    refused++;
                }
            }
            return (created, refused);
        })).ToArray();
        gate.SetResult();
        var results = await Task.WhenAll(runs);

        var queued = (await stores[0].ListAsync(WorkforceTaskStatus.Queued, 1000)).Count;
        Assert.Equal(limit, queued);
        Assert.Equal(limit, results.Sum(r => r.created));
        Assert.True(results.Sum(r => r.refused) > 0, "more adds than places: some were refused");
    }
}
