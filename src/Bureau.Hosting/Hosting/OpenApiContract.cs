using Microsoft.AspNetCore.OpenApi;
using Microsoft.OpenApi;

namespace Bureau.Hosting;

/// <summary>
/// What the OpenAPI document says beyond the endpoints' own metadata: who may call (an HTTP bearer
/// scheme, the API key), the answers every key-checked route can give (401, 403), the license, the
/// tags, and a server address without a trailing slash. Checked by <c>redocly lint</c> in the tests.
/// </summary>
internal static class OpenApiContract
{
    /// <summary>The security scheme's name in <c>components.securitySchemes</c>.</summary>
    public const string Scheme = "apiKey";

    /// <summary>Operations that authenticate by a signature of their own, not by an API key.</summary>
    private static readonly HashSet<string> s_signed = new(StringComparer.Ordinal) { "ReceiveWebhook", "SlackApprovalAction" };

    public static void Configure(OpenApiOptions options)
    {
        options.AddDocumentTransformer((document, _, _) =>
        {
            Document(document);
            return Task.CompletedTask;
        });
        options.AddSchemaTransformer((schema, context, _) =>
        {
            var type = context.JsonTypeInfo.Type;
            // Open shapes: a journal entry's and a wait's own fields follow their kind.
            if (type == typeof(StepDoc) || type == typeof(WaitingForDoc)) schema.AdditionalProperties = new OpenApiSchema();
            else if (type == typeof(Microsoft.AspNetCore.Mvc.ProblemDetails)) Problem(schema);
            return Task.CompletedTask;
        });
        options.AddOperationTransformer((operation, context, _) =>
        {
            var openAi = context.Description.ActionDescriptor.EndpointMetadata.OfType<OpenAiErrorShape>().Any();
            Operation(operation, openAi, string.Equals(context.Description.HttpMethod, "POST", StringComparison.OrdinalIgnoreCase));
            return Task.CompletedTask;
        });
    }

    private static void Document(OpenApiDocument document)
    {
        document.Info ??= new OpenApiInfo();
        document.Info.Title = "Bureau";
        document.Info.Description = "Bureau's REST API: start, watch, cancel and resolve durable agent runs; approvals, events, webhooks, keys, costs and health. " +
            "Errors are application/problem+json naming the field, run and step concerned.";
        document.Info.License = new OpenApiLicense { Name = "MIT", Identifier = "MIT" };
        if (document.Servers is { } servers)
            foreach (var server in servers)
                if (server.Url is { Length: > 1 } url && url.EndsWith('/')) server.Url = url.TrimEnd('/');

        document.Components ??= new OpenApiComponents();
        document.Components.Schemas ??= new Dictionary<string, IOpenApiSchema>();
        document.Components.Schemas[OpenAiErrorSchema] = OpenAiError();
        document.Components.SecuritySchemes ??= new Dictionary<string, IOpenApiSecurityScheme>();
        document.Components.SecuritySchemes[Scheme] = new OpenApiSecurityScheme
        {
            Type = SecuritySchemeType.Http,
            Scheme = "bearer",
            Description = "An API key (`bureau keys create --role ROLE`, or POST /v1/keys), sent as `Authorization: Bearer KEY`. " +
                "A host that requires no keys (loopback only, no key created) lets loopback callers in without one.",
        };
        document.Security = [new OpenApiSecurityRequirement { [new OpenApiSecuritySchemeReference(Scheme, document)] = [] }];

        document.Tags ??= new HashSet<OpenApiTag>();
        foreach (var tag in document.Tags)
        {
            tag.Description ??= tag.Name switch
            {
                "bureau" => "Runs, approvals, agents, keys, costs and health: every route checks the caller's API key and role.",
                "triggers" => "Webhooks (authenticated by their signature) and CloudEvents that start runs.",
                "openai" => "OpenAI-compatible chat completions, responses and models: `model` names a deployed agent or team; errors in OpenAI's shape.",
                "ag-ui" => "AG-UI event streams of runs, for agent front ends.",
                _ => tag.Name,
            };
        }
    }

