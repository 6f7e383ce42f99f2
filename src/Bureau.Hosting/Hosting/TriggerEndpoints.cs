using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Bureau.Hosting;

/// <summary>The routes of triggers: webhooks (their own group: authenticated by signature, not by API key) and CloudEvents (under <c>/v1</c>, with a key).</summary>
internal static class TriggerEndpoints
{
    public static void Map(IEndpointRouteBuilder endpoints, RouteGroupBuilder v1)
    {
        // Not in the /v1 group: a webhook's sender has no API key; its signature is checked instead (WebhookApi).
        var hooks = endpoints.MapGroup("/v1/hooks").WithTags("triggers");
        hooks.AddEndpointFilter(async (ctx, next) =>
        {
            try
            {
                return await next(ctx);
            }
            catch (Exception ex) when (ex is ApiException or UnknownAgentException or EmptyInputException or StorageUnavailableException or QueueFullException or WorkforceInboxFullException
                                       or BadHttpRequestException { StatusCode: StatusCodes.Status413PayloadTooLarge })
            {
                if (ctx.HttpContext.Response.HasStarted) throw;
                return Problems.From(ex);
            }
        });
        hooks.MapPost("/{trigger}", WebhookApi.ReceiveAsync)
            .WithName("ReceiveWebhook").WithSummary("A webhook trigger's deliveries (GitHub, Slack, Standard Webhooks, HMAC): verified by signature, 202 once the run is durable, 200 with the same run for a delivery seen before.")
            .Produces<WebhookAnswerDoc>(StatusCodes.Status202Accepted).Produces<WebhookAnswerDoc>(StatusCodes.Status200OK)
            .ProducesProblem(400).ProducesProblem(401).ProducesProblem(404).ProducesProblem(413).ProducesProblem(429).ProducesProblem(503);

        v1.MapPost("/events", (Delegate)EventsApi.PublishAsync).WithMetadata(new PermissionMetadata(ApiPermission.StartOrCancel))
            .WithName("PublishEvent").WithSummary("A CloudEvent 1.0 (structured or binary mode): every topic trigger subscribed to its type starts a run (idempotent by event id).")
            .Produces<PublishedEventDoc>(StatusCodes.Status202Accepted).Produces<PublishedEventDoc>(StatusCodes.Status200OK)
            .ProducesProblem(400).ProducesProblem(404).ProducesProblem(413).ProducesProblem(415).ProducesProblem(429).ProducesProblem(503);

        v1.MapGet("/events/dead", (Delegate)EventsApi.ListDeadAsync).WithMetadata(new PermissionMetadata(ApiPermission.Read))
            .WithName("ListDeadLetters").WithSummary("Events whose handling failed (their run was refused, or failed): newest first; ?all=true includes retried ones.")
            .Produces<DeadLetterListDoc>().ProducesProblem(400);
        v1.MapGet("/events/dead/{id}", (Delegate)EventsApi.GetDeadAsync).WithMetadata(new PermissionMetadata(ApiPermission.Read))
            .WithName("GetDeadLetter").WithSummary("One dead letter, with the event it kept.").Produces<DeadLetterWithEventDoc>().ProducesProblem(404);
        v1.MapPost("/events/dead/{id}/retry", (Delegate)EventsApi.RetryDeadAsync).WithMetadata(new PermissionMetadata(ApiPermission.StartOrCancel))
            .WithName("RetryDeadLetter").WithSummary("Starts the dead letter's run again (the input rendered with the trigger as deployed now); 202 with the run.")
            .Produces<DeadLetterRetryDoc>(StatusCodes.Status202Accepted).Produces<DeadLetterRetryDoc>(StatusCodes.Status200OK)
            .ProducesProblem(400).ProducesProblem(404).ProducesProblem(429).ProducesProblem(503);
    }
}
