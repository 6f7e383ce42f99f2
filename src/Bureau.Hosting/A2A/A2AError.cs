using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;

namespace Bureau.Hosting.A2A;

/// <summary>The A2A errors Bureau answers with: one kind, written as each binding writes it.</summary>
internal enum A2AErrorKind
{
    /// <summary>JSON-RPC -32700: the body is not JSON.</summary>
    ParseError,
    /// <summary>JSON-RPC -32600: not a JSON-RPC request (or the caller is not let in: then the HTTP status says 401 or 403).</summary>
    InvalidRequest,
    /// <summary>JSON-RPC -32601.</summary>
    MethodNotFound,
    /// <summary>JSON-RPC -32602: a parameter is missing or wrong (the field is named).</summary>
    InvalidParams,
    /// <summary>JSON-RPC -32603.</summary>
    Internal,
    /// <summary>-32001.</summary>
    TaskNotFound,
    /// <summary>-32002.</summary>
    TaskNotCancelable,
    /// <summary>-32003.</summary>
    PushNotificationNotSupported,
    /// <summary>-32004.</summary>
    UnsupportedOperation,
    /// <summary>-32005.</summary>
    ContentTypeNotSupported,
    /// <summary>-32009.</summary>
    VersionNotSupported,
}

/// <summary>An A2A error; <see cref="HttpStatus"/> is the status a REST answer (and a refused JSON-RPC caller) gets.</summary>
internal sealed class A2AException(A2AErrorKind kind, string message, string? field = null, int? httpStatus = null, string? taskId = null) : Exception(message)
{
    public A2AErrorKind Kind { get; } = kind;
    public string? Field { get; } = field;
    public string? TaskId { get; } = taskId;
    public int HttpStatus { get; } = httpStatus ?? DefaultStatus(kind);

    public static A2AException BadParam(string field, string message) => new(A2AErrorKind.InvalidParams, message, field);

    public int JsonRpcCode => Kind switch
    {
        A2AErrorKind.ParseError => -32700,
        A2AErrorKind.InvalidRequest => -32600,
        A2AErrorKind.MethodNotFound => -32601,
        A2AErrorKind.InvalidParams => -32602,
        A2AErrorKind.TaskNotFound => -32001,
        A2AErrorKind.TaskNotCancelable => -32002,
        A2AErrorKind.PushNotificationNotSupported => -32003,
        A2AErrorKind.UnsupportedOperation => -32004,
        A2AErrorKind.ContentTypeNotSupported => -32005,
        A2AErrorKind.VersionNotSupported => -32009,
        _ => -32603,
    };

    /// <summary>The <c>google.rpc.ErrorInfo</c> reason (REST) of the A2A errors; null for the generic ones.</summary>
    public string? Reason => Kind switch
    {
        A2AErrorKind.TaskNotFound => "TASK_NOT_FOUND",
        A2AErrorKind.TaskNotCancelable => "TASK_NOT_CANCELABLE",
        A2AErrorKind.PushNotificationNotSupported => "PUSH_NOTIFICATION_NOT_SUPPORTED",
        A2AErrorKind.UnsupportedOperation => "UNSUPPORTED_OPERATION",
        A2AErrorKind.ContentTypeNotSupported => "CONTENT_TYPE_NOT_SUPPORTED",
        A2AErrorKind.VersionNotSupported => "VERSION_NOT_SUPPORTED",
        A2AErrorKind.InvalidParams or A2AErrorKind.ParseError => "INVALID_PARAMS",
        _ => null,
    };

    private static int DefaultStatus(A2AErrorKind kind) => kind switch
    {
        A2AErrorKind.TaskNotFound or A2AErrorKind.MethodNotFound => StatusCodes.Status404NotFound,
        A2AErrorKind.TaskNotCancelable => StatusCodes.Status409Conflict,
        A2AErrorKind.Internal => StatusCodes.Status500InternalServerError,
        _ => StatusCodes.Status400BadRequest,
    };

    private static string StatusName(int status) => status switch
    {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "FAILED_PRECONDITION",
        413 => "INVALID_ARGUMENT",
        415 => "INVALID_ARGUMENT",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        _ => "INTERNAL",
    };

    /// <summary>What Bureau adds to both shapes: the field, the task.</summary>
    private JsonObject Extra()
    {
        var data = new JsonObject();
        if (Field is not null) data["field"] = Field;
        if (TaskId is not null) data["taskId"] = TaskId;
        return data;
    }

    /// <summary>The JSON-RPC <c>error</c> member.</summary>
    public JsonObject ToJsonRpcError()
    {
        var error = new JsonObject { ["code"] = JsonRpcCode, ["message"] = Message };
        var data = Extra();
        if (data.Count > 0) error["data"] = data;
        return error;
    }

    /// <summary>The REST binding's body: <c>{"error": google.rpc.Status}</c> with an <c>ErrorInfo</c> detail naming the A2A reason.</summary>
    public JsonObject ToRestBody()
    {
        var details = new JsonArray();
        var metadata = new JsonObject();
        foreach (var (k, v) in Extra()) metadata[k] = v?.DeepClone();
        if (Reason is { } reason || metadata.Count > 0)
        {
            var info = new JsonObject
            {
                ["@type"] = "type.googleapis.com/google.rpc.ErrorInfo",
                ["reason"] = Reason ?? StatusName(HttpStatus),
                ["domain"] = "a2a-protocol.org",
            };
            if (metadata.Count > 0) info["metadata"] = metadata;
            details.Add(info);
        }
        return new JsonObject
        {
            ["error"] = new JsonObject { ["code"] = HttpStatus, ["status"] = StatusName(HttpStatus), ["message"] = Message, ["details"] = details },
        };
    }

    /// <summary>Bureau's own exceptions (the engine's, the API's) as A2A errors; null for an exception that is a bug.</summary>
    public static A2AException? From(Exception ex) => ex switch
    {
        A2AException a => a,
        RunNotFoundException n => new A2AException(A2AErrorKind.TaskNotFound, $"task {n.RunId} does not exist", "id", taskId: n.RunId),
        RunStateConflictException c => new A2AException(A2AErrorKind.TaskNotCancelable, c.Message, "id", taskId: c.RunId),
        UnknownAgentException u => new A2AException(A2AErrorKind.InvalidParams, u.Message, "metadata.agent", StatusCodes.Status404NotFound),
        EmptyInputException e => BadParam("message.parts", e.Message.Split(" (Parameter")[0]),
        QueueFullException q => new A2AException(A2AErrorKind.Internal, q.Message, httpStatus: StatusCodes.Status429TooManyRequests),
        StorageUnavailableException s => new A2AException(A2AErrorKind.Internal, s.Message + "; nothing of this request was stored unless the same messageId finds it", httpStatus: StatusCodes.Status503ServiceUnavailable),
        ApiException api => new A2AException(api.Status is 401 or 403 ? A2AErrorKind.InvalidRequest : A2AErrorKind.InvalidParams, api.Message, api.Field, api.Status),
        BadHttpRequestException { StatusCode: StatusCodes.Status413PayloadTooLarge } b => new A2AException(A2AErrorKind.InvalidRequest, b.Message, "body", 413),
        _ => null,
    };
}
