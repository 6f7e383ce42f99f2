using Bureau.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Microsoft.OpenApi;

namespace Bureau;

/// <summary>Maps Bureau's HTTP API.</summary>
public static class BureauEndpointRouteBuilderExtensions
{
    /// <summary>
    /// Maps the REST API under <c>/v1</c> (runs, their live events, agents, keys, CloudEvents; the OpenAI-compatible
    /// <c>/v1/chat/completions</c>, <c>/v1/responses</c> and <c>/v1/models</c>; AG-UI streams), webhooks at
    /// <c>/v1/hooks/{trigger}</c> (authenticated by their signature, not by a key), <c>/healthz</c>,
    /// <c>/readyz</c> and, unless <see cref="BureauHttpOptions.MapOpenApi"/> is off, the OpenAPI document at
    /// <c>/openapi/v1.json</c>. Every <c>/v1</c> route checks the caller's API key and role. Under <c>/v1</c>, a path no
    /// endpoint has is a 404 problem and a path with the wrong method a 405 problem naming the methods it allows.
    /// Returns the <c>/v1</c> group, for adding conventions (CORS, rate limiting, ...).
    /// </summary>
    public static RouteGroupBuilder MapBureau(this IEndpointRouteBuilder endpoints)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        if (endpoints.ServiceProvider.GetService<ApiAccess>() is null)
            throw new InvalidOperationException("MapBureau() needs the API's services: call builder.Services.AddBureau().AddHttpApi() (and a Use*Storage) first");
        var options = endpoints.ServiceProvider.GetRequiredService<IOptions<BureauHttpOptions>>().Value;

        endpoints.MapGet("/healthz", BureauApi.Alive)
            .WithTags("health").WithSummary("Liveness: the process answers and needs no restart (503 after a failed fsync latched the store).").ExcludeFromDescription();
        endpoints.MapGet("/readyz", BureauApi.Ready)
            .WithTags("health").WithSummary("Readiness: store open and writable, silo up, unfinished runs scheduled.").ExcludeFromDescription();
        if (options.MapOpenApi) endpoints.MapOpenApi();

        var v1 = endpoints.MapGroup("/v1").WithTags("bureau");
        v1.AddEndpointFilter(async (ctx, next) =>
        {
            if (ctx.HttpContext.GetEndpoint()?.Metadata.GetMetadata<NoSuchEndpoint.Marker>() is not null) return await next(ctx);
            try
            {
                var permission = ctx.HttpContext.GetEndpoint()?.Metadata.GetMetadata<PermissionMetadata>()?.Permission ?? ApiPermission.ManageKeys;
                await ctx.HttpContext.RequestServices.GetRequiredService<ApiAccess>().AuthorizeAsync(ctx.HttpContext, permission);
                return await next(ctx);
            }
            catch (Exception ex) when (ex is ApiException or UnknownAgentException or EmptyInputException or RunNotFoundException or RunStateConflictException or QueueFullException or DeadLetterNotFoundException
                                       or WorkforceInboxFullException
                                       or StorageUnavailableException or BadHttpRequestException { StatusCode: StatusCodes.Status413PayloadTooLarge })
            {
                if (ctx.HttpContext.Response.HasStarted) throw;
                return OpenAiErrors.Wants(ctx.HttpContext) ? OpenAiErrors.From(ex) : Problems.From(ex);
            }
        });