    /// <summary>Bureau's problems name what is wrong and where: <c>code</c>, <c>field</c>, <c>runId</c>, <c>step</c>, and fields of their own (a 409's <c>runStatus</c>, a 429's <c>agent</c>, <c>queued</c>, <c>limit</c>, a 503's <c>fault</c>).</summary>
    private static void Problem(OpenApiSchema schema)
    {
        schema.Properties ??= new Dictionary<string, IOpenApiSchema>();
        schema.Properties["code"] = new OpenApiSchema { Type = JsonSchemaType.String, Description = "What went wrong, for programs: invalid-request, run-not-found, unknown-agent, queue-full, storage-unavailable, ..." };
        schema.Properties["field"] = new OpenApiSchema { Type = JsonSchemaType.String | JsonSchemaType.Null, Description = "The request's field, header or parameter at fault." };
        schema.Properties["runId"] = new OpenApiSchema { Type = JsonSchemaType.String | JsonSchemaType.Null, Description = "The run concerned." };
        schema.Properties["step"] = new OpenApiSchema { Type = JsonSchemaType.Integer | JsonSchemaType.Null, Format = "int64", Description = "The run's step concerned." };
        schema.AdditionalProperties = new OpenApiSchema();
    }

    private static void Operation(OpenApiOperation operation, bool openAiErrors, bool post)
    {
        if (operation.OperationId is { } id && s_signed.Contains(id))
        {
            operation.Security = [];   // signed by the sender (GitHub, Slack, Standard Webhooks, HMAC), no API key
            return;
        }
        operation.Responses ??= new OpenApiResponses();
        Add(operation.Responses, "401", "No API key, or one that is unknown or revoked (a host that requires keys).", openAiErrors);
        Add(operation.Responses, "403", "The key's role does not allow this.", openAiErrors);
        if (!openAiErrors) return;
        // The OpenAI-compatible routes answer errors in OpenAI's shape, not as problems (docs/interop.md).
        Add(operation.Responses, "400", "The request is not valid: error.param names the field.", openAiErrors);
        Add(operation.Responses, "404", "No deployed agent or team has that name (model_not_found), or no such run.", openAiErrors);
        if (!post) return;
        // A POST starts a run: its body is read strictly and the run is stored before anything is answered.
        Add(operation.Responses, "413", "The body is larger than Bureau:MaxRequestBodyBytes (request_too_large); nothing was done.", openAiErrors);
        Add(operation.Responses, "415", "The body is not sent as application/json (unsupported_media_type).", openAiErrors);
        Add(operation.Responses, "429", "The agent's run queue is full (queue_full); Retry-After says when to send again. Nothing was stored.", openAiErrors);
        Add(operation.Responses, "503", "The store cannot write (storage_unavailable); nothing was stored.", openAiErrors);
        if (operation.OperationId == "OpenAiChatCompletions")
            Add(operation.Responses, "422", "The run failed or was canceled (run_failed, run_canceled; code: its outcome); x-bureau-run-id names it.", openAiErrors);
    }

    private static void Add(OpenApiResponses responses, string status, string description, bool openAiErrors)
    {
        if (responses.ContainsKey(status)) return;
        responses[status] = new OpenApiResponse
        {
            Description = description,
            Content = new Dictionary<string, OpenApiMediaType>
            {
                [openAiErrors ? "application/json" : "application/problem+json"] = new() { Schema = new OpenApiSchemaReference(openAiErrors ? OpenAiErrorSchema : "ProblemDetails") },
            },
        };
    }

    private const string OpenAiErrorSchema = "OpenAiError";

    /// <summary>OpenAI's error body: <c>{"error":{"message","type","param","code"}}</c>.</summary>
    private static OpenApiSchema OpenAiError() => new()
    {
        Type = JsonSchemaType.Object,
        Required = new HashSet<string> { "error" },
        Properties = new Dictionary<string, IOpenApiSchema>
        {
            ["error"] = new OpenApiSchema
            {
                Type = JsonSchemaType.Object,
                Required = new HashSet<string> { "message", "type" },
                Properties = new Dictionary<string, IOpenApiSchema>
                {
                    ["message"] = new OpenApiSchema { Type = JsonSchemaType.String },
                    ["type"] = new OpenApiSchema { Type = JsonSchemaType.String, Description = "invalid_request_error, authentication_error, permission_error, not_found_error, rate_limit_error, server_error" },
                    ["param"] = new OpenApiSchema { Type = JsonSchemaType.String | JsonSchemaType.Null },
                    ["code"] = new OpenApiSchema { Type = JsonSchemaType.String | JsonSchemaType.Null },
                },
            },
        },
    };
}
