using Bureau.Tests.Support;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Bureau.Tests.Workforce;

/// <summary>
/// The workforce's inbox is bounded (docs/workforce.md, decision 0050): a new task beyond <c>Bureau:Workforce:MaxQueuedTasks</c>
/// or its skill's limit is refused with <see cref="WorkforceInboxFullException"/> and writes nothing; a task already in the
/// inbox is returned whatever the limits; the <c>delegate</c> tool answers the model with an error and the run goes on.
/// </summary>
public sealed class WorkforceInboxLimitTests : IAsyncDisposable
{
    private readonly WorkforceHarness _h = new();
    private EngineFixture _f => _h.Fixture;
    private TaskCompletionSource _release => _h.Release;

    public ValueTask DisposeAsync() => _h.DisposeAsync();

    private void AddMember(string name, int concurrency, bool delegates, params string[] skills) => _h.AddMember(name, concurrency, delegates, skills);

    private Task<(BureauEngine Engine, BureauWorkforce Workforce, IWorkforceStore Store)> StartAsync(Action<BureauOptions> options, bool dispatch) =>
        _h.StartAsync(dispatch, options);

    private static async Task<WorkforceTask> UntilAsync(IWorkforceStore store, string id, Func<WorkforceTask, bool> done, string what) =>
        (await WorkforceHarness.UntilAsync(() => store.GetAsync(id), t => t is not null && done(t), what))!;

    [Fact]
    public async Task Submit_BeyondMaxQueuedTasks_IsRefusedNamingTheLimit_WritesNothing_AndTheSameIdAgainReturnsTheTask()
    {
        _f.UseModel((_, _) => FakeModel.Text("done"));
        AddMember("billing", 1, false, "billing");
        var (_, workforce, store) = await StartAsync(o => { o.Workforce.MaxQueuedTasks = 2; o.QueueFullRetryAfter = TimeSpan.FromSeconds(7); }, dispatch: false);
        var first = await workforce.SubmitAsync(new WorkforceTaskRequest("billing", "refund order 7", "t1"));
        await workforce.SubmitAsync(new WorkforceTaskRequest("billing", "refund order 8", "t2"));

        var full = await Assert.ThrowsAsync<WorkforceInboxFullException>(() => workforce.SubmitAsync(new WorkforceTaskRequest("billing", "refund order 9", "t3")));
        Assert.Equal((2, 2, true, TimeSpan.FromSeconds(7)), (full.Queued, full.Limit, full.Global, full.RetryAfter));
        Assert.StartsWith("the workforce inbox is full: 2 tasks are queued, the limit is 2 (Bureau:Workforce:MaxQueuedTasks)", full.Message);
        await Assert.ThrowsAsync<WorkforceInboxFullException>(() => workforce.SubmitAsync(new WorkforceTaskRequest("billing", "no id given")));
        Assert.Null(await store.GetAsync("t3"));
        Assert.Equal(["t1", "t2"], (await store.ListAsync(WorkforceTaskStatus.Queued, 10)).Select(t => t.Id));

        // A client that resends a task the inbox has gets it back, full or not.
        var again = await workforce.SubmitAsync(new WorkforceTaskRequest("billing", "refund order 7", "t1"));
        Assert.Equal((false, first.Task), (again.Created, again.Task));
    }

    [Fact]
    public async Task Submit_BeyondASkillsLimit_IsRefusedForThatSkill_WhileOtherSkillsAreAccepted()
    {
        _f.UseModel((_, _) => FakeModel.Text("done"));
        AddMember("billing", 1, false, "billing");
        AddMember("technical", 1, false, "technical");
        var (_, workforce, store) = await StartAsync(o => { o.Workforce.MaxQueuedTasksPerSkill = 5; o.Workforce.SkillQueueLimits["billing"] = 1; }, dispatch: false);
        await workforce.SubmitAsync(new WorkforceTaskRequest("billing", "refund order 7", "b1"));

        var full = await Assert.ThrowsAsync<WorkforceInboxFullException>(() => workforce.SubmitAsync(new WorkforceTaskRequest("billing", "refund order 8", "b2")));
        Assert.Equal(("billing", 1, 1, false), (full.Skill, full.Queued, full.Limit, full.Global));
        Assert.Contains("Bureau:Workforce:SkillQueueLimits:billing", full.Message);
        for (var i = 1; i <= 5; i++) await workforce.SubmitAsync(new WorkforceTaskRequest("technical", "reboot " + i, "t" + i));
        await Assert.ThrowsAsync<WorkforceInboxFullException>(() => workforce.SubmitAsync(new WorkforceTaskRequest("technical", "reboot 6", "t6")));
        Assert.Equal(new Dictionary<string, int> { ["billing"] = 1, ["technical"] = 5 }, await store.QueuedBySkillAsync());
    }

