using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Bureau.Hosting;

/// <summary>
/// A team's operational board (docs/memory.md#the-board): <c>GET /v1/boards/{board}</c>, tasks added, claimed (exactly
/// once under a race), completed and blocked, decisions and compare-and-set keys. A refused change is a 409 problem
/// naming who holds the task (or the key's current value and version), never a bare 409; the caller is the API key's actor.
/// </summary>
internal static class BoardsApi
{
    public static void Map(RouteGroupBuilder v1)
    {
        v1.MapGet("/boards/{board}", (Delegate)GetAsync).WithMetadata(new PermissionMetadata(ApiPermission.Read))
            .WithName("GetBoard").WithSummary("A team's board: tasks (open, claimed, done, blocked), decisions, compare-and-set keys.")
            .Produces<BoardDoc>().ProducesProblem(404);
        v1.MapPost("/boards/{board}/tasks", (Delegate)AddTaskAsync).WithMetadata(new PermissionMetadata(ApiPermission.StartOrCancel))
            .WithName("AddBoardTask").WithSummary("Put an open task on the board: {\"id\", \"title\", \"detail\"?}; the same id again returns the task unchanged.")
            .Produces<BoardTaskDoc>(StatusCodes.Status201Created).ProducesProblem(400).ProducesProblem(413).ProducesProblem(415);
        v1.MapPost("/boards/{board}/tasks/{id}/{action}", (Delegate)ChangeTaskAsync).WithMetadata(new PermissionMetadata(ApiPermission.StartOrCancel))
            .WithName("ChangeBoardTask").WithSummary("claim (exactly one of racing claims wins), complete {\"result\"?} (its claimer only), block {\"reason\"}; 409 names who holds the task.")
            .Produces<BoardTaskDoc>().ProducesProblem(400).ProducesProblem(404).ProducesProblem(409).ProducesProblem(413).ProducesProblem(415);
        v1.MapPost("/boards/{board}/decisions", (Delegate)AddDecisionAsync).WithMetadata(new PermissionMetadata(ApiPermission.StartOrCancel))
            .WithName("AddBoardDecision").WithSummary("Record a decision: {\"title\", \"text\"}.").Produces<BoardDecisionDoc>(StatusCodes.Status201Created).ProducesProblem(400).ProducesProblem(413).ProducesProblem(415);
        v1.MapPut("/boards/{board}/keys/{key}", (Delegate)SetKeyAsync).WithMetadata(new PermissionMetadata(ApiPermission.StartOrCancel))
            .WithName("SetBoardKey").WithSummary("Compare-and-set a key: {\"value\", \"expectedVersion\"} (0: must not exist); 409 carries the current value and version.")
            .Produces<BoardKeyDoc>().ProducesProblem(400).ProducesProblem(409).ProducesProblem(413).ProducesProblem(415);
    }

    private static IBoardStore Store(HttpContext ctx) => ctx.RequestServices.GetService<IBoardStore>()
        ?? throw new ApiException(StatusCodes.Status404NotFound, "no-boards", "this host has no board store");

    private static long MaxBody(HttpContext ctx) => ctx.RequestServices.GetRequiredService<IOptions<BureauHttpOptions>>().Value.MaxRequestBodyBytes;

    private static string Actor(HttpContext ctx) => ApiAccess.Caller(ctx).Actor;

    /// <summary>A required string field that is not blank.</summary>
    private static string Text(JsonObject body, string name) =>
        RequestBody.RequiredString(body, name) is { } text && !string.IsNullOrWhiteSpace(text) ? text : throw ApiException.BadField(name, $"'{name}' must not be empty");

    private static DateTimeOffset Now(HttpContext ctx) => ctx.RequestServices.GetRequiredService<TimeProvider>().GetUtcNow();

    public static async Task<IResult> GetAsync(HttpContext ctx, string board)
    {
        var snapshot = await Store(ctx).ReadAsync(board, ctx.RequestAborted);
        return BureauApi.Json(new JsonObject
        {
            ["board"] = board,
            ["tasks"] = new JsonArray([.. snapshot.Tasks.Select(t => (JsonNode)TaskDocument(t))]),
            ["decisions"] = new JsonArray([.. snapshot.Decisions.Select(d => (JsonNode)new JsonObject
            {
                ["seq"] = d.Seq, ["title"] = d.Title, ["text"] = d.Text, ["by"] = d.By, ["at"] = d.At,
            })]),
            ["keys"] = new JsonArray([.. snapshot.Keys.Select(k => (JsonNode)KeyDocument(k))]),
        });
    }

    public static async Task<IResult> AddTaskAsync(HttpContext ctx, string board)
    {
        var body = (await RequestBody.ReadAsync(ctx, MaxBody(ctx), optional: false))!;
        RequestBody.OnlyFields(body, "id", "title", "detail");
        var task = await Store(ctx).AddTaskAsync(board, Text(body, "id"), Text(body, "title"),
            RequestBody.OptionalString(body, "detail"), Actor(ctx), Now(ctx), ctx.RequestAborted);
        return BureauApi.Json(TaskDocument(task), StatusCodes.Status201Created);
    }

