using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Bureau.Hosting;

/// <summary>
/// The routes other ecosystems' clients speak (docs/interop.md): the OpenAI-compatible API and AG-UI. In the
/// <c>/v1</c> group, so the same API keys, roles and conventions apply; the OpenAI routes answer errors in
/// OpenAI's shape.
/// </summary>
internal static class InteropEndpoints
{
    public static void Map(RouteGroupBuilder v1)
    {
        v1.MapPost("/chat/completions", (Delegate)OpenAiApi.ChatCompletionsAsync).WithMetadata(new PermissionMetadata(ApiPermission.StartOrCancel), new OpenAiErrorShape())
            .WithTags("openai").WithName("OpenAiChatCompletions")
            .WithSummary("OpenAI-compatible chat completion: `model` names an agent or team; starts a durable run and answers with its output (stream: true for chat.completion.chunk events). Header x-bureau-run-id names the run.")
            .Produces(StatusCodes.Status200OK, contentType: "application/json").Produces(StatusCodes.Status200OK, contentType: "text/event-stream");
        v1.MapPost("/responses", (Delegate)OpenAiApi.ResponsesAsync).WithMetadata(new PermissionMetadata(ApiPermission.StartOrCancel), new OpenAiErrorShape())
            .WithTags("openai").WithName("OpenAiCreateResponse")
            .WithSummary("OpenAI-compatible Responses API: `model` names an agent or team; starts a durable run and answers with it as a response object (stream: true for response.* events).")
            .Produces(StatusCodes.Status200OK, contentType: "application/json").Produces(StatusCodes.Status200OK, contentType: "text/event-stream");
        v1.MapGet("/responses/{id}", (Delegate)OpenAiApi.GetResponseAsync).WithMetadata(new PermissionMetadata(ApiPermission.Read), new OpenAiErrorShape())
            .WithTags("openai").WithName("OpenAiGetResponse")
            .WithSummary("A run as a Responses API object (its id is the run's id): poll it after an answer that waited for an approval.");
        v1.MapGet("/models", (Delegate)OpenAiApi.Models).WithMetadata(new PermissionMetadata(ApiPermission.Read), new OpenAiErrorShape())
            .WithTags("openai").WithName("OpenAiListModels").WithSummary("The deployed agents and teams, as OpenAI models.");
        v1.MapGet("/models/{model}", (Delegate)OpenAiApi.Model).WithMetadata(new PermissionMetadata(ApiPermission.Read), new OpenAiErrorShape())
            .WithTags("openai").WithName("OpenAiGetModel").WithSummary("One deployed agent or team, as an OpenAI model.");

        // Any key passes the route; the handler asks for operator to start a run and approver to resume (answer approvals).
        v1.MapPost("/agents/{name}/agui", (Delegate)AguiApi.RunAsync).WithMetadata(new PermissionMetadata(ApiPermission.Read))
            .WithTags("ag-ui").WithName("AguiRunAgent")
            .WithSummary("AG-UI: POST a RunAgentInput, receive the run as AG-UI events (SSE). `resume` answers the interrupts (approvals) the last stream ended on (approver or admin).")
            .Produces(StatusCodes.Status200OK, contentType: "text/event-stream").ProducesProblem(400).ProducesProblem(403).ProducesProblem(404).ProducesProblem(409)
            .ProducesProblem(413).ProducesProblem(415).ProducesProblem(429).ProducesProblem(503);
        v1.MapGet("/runs/{id}/agui", (Delegate)AguiApi.StreamRunAsync).WithMetadata(new PermissionMetadata(ApiPermission.Read))
            .WithTags("ag-ui").WithName("AguiRunEvents")
            .WithSummary("AG-UI: a run's journal from its first step as AG-UI events (SSE), live until it ends (RUN_FINISHED, RUN_ERROR) or waits for a person (RUN_FINISHED with outcome interrupt).")
            .Produces(StatusCodes.Status200OK, contentType: "text/event-stream").ProducesProblem(404);
    }
}