    [Fact]
    public async Task Delegate_WhenTheInboxIsFull_TheModelGetsAnError_NothingIsAddedToInboxOrBoard_AndTheRunGoesOn()
    {
        var model = _f.UseModel((messages, turn) => (messages[0].Text, turn) switch
        {
            ("triage", 1) => FakeModel.Call("delegate", """{"skill":"billing","task":"refund order 7 for alice"}""", "c1"),
            ("triage", _) => FakeModel.Text("could not pass on: " + FakeModel.LastToolResult(messages)),
            _ => FakeModel.Text("refunded"),
        });
        model.BeforeAnswer = async (messages, _, ct) =>
        {
            if (messages[0].Text == "billing") await _release.Task.WaitAsync(ct); // billing stays busy: its queued task waits
        };
        AddMember("triage", 1, true, "triage");
        AddMember("billing", 1, false, "billing");
        var (engine, workforce, store) = await StartAsync(o => o.Workforce.SkillQueueLimits["billing"] = 1, dispatch: true);
        await workforce.SubmitAsync(new WorkforceTaskRequest("billing", "refund order 1", "b1"));
        await UntilAsync(store, "b1", t => t.Status == WorkforceTaskStatus.Running, "b1 running");
        await workforce.SubmitAsync(new WorkforceTaskRequest("billing", "refund order 2", "b2")); // billing's inbox: 1 of 1

        await workforce.SubmitAsync(new WorkforceTaskRequest("triage", "alice wants her money back for order 7", "t1"));
        var t1 = await UntilAsync(store, "t1", t => t.IsFinished, "t1 finished");

        Assert.Equal(WorkforceTaskStatus.Succeeded, t1.Status); // the run went on after the refused call
        Assert.Contains("could not pass on: tool 'delegate': the workforce inbox is full for skill 'billing': 1 tasks of it are queued, the limit is 1", t1.Output);
        var result = (await engine.ReadJournalAsync(t1.RunId!)).Select(r => r.Entry).OfType<ToolCompleted>().Single();
        Assert.Equal((true, "error"), (result.IsError, result.Failure));
        Assert.Equal(["b2"], (await store.ListAsync(WorkforceTaskStatus.Queued, 10)).Select(t => t.Id));
        Assert.Empty((await _f.Services.GetRequiredService<IBoardStore>().ReadAsync(WorkforceDefinition.DefaultBoard)).Tasks);
    }

    [Fact]
    public async Task Options_BadInboxLimits_StopTheStartNamingTheKey()
    {
        var options = new BureauOptions();
        Assert.Equal(10_000, options.Workforce.MaxQueuedTasks); // bounded by default
        _f.UseModel((_, _) => FakeModel.Text("done"));
        _f.Configure = b => b.Services.Configure<BureauOptions>(o =>
        {
            o.Workforce.MaxQueuedTasks = 0;
            o.Workforce.MaxQueuedTasksPerSkill = -1;
            o.Workforce.SkillQueueLimits["billing"] = 0;
        });

        var ex = await Assert.ThrowsAsync<Microsoft.Extensions.Options.OptionsValidationException>(() => _f.StartAsync(start: false));
        Assert.Contains("Bureau:Workforce:MaxQueuedTasks must be at least 1 (is 0)", ex.Message);
        Assert.Contains("Bureau:Workforce:MaxQueuedTasksPerSkill must be at least 1 (is -1)", ex.Message);
        Assert.Contains("Bureau:Workforce:SkillQueueLimits:billing must be at least 1 (is 0)", ex.Message);
    }

    [Fact]
    public async Task DocsSnippet_ConfiguresTheLimits_AndCatchesTheRefusal()
    {
        using var dir = new TempDir();
        var services = new ServiceCollection();

        // docs/workforce.md begin ("The inbox's limit", C#)
        services.AddBureau(o =>
        {
            o.Workforce.MaxQueuedTasks = 5_000;                   // Bureau:Workforce:MaxQueuedTasks
            o.Workforce.SkillQueueLimits["billing"] = 500;        // Bureau:Workforce:SkillQueueLimits:billing
        });
        // docs/workforce.md end
        services.Configure<BureauOptions>(o => (o.Workforce.SkillQueueLimits["billing"], o.QueueFullRetryAfter) = (1, TimeSpan.FromSeconds(1))); // a small inbox to fill
        services.AddBureau()
            .UseSqliteStorage(dir.File("bureau.db"))
            .AddChatClient("main", new FakeModel((_, _) => FakeModel.Text("refunded")))
            .AddAgent(new AgentDefinition { Name = "desk-billing", Model = "main" })
            .AddWorkforceMember(new WorkforceMember { Name = "desk-billing", Skills = ["billing"] });
        await using var provider = services.BuildServiceProvider();
        Assert.Equal(5_000, provider.GetRequiredService<Microsoft.Extensions.Options.IOptions<BureauOptions>>().Value.Workforce.MaxQueuedTasks);
        await provider.GetRequiredService<IRunStore>().InitializeAsync();
        await provider.GetRequiredService<IWorkforceStore>().InitializeAsync();
        var workforce = provider.GetRequiredService<BureauWorkforce>(); // no dispatcher: the first task stays queued
        await workforce.SubmitAsync(new WorkforceTaskRequest("billing", "Refund order 7", Id: "ticket-7"));

        // docs/workforce.md begin (a refused task)
        try
        {
            await workforce.SubmitAsync(new WorkforceTaskRequest("billing", "Refund order 8", Id: "ticket-8"));
        }
        catch (WorkforceInboxFullException full)
        {
            // Nothing was stored: full.Queued tasks wait, full.Limit is the limit (full.Global: all skills, else full.Skill's).
            await Task.Delay(full.RetryAfter);                    // then send it again, with the same id
        }
        // docs/workforce.md end

        Assert.Null(await workforce.GetTaskAsync("ticket-8"));
        var refused = await Assert.ThrowsAsync<WorkforceInboxFullException>(() => workforce.SubmitAsync(new WorkforceTaskRequest("billing", "Refund order 8", Id: "ticket-8")));
        Assert.Equal(("billing", 1, 1, false, TimeSpan.FromSeconds(1)), (refused.Skill, refused.Queued, refused.Limit, refused.Global, refused.RetryAfter));
    }
}
