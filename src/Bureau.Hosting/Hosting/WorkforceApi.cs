using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Bureau.Hosting;

/// <summary>
/// The workforce (docs/workforce.md): <c>GET /v1/workforce</c> (members, load, inbox and its limits, memory size),
/// <c>POST /v1/workforce/tasks</c> (a task into the durable inbox, routed by skill and load; the same id again returns
/// the first task; 429 with <c>Retry-After</c> when the inbox is full, <see cref="WorkforceInboxFullException"/>) and
/// <c>GET /v1/workforce/tasks/{id}</c>.
/// </summary>
internal static class WorkforceApi
{
    public static void Map(RouteGroupBuilder v1)
    {
        v1.MapGet("/workforce", (Delegate)StatusAsync).WithMetadata(new PermissionMetadata(ApiPermission.Read))
            .WithName("GetWorkforce").WithSummary("The workforce: each member's skills, concurrency, tasks in progress, inbox depth and memory size; the inbox by skill, with its limits (maxQueuedTasks; maxQueuedBySkill, null where a skill has none of its own).")
            .Produces<WorkforceDoc>().ProducesProblem(404);
        v1.MapPost("/workforce/tasks", (Delegate)SubmitAsync).WithMetadata(new PermissionMetadata(ApiPermission.StartOrCancel))
            .WithName("SubmitWorkforceTask").WithSummary("Put a task in the workforce's inbox (durable before the answer): {\"skill\", \"input\", \"id\"?}; the same id again returns the first task (200).")
            .Body<WorkforceTaskBody>()
            .Produces<WorkforceTaskDoc>(StatusCodes.Status202Accepted).Produces<WorkforceTaskDoc>(StatusCodes.Status200OK)
            .ProducesProblem(400).ProducesProblem(413).ProducesProblem(415).ProducesProblem(429).ProducesProblem(503);
        v1.MapGet("/workforce/tasks/{id}", (Delegate)GetTaskAsync).WithMetadata(new PermissionMetadata(ApiPermission.Read))
            .WithName("GetWorkforceTask").WithSummary("One task: its state (queued, assigned, running, succeeded, failed, canceled), the member and run that do it, the output.")
            .Produces<WorkforceTaskDoc>().ProducesProblem(404);
    }

    private static BureauWorkforce Workforce(HttpContext ctx) => ctx.RequestServices.GetRequiredService<BureauWorkforce>();

    public static async Task<IResult> StatusAsync(HttpContext ctx)
    {
        var workforce = Workforce(ctx);
        if (ctx.RequestServices.GetService<IWorkforceStore>() is null)
            return Problems.Create(StatusCodes.Status404NotFound, "no-workforce", "this host has no workforce store");
        var status = await workforce.StatusAsync(ctx.RequestAborted);
        return BureauApi.Json(new JsonObject
        {
            ["board"] = workforce.Definition.Board,
            ["queued"] = status.Queued,
            ["inProgress"] = status.InProgress,
            ["queuedBySkill"] = new JsonObject([.. status.QueuedBySkill.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => KeyValuePair.Create(p.Key, (JsonNode?)p.Value))]),
            ["maxQueuedTasks"] = status.MaxQueuedTasks,
            ["maxQueuedBySkill"] = new JsonObject([.. status.MaxQueuedBySkill.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => KeyValuePair.Create(p.Key, (JsonNode?)p.Value))]),
            ["agents"] = new JsonArray([.. status.Agents.Select(a => (JsonNode)new JsonObject
            {
                ["name"] = a.Name,
                ["skills"] = new JsonArray([.. a.Skills.Select(s => (JsonNode)s)]),
                ["concurrency"] = a.Concurrency,
                ["inProgress"] = a.InProgress,
                ["finished"] = a.Finished,
                ["inbox"] = a.Inbox,
                ["memoryFacts"] = a.MemoryFacts,
            })]),
        });
    }

    public static async Task<IResult> SubmitAsync(HttpContext ctx)
    {
        var max = ctx.RequestServices.GetRequiredService<IOptions<BureauHttpOptions>>().Value.MaxRequestBodyBytes;
        var body = (await RequestBody.ReadAsync(ctx, max, optional: false))!;
        RequestBody.OnlyFields(body, "skill", "input", "id");
        var skill = RequestBody.RequiredString(body, "skill");
        var input = RequestBody.RequiredString(body, "input");
        var id = RequestBody.OptionalString(body, "id");
        WorkforceEnqueueResult result;
        try
        {
            result = await Workforce(ctx).SubmitAsync(new WorkforceTaskRequest(skill, input, id, "api", ApiAccess.Caller(ctx).Actor), ctx.RequestAborted);
        }
        catch (UnknownSkillException ex)
        {
            return Problems.Create(StatusCodes.Status400BadRequest, "unknown-skill", ex.Message.Split(" (Parameter")[0], "skill");
        }
        catch (ArgumentException ex) when (ex.ParamName == "request")
        {
            var message = ex.Message.Split(" (Parameter")[0];
            return Problems.Create(StatusCodes.Status400BadRequest, "invalid-request", message, message.StartsWith("'id'", StringComparison.Ordinal) ? "id" : "input");
        }
        return BureauApi.Json(Document(result.Task), result.Created ? StatusCodes.Status202Accepted : StatusCodes.Status200OK);
    }

    public static async Task<IResult> GetTaskAsync(HttpContext ctx, string id)
    {
        var task = await Workforce(ctx).GetTaskAsync(id, ctx.RequestAborted);
        return task is null
            ? Problems.Create(StatusCodes.Status404NotFound, "task-not-found", $"the workforce has no task '{id}'", "id")
            : BureauApi.Json(Document(task));
    }

    internal static JsonObject Document(WorkforceTask t) => new()
    {
        ["id"] = t.Id, ["skill"] = t.Skill, ["status"] = WireNames.Of(t.Status), ["agent"] = t.Agent, ["runId"] = t.RunId,
        ["source"] = t.Source, ["actor"] = t.Actor, ["version"] = t.Version, ["createdAt"] = t.CreatedAt, ["updatedAt"] = t.UpdatedAt,
        ["output"] = t.Output, ["error"] = t.Error,
    };
}

// Shapes for the OpenAPI document.
internal sealed record WorkforceTaskBody(string Skill, string Input, string? Id);
internal sealed record WorkforceTaskDoc(string Id, string Skill, string Status, string? Agent, string? RunId, string Source, string? Actor, long Version,
    DateTimeOffset CreatedAt, DateTimeOffset UpdatedAt, string? Output, string? Error);
internal sealed record WorkforceAgentDoc(string Name, IReadOnlyList<string> Skills, int Concurrency, int InProgress, long Finished, int Inbox, int? MemoryFacts);
internal sealed record WorkforceDoc(string Board, int Queued, int InProgress, IReadOnlyDictionary<string, int> QueuedBySkill, int MaxQueuedTasks,
    IReadOnlyDictionary<string, int?> MaxQueuedBySkill, IReadOnlyList<WorkforceAgentDoc> Agents);
