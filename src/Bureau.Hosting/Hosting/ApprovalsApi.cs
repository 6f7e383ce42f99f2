using System.Text.Json.Nodes;
using Bureau.Governance;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Bureau.Hosting;

/// <summary><c>/v1/approvals</c>: the approvals runs wait for, and their decisions.</summary>
internal static class ApprovalsApi
{
    private static BureauEngine Engine(HttpContext ctx) => ctx.RequestServices.GetRequiredService<BureauEngine>();

    /// <summary>The caller's name and the names it answers as: its key's name, its key id, its role. Admins answer any approval.</summary>
    internal static (string Actor, IReadOnlyCollection<string>? Roles) Identity(ApiCaller caller) =>
        caller.Role == ApiKeyRole.Admin
            ? (caller.Name ?? caller.Actor, null)
            : (caller.Name ?? caller.Actor, [caller.Role.ToWireName(), caller.Actor, .. caller.Name is null ? Array.Empty<string>() : [caller.Name]]);

    public static async Task<IResult> ListAsync(HttpContext ctx)
    {
        var state = ctx.Request.Query.TryGetValue("state", out var s) && s.ToString().Length > 0 ? s.ToString() : "open";
        if (state != "open") throw ApiException.BadField("state", $"state must be open (answered approvals are in the runs' journals), not '{state}'");
        var (_, roles) = Identity(ApiAccess.Caller(ctx));
        var items = new JsonArray();
        foreach (var a in await Engine(ctx).ListApprovalsAsync(cancellationToken: ctx.RequestAborted))
        {
            if (roles is not null && a.Wait.Approvers.Count > 0 && !a.Wait.Approvers.Any(roles.Contains)) continue; // not theirs to see
            items.Add(Doc(a));
        }
        return BureauApi.Json(new JsonObject { ["items"] = items });
    }

    public static async Task<IResult> DecideAsync(HttpContext ctx, string id)
    {
        var colon = id.LastIndexOf(':');
        if (colon <= 0 || !long.TryParse(id[(colon + 1)..], out var step) || step < 1)
            throw new ApiException(StatusCodes.Status404NotFound, "approval-not-found", $"'{id}' is not an approval id (RUN:STEP, as GET /v1/approvals lists them)", "id");
        var runId = id[..colon];
        var body = (await RequestBody.ReadAsync(ctx, ctx.RequestServices.GetRequiredService<IOptions<BureauHttpOptions>>().Value.MaxRequestBodyBytes, optional: false))!;
        RequestBody.OnlyFields(body, "decision", "reason", "arguments");
        var decisionText = RequestBody.RequiredString(body, "decision");
        var approve = decisionText switch
        {
            "approve" => true,
            "reject" => false,
            _ => throw ApiException.BadField("decision", $"'decision' must be approve or reject, not '{decisionText}'"),
        };
        var reason = RequestBody.OptionalString(body, "reason");
        string? arguments = null;
        if (body["arguments"] is { } args)
        {
            if (args is not JsonObject) throw ApiException.BadField("arguments", "'arguments' must be a JSON object: the tool call's edited arguments");
            if (!approve) throw ApiException.BadField("arguments", "'arguments' goes with approve (edited arguments), not with reject");
            arguments = args.ToJsonString();
        }
        var (actor, roles) = Identity(ApiAccess.Caller(ctx));
        try
        {
            var run = await Engine(ctx).DecideApprovalAsync(runId, step, new ApprovalDecision(approve, reason, arguments), actor, roles, ctx.RequestAborted);
            return BureauApi.Json(RunDocuments.Summary(run), StatusCodes.Status202Accepted);
        }
        catch (ApprovalForbiddenException ex)
        {
            throw new ApiException(StatusCodes.Status403Forbidden, "not-an-approver", ex.Message, runId: runId, step: step);
        }
        catch (ArgumentException ex) when (ex.ParamName == "decision")
        {
            throw new ApiException(StatusCodes.Status400BadRequest, "invalid-request", ex.Message.Split(" (Parameter")[0], "arguments", runId, step);
        }
    }

    private static JsonObject Doc(PendingApproval a)
    {
        var approvers = new JsonArray();
        foreach (var who in a.Wait.Approvers) approvers.Add(who);
        var votes = new JsonArray();
        foreach (var v in a.Votes) votes.Add(v);
        return new JsonObject
        {
            ["id"] = a.Id,
            ["runId"] = a.Run.Id,
            ["step"] = a.Wait.Step,
            ["agent"] = a.Run.Agent,
            ["tool"] = a.Wait.Tool,
            ["arguments"] = a.Wait.Arguments is null ? null : JsonNode.Parse(a.Wait.Arguments),
            ["question"] = a.Wait.Question,
            ["rule"] = a.Wait.Rule,
            ["level"] = a.Wait.Level,
            ["approvers"] = approvers,
            ["required"] = a.Wait.Required,
            ["approvedBy"] = votes,
            ["editableArguments"] = a.Wait.EditableArguments,
            ["deadline"] = a.Wait.Deadline,
            ["waitingSince"] = a.Run.UpdatedAt,
        };
    }
}
