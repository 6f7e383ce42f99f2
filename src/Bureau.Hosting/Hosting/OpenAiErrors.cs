using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;

namespace Bureau.Hosting;

/// <summary>Marks a route whose errors are written in OpenAI's shape instead of problem+json (the OpenAI-compatible routes).</summary>
internal sealed record OpenAiErrorShape;

/// <summary>
/// Errors as OpenAI's API writes them: <c>{"error":{"message","type","param","code"}}</c>, with the status
/// OpenAI uses for the same case (400 invalid_request_error naming the field in <c>param</c>, 401, 403, 404
/// model_not_found, 429, 503), so OpenAI clients raise their usual exceptions.
/// </summary>
internal static class OpenAiErrors
{
    public static bool Wants(HttpContext ctx) => ctx.GetEndpoint()?.Metadata.GetMetadata<OpenAiErrorShape>() is not null;

    public static JsonObject Body(string message, string type, string? param, string? code) => new()
    {
        ["error"] = new JsonObject { ["message"] = message, ["type"] = type, ["param"] = param, ["code"] = code },
    };

    public static IResult Create(int status, string message, string type, string? param = null, string? code = null, string? runId = null, int? retryAfter = null) =>
        new ErrorResult(status, Body(message, type, param, code), runId, retryAfter);

    /// <summary>The OpenAI-shaped answer for what the <c>/v1</c> filter catches (the same exceptions <see cref="Problems.From(Exception)"/> maps).</summary>
    public static IResult From(Exception ex) => ex switch
    {
        ApiException { Status: 401 } a => Create(401, a.Message, "invalid_request_error", a.Field, "invalid_api_key"),
        ApiException { Status: 403 } a => Create(403, a.Message, "permission_error", a.Field, "insufficient_permissions"),
        ApiException { Status: 404 } a => Create(404, a.Message, "invalid_request_error", a.Field, a.Code.Replace('-', '_'), a.RunId),
        ApiException { Status: 409 } a => Create(409, a.Message, "invalid_request_error", a.Field, a.Code.Replace('-', '_'), a.RunId),
        ApiException { Status: 413 } a => Create(413, a.Message, "invalid_request_error", a.Field, "request_too_large"),
        ApiException { Status: 415 } a => Create(415, a.Message, "invalid_request_error", a.Field, "unsupported_media_type"),
        ApiException a => Create(a.Status, a.Message, a.Status >= 500 ? "server_error" : "invalid_request_error", a.Field, a.Code == "invalid-request" ? null : a.Code.Replace('-', '_'), a.RunId),
        UnknownAgentException u => Create(404, u.Message, "invalid_request_error", "model", "model_not_found"),
        EmptyInputException e => Create(400, e.Message.Split(" (Parameter")[0], "invalid_request_error", "messages", "empty_input"),
        RunNotFoundException n => Create(404, n.Message, "invalid_request_error", null, "not_found", n.RunId),
        RunStateConflictException c => Create(409, c.Message, "invalid_request_error", null, "run_state_conflict", c.RunId),
        QueueFullException q => Create(429, q.Message, "rate_limit_error", "model", "queue_full", retryAfter: (int)Math.Ceiling(q.RetryAfter.TotalSeconds)),
        WorkforceInboxFullException w => Create(429, w.Message, "rate_limit_error", null, "inbox_full", retryAfter: (int)Math.Ceiling(w.RetryAfter.TotalSeconds)),
        StorageUnavailableException s => Create(503, s.Message + "; nothing of this request was stored unless it said otherwise", "server_error", null, "storage_unavailable",
            retryAfter: s.IsTransient ? 5 : 60),
        DeadLetterNotFoundException d => Create(404, d.Message, "invalid_request_error", "id", "not_found"),
        BadHttpRequestException { StatusCode: StatusCodes.Status413PayloadTooLarge } b => Create(413, b.Message, "invalid_request_error", null, "request_too_large"),
        _ => throw ex,
    };

    private sealed class ErrorResult(int status, JsonObject body, string? runId, int? retryAfter) : IResult
    {
        public Task ExecuteAsync(HttpContext httpContext)
        {
            var response = httpContext.Response;
            response.StatusCode = status;
            if (runId is not null) response.Headers[OpenAiApi.RunIdHeader] = runId;
            if (retryAfter is { } s) response.Headers.RetryAfter = s.ToString(System.Globalization.CultureInfo.InvariantCulture);
            response.ContentType = "application/json; charset=utf-8";
            return response.WriteAsync(body.ToJsonString(RunDocuments.JsonOptions), Encoding.UTF8);
        }
    }
}
