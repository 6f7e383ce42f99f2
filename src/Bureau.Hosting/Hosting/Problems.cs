using Microsoft.AspNetCore.Http;

namespace Bureau.Hosting;

/// <summary>An API error: becomes an <c>application/problem+json</c> answer naming the field, run and step concerned.</summary>
internal sealed class ApiException(int status, string code, string detail, string? field = null, string? runId = null, long? step = null)
    : Exception(detail)
{
    public int Status { get; } = status;
    public string Code { get; } = code;
    public string? Field { get; } = field;
    public string? RunId { get; } = runId;
    public long? Step { get; } = step;

    public static ApiException BadField(string field, string detail) => new(StatusCodes.Status400BadRequest, "invalid-request", detail, field);
}

internal static class Problems
{
    public static IResult From(ApiException ex) => Create(ex.Status, ex.Code, ex.Message, ex.Field, ex.RunId, ex.Step);

    public static IResult From(Exception ex) => ex switch
    {
        ApiException api => From(api),
        UnknownAgentException u => Create(StatusCodes.Status404NotFound, "unknown-agent", u.Message, "agent"),
        EmptyInputException e => Create(StatusCodes.Status400BadRequest, "empty-input", e.Message.Split(" (Parameter")[0], "input"),
        RunNotFoundException n => Create(StatusCodes.Status404NotFound, "run-not-found", n.Message, runId: n.RunId),
        RunStateConflictException c => Create(StatusCodes.Status409Conflict, "run-state-conflict", c.Message, runId: c.RunId, step: c.Step,
            extra: new() { ["runStatus"] = c.Status.ToWireName() }),
        StorageUnavailableException s => Unavailable(s),
        QueueFullException q => new WithRetryAfter(Create(StatusCodes.Status429TooManyRequests, "queue-full", q.Message, "agent",
            extra: new() { ["agent"] = q.Agent, ["queued"] = q.Queued, ["limit"] = q.Limit }), (int)Math.Ceiling(q.RetryAfter.TotalSeconds)),
        WorkforceInboxFullException w => new WithRetryAfter(Create(StatusCodes.Status429TooManyRequests, "inbox-full", w.Message, "skill",
            extra: new() { ["skill"] = w.Skill, ["queued"] = w.Queued, ["limit"] = w.Limit, ["global"] = w.Global }), (int)Math.Ceiling(w.RetryAfter.TotalSeconds)),
        DeadLetterNotFoundException d => Create(StatusCodes.Status404NotFound, "dead-letter-not-found", d.Message, "id"),
        BadHttpRequestException { StatusCode: StatusCodes.Status413PayloadTooLarge } b => Create(StatusCodes.Status413PayloadTooLarge, "body-too-large", b.Message, "body"),
        _ => throw ex,
    };

    /// <summary>
    /// 503 naming the cause (<c>code</c> storage-unavailable, <c>fault</c> disk-full, read-only, io-error,
    /// corrupt); nothing of the request was stored, so the client may send it again (Retry-After).
    /// </summary>
    private static IResult Unavailable(StorageUnavailableException s) => new WithRetryAfter(
        Create(StatusCodes.Status503ServiceUnavailable, "storage-unavailable",
            s.Message + (s.IsTransient
                ? "; nothing of this request was stored"
                : "; whether this request was stored is unknown: send it again with the same Idempotency-Key once the service is back"),
            extra: new() { ["fault"] = WireNames.Of(s.Fault) }),
        s.IsTransient ? 5 : 60);

    private sealed class WithRetryAfter(IResult inner, int seconds) : IResult
    {
        public Task ExecuteAsync(HttpContext httpContext)
        {
            httpContext.Response.Headers.RetryAfter = seconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
            return inner.ExecuteAsync(httpContext);
        }
    }

    public static IResult Create(int status, string code, string detail, string? field = null, string? runId = null, long? step = null,
        Dictionary<string, object?>? extra = null)
    {
        var extensions = extra ?? new Dictionary<string, object?>();
        extensions["code"] = code;
        if (field is not null) extensions["field"] = field;
        if (runId is not null) extensions["runId"] = runId;
        if (step is not null) extensions["step"] = step;
        return TypedResults.Problem(detail: detail, statusCode: status, title: Title(status), extensions: extensions);
    }

    private static string Title(int status) => status switch
    {
        400 => "Bad request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not found",
        405 => "Method not allowed",
        409 => "Conflict",
        413 => "Request body too large",
        415 => "Unsupported media type",
        503 => "Service unavailable",
        _ => "Error",
    };
}