    public static async Task<IResult> ChangeTaskAsync(HttpContext ctx, string board, string id, string action)
    {
        var body = await RequestBody.ReadAsync(ctx, MaxBody(ctx), optional: true);
        var store = Store(ctx);
        BoardTaskResult result;
        switch (action)
        {
            case "claim":
                if (body is not null) RequestBody.OnlyFields(body);
                result = await store.ClaimAsync(board, id, Actor(ctx), Now(ctx), ctx.RequestAborted);
                break;
            case "complete":
                if (body is not null) RequestBody.OnlyFields(body, "result");
                result = await store.CompleteAsync(board, id, Actor(ctx), body is null ? null : RequestBody.OptionalString(body, "result"), Now(ctx), ctx.RequestAborted);
                break;
            case "block":
                if (body is null) throw ApiException.BadField("reason", "a block needs {\"reason\": \"...\"}");
                RequestBody.OnlyFields(body, "reason");
                result = await store.BlockAsync(board, id, Actor(ctx), Text(body, "reason"), Now(ctx), ctx.RequestAborted);
                break;
            default:
                throw ApiException.BadField("action", $"unknown action '{action}'; expected claim, complete or block");
        }
        return result.Outcome switch
        {
            BoardChange.Applied => BureauApi.Json(TaskDocument(result.Task!)),
            BoardChange.NotFound => Problems.Create(StatusCodes.Status404NotFound, "task-not-found", $"board '{board}' has no task '{id}'", "id"),
            _ => Problems.Create(StatusCodes.Status409Conflict, "task-conflict",
                $"cannot {action} task '{id}' of board '{board}': it is {WireNames.Of(result.Task!.Status)}{(result.Task.ClaimedBy is { } by ? " (" + by + ")" : "")}, version {result.Task.Version}",
                "id", extra: new() { ["taskStatus"] = WireNames.Of(result.Task.Status), ["claimedBy"] = result.Task.ClaimedBy, ["version"] = result.Task.Version }),
        };
    }

    public static async Task<IResult> AddDecisionAsync(HttpContext ctx, string board)
    {
        var body = (await RequestBody.ReadAsync(ctx, MaxBody(ctx), optional: false))!;
        RequestBody.OnlyFields(body, "title", "text");
        var d = await Store(ctx).AddDecisionAsync(board, Text(body, "title"), Text(body, "text"), Actor(ctx), Now(ctx), ctx.RequestAborted);
        return BureauApi.Json(new JsonObject { ["seq"] = d.Seq, ["title"] = d.Title, ["text"] = d.Text, ["by"] = d.By, ["at"] = d.At }, StatusCodes.Status201Created);
    }

    public static async Task<IResult> SetKeyAsync(HttpContext ctx, string board, string key)
    {
        var body = (await RequestBody.ReadAsync(ctx, MaxBody(ctx), optional: false))!;
        RequestBody.OnlyFields(body, "value", "expectedVersion");
        var expected = RequestBody.RequiredInteger(body, "expectedVersion");
        if (expected < 0) throw ApiException.BadField("expectedVersion", "expectedVersion must be 0 (the key must not exist) or more");
        var result = await Store(ctx).SetKeyAsync(board, key, RequestBody.RequiredString(body, "value"), expected, Actor(ctx), Now(ctx), ctx.RequestAborted);
        return result.Outcome == BoardChange.Applied
            ? BureauApi.Json(KeyDocument(result.Key!))
            : Problems.Create(StatusCodes.Status409Conflict, "key-conflict",
                result.Key is { } k ? $"key '{key}' of board '{board}' is at version {k.Version} (value '{k.Value}', set by {k.By}), not {expected}" : $"key '{key}' of board '{board}' does not exist; set it with expectedVersion 0",
                "expectedVersion", extra: new() { ["currentVersion"] = result.Key?.Version ?? 0, ["currentValue"] = result.Key?.Value });
    }

    private static JsonObject TaskDocument(BoardTask t) => new()
    {
        ["id"] = t.Id, ["title"] = t.Title, ["detail"] = t.Detail, ["status"] = WireNames.Of(t.Status), ["claimedBy"] = t.ClaimedBy,
        ["version"] = t.Version, ["note"] = t.Note, ["createdBy"] = t.CreatedBy, ["createdAt"] = t.CreatedAt, ["updatedAt"] = t.UpdatedAt,
    };

    private static JsonObject KeyDocument(BoardKey k) => new() { ["key"] = k.Key, ["value"] = k.Value, ["version"] = k.Version, ["by"] = k.By, ["at"] = k.At };
}

// Shapes for the OpenAPI document.
internal sealed record BoardTaskDoc(string Id, string Title, string? Detail, string Status, string? ClaimedBy, long Version, string? Note,
    string CreatedBy, DateTimeOffset CreatedAt, DateTimeOffset UpdatedAt);
internal sealed record BoardDecisionDoc(long Seq, string Title, string Text, string By, DateTimeOffset At);
internal sealed record BoardKeyDoc(string Key, string Value, long Version, string By, DateTimeOffset At);
internal sealed record BoardDoc(string Board, IReadOnlyList<BoardTaskDoc> Tasks, IReadOnlyList<BoardDecisionDoc> Decisions, IReadOnlyList<BoardKeyDoc> Keys);