        v1.MapPost("/runs", (Delegate)BureauApi.SubmitAsync).Needs(ApiPermission.StartOrCancel)
            .WithName("StartRun").WithSummary("Start a run (durable before the answer). Header Idempotency-Key: the same key returns the same run.")
            .Body<StartRunBody>()
            .Produces<RunSummaryDoc>(StatusCodes.Status202Accepted).Produces<RunSummaryDoc>(StatusCodes.Status200OK)
            .ProducesProblem(400).ProducesProblem(404).ProducesProblem(409).ProducesProblem(413).ProducesProblem(415).ProducesProblem(429).ProducesProblem(503);
        v1.MapGet("/runs", (Delegate)BureauApi.ListAsync).Needs(ApiPermission.Read)
            .WithName("ListRuns").WithSummary("Runs, newest first, filtered by status, agent and parent run (a team's members), paged with a cursor.")
            .Produces<RunListDoc>().ProducesProblem(400);
        v1.MapGet("/runs/{id}", BureauApi.GetAsync).Needs(ApiPermission.Read)
            .WithName("GetRun").WithSummary("A run with every step of its journal (the document of `bureau runs show --json`).")
            .Produces<RunDoc>().ProducesProblem(404);
        v1.MapPost("/runs/{id}/cancel", BureauApi.CancelAsync).Needs(ApiPermission.StartOrCancel)
            .WithName("CancelRun").WithSummary("Cancel an unfinished run. Optional body {\"reason\"}.")
            .Body<CancelRunBody>()
            .Produces<RunSummaryDoc>(StatusCodes.Status202Accepted).ProducesProblem(400).ProducesProblem(404).ProducesProblem(409).ProducesProblem(413).ProducesProblem(415).ProducesProblem(503);
        v1.MapPost("/runs/{id}/resolve", BureauApi.ResolveAsync).Needs(ApiPermission.Resolve)
            .WithName("ResolveStep").WithSummary("Decide the in-doubt step a waiting run waits on: done, retry or failed.")
            .Body<ResolveStepBody>()
            .Produces<RunSummaryDoc>(StatusCodes.Status202Accepted).ProducesProblem(400).ProducesProblem(404).ProducesProblem(409).ProducesProblem(413).ProducesProblem(415).ProducesProblem(503);
        v1.MapPost("/runs/{id}/rollback", BureauApi.RollbackAsync).Needs(ApiPermission.StartOrCancel)
            .WithName("RollbackRun").WithSummary("Compensate a finished run's completed writes, newest first (a rollback run, a child of it); asking again returns the same rollback.")
            .Produces<RunSummaryDoc>(StatusCodes.Status202Accepted).Produces<RunSummaryDoc>(StatusCodes.Status200OK).ProducesProblem(400).ProducesProblem(404).ProducesProblem(409)
            .ProducesProblem(413).ProducesProblem(415).ProducesProblem(503);
        v1.MapPost("/runs/{id}/replay", ReplayApi.ReplayAsync).Needs(ApiPermission.Read)
            .WithName("ReplayRun").WithSummary("Replay a finished run against its journal (no model or tool call, nothing written) and say whether the engine reproduces its steps, or the first step it does differently.")
            .Produces<ReplayCheckDoc>().ProducesProblem(400).ProducesProblem(404).ProducesProblem(409).ProducesProblem(413).ProducesProblem(415);
        v1.MapPost("/runs/{id}/whatif", ReplayApi.WhatIfAsync).Needs(ApiPermission.StartOrCancel)
            .WithName("WhatIfRun").WithSummary("Fork a finished run after step `fromStep` with another `model` or `instructions` (write tools left out unless `allowWrites`), in a throwaway store; answers both runs' steps side by side and where they diverge.")
            .Body<WhatIfBody>()
            .Produces<WhatIfDoc>().ProducesProblem(400).ProducesProblem(404).ProducesProblem(409).ProducesProblem(413).ProducesProblem(415);
        v1.MapGet("/approvals", (Delegate)ApprovalsApi.ListAsync).Needs(ApiPermission.Resolve)
            .WithName("ListApprovals").WithSummary("Approvals runs wait for (?state=open), those the caller may answer: the proposed tool call, approvers, level, deadline.")
            .Produces<ApprovalListDoc>().ProducesProblem(400);
        v1.MapPost("/approvals/{id}/decision", ApprovalsApi.DecideAsync).Needs(ApiPermission.Resolve)
            .WithName("DecideApproval").WithSummary("Approve (optionally with edited arguments) or reject; the first decisive answer wins, a later one is 409 naming who answered.")
            .Body<ApprovalDecisionBody>()
            .Produces<RunSummaryDoc>(StatusCodes.Status202Accepted).ProducesProblem(400).ProducesProblem(403).ProducesProblem(404).ProducesProblem(409).ProducesProblem(413).ProducesProblem(415).ProducesProblem(503);
        v1.MapGet("/runs/{id}/events", RunEventStream.StreamAsync).Needs(ApiPermission.Read)
            .WithName("RunEvents").WithSummary("Server-Sent Events: one per journal entry (id = step n, event = kind), then `end`. Resumes from Last-Event-ID.")
            .Produces(StatusCodes.Status200OK, contentType: "text/event-stream").ProducesProblem(404);
        v1.MapGet("/runs/events", (Delegate)RunListStream.StreamAsync).Needs(ApiPermission.Read)
            .WithName("RunListEvents").WithSummary("Server-Sent Events: `run` with a run's summary each time a run is submitted, waits, resumes or ends (`resync`: read the list again). Nothing is replayed.")
            .Produces(StatusCodes.Status200OK, contentType: "text/event-stream");
        v1.MapGet("/agents", BureauApi.Agents).Needs(ApiPermission.Read)
            .WithName("ListAgents").WithSummary("The deployed agents and teams.").Produces<AgentListDoc>();
        v1.MapGet("/agents/{name}", BureauApi.Agent).Needs(ApiPermission.Read)
            .WithName("GetAgent").WithSummary("One deployed agent (model, tools, budgets) or team (pattern, members).").Produces<AgentDoc>().ProducesProblem(404);
        v1.MapGet("/health/dependencies", DependencyApi.Dependencies).Needs(ApiPermission.Read)
            .WithName("DependencyHealth").WithSummary("The models and tools this process calls: circuit breaker state (and when an open one is tried again), calls, failures, rejections, in flight.")
            .Produces<DependencyListDoc>();
        v1.MapGet("/failures", (Delegate)DependencyApi.FailuresAsync).Needs(ApiPermission.Read)
            .WithName("RunFailures").WithSummary("Failed and canceled runs grouped by cause and dependency (count, first and last seen, an example run, a hint); ?since=TIME.")
            .Produces<FailureListDoc>().ProducesProblem(400);
        v1.MapGet("/costs", (Delegate)CostsApi.GetAsync).Needs(ApiPermission.Read)
            .WithName("Costs").WithSummary("Tokens and cost per agent or per UTC day (?by=agent|day, ?since=DAY|TIME, ?until=DAY|TIME, until exclusive); team runs are not counted, their members are.")
            .Produces<CostReportDoc>().ProducesProblem(400);
        v1.MapGet("/keys", (Delegate)BureauApi.ListKeysAsync).Needs(ApiPermission.ManageKeys)
            .WithName("ListKeys").WithSummary("API keys (ids, roles, dates; never the secret); ?revoked=true includes revoked ones.").Produces<KeyListDoc>();
        v1.MapPost("/keys", (Delegate)BureauApi.CreateKeyAsync).Needs(ApiPermission.ManageKeys)
            .WithName("CreateKey").WithSummary("Create an API key; the answer is the only time the key is shown.")
            .Body<CreateKeyBody>().Produces<CreatedKeyDoc>(StatusCodes.Status201Created).ProducesProblem(400).ProducesProblem(413).ProducesProblem(415).ProducesProblem(503);
        v1.MapDelete("/keys/{id}", BureauApi.RevokeKeyAsync).Needs(ApiPermission.ManageKeys)
            .WithName("RevokeKey").WithSummary("Revoke an API key.").Produces(StatusCodes.Status204NoContent).ProducesProblem(404).ProducesProblem(503);
        TriggerEndpoints.Map(endpoints, v1);
        InteropEndpoints.Map(v1);
        SlackApprovalsApi.Map(endpoints);
        MemoryApi.Map(v1);
        BoardsApi.Map(v1);
        WorkforceApi.Map(v1);
        if (options.MapMcp) McpAgentServer.Map(endpoints).ExcludeFromDescription();
        Bureau.Hosting.A2A.A2AEndpoints.Map(endpoints);
        NoSuchEndpoint.Map(v1); // 404 and 405 under /v1 as problems (the lowest priority: every endpoint above wins)
        return v1;
    }

    // Documents the JSON body without IAcceptsMetadata: routing would answer a wrong Content-Type with a
    // bare 415 before the handler could write a problem naming the header.
    internal static RouteHandlerBuilder Body<T>(this RouteHandlerBuilder builder) =>
        builder.AddOpenApiOperationTransformer(async (operation, context, ct) =>
        {
            var schema = await context.GetOrCreateSchemaAsync(typeof(T), null, ct);
            operation.RequestBody = new OpenApiRequestBody
            {
                Required = typeof(T) != typeof(CancelRunBody),
                Content = new Dictionary<string, OpenApiMediaType> { ["application/json"] = new() { Schema = schema } },
            };
        });

    private static RouteHandlerBuilder Needs(this RouteHandlerBuilder builder, ApiPermission permission) =>
        builder.WithMetadata(new PermissionMetadata(permission));
}
