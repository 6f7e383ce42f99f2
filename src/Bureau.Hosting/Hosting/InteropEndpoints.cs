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
    }
}
